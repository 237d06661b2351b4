/*
 * tickcast live dashboard: page wiring. Finds the elements, reads the URL's options, binds
 * the controls, exposes the test hooks and starts the connection. Loaded last.
 */
(function (tc) {
  "use strict";

  const { toNumber } = tc.format;
  const core = tc.core;
  const connection = tc.connection;
  const table = tc.table;
  const priceChart = tc.priceChart;
  const statusView = tc.statusView;
  const state = core.state;

  const RESORT_MS = 1000;
  // The server refuses a larger ?throttle_ms= (SPEC §6): better ignored than never connected.
  const MAX_THROTTLE_MS = 60000;
  // How long the first connection waits for /symbols (see start).
  const SERVED_WAIT_MS = 1500;

  function everySecond() {
    const now = Date.now();
    state.rows.forEach(function (row) {
      table.renderAge(row, now);
    });
    if (state.sort.key && now - state.lastResort >= RESORT_MS) {
      table.applyOrder();
    }
    if (state.chart.symbol && state.chart.style === "line" && state.chart.range !== "all") {
      priceChart.scheduleChart(); // the window slides even when no tick arrives
    }
    tc.market.redraw(); // the shown rows' ages
    tc.follow.sync();
    statusView.renderBanners();
    statusView.renderStats();
    tc.columns.checkFit();
  }

  // ---------------------------------------------------------------- start-up

  function readOptions() {
    // ?transport=sse&symbols=BTCUSDT,ETHUSDT&token=...&throttle_ms=... preselect what the
    // page starts with; ?server=http://host:port names the server (opened from disk, the
    // page otherwise connects to localhost:8000; served, to the server that served it).
    const params = new URLSearchParams(location.search);
    if (params.get("transport") === "sse") {
      state.transport = "sse";
    }
    const symbols = (params.get("symbols") || "")
      .split(",")
      .map(function (s) {
        return s.trim().toUpperCase();
      })
      .filter(function (s) {
        return core.SYMBOL_PATTERN.test(s);
      });
    if (symbols.length) {
      state.symbols = symbols;
      state.symbolsFromUser = false; // the link's list, not the user's edits: not saved
    }
    state.token = params.get("token");
    const throttleText = params.get("throttle_ms");
    const throttle = toNumber(throttleText);
    if (throttle !== null && throttle >= 0 && throttle <= MAX_THROTTLE_MS) {
      state.throttleMs = throttle > 0 ? throttle : null;
    } else if (throttleText) {
      statusView.showError("Ignoring ?throttle_ms=" + throttleText + ": it must be a number " +
        "of milliseconds from 0 to " + MAX_THROTTLE_MS + ".");
    }
    const server = params.get("server");
    if (server) {
      try {
        state.server = core.toBase(server);
      } catch (err) {
        statusView.showError("Ignoring ?server=" + server + ": not a URL such as http://localhost:8000");
      }
    }
  }

  function findElements() {
    const byId = function (id) {
      return document.getElementById(id);
    };
    state.el = {
      main: byId("main"),
      connState: byId("conn-state"),
      connect: byId("connect"),
      disconnect: byId("disconnect"),
      transport: byId("transport"),
      addForm: byId("add-form"),
      addInput: byId("add-symbol"),
      search: byId("search"),
      servedList: byId("served-symbols"),
      error: byId("error"),
      table: byId("prices"),
      tableWrap: document.querySelector(".table-wrap"),
      rows: byId("rows"),
      rowTemplate: byId("row-template"),
      empty: byId("empty"),
      latency: byId("latency"),
      simBanner: byId("sim-banner"),
      upstreamBanner: byId("upstream-banner"),
      upstreamText: byId("upstream-text"),
      upstreamAgo: byId("upstream-ago"),
      staleBanner: byId("stale-banner"),
      staleText: byId("stale-text"),
      staleAgo: byId("stale-ago"),
      tickCount: byId("tick-count"),
      transportLabel: byId("transport-label"),
      sortHeaders: Array.prototype.slice.call(document.querySelectorAll("#prices th[data-sort]")),
      chartPanel: byId("chart-panel"),
      chartTitle: byId("chart-title"),
      chartLast: byId("chart-last"),
      chartClose: byId("chart-close"),
      chart: byId("chart"),
      chartNote: byId("chart-note"),
      chartSpan: byId("chart-span"),
      chartRange: byId("chart-range"),
      tapeTable: byId("tape-table"),
      tapeRows: byId("tape-rows"),
      tapeNote: byId("tape-note"),
      bookTable: byId("book-table"),
      bookRows: byId("book-rows"),
      bookNote: byId("book-note"),
      bookState: byId("book-state"),
      bookSpread: byId("book-spread"),
      bookSpreadBps: byId("book-spread-bps"),
      bookUpdateId: byId("book-update-id"),
      bookSizeHeads: Array.prototype.slice.call(document.querySelectorAll("#book-table th.book-size")),
      statTransport: byId("stat-transport"),
      statServer: byId("stat-server"),
      statNode: byId("stat-node"),
      statRate: byId("stat-rate"),
      statReconnects: byId("stat-reconnects"),
      statResumes: byId("stat-resumes"),
      statGaps: byId("stat-gaps"),
      statSeq: byId("stat-seq"),
    };
  }

  function focusRowButton(from, step) {
    const tr = from.closest("tr");
    const target = step > 0 ? tr.nextElementSibling : tr.previousElementSibling;
    const button = target ? target.querySelector(".symbol-btn") : null; // none in a spacer
    if (button) {
      button.focus();
    }
  }

  function bindTable() {
    state.el.rows.addEventListener("click", function (event) {
      const remove = event.target.closest("button.remove");
      const tr = event.target.closest("tr[data-symbol]");
      if (remove) {
        table.removeSymbol(tr.dataset.symbol);
      } else if (tr) {
        // Anywhere on the row; the symbol button is its keyboard equivalent (Enter/Space).
        // Focus moves to the chart's heading, which also scrolls it into view.
        priceChart.openChart(tr.dataset.symbol, true);
      }
    });
    state.el.rows.addEventListener("keydown", function (event) {
      if (!event.target.classList.contains("symbol-btn")) {
        return;
      }
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        focusRowButton(event.target, event.key === "ArrowDown" ? 1 : -1);
      }
    });
    state.el.sortHeaders.forEach(function (th) {
      th.querySelector("button.sort").addEventListener("click", function () {
        table.cycleSort(th.dataset.sort);
      });
    });
  }

  function bindChart() {
    state.el.chartClose.addEventListener("click", function () {
      priceChart.closeChart(true);
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && priceChart.chartPanelOpen() &&
          (state.el.chartPanel.contains(document.activeElement) ||
           document.activeElement === document.body)) {
        priceChart.closeChart(true);
      }
    });
    document.querySelectorAll('input[name="chart-range"]').forEach(function (input) {
      input.checked = input.value === state.chart.range;
      input.addEventListener("change", function () {
        priceChart.setChartRange(input.value);
      });
    });
    document.querySelectorAll('input[name="chart-span"]').forEach(function (input) {
      input.checked = input.value === state.chart.span;
      input.addEventListener("change", function () {
        priceChart.setChartSpan(input.value);
      });
    });
    priceChart.showStyleControls();
    document.querySelectorAll('input[name="chart-style"]').forEach(function (input) {
      input.checked = input.value === state.chart.style;
      input.addEventListener("change", function () {
        priceChart.setChartStyle(input.value);
      });
    });
  }

  function bindControls() {
    state.el.connect.addEventListener("click", connection.userConnect);
    state.el.disconnect.addEventListener("click", connection.userDisconnect);
    state.el.transport.addEventListener("change", function (event) {
      connection.switchTransport(event.target.value);
    });
    state.el.addForm.addEventListener("submit", function (event) {
      event.preventDefault();
      if (table.addSymbol(state.el.addInput.value)) {
        state.el.addInput.value = "";
      }
    });
    bindTable();
    bindChart();
  }

  function exposeHook() {
    // A read-only window on the page's state for tests and for the curious (devtools).
    Object.assign(tc, {
      chart: {
        symbol: function () {
          return state.chart.symbol;
        },
        points: function () {
          return state.chart.points.length;
        },
        fromHistory: function () {
          return state.chart.fromHistory;
        },
        shown: function () {
          return state.chart.shown;
        },
        loading: function () {
          return state.chart.loading;
        },
        style: function () {
          return state.chart.style;
        },
        // The candles held, and what the plot was last given: [open times (s), opens,
        // highs, lows, closes], to compare with /klines.
        candles: function () {
          return state.candles.list.length;
        },
        candlesLoading: function () {
          return state.candles.loading;
        },
        plotData: function () {
          const plot = state.chart.plot;
          return plot ? plot.data.map(function (column) {
            return Array.prototype.slice.call(column);
          }) : null;
        },
      },
      trades: {
        // Trade ids in the tape, newest first.
        ids: function () {
          return state.tape.entries.filter(function (entry) {
            return !entry.gap;
          }).map(function (entry) {
            return entry.id;
          });
        },
        loading: function () {
          return state.tape.loading;
        },
      },
      // The ladder as last drawn: { symbol, state, update_id, bids, asks, spread }, and
      // `received`, the last SYMBOL@book message taken ({ update_id, bids, asks }).
      book: function () {
        return tc.ladder.shown();
      },
      following: function () {
        return state.transport === "sse" ? state.follow.sse.slice() : state.follow.active.slice();
      },
      stats: function () {
        return {
          conn: state.conn,
          fresh: statusView.isFresh(),
          transport: state.transport,
          node: state.node,
          upstream: state.upstream,
          messagesPerSecond: statusView.messageRate(Date.now()),
          reconnects: state.stats.reconnects,
          resumes: state.stats.resumes,
          resets: state.stats.resets,
          gapsChecked: state.seq.checking,
          gaps: state.seq.gaps,
          missed: state.seq.missed,
          lastSeq: state.seq.latest,
        };
      },
    });
  }

  function start() {
    findElements();
    core.loadPrefs();
    readOptions();
    state.el.transport.value = state.transport;
    bindControls();
    exposeHook();
    table.renderSortHeaders();
    statusView.renderFooter();
    statusView.renderBanners();
    statusView.renderStats();
    tc.columns.watch();
    tc.market.watch();
    setInterval(everySecond, 1000);
    // /symbols first (briefly): with each symbol's price decimals known, the first prices
    // drawn already have them, and the table's columns never change width.
    const waited = new Promise(function (resolve) {
      setTimeout(resolve, SERVED_WAIT_MS);
    });
    Promise.race([connection.fetchServed(), waited]).then(function () {
      if (state.wanted && state.conn === "disconnected" && state.ws === null && state.es === null) {
        connection.connect(false);
      }
    });
    if (state.chart.symbol) {
      priceChart.openChart(state.chart.symbol, false); // the chart that was open before a reload
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})(window.tickcast);
