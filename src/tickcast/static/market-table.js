/*
 * tickcast live dashboard: the table of every market (SPEC §12 "Every market").
 *
 * A server of more than MIN_SYMBOLS symbols that serves `!tickers` gets this table instead
 * of table.js's: the page follows the one stream `!tickers` (one subscription, whatever the
 * number of symbols) beside the selected symbol's own streams, and keeps every symbol's
 * latest values in a plain array. Only the rows on screen, plus MARGIN_ROWS each side,
 * exist in the DOM; two spacer rows give the scroll bar its full height. A tick of a row
 * off screen updates its data and nothing else; the rows on screen are redrawn once per
 * animation frame at most. Sorting and the search box work on the array, never the DOM.
 * A server of a few symbols keeps table.js's table; the search box filters its rows.
 */
(function (tc) {
  "use strict";

  const {
    toNumber, fractionDigits, formatFixed, formatPrice, formatPercent, formatCompact,
    formatAgo, signClass, arrow, splitSymbol,
  } = tc.format;
  const state = tc.core.state;
  const m = state.market;

  // More symbols than this and the server's `!tickers`: the table of every market.
  const MIN_SYMBOLS = 50;
  const MARGIN_ROWS = 8;
  // While ticks arrive, a table sorted by a value is put in order again at most this often:
  // rows that jump under the pointer many times a second cannot be read, let alone clicked.
  const RESORT_MS = 500;
  const SPARK_POINTS = 30;
  const FALLBACK_ROW_PX = 34;
  const COLUMNS = 13;

  // ---------------------------------------------------------------- mode

  function decide() {
    // Called once /symbols and /streams have answered. A list of the user's own (a link's
    // ?symbols=, or a saved one) keeps the table it names.
    const want = state.served !== null && state.served.length > MIN_SYMBOLS &&
      state.follow.tickers === true && state.symbols === null;
    if (want === m.on) {
      return;
    }
    m.on = want;
    clearRows();
    showMode();
    if (state.wanted && (state.ws !== null || state.es !== null)) {
      tc.connection.connect(false); // what the page subscribes changes with the table
    }
  }

  function clearRows() {
    state.rows.forEach(function (row) {
      clearTimeout(row.flashTimer);
    });
    state.rows.clear();
    state.seen.clear();
    m.entries.clear();
    m.list = [];
    m.view = [];
    m.shown = [];
    m.pool = [];
    m.start = 0;
    m.end = 0;
    state.el.rows.replaceChildren();
  }

  function showMode() {
    const mode = m.on ? "market" : "table";
    state.el.table.dataset.mode = mode;
    state.el.tableWrap.dataset.mode = mode;
    state.el.addForm.dataset.mode = mode;
    tc.statusView.renderEmpty();
    tc.columns.scheduleFit();
    if (m.on) {
      m.orderStale = true;
      schedule();
    }
  }

  // ---------------------------------------------------------------- search

  function matches(symbol, base) {
    if (!m.query) {
      return true;
    }
    return symbol.toUpperCase().indexOf(m.query) >= 0 ||
      (base || splitSymbol(symbol).base).toUpperCase().indexOf(m.query) >= 0;
  }

  function setQuery(text) {
    m.query = String(text).trim().toUpperCase();
    if (m.on) {
      m.orderStale = true;
      m.forceOrder = true;
      schedule();
    } else {
      state.rows.forEach(function (row) {
        row.tr.hidden = !matches(row.symbol, row.units.base);
      });
    }
    tc.statusView.renderEmpty();
  }

  // ---------------------------------------------------------------- data

  function entryFor(symbol) {
    let entry = m.entries.get(symbol);
    if (entry === undefined) {
      const units = splitSymbol(symbol);
      const listed = servedIndex(symbol);
      entry = {
        symbol: symbol,
        base: units.base,
        quote: units.quote,
        // The server's order first, then symbols it did not list, as they come.
        index: listed >= 0 ? listed : 1e6 + m.list.length,
        tick: null,
        values: {},
        move: null,
        history: [],
        updatedAt: null,
        view: null, // the row view showing it, while it is in the DOM
      };
      m.entries.set(symbol, entry);
      m.list.push(entry);
      m.orderStale = true;
      m.forceOrder = true; // a new row appears now, not at the next re-sort
    }
    return entry;
  }

  function servedIndex(symbol) {
    // Where /symbols lists it (a map, built again when /symbols answers anew).
    if (m.indexOf === null || m.indexFrom !== state.served) {
      m.indexFrom = state.served;
      m.indexOf = new Map((state.served || []).map(function (s, i) {
        return [s, i];
      }));
    }
    const index = m.indexOf.get(symbol);
    return index === undefined ? -1 : index;
  }

  function accept(tick, now, sent, snapshot) {
    // One tick of `!tickers`: data always, DOM work only for a row on screen.
    const entry = entryFor(tick.symbol);
    const price = toNumber(tick.last_price);
    const v = entry.values;
    if (price !== null) {
      if (v.price !== undefined && v.price !== null && price !== v.price) {
        entry.move = price > v.price ? "up" : "down";
      }
      entry.history.push(price);
      if (entry.history.length > SPARK_POINTS) {
        entry.history.shift();
      }
    }
    ["price", "change", "bid", "ask", "high", "low", "volume", "quote_volume"].forEach(function (key) {
      const field = key === "price" ? "last_price" : key === "change" ? "change_percent" : key;
      if (field in tick) {
        v[key] = toNumber(tick[field]);
      }
    });
    v.spread = spreadBps(v.bid, v.ask);
    tc.decimals.learn(entry.symbol, tick);
    entry.tick = tick;
    entry.updatedAt = snapshot && sent !== null ? Math.min(now, sent) : now;
    if (state.sort.key && state.sort.key !== "symbol") {
      m.orderStale = true;
    }
    if (entry.view !== null) {
      m.dirty.add(entry);
      schedule();
    } else if (m.orderStale) {
      schedule();
    }
  }

  function spreadBps(bid, ask) {
    if (bid === null || ask === null || bid === undefined || ask === undefined) {
      return null;
    }
    const mid = (ask + bid) / 2;
    return mid > 0 ? ((ask - bid) / mid) * 10000 : null;
  }

  function drop(symbols) {
    // A symbol the server no longer serves (delisted): its row goes.
    let dropped = 0;
    symbols.forEach(function (symbol) {
      if (typeof symbol === "string" && m.entries.delete(symbol.toUpperCase())) {
        dropped += 1;
      }
    });
    if (dropped) {
      m.list = Array.from(m.entries.values());
      m.orderStale = true;
      m.forceOrder = true;
      schedule();
      tc.statusView.renderEmpty();
    }
    return dropped;
  }

  // ---------------------------------------------------------------- order

  function order() {
    // Filter then sort the data array (stable: ties keep the server's order); blanks last.
    const key = state.sort.key;
    const now = Date.now();
    const view = m.list.filter(function (entry) {
      return matches(entry.symbol, entry.base);
    });
    const keyed = view.map(function (entry) {
      return { e: entry, index: entry.index, v: key ? tc.table.sortValue(entry, key, now) : null };
    });
    keyed.sort(tc.table.byValue(state.sort.dir));
    m.view = keyed.map(function (k) {
      return k.e;
    });
    m.lastOrder = now;
    m.orderStale = false;
    m.forceOrder = false;
    m.rebind = true;
  }

  function sortChanged() {
    if (m.on) {
      m.orderStale = true;
      m.forceOrder = true;
      schedule();
    }
  }

  // ---------------------------------------------------------------- drawing

  function schedule() {
    if (m.on && m.frame === null) {
      m.frame = requestAnimationFrame(draw);
    }
  }

  function draw() {
    m.frame = null;
    if (!m.on) {
      return;
    }
    if (m.orderStale) {
      const wait = RESORT_MS - (Date.now() - m.lastOrder);
      if (m.forceOrder || wait <= 0) {
        order();
      } else if (m.resortTimer === null) {
        m.resortTimer = setTimeout(function () {
          m.resortTimer = null;
          schedule();
        }, wait);
      }
    }
    measure();
    const range = windowRange();
    if (m.rebind || range.start !== m.start || range.end !== m.end) {
      bindWindow(range.start, range.end);
    }
    m.dirty.forEach(function (entry) {
      if (entry.view !== null) {
        fill(entry.view, entry);
      }
    });
    m.dirty.clear();
  }

  function measure() {
    // Read before this frame writes anything: one layout, not one per row.
    const wrap = state.el.tableWrap;
    m.scrollTop = wrap.scrollTop;
    m.viewHeight = wrap.clientHeight || window.innerHeight;
    const head = state.el.table.tHead;
    m.headHeight = head ? head.offsetHeight : 0;
    const first = m.shown.length ? m.shown[0].tr : null;
    // Fractional: a rounded height, times 2,000 rows, would misplace the spacers.
    const height = first ? first.getBoundingClientRect().height : 0;
    if (height > 0 && height !== m.rowHeight) {
      m.rowHeight = height;
      m.rebind = true; // the spacers stand for rows of this height
    }
  }

  function windowRange() {
    const rowHeight = m.rowHeight || FALLBACK_ROW_PX;
    const top = Math.max(0, m.scrollTop - m.headHeight);
    const first = Math.floor(top / rowHeight);
    const count = Math.ceil(m.viewHeight / rowHeight) + 1;
    const start = Math.max(0, first - MARGIN_ROWS);
    const end = Math.min(m.view.length, first + count + MARGIN_ROWS);
    return { start: Math.min(start, end), end: end };
  }

  function bindWindow(start, end) {
    // Rows that stay in the window keep their element (and their focus); only the rows
    // coming in are drawn, with the views of the rows going out.
    m.rebind = false;
    const entries = m.view.slice(start, end);
    const staying = new Set();
    entries.forEach(function (entry) {
      if (entry.view !== null) {
        staying.add(entry.view);
      }
    });
    const free = m.pool;
    m.shown.forEach(function (view) {
      if (!staying.has(view)) {
        if (view.entry !== null && view.entry.view === view) {
          view.entry.view = null;
        }
        view.entry = null;
        view.tr.remove();
        free.push(view);
      }
    });
    m.shown = entries.map(function (entry) {
      if (entry.view !== null) {
        return entry.view;
      }
      const view = free.pop() || createView();
      entry.view = view;
      fill(view, entry);
      return view;
    });
    m.pool = free.slice(0, MARGIN_ROWS * 4); // kept for the next window, within reason
    placeRows();
    const rowHeight = m.rowHeight || FALLBACK_ROW_PX;
    setSpacer(m.topSpacer, start * rowHeight);
    setSpacer(m.bottomSpacer, (m.view.length - end) * rowHeight);
    m.start = start;
    m.end = end;
    tc.statusView.renderEmpty();
  }

  function placeRows() {
    // Moves only the rows out of place: a window sliding by a few rows moves a few.
    const tbody = state.el.rows;
    if (m.topSpacer.parentNode !== tbody) {
      tbody.replaceChildren(m.topSpacer, m.bottomSpacer);
    }
    let cursor = m.topSpacer.nextSibling;
    m.shown.forEach(function (view) {
      if (view.tr === cursor) {
        cursor = cursor.nextSibling;
      } else {
        tbody.insertBefore(view.tr, cursor);
      }
    });
  }

  function setSpacer(row, height) {
    row.hidden = height === 0;
    const text = height + "px";
    if (row.style.height !== text) {
      row.style.height = text;
    }
  }

  function spacer() {
    const tr = document.createElement("tr");
    tr.className = "spacer";
    tr.setAttribute("aria-hidden", "true");
    const td = document.createElement("td");
    td.colSpan = COLUMNS;
    tr.appendChild(td);
    return tr;
  }

  function createView() {
    const tr = state.el.rowTemplate.content.firstElementChild.cloneNode(true);
    const q = function (selector) {
      return tr.querySelector(selector);
    };
    return {
      tr: tr,
      entry: null,
      button: q(".symbol-btn"),
      price: q(".price-val"),
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
      age: q(".age-text"),
    };
  }

  function text(el, value) {
    // Text only, never markup: a symbol's name comes from the wire.
    if (el.textContent !== value) {
      el.textContent = value;
    }
  }

  function fill(view, entry) {
    const symbol = entry.symbol;
    if (view.entry !== entry) {
      view.entry = entry;
      view.tr.dataset.symbol = symbol;
      text(view.button, symbol);
      view.button.setAttribute("aria-label", symbol + ": open chart");
      view.lastHistory = null;
    }
    const charted = state.chart.symbol === symbol;
    view.tr.classList.toggle("charted", charted);
    view.button.setAttribute("aria-expanded", charted ? "true" : "false");
    const tick = entry.tick || {};
    const v = entry.values;
    const digits = tc.decimals.of(symbol);
    const price = function (field) {
      return toNumber(tick[field]) === null ? "–" : formatPrice(tick[field], digits);
    };
    text(view.price, price("last_price"));
    text(view.move, entry.move === null ? "" : arrow(entry.move));
    view.move.className = entry.move === null ? "move" : "move " + entry.move;
    const cls = v.change === undefined || v.change === null ? "flat" : signClass(tick.change_percent);
    text(view.change, v.change === undefined || v.change === null ? "–"
      : (cls === "flat" ? "" : arrow(cls === "pos" ? "up" : "down") + " ") + formatPercent(tick.change_percent));
    view.change.className = "num change " + cls;
    text(view.bid, price("bid"));
    text(view.ask, price("ask"));
    text(view.spread, spreadText(tick, digits));
    text(view.high, price("high"));
    text(view.low, price("low"));
    text(view.volume, v.volume === undefined || v.volume === null ? "–" : formatCompact(tick.volume) + " " + entry.base);
    text(view.qvolume, v.quote_volume === undefined || v.quote_volume === null ? "–"
      : formatCompact(tick.quote_volume) + " " + entry.quote);
    text(view.age, entry.updatedAt === null ? "–" : formatAgo(Math.max(0, Date.now() - entry.updatedAt)));
    if (view.lastHistory !== entry.history[entry.history.length - 1] || view.lastLength !== entry.history.length) {
      view.lastHistory = entry.history[entry.history.length - 1];
      view.lastLength = entry.history.length;
      drawSpark(view, entry.history);
    }
  }

  function spreadText(tick, known) {
    const bid = toNumber(tick.bid);
    const ask = toNumber(tick.ask);
    if (bid === null || ask === null) {
      return "–";
    }
    const digits = known !== null ? known : Math.max(fractionDigits(tick.bid), fractionDigits(tick.ask));
    return formatFixed(Number((ask - bid).toFixed(digits)), digits);
  }

  function drawSpark(view, points) {
    if (points.length < 2) {
      view.line.setAttribute("points", "");
      return;
    }
    const low = Math.min.apply(null, points);
    const high = Math.max.apply(null, points);
    const range = high - low;
    const step = 100 / (points.length - 1);
    view.line.setAttribute("points", points.map(function (p, i) {
      const y = range === 0 ? 12 : 22 - ((p - low) / range) * 20;
      return (i * step).toFixed(1) + "," + y.toFixed(1);
    }).join(" "));
    const first = points[0];
    const last = points[points.length - 1];
    view.spark.setAttribute("class", last > first ? "rising" : last < first ? "falling" : "level");
  }

  function redraw() {
    // Something every shown row draws changed (the selected symbol, decimals, ages).
    m.shown.forEach(function (view) {
      if (view.entry) {
        m.dirty.add(view.entry);
      }
    });
    if (state.sort.key === "age") {
      m.orderStale = true;
    }
    schedule();
  }

  function watch() {
    m.topSpacer = spacer();
    m.bottomSpacer = spacer();
    state.el.tableWrap.addEventListener("scroll", schedule, { passive: true });
    window.addEventListener("resize", schedule);
    state.el.search.addEventListener("input", function () {
      setQuery(state.el.search.value);
    });
    state.el.search.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault(); // the box sits in the add form: Enter must not add
      }
    });
    showMode();
  }

  function shownSymbols() {
    // The symbols of the rows in the DOM, top to bottom (for tests and devtools).
    return m.shown.map(function (view) {
      return view.entry ? view.entry.symbol : null;
    });
  }

  function summary() {
    // What the table holds and shows, for tests and devtools: every symbol with data, the
    // ones the search lets through in the table's order, and the rows in the DOM.
    return {
      on: m.on,
      symbols: m.list.length,
      priced: m.list.filter(function (entry) {
        return entry.values.price !== undefined && entry.values.price !== null;
      }).length,
      view: m.view.map(function (entry) {
        return entry.symbol;
      }),
      shown: shownSymbols(),
    };
  }

  Object.assign(tc.market, {
    MIN_SYMBOLS: MIN_SYMBOLS,
    decide: decide,
    matches: matches,
    setQuery: setQuery,
    accept: accept,
    drop: drop,
    sortChanged: sortChanged,
    redraw: redraw,
    watch: watch,
    shownSymbols: shownSymbols,
    summary: summary,
  });
})(window.tickcast);
