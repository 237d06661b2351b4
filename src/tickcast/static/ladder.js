/*
 * tickcast live dashboard: the selected symbol's order book ladder.
 *
 * Its best LEVELS bids and asks (SPEC §12): /book/{symbol}?limit=20 first, then its
 * SYMBOL@book stream (the top levels at most every 100 ms; latest wins, so each message
 * replaces the whole ladder). Bids (best = highest first) and asks (best = lowest first)
 * side by side, one row per depth, so the spread sits across the top row. Each side's bar
 * is the cumulative size from its best price down to that row, scaled to the larger of the
 * two sides' totals: bars of both sides compare, and the longest bar is the deeper side.
 *
 * A book the server cannot vouch for is not shown: while it is not whole (a `status` with
 * `book`: "syncing" before its first snapshot, "broken" after a gap until resynced) the
 * ladder says "syncing" and shows no levels, until the stream's next `book`. A symbol whose
 * books the server does not carry (not in /streams, or /book answering 404) says so, and
 * follow.js subscribes nothing for it.
 *
 * Up to ten messages a second: the rows are built once and rewritten in place, at most
 * once per animation frame.
 */
(function (tc) {
  "use strict";

  const { LOCALE, toNumber, fractionDigits, priceFloor, formatFixed, setText } = tc.format;
  const core = tc.core;
  const state = core.state;

  const LEVELS = 20;
  const MAX_DECIMALS = 8;

  // ---------------------------------------------------------------- data

  function select(symbol) {
    const book = state.book;
    book.symbol = symbol;
    book.loadId += 1;
    book.fromStream = false;
    book.received = null;
    book.qtyDecimals = 0;
    clearLevels();
    if (!symbol) {
      book.state = null;
    } else if (!served(symbol)) {
      unavailable(symbol + "@book is not served here");
    } else {
      book.state = "loading";
      book.reason = "";
      load(symbol);
    }
    schedule();
  }

  function served(symbol) {
    // Unknown until /streams answers: /book's 404 then says so.
    const list = state.follow.served;
    return list === null || list.indexOf(symbol + "@book") >= 0;
  }

  function unavailable(reason) {
    const book = state.book;
    clearLevels();
    book.state = "unavailable";
    book.reason = reason;
  }

  function clearLevels() {
    const book = state.book;
    book.updateId = null;
    book.bids = [];
    book.asks = [];
  }

  function refresh() {
    // After a (re)connect or a subscription acked: the REST book, unless the stream has
    // already spoken (its book or status is newer than any REST answer taken before it).
    const book = state.book;
    if (!book.symbol || book.fromStream || book.state === "unavailable") {
      return;
    }
    if (!served(book.symbol)) {
      unavailable(book.symbol + "@book is not served here");
      schedule();
      return;
    }
    load(book.symbol);
  }

  function load(symbol) {
    const book = state.book;
    const id = ++book.loadId;
    const url = core.serverBase().http + "/book/" + encodeURIComponent(symbol) +
      core.queryString({ limit: LEVELS });
    core.restFetch(url)
      .then(function (response) {
        return response.json().catch(function () {
          return null;
        }).then(function (body) {
          return { status: response.status, body: body };
        });
      })
      .then(function (answer) {
        if (id !== book.loadId || book.fromStream) {
          return; // another symbol, or the stream's own news came first
        }
        const body = answer.body;
        const message = body && typeof body.message === "string" ? body.message : null;
        if (answer.status === 200 && body && body.type === "book") {
          take(body);
        } else if (answer.status === 503) {
          notWhole(body && body.state === "broken" ? "broken" : "syncing", message || "");
        } else if (answer.status === 404) {
          unavailable(message || symbol + "'s book is not served here");
        } else {
          book.state = "error";
          book.reason = message || "HTTP " + answer.status;
        }
        schedule();
      })
      .catch(function (err) {
        if (id !== book.loadId || book.fromStream) {
          return;
        }
        book.state = "error";
        book.reason = err.message || "unreachable";
        schedule();
      });
  }

  function levels(raw) {
    // [[price, qty], ...] as the wire has them (numbers); malformed pairs are dropped.
    if (!Array.isArray(raw)) {
      return [];
    }
    return raw.slice(0, LEVELS).filter(function (pair) {
      return Array.isArray(pair) && toNumber(pair[0]) !== null && toNumber(pair[1]) !== null;
    }).map(function (pair) {
      return [pair[0], pair[1]];
    });
  }

  function take(message) {
    const book = state.book;
    book.state = "live";
    book.reason = "";
    book.updateId = toNumber(message.update_id);
    book.bids = levels(message.bids);
    book.asks = levels(message.asks);
  }

  function notWhole(name, reason) {
    const book = state.book;
    clearLevels();
    book.state = name;
    book.reason = reason;
  }

  function accept(message) {
    // A `book` message of the stream (or of a reset's snapshot).
    const book = state.book;
    if (!book.symbol || message.stream !== book.symbol + "@book") {
      return;
    }
    book.fromStream = true;
    book.received = message;
    take(message);
    schedule();
  }

  function acceptStatus(status) {
    // A book's `status`: not whole. Its next `book` message brings the ladder back.
    const book = state.book;
    if (!book.symbol || status.symbol !== book.symbol) {
      return;
    }
    book.fromStream = true;
    const reason = [status.reason, status.detail].filter(function (part) {
      return typeof part === "string" && part !== "";
    }).join(": ");
    notWhole(status.book === "broken" ? "broken" : "syncing", reason);
    schedule();
  }

  // ---------------------------------------------------------------- drawing

  function schedule() {
    const book = state.book;
    if (book.frame === null) {
      book.frame = requestAnimationFrame(function () {
        book.frame = null;
        render();
      });
    }
  }

  // Each row's cells, left to right: [the key of its text in the row view, its class, the
  // key of the bar it holds]. A bar is drawn from the middle of the row outwards, behind
  // its side's price and size (positioned against the row: style.css).
  const CELLS = [
    ["bidQty", "num bid-qty", null],
    ["bidPrice", "num bid-price", "bidBar"],
    ["askPrice", "num ask-price", "askBar"],
    ["askQty", "num ask-qty", null],
  ];

  function span(parent, className) {
    const el = document.createElement("span");
    el.className = className;
    parent.appendChild(el);
    return el;
  }

  function buildRows() {
    // LEVELS rows, made once: every later render only rewrites their text and bar widths.
    const rows = [];
    for (let i = 0; i < LEVELS; i++) {
      const row = { tr: document.createElement("tr") };
      CELLS.forEach(function (cell) {
        const td = document.createElement("td");
        td.className = cell[1];
        row.tr.appendChild(td);
        if (cell[2] !== null) {
          row[cell[2]] = span(td, "bar");
          row[cell[2]].setAttribute("aria-hidden", "true");
        }
        row[cell[0]] = span(td, "val");
      });
      rows.push(row);
    }
    state.el.bookRows.replaceChildren.apply(state.el.bookRows, rows.map(function (row) {
      return row.tr;
    }));
    return rows;
  }

  function scaled(value, digits) {
    // The integer count of 10^-digits in a wire decimal (exact: the wire has no more).
    return Math.round(Number(value) * Math.pow(10, digits));
  }

  function spreadOf(bids, asks, digits) {
    // Exact: in integer units of the finest price, then shown with the symbol's decimals.
    if (!bids.length || !asks.length) {
      return null;
    }
    const bid = bids[0][0];
    const ask = asks[0][0];
    const d = Math.max(fractionDigits(bid), fractionDigits(ask));
    const spread = (scaled(ask, d) - scaled(bid, d)) / Math.pow(10, d);
    const mid = (Number(ask) + Number(bid)) / 2;
    return {
      text: formatFixed(spread, Math.max(digits, d)),
      bps: mid > 0 ? (spread / mid) * 10000 : null,
    };
  }

  function priceDigits(book) {
    // The symbol's decimals (decimals.js), or more if a level has more: never a digit lost.
    const known = tc.decimals.of(book.symbol);
    let digits = known === null ? 0 : known;
    book.bids.concat(book.asks).forEach(function (level) {
      digits = Math.max(digits, fractionDigits(level[0]), known === null ? priceFloor(level[0]) : 0);
    });
    return Math.min(MAX_DECIMALS, digits);
  }

  function qtyDigits(book) {
    // Grows while a symbol is shown, never shrinks: the size columns keep their width.
    book.bids.concat(book.asks).forEach(function (level) {
      book.qtyDecimals = Math.max(book.qtyDecimals, Math.min(MAX_DECIMALS, fractionDigits(level[1])));
    });
    return book.qtyDecimals;
  }

  function cumulative(side) {
    let sum = 0;
    return side.map(function (level) {
      sum += Number(level[1]);
      return sum;
    });
  }

  function setWidth(bar, fraction) {
    // Of the row: a side's bar is at most its half.
    const width = (fraction * 50).toFixed(2) + "%";
    if (bar.style.width !== width) {
      bar.style.width = width;
    }
  }

  function renderRows(book) {
    const el = state.el;
    if (!el.bookRows) {
      return;
    }
    if (book.rows === null) {
      book.rows = buildRows();
    }
    const digits = priceDigits(book);
    const qtyDecimals = qtyDigits(book);
    const bidDepth = cumulative(book.bids);
    const askDepth = cumulative(book.asks);
    const total = Math.max(bidDepth[bidDepth.length - 1] || 0, askDepth[askDepth.length - 1] || 0);
    book.rows.forEach(function (row, i) {
      const bid = book.bids[i];
      const ask = book.asks[i];
      setText(row.bidPrice, bid ? formatFixed(Number(bid[0]), digits) : "");
      setText(row.bidQty, bid ? formatFixed(Number(bid[1]), qtyDecimals) : "");
      setText(row.askPrice, ask ? formatFixed(Number(ask[0]), digits) : "");
      setText(row.askQty, ask ? formatFixed(Number(ask[1]), qtyDecimals) : "");
      setWidth(row.bidBar, bid && total > 0 ? bidDepth[i] / total : 0);
      setWidth(row.askBar, ask && total > 0 ? askDepth[i] / total : 0);
    });
    return digits;
  }

  function stateText(book) {
    if (book.state === "live" && !tc.statusView.isFresh()) {
      return "stale"; // the last book before the connection or the upstream dropped
    }
    return {
      loading: "loading",
      live: "live",
      syncing: "syncing",
      broken: "syncing",
      unavailable: "unavailable",
      error: "unavailable",
    }[book.state] || "";
  }

  function noteText(book) {
    const why = book.reason ? " (" + book.reason + ")" : "";
    switch (book.state) {
      case "loading":
        return "Loading the order book…";
      case "syncing":
        return "Order book syncing: the server has no whole book yet" + why +
          ". Levels appear once it has.";
      case "broken":
        return "Order book syncing: the book broke" + why +
          " and is being rebuilt; no levels are shown until it is whole again.";
      case "unavailable":
        return "Order book unavailable: " + book.reason;
      case "error":
        return "Order book unavailable: " + book.reason;
      case "live":
        return book.bids.length || book.asks.length ? "" : "The book is empty.";
      default:
        return "";
    }
  }

  function render() {
    const book = state.book;
    const el = state.el;
    if (!el.bookRows) {
      return;
    }
    const digits = renderRows(book);
    const spread = book.state === "live" ? spreadOf(book.bids, book.asks, digits) : null;
    setText(el.bookSpread, spread ? spread.text : "–");
    setText(el.bookSpreadBps, spread && spread.bps !== null
      ? spread.bps.toLocaleString(LOCALE, { maximumSignificantDigits: 3 }) + " bp"
      : "");
    setText(el.bookUpdateId, book.updateId === null ? "–" : String(book.updateId));
    const shownState = stateText(book);
    setText(el.bookState, shownState);
    el.bookState.dataset.state = shownState;
    el.bookState.hidden = shownState === "";
    el.bookTable.hidden = book.state === "unavailable" || book.state === "error";
    el.bookTable.dataset.state = book.state || "";
    const unit = book.symbol ? "Size (" + tc.format.splitSymbol(book.symbol).base + ")" : "Size";
    el.bookSizeHeads.forEach(function (th) {
      setText(th, unit);
    });
    const note = noteText(book);
    setText(el.bookNote, note);
    el.bookNote.hidden = note === "";
    book.shown = {
      symbol: book.symbol,
      state: book.state,
      update_id: book.updateId,
      bids: book.bids.map(copyLevel),
      asks: book.asks.map(copyLevel),
      spread: spread ? spread.text : null,
    };
  }

  function copyLevel(level) {
    return level.slice();
  }

  function shown() {
    // What the last render drew, and the last stream message taken (for tests).
    const book = state.book;
    const received = book.received;
    return Object.assign({}, book.shown || { state: null, update_id: null, bids: [], asks: [] }, {
      received: received ? {
        update_id: toNumber(received.update_id),
        bids: levels(received.bids),
        asks: levels(received.asks),
      } : null,
    });
  }

  Object.assign(tc.ladder, {
    LEVELS: LEVELS,
    select: select,
    refresh: refresh,
    accept: accept,
    acceptStatus: acceptStatus,
    schedule: schedule,
    render: render,
    shown: shown,
  });
})(window.tickcast);
