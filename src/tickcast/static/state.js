/*
 * tickcast live dashboard: shared state, saved preferences and server endpoints.
 *
 * The dashboard is a set of classic scripts (not ES modules: Chromium refuses module scripts
 * from file://), loaded in order by index.html: state.js, format.js, decimals.js, seq.js,
 * connection.js, probe.js, table.js, market-table.js, columns.js, candles.js, tape.js,
 * ladder.js, follow.js, chart.js, status.js, app.js. Each is an IIFE that fills its own part
 * of the `window.tickcast` namespace created here; a script reaches another's functions
 * through that namespace at call time, so the order matters only for what runs on load.
 * Everything lives in one `state` object; the DOM is only written by the render helpers.
 * Protocol: SPEC §6 (WebSocket /ws, SSE /sse, REST /history, /symbols) and §12 (the selected
 * symbol's trades, candles and order book: /streams, /trades, /klines, /book, SYMBOL@trades,
 * SYMBOL@kline_1m and SYMBOL@book; with many symbols, the table's `!tickers`).
 */

// The namespace every dashboard script fills in, in the order index.html loads them.
window.tickcast = {
  core: {},
  format: {},
  decimals: {},
  seq: {},
  connection: {},
  probe: {},
  table: {},
  market: {},
  columns: {},
  candles: {},
  tape: {},
  ladder: {},
  follow: {},
  priceChart: {},
  statusView: {},
};

(function (tc) {
  "use strict";

  const SYMBOL_PATTERN = /^[A-Z0-9]{2,30}$/;
  const DISK_SERVER = "http://localhost:8000";
  const STORAGE_KEY = "tickcast.dashboard.v1";
  const SORT_KEYS = ["symbol", "price", "change", "bid", "ask", "spread", "high", "low",
    "volume", "quote_volume", "age"];

  const state = {
    transport: "ws",
    token: null,
    throttleMs: null,
    server: null, // { http, ws } named by ?server=
    wanted: true, // false once the user pressed Disconnect
    conn: "disconnected",
    everConnected: false,
    lostAt: null, // when the connection dropped (or the user disconnected)
    refusal: null, // why the server refused the last attempt, when it said (probe.js)
    ws: null,
    es: null,
    attempt: 0,
    autoRetry: false, // the current attempt is an automatic reconnect
    retryTimer: null,
    retryAt: 0,
    countdownTimer: null,
    pingTimer: null,
    openedAt: 0, // wall clock when the current connection opened
    // Resume: SSE keeps the opaque event id; WebSocket sends back the last seq it saw (a
    // bare seq is a valid token, SPEC §6). Both only on automatic reconnects.
    lastEventId: null,
    resumeSeq: null,
    resumedStream: false, // the current connection was opened with a resume token
    // null: the server's default symbols (first load). Otherwise the symbols the table keeps.
    symbols: null,
    symbolsFromUser: false, // saved to localStorage only once the user edits the list
    storedSymbols: null, // the saved list, kept while a ?symbols= link overrides it
    served: null, // the server's /symbols
    pending: new Set(), // symbols added by the user whose first tick has not arrived
    pendingOps: new Map(), // op id -> symbol, to match `error` replies
    nextOpId: 1,
    seen: new Set(), // symbols that got their snapshot tick on this connection
    rows: new Map(), // symbol -> row view, in arrival order
    decimals: new Map(), // symbol -> decimals its prices are shown with (decimals.js)
    latencies: [],
    tickCount: 0,
    source: null,
    upstream: null,
    // When the upstream left `connected`. Kept after the server says `connected` again
    // until a tick arrives: an open upstream connection is not yet data.
    upstreamSince: null,
    node: null,
    seq: { last: null, checking: false, gaps: 0, missed: 0, backwards: 0, latest: null },
    stats: { reconnects: 0, resumes: 0, resets: 0 },
    messageTimes: [],
    sort: { key: null, dir: "desc" },
    lastResort: 0,
    chart: {
      symbol: null,
      points: [], // { t: ms, p: price, seq }
      live: [], // ticks that arrived while the history was loading
      loading: false,
      loadId: 0,
      fromHistory: 0,
      historyError: null,
      range: "300", // seconds of ticks the line shows, or "all"
      span: "240", // minutes of candles shown, or "all"
      style: "candles",
      plot: null,
      plotStyle: null,
      shown: 0,
      redrawTimer: null,
      observer: null,
    },
    // The selected symbol's one-minute candles (candles.js), oldest first, one per open time.
    candles: {
      symbol: null,
      list: [], // { t: open time ms, o, h, l, c, v, closed, seq }
      loading: false,
      loadId: 0,
      fromHistory: 0,
      error: null,
      polls: 0, // asked again while the server was still fetching the history
      waiting: false, // /streams said it was pending: /klines is loaded again once it is not
      pollTimer: null,
    },
    // The selected symbol's trade tape (tape.js), newest first.
    tape: {
      symbol: null,
      entries: [], // { id, price, qty, side, t, tr } or a gap line { gap: missed, key, tr }
      ids: new Set(),
      loading: false,
      loadId: 0,
      error: null,
      qtyDecimals: null, // what the sizes drawn are formatted with
      frame: null,
    },
    // The selected symbol's order book ladder (ladder.js): its top levels, as received.
    book: {
      symbol: null,
      // null (no symbol), "loading", "live", "syncing" or "broken" (not whole: no levels
      // shown), "unavailable" (not carried for it), "error" (/book could not be had).
      state: null,
      reason: "", // why not live: the status's reason and detail, or the server's message
      updateId: null,
      bids: [], // [price, qty] as the wire has them, best first
      asks: [],
      fromStream: false, // the stream has spoken since the symbol was selected: REST is older
      received: null, // the last SYMBOL@book message taken
      shown: null, // what the last render drew (the test hook's answer)
      qtyDecimals: 0, // what the sizes are drawn with
      loadId: 0,
      frame: null,
      rows: null, // the row views, built on the first render
    },
    // The table of every market (market-table.js): on for a server of many symbols.
    market: {
      on: false,
      entries: new Map(), // symbol -> { symbol, base, quote, index, tick, values, ... }
      list: [], // every entry, in arrival order
      view: [], // the entries the search lets through, in the table's order
      query: "", // the search box's text, uppercase
      orderStale: false, // values changed since the view was last sorted
      forceOrder: false, // rows came or went, or the search or sort changed: order now
      lastOrder: 0,
      resortTimer: null,
      rebind: false,
      frame: null,
      dirty: new Set(), // entries on screen whose values changed since the last frame
      pool: [], // row views, reused as the window moves
      shown: [], // the row views in the DOM, top to bottom
      start: 0, // the window of `view` they show
      end: 0,
      rowHeight: 0,
      scrollTop: 0,
      viewHeight: 0,
      headHeight: 0,
      topSpacer: null,
      bottomSpacer: null,
      indexOf: null, // symbol -> its place in /symbols
      indexFrom: null, // the /symbols list that map was built from
    },
    // Streams followed beside the table's tickers (follow.js).
    follow: {
      symbol: null,
      tickers: null, // whether the server serves `!tickers` (/streams); null: not known
      served: null, // every non-ticker stream the server serves (/streams); null: not known
      wanted: [], // the selected symbol's streams that the server serves
      active: [], // those subscribed on the current WebSocket
      sse: [], // those named in the current SSE connection's URL
    },
    el: {},
  };

  // ---------------------------------------------------------------- preferences

  function loadPrefs() {
    let saved = null;
    try {
      saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
    } catch (err) {
      saved = null; // storage disabled or garbage: defaults
    }
    if (!saved || typeof saved !== "object") {
      return;
    }
    if (saved.sort && SORT_KEYS.indexOf(saved.sort.key) >= 0) {
      state.sort = { key: saved.sort.key, dir: saved.sort.dir === "asc" ? "asc" : "desc" };
    }
    if (Array.isArray(saved.symbols)) {
      state.symbols = saved.symbols.filter(function (s) {
        return typeof s === "string" && SYMBOL_PATTERN.test(s);
      });
      state.symbolsFromUser = true;
      state.storedSymbols = state.symbols;
    }
    if (["60", "300", "900", "all"].indexOf(saved.range) >= 0) {
      state.chart.range = saved.range;
    }
    if (["60", "240", "all"].indexOf(saved.span) >= 0) {
      state.chart.span = saved.span;
    }
    if (saved.style === "line" || saved.style === "candles") {
      state.chart.style = saved.style;
    }
    if (typeof saved.chart === "string" && SYMBOL_PATTERN.test(saved.chart)) {
      state.chart.symbol = saved.chart;
    }
  }

  function savePrefs() {
    const prefs = {
      sort: state.sort.key ? state.sort : null,
      symbols: state.symbolsFromUser ? state.symbols : state.storedSymbols,
      range: state.chart.range,
      span: state.chart.span,
      style: state.chart.style,
      chart: state.chart.symbol,
    };
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(prefs));
    } catch (err) {
      // Private mode or a full quota: the page works, it just forgets on reload.
    }
  }

  // ---------------------------------------------------------------- endpoints

  function serverBase() {
    if (state.server) {
      return state.server;
    }
    if (location.protocol === "file:") {
      return toBase(DISK_SERVER);
    }
    const wsScheme = location.protocol === "https:" ? "wss:" : "ws:";
    return { ws: wsScheme + "//" + location.host, http: location.origin };
  }

  function toBase(text) {
    const url = new URL(text);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError("not an http(s) URL: " + text);
    }
    const wsScheme = url.protocol === "https:" ? "wss:" : "ws:";
    return { ws: wsScheme + "//" + url.host, http: url.protocol + "//" + url.host };
  }

  function queryString(params) {
    const search = new URLSearchParams();
    Object.keys(params).forEach(function (key) {
      if (params[key] !== null && params[key] !== undefined && params[key] !== "") {
        search.set(key, params[key]);
      }
    });
    const text = search.toString();
    return text ? "?" + text : "";
  }

  // REST reads carry the page's token, for a server that requires one on REST too
  // (TICKCAST_JWT_REST); a header, so the token stays out of URLs and their logs.
  function restFetch(url) {
    if (!state.token) {
      return fetch(url);
    }
    return fetch(url, { headers: { Authorization: "Bearer " + state.token } });
  }

  Object.assign(tc.core, {
    state: state,
    restFetch: restFetch,
    SYMBOL_PATTERN: SYMBOL_PATTERN,
    loadPrefs: loadPrefs,
    savePrefs: savePrefs,
    serverBase: serverBase,
    toBase: toBase,
    queryString: queryString,
  });
})(window.tickcast);
