/*
 * tickcast live dashboard: the prices table (the symbol list, rows, sorting).
 *
 * Freshness. Each row shows the age of its last update and is marked "stale" (text, not
 * only colour) once it has been silent for STALE_INTERVALS of its own usual interval
 * between updates (at least STALE_MIN_MS).
 */
(function (tc) {
  "use strict";

  const {
    toNumber, fractionDigits, formatFixed, formatPrice, formatPercent, formatCompact,
    formatClock, formatAgo, signClass, arrow, median, splitSymbol,
  } = tc.format;
  const decimals = tc.decimals;
  const core = tc.core;
  const connection = tc.connection;
  const priceChart = tc.priceChart;
  const statusView = tc.statusView;
  const state = core.state;

  const FLASH_MS = 600;
  const SPARK_POINTS = 60;
  // A row is stale after this many of its usual intervals without an update (Binance's
  // @ticker sends about one a second), and never sooner than STALE_MIN_MS.
  const STALE_INTERVALS = 5;
  const STALE_MIN_MS = 3000;
  const DEFAULT_INTERVAL_MS = 1000;
  const INTERVAL_SAMPLES = 20;

  // ---------------------------------------------------------------- symbols

  function adoptDefaults() {
    // Once the server's defaults have filled the table, the table is the list: it is what
    // reconnects ask for and what add/remove edit.
    if (state.symbols === null && state.rows.size > 0) {
      state.symbols = manualOrder();
    }
  }

  function dropUnserved() {
    // A link's ?symbols= (or a list saved before the server changed) may name symbols this
    // server does not serve: they are left out, and said so, rather than refused as a whole
    // (/sse refuses a list with any unknown symbol).
    if (state.served === null || state.symbols === null) {
      return;
    }
    const unserved = state.symbols.filter(function (s) {
      return state.served.indexOf(s) < 0;
    });
    if (unserved.length) {
      state.symbols = state.symbols.filter(function (s) {
        return state.served.indexOf(s) >= 0;
      });
      statusView.showError("Not served by this server, left out: " + unserved.join(", ") + ".");
    }
  }

  function acceptsSymbol(symbol) {
    if (state.pending.delete(symbol)) {
      if (state.symbols !== null) {
        state.symbols.push(symbol);
        core.savePrefs();
      }
      return true;
    }
    return state.symbols === null || state.symbols.indexOf(symbol) >= 0;
  }

  function addSymbol(raw) {
    statusView.clearError();
    const symbol = raw.trim().toUpperCase();
    if (!core.SYMBOL_PATTERN.test(symbol)) {
      statusView.showError("Enter a symbol such as BTCUSDT (letters and digits only).");
      return false;
    }
    if (state.rows.has(symbol) || state.pending.has(symbol)) {
      statusView.showError(symbol + " is already in the table.");
      return false;
    }
    if (state.served !== null && state.served.indexOf(symbol) < 0) {
      // Asked before subscribing: the answer is known, and it names what can be added.
      statusView.showError(symbol + " is not served by this server: pick one of the " +
        state.served.length + " symbols it serves from the list.");
      return false;
    }
    adoptDefaults();
    if (state.symbols !== null) {
      state.symbols = state.symbols.filter(function (s) {
        return s !== symbol;
      });
    }
    state.symbolsFromUser = true;
    state.pending.add(symbol);
    renderSuggestions();
    if (state.transport === "ws") {
      connection.sendSubscribe(symbol); // when not open yet, onopen subscribes every pending symbol
    } else {
      addSymbolOverSse(symbol);
    }
    return true;
  }

  function addSymbolOverSse(symbol) {
    // SSE has no error replies, so ask the REST API first: 404 means not served.
    checkSymbolServed(symbol).then(function (served) {
      if (!state.pending.has(symbol)) {
        return;
      }
      if (!served) {
        state.pending.delete(symbol);
        renderSuggestions();
        statusView.showError("Cannot add " + symbol + ": the server does not serve this symbol.");
      } else if (state.wanted && state.transport === "sse") {
        connection.connect(false);
      }
    });
  }

  function checkSymbolServed(symbol) {
    const url = core.serverBase().http + "/price" + core.queryString({ symbol: symbol });
    return core.restFetch(url)
      .then(function (response) {
        return response.status !== 404;
      })
      .catch(function () {
        return true; // server unreachable: let the subscription itself decide later
      });
  }

  function removeSymbol(symbol) {
    adoptDefaults();
    state.symbols = (state.symbols || []).filter(function (s) {
      return s !== symbol;
    });
    state.symbolsFromUser = true;
    state.pending.delete(symbol);
    removeRow(symbol);
    renderSuggestions();
    if (state.chart.symbol === symbol) {
      priceChart.closeChart(false);
    }
    core.savePrefs();
    statusView.renderStats();
    if (state.transport === "ws") {
      connection.sendOp("unsubscribe", symbol);
    } else if (state.wanted) {
      connection.connect(false);
    }
  }

  let suggestionsFrame = null;

  function renderSuggestions() {
    // Once per frame at most: a table of every market creates thousands of rows at once.
    if (suggestionsFrame === null) {
      suggestionsFrame = requestAnimationFrame(drawSuggestions);
    }
  }

  function drawSuggestions() {
    suggestionsFrame = null;
    // The add box offers what the server serves and the table does not show yet (the
    // table of every market shows it all: no add box, no list).
    const addable = state.market.on ? [] : (state.served || []).filter(function (s) {
      return !state.rows.has(s) && !state.pending.has(s);
    });
    const list = state.el.servedList;
    const current = Array.prototype.map.call(list.options, function (option) {
      return option.value;
    });
    if (current.join(",") !== addable.join(",")) {
      list.replaceChildren.apply(list, addable.map(function (s) {
        const option = document.createElement("option");
        option.value = s;
        return option;
      }));
    }
    const example = addable[0] || (state.served && state.served[0]);
    state.el.addInput.placeholder = example ? "e.g. " + example : "symbol";
  }

  // ---------------------------------------------------------------- rows

  function createRow(symbol) {
    const tr = state.el.rowTemplate.content.firstElementChild.cloneNode(true);
    tr.dataset.symbol = symbol;
    const q = function (selector) {
      return tr.querySelector(selector);
    };
    const row = {
      symbol: symbol,
      units: splitSymbol(symbol),
      tr: tr,
      button: q(".symbol-btn"),
      priceVal: q(".price-val"),
      price: q(".price"),
      move: q(".move"),
      change: q(".change"),
      bid: q(".bid"),
      ask: q(".ask"),
      spread: q(".spread"),
      high: q(".high"),
      low: q(".low"),
      volume: q(".volume"),
      qvolume: q(".qvolume"),
      spark: q(".spark svg"),
      line: q(".spark polyline"),
      ageText: q(".age-text"),
      staleTag: q(".stale-tag"),
      values: {},
      tick: null, // the last tick: its prices are drawn again when the decimals grow
      lastPrice: null,
      history: [],
      intervals: [],
      updatedAt: null, // when the last update happened (receipt, or the tick's own time)
      lastLiveAt: null,
      stale: false,
      flashTimer: null,
    };
    row.button.textContent = symbol;
    row.button.setAttribute("aria-label", symbol + ": open chart");
    const remove = q("button.remove");
    remove.setAttribute("aria-label", "Remove " + symbol);
    remove.title = "Remove " + symbol;
    state.rows.set(symbol, row);
    tr.hidden = !tc.market.matches(symbol, row.units.base); // the search box's filter
    state.el.rows.appendChild(tr);
    if (state.chart.symbol === symbol) {
      row.button.setAttribute("aria-expanded", "true");
      tr.classList.add("charted");
    }
    applyOrder();
    statusView.renderEmpty();
    tc.columns.scheduleFit();
    renderSuggestions();
    return row;
  }

  function updateRow(row, tick, now, live, sent) {
    const price = toNumber(tick.last_price);
    if (price !== null) {
      if (row.lastPrice !== null && price !== row.lastPrice) {
        const direction = price > row.lastPrice ? "up" : "down";
        flash(row, direction);
        setMove(row, direction);
      }
      row.lastPrice = price;
      row.values.price = price;
      pushHistory(row, price);
    }
    decimals.learn(row.symbol, tick);
    row.tick = tick;
    renderPrices(row);
    if ("change_percent" in tick) {
      const cls = signClass(tick.change_percent);
      row.values.change = toNumber(tick.change_percent);
      row.change.textContent = "";
      if (cls !== "flat") {
        const mark = document.createElement("span");
        mark.className = "dir";
        mark.setAttribute("aria-hidden", "true");
        mark.textContent = arrow(cls === "pos" ? "up" : "down") + " ";
        row.change.appendChild(mark);
      }
      row.change.appendChild(document.createTextNode(formatPercent(tick.change_percent)));
      row.change.className = "num change " + cls;
    }
    setCell(row, "volume", tick, "volume", function (v) {
      return formatCompact(v) + " " + row.units.base;
    });
    setCell(row, "qvolume", tick, "quote_volume", function (v) {
      return formatCompact(v) + " " + row.units.quote;
    });
    row.values.quote_volume = toNumber(tick.quote_volume);
    noteUpdate(row, now, live, sent);
  }

  function renderPrices(row) {
    const tick = row.tick;
    const digits = decimals.of(row.symbol);
    const text = function (value) {
      return formatPrice(value, digits);
    };
    if (toNumber(tick.last_price) !== null) {
      row.priceVal.textContent = text(tick.last_price);
    }
    setCell(row, "bid", tick, "bid", text);
    setCell(row, "ask", tick, "ask", text);
    setCell(row, "high", tick, "high", text);
    setCell(row, "low", tick, "low", text);
    renderSpread(row, tick, digits);
  }

  function setCell(row, cellName, tick, field, format) {
    if (!(field in tick)) {
      return;
    }
    const cell = row[cellName];
    cell.textContent = format(tick[field]);
    cell.title = tick[field] === null || tick[field] === undefined ? "" : String(tick[field]);
    row.values[field] = toNumber(tick[field]);
  }

  function renderSpread(row, tick, known) {
    const bid = toNumber(tick.bid);
    const ask = toNumber(tick.ask);
    if (bid === null || ask === null) {
      row.values.spread = null;
      if ("bid" in tick || "ask" in tick) {
        row.spread.textContent = "–";
      }
      return;
    }
    // Rounded to the quotes' own precision: float subtraction leaves noise digits.
    const digits = known !== null ? known : Math.max(fractionDigits(tick.bid), fractionDigits(tick.ask));
    const spread = Number((ask - bid).toFixed(digits));
    const mid = (ask + bid) / 2;
    const bps = mid > 0 ? (spread / mid) * 10000 : null;
    row.values.spread = bps;
    row.spread.textContent = formatFixed(spread, digits);
    row.spread.title = bps === null ? "" : formatFixed(bps, 2) + " bp of the mid price";
  }

  function noteUpdate(row, now, live, sent) {
    if (live) {
      if (row.lastLiveAt !== null) {
        row.intervals.push(now - row.lastLiveAt);
        if (row.intervals.length > INTERVAL_SAMPLES) {
          row.intervals.shift();
        }
      }
      row.lastLiveAt = now;
      row.updatedAt = now;
    } else {
      // A snapshot or a replayed tick: as old as its own timestamp, not as its delivery.
      row.updatedAt = sent === null ? now : Math.min(now, sent);
    }
    renderAge(row, now);
  }

  function staleAfterMs(row) {
    const usual = row.intervals.length >= 3 ? median(row.intervals) : DEFAULT_INTERVAL_MS;
    return Math.max(STALE_MIN_MS, STALE_INTERVALS * usual);
  }

  function renderAge(row, now) {
    if (row.updatedAt === null) {
      return;
    }
    const age = Math.max(0, now - row.updatedAt);
    const text = formatAgo(age);
    if (row.ageText.textContent !== text) {
      row.ageText.textContent = text;
    }
    const stale = age > staleAfterMs(row);
    if (stale !== row.stale) {
      row.stale = stale;
      row.tr.classList.toggle("row-stale", stale);
      row.staleTag.hidden = !stale;
    }
    row.ageText.parentElement.title =
      "Last update " + formatClock(row.updatedAt) +
      (stale ? ": no update for " + Math.round(staleAfterMs(row) / 1000) + " s or more" : "");
  }

  function setMove(row, direction) {
    row.move.className = "move " + direction;
    row.move.textContent = "";
    const mark = document.createElement("span");
    mark.setAttribute("aria-hidden", "true");
    mark.textContent = arrow(direction);
    const label = document.createElement("span");
    label.className = "visually-hidden";
    label.textContent = direction === "up" ? " (up)" : " (down)";
    row.move.append(mark, label);
    row.move.title = "Last move: " + direction;
  }

  function flash(row, direction) {
    clearTimeout(row.flashTimer);
    row.price.classList.remove("up", "down");
    row.price.classList.add(direction);
    row.flashTimer = setTimeout(function () {
      row.price.classList.remove(direction);
    }, FLASH_MS);
  }

  function pushHistory(row, price) {
    row.history.push(price);
    if (row.history.length > SPARK_POINTS) {
      row.history.shift();
    }
    renderSpark(row);
  }

  function renderSpark(row) {
    const points = row.history;
    if (points.length < 2) {
      row.line.setAttribute("points", "");
      return;
    }
    const low = Math.min.apply(null, points);
    const high = Math.max.apply(null, points);
    const range = high - low;
    const step = 100 / (points.length - 1);
    const coords = points.map(function (p, i) {
      const y = range === 0 ? 12 : 22 - ((p - low) / range) * 20;
      return (i * step).toFixed(2) + "," + y.toFixed(2);
    });
    row.line.setAttribute("points", coords.join(" "));
    const first = points[0];
    const last = points[points.length - 1];
    row.spark.setAttribute("class", last > first ? "rising" : last < first ? "falling" : "level");
  }

  function removeRow(symbol) {
    const row = state.rows.get(symbol);
    if (!row) {
      return;
    }
    clearTimeout(row.flashTimer);
    // Keep keyboard focus in the table: move it to the next row's remove button.
    const next = row.tr.nextElementSibling || row.tr.previousElementSibling;
    const hadFocus = row.tr.contains(document.activeElement);
    row.tr.remove();
    state.rows.delete(symbol);
    state.seen.delete(symbol);
    if (hadFocus) {
      (next ? next.querySelector("button.remove") : state.el.addInput).focus();
    }
    statusView.renderEmpty();
  }

  // ---------------------------------------------------------------- sorting and order

  function manualOrder() {
    // The user's list, else the server's configured order, then anything else by arrival.
    const base = state.symbols || state.served || [];
    const out = base.filter(function (s) {
      return state.rows.has(s);
    });
    state.rows.forEach(function (_row, symbol) {
      if (out.indexOf(symbol) < 0) {
        out.push(symbol);
      }
    });
    return out;
  }

  // The value a row (or a market table's entry: both have symbol, updatedAt, values)
  // sorts by under the column ``key``; null for none.
  function sortValue(row, key, now) {
    if (key === "symbol") {
      return row.symbol;
    }
    if (key === "age") {
      return row.updatedAt === null ? null : now - row.updatedAt;
    }
    const v = row.values[key];
    return v === undefined ? null : v;
  }

  // A comparator of {v, index} items for the sort direction: blanks last, ties by index
  // (the server's order), so a sort is stable whatever the engine's.
  function byValue(dir) {
    const sign = dir === "asc" ? 1 : -1;
    return function (a, b) {
      if (a.v === null || b.v === null) {
        return a.v === b.v ? a.index - b.index : a.v === null ? 1 : -1;
      }
      if (a.v < b.v) {
        return -sign;
      }
      if (a.v > b.v) {
        return sign;
      }
      return a.index - b.index;
    };
  }

  function desiredOrder() {
    const manual = manualOrder();
    const key = state.sort.key;
    if (!key) {
      return manual;
    }
    const now = Date.now();
    return manual
      .map(function (symbol, index) {
        return { symbol: symbol, index: index, v: sortValue(state.rows.get(symbol), key, now) };
      })
      .sort(byValue(state.sort.dir))
      .map(function (entry) {
        return entry.symbol;
      });
  }

  function applyOrder() {
    state.lastResort = Date.now();
    const order = desiredOrder();
    const tbody = state.el.rows;
    const current = Array.prototype.map.call(tbody.children, function (tr) {
      return tr.dataset.symbol;
    });
    if (current.join(",") === order.join(",")) {
      return;
    }
    // Moving a row takes focus away from what is inside it: give it back.
    const focused = document.activeElement;
    order.forEach(function (symbol) {
      tbody.appendChild(state.rows.get(symbol).tr);
    });
    if (focused && focused !== document.activeElement && tbody.contains(focused)) {
      focused.focus({ preventScroll: true });
    }
  }

  function cycleSort(key) {
    const current = state.sort;
    const first = key === "symbol" ? "asc" : "desc";
    const second = first === "asc" ? "desc" : "asc";
    if (current.key !== key) {
      state.sort = { key: key, dir: first };
    } else if (current.dir === first) {
      state.sort = { key: key, dir: second };
    } else {
      state.sort = { key: null, dir: "desc" }; // third press: back to the list's own order
    }
    core.savePrefs();
    renderSortHeaders();
    applyOrder();
    tc.market.sortChanged();
  }

  function renderSortHeaders() {
    state.el.sortHeaders.forEach(function (th) {
      const active = th.dataset.sort === state.sort.key;
      const dir = active ? (state.sort.dir === "asc" ? "ascending" : "descending") : "none";
      th.setAttribute("aria-sort", dir);
      th.querySelector(".sort-ind").textContent = active ? (state.sort.dir === "asc" ? " ▲" : " ▼") : "";
    });
  }

  Object.assign(tc.table, {
    adoptDefaults: adoptDefaults,
    acceptsSymbol: acceptsSymbol,
    addSymbol: addSymbol,
    dropUnserved: dropUnserved,
    renderSuggestions: renderSuggestions,
    removeSymbol: removeSymbol,
    renderPrices: renderPrices,
    createRow: createRow,
    updateRow: updateRow,
    renderAge: renderAge,
    applyOrder: applyOrder,
    cycleSort: cycleSort,
    renderSortHeaders: renderSortHeaders,
    sortValue: sortValue,
    byValue: byValue,
  });
})(window.tickcast);
