/*
 * tickcast live dashboard: the selected symbol's trade tape.
 *
 * Its last TAPE_ROWS trades, newest on top (SPEC §12): /trades/{symbol} first, then its
 * SYMBOL@trades stream. One row per trade id, whichever way a trade came (both, when a
 * refetch after a reconnect or a resume's replay repeats it). The taker's side is told by
 * colour and by ▲/▼ with a word. A `gap` message (the server dropped trades this page did
 * not take in time: trades are never conflated, SPEC §12) shows as a line in the tape
 * saying how many were missed, where they were missed.
 */
(function (tc) {
  "use strict";

  const { toNumber, fractionDigits, formatPrice, formatFixed, formatClock } = tc.format;
  const core = tc.core;
  const state = core.state;

  const TAPE_ROWS = 50;
  const MAX_QTY_DECIMALS = 8;

  // ---------------------------------------------------------------- data

  function select(symbol) {
    const tape = state.tape;
    tape.symbol = symbol;
    tape.entries = [];
    tape.ids.clear();
    tape.error = null;
    tape.loading = Boolean(symbol);
    tape.loadId += 1;
    if (symbol) {
      load(symbol);
    }
    render();
  }

  function refresh() {
    // After a (re)connect: the trades the drop may have missed, merged by id.
    if (state.tape.symbol && !state.tape.loading) {
      load(state.tape.symbol);
    }
  }

  function load(symbol) {
    const tape = state.tape;
    const id = ++tape.loadId;
    const url = core.serverBase().http + "/trades/" + encodeURIComponent(symbol) +
      core.queryString({ limit: TAPE_ROWS });
    core.restFetch(url)
      .then(function (response) {
        return response.json().catch(function () {
          return null;
        }).then(function (body) {
          if (!response.ok) {
            throw new Error(body && body.message ? body.message : "HTTP " + response.status);
          }
          return body;
        });
      })
      .then(function (trades) {
        if (id !== tape.loadId) {
          return;
        }
        (Array.isArray(trades) ? trades : []).forEach(insert);
        tape.loading = false;
        tape.error = null;
        schedule();
      })
      .catch(function (err) {
        if (id !== tape.loadId) {
          return;
        }
        tape.loading = false;
        tape.error = err.message || "unreachable";
        schedule();
      });
  }

  function accept(trade) {
    if (trade.symbol === state.tape.symbol && insert(trade)) {
      schedule();
    }
  }

  function acceptGap(gap) {
    const tape = state.tape;
    const missed = toNumber(gap.missed);
    if (!tape.symbol || gap.stream !== tape.symbol + "@trades" || !missed) {
      return;
    }
    // Above every trade held: the missed ones came after them. Later trades go above it.
    const newest = tape.entries.length ? keyOf(tape.entries[0]) : 0;
    tape.entries.unshift({ gap: missed, key: newest + 0.5, tr: null });
    trim();
    schedule();
  }

  function keyOf(entry) {
    return entry.gap ? entry.key : entry.id;
  }

  function insert(trade) {
    const tape = state.tape;
    const id = toNumber(trade.trade_id);
    if (id === null || tape.ids.has(id) || toNumber(trade.price) === null) {
      return false;
    }
    const entries = tape.entries;
    let i = 0;
    while (i < entries.length && keyOf(entries[i]) > id) {
      i += 1;
    }
    if (i >= TAPE_ROWS) {
      return false; // older than every row the tape keeps
    }
    entries.splice(i, 0, {
      id: id,
      price: trade.price,
      qty: trade.qty,
      side: trade.side === "sell" ? "sell" : "buy",
      t: toNumber(trade.timestamp_ms),
      tr: null,
    });
    tape.ids.add(id);
    trim();
    return true;
  }

  function trim() {
    const tape = state.tape;
    while (tape.entries.length > TAPE_ROWS) {
      const dropped = tape.entries.pop();
      tape.ids.delete(dropped.id);
    }
  }

  // ---------------------------------------------------------------- drawing

  function schedule() {
    // Once per frame at most: a burst of trades (a resume's replay) is one redraw.
    const tape = state.tape;
    if (tape.frame === null) {
      tape.frame = requestAnimationFrame(function () {
        tape.frame = null;
        render();
      });
    }
  }

  function qtyDigits(entries) {
    // Every size with the same decimals, so the column's digits line up.
    return entries.reduce(function (most, entry) {
      return entry.gap ? most : Math.max(most, Math.min(MAX_QTY_DECIMALS, fractionDigits(entry.qty)));
    }, 0);
  }

  function cell(tr, className, text) {
    const td = document.createElement("td");
    td.className = className;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function tradeRow(entry, digits, qtyDecimals) {
    const tr = document.createElement("tr");
    tr.className = "trade " + entry.side;
    tr.dataset.tradeId = String(entry.id);
    const side = cell(tr, "side", "");
    const mark = document.createElement("span");
    mark.className = "dir";
    mark.setAttribute("aria-hidden", "true");
    mark.textContent = entry.side === "buy" ? "▲ " : "▼ ";
    side.append(mark, entry.side === "buy" ? "Buy" : "Sell");
    cell(tr, "num price", formatPrice(entry.price, digits));
    const qty = toNumber(entry.qty);
    cell(tr, "num qty", qty === null ? "–" : formatFixed(qty, qtyDecimals));
    cell(tr, "num time", entry.t === null ? "–" : formatClock(entry.t));
    return tr;
  }

  function gapRow(entry) {
    const tr = document.createElement("tr");
    tr.className = "tape-gap";
    const td = cell(tr, "", "⚠ " + entry.gap.toLocaleString(tc.format.LOCALE) +
      (entry.gap === 1 ? " trade" : " trades") + " missed");
    td.colSpan = 4;
    return tr;
  }

  function render() {
    const tape = state.tape;
    const el = state.el;
    if (!el.tapeRows) {
      return;
    }
    const digits = tc.decimals.of(tape.symbol);
    const qtyDecimals = qtyDigits(tape.entries);
    if (qtyDecimals !== tape.qtyDecimals) {
      tape.qtyDecimals = qtyDecimals; // sizes drawn with fewer decimals are drawn again
      tape.entries.forEach(function (entry) {
        entry.tr = null;
      });
    }
    const rows = tape.entries.map(function (entry) {
      if (entry.tr === null) {
        entry.tr = entry.gap ? gapRow(entry) : tradeRow(entry, digits, qtyDecimals);
      }
      return entry.tr;
    });
    el.tapeRows.replaceChildren.apply(el.tapeRows, rows);
    el.tapeTable.dataset.count = String(rows.length);
    let note = "";
    if (tape.loading) {
      note = "Loading trades…";
    } else if (tape.error) {
      note = "Trades unavailable: " + tape.error;
    } else if (!tape.entries.length) {
      note = "No trades yet.";
    }
    el.tapeNote.textContent = note;
    el.tapeNote.hidden = note === "";
  }

  Object.assign(tc.tape, {
    select: select,
    refresh: refresh,
    accept: accept,
    acceptGap: acceptGap,
    render: render,
  });
})(window.tickcast);
