/*
 * tickcast live dashboard.
 *
 * A classic script wrapped in an IIFE (not an ES module: Chromium refuses module scripts
 * from file://). Everything lives in one `state` object; the DOM is only written by the
 * render helpers. Protocol: SPEC §6 (WebSocket /ws, SSE /sse, REST /history, /symbols).
 *
 * Freshness. The page never presents old numbers as current: when the connection is down
 * or the server says its upstream is not `connected`, prices dim, a banner says since when,
 * and the latency figure reads "stale". Each row shows the age of its last update and is
 * marked "stale" (text, not only colour) once it has been silent for STALE_INTERVALS of its
 * own usual interval between updates (at least STALE_MIN_MS).
 *
 * Sequence gaps. `seq` is stamped once per published tick by the server's ingest and is
 * global across symbols, so it is contiguous only for a client that receives every symbol
 * the server serves. Gaps are therefore counted only while the page is subscribed to all
 * of them (the server's /symbols; its defaults are all of them); with a subset the panel
 * says "not checked". The baseline is the first live tick after the snapshot (snapshot
 * ticks carry each symbol's latest seq, which are not contiguous), a `reset`'s `last_seq`,
 * or, across a resumed reconnect, the last seq seen before the drop: the server promises
 * every missed tick on a resume, so a hole there is a real gap. A throttled stream
 * (?throttle_ms=) or a conflating server drops ticks on purpose: those are counted too,
 * because the page did miss them.
 *
 * Chart. uPlot (static/vendor/, see its README.md), filled from /history/{symbol} and then
 * live ticks. "Candles" builds OHLC candles in the browser from the ticks held, in buckets
 * sized to the range (5 s for 1 minute up to 1 min for 15 minutes): the server publishes
 * ticks, not trades or klines, so they summarise the last prices seen, not every trade.
 */
(function () {
  "use strict";

  const FLASH_MS = 600;
  const SPARK_POINTS = 60;
  const LATENCY_WINDOW = 50;
  const BACKOFF_FIRST_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  const COUNTDOWN_TICK_MS = 250;
  // The server closes clients silent for 60 s; an application ping keeps us talking even
  // if a proxy in between swallows protocol-level pongs.
  const APP_PING_MS = 25000;
  const SYMBOL_PATTERN = /^[A-Z0-9]{2,30}$/;
  const DISK_SERVER = "http://localhost:8000";
  const LOCALE = "en-US";
  const STORAGE_KEY = "tickcast.dashboard.v1";
  // A row is stale after this many of its usual intervals without an update (Binance's
  // @ticker sends about one a second), and never sooner than STALE_MIN_MS.
  const STALE_INTERVALS = 5;
  const STALE_MIN_MS = 3000;
  const DEFAULT_INTERVAL_MS = 1000;
  const INTERVAL_SAMPLES = 20;
  const RATE_WINDOW_MS = 5000;
  const RESORT_MS = 1000;
  const HISTORY_LIMIT = 1000; // the server caps it at its TICKCAST_HISTORY_SIZE
  const MAX_CHART_POINTS = 20000;
  const CHART_REDRAW_MS = 200;
  // Candle size per range (seconds); "all" picks one that gives at most ~120 candles.
  const CANDLE_SECONDS = { 60: 5, 300: 15, 900: 30 };
  const CANDLE_STEPS = [1, 5, 15, 30, 60, 300, 900, 3600];
  const COLORS = {
    text: "#e6edf3",
    muted: "#9da7b3",
    line: "#30363d",
    up: "#56d364",
    down: "#ff7b72",
    price: "#79c0ff",
    priceFill: "rgba(121, 192, 255, 0.10)",
  };
  // Quote assets, longest first, to split BTCUSDT into BTC / USDT for volume units.
  const QUOTES = [
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "EURI", "BTC", "ETH", "BNB", "EUR",
    "GBP", "TRY", "BRL", "JPY", "AUD", "DAI", "XRP", "TRX", "DOGE", "USD",
  ].sort(function (a, b) {
    return b.length - a.length;
  });
  const SORT_KEYS = ["symbol", "price", "change", "bid", "ask", "spread", "high", "low",
    "volume", "quote_volume", "age"];

  const state = {
    transport: "ws",
    token: null,
    throttleMs: null,
    server: null, // { http, ws } when opened from disk
    wanted: true, // false once the user pressed Disconnect
    conn: "disconnected",
    everConnected: false,
    lostAt: null, // when the connection dropped (or the user disconnected)
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
      range: "300",
      style: "line",
      plot: null,
      plotStyle: null,
      bucketSec: 0,
      shown: 0,
      redrawTimer: null,
      observer: null,
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
    if (location.protocol === "file:") {
      return state.server || toBase(DISK_SERVER);
    }
    const wsScheme = location.protocol === "https:" ? "wss:" : "ws:";
    return { ws: wsScheme + "//" + location.host, http: location.origin };
  }

  function toBase(text) {
    const url = new URL(text);
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

  function wsUrl(token) {
    // Pending symbols are subscribed with ops after opening, so an unknown one gets an
    // `error` reply instead of spoiling the whole connection.
    const symbols = state.symbols && state.symbols.length ? state.symbols.join(",") : null;
    return serverBase().ws + "/ws" + queryString({
      status: "1",
      symbols: symbols,
      throttle_ms: state.throttleMs,
      last_event_id: token,
      token: state.token,
    });
  }

  function sseUrl(token) {
    const list = (state.symbols || []).concat(Array.from(state.pending));
    return serverBase().http + "/sse" + queryString({
      symbols: list.length ? list.join(",") : null,
      throttle_ms: state.throttleMs,
      last_event_id: token,
      token: state.token,
    });
  }

  // ---------------------------------------------------------------- connection lifecycle

  function resumeToken() {
    if (state.transport === "sse") {
      return state.lastEventId;
    }
    return state.resumeSeq === null ? null : String(state.resumeSeq);
  }

  function connect(resume) {
    clearRetry();
    closeTransport();
    adoptDefaults();
    state.seen.clear();
    state.pendingOps.clear();
    state.latencies = [];
    const token = resume ? resumeToken() : null;
    state.resumedStream = token !== null;
    if (!state.resumedStream) {
      state.seq.last = null; // a fresh stream: the next live tick is the new baseline
    }
    state.autoRetry = Boolean(resume);
    setConn("connecting");
    if (state.transport === "sse") {
      openEventSource(token);
    } else {
      openWebSocket(token);
    }
  }

  function opened() {
    state.openedAt = Date.now();
    if (state.autoRetry) {
      state.stats.reconnects += 1;
    }
    if (state.resumedStream) {
      state.stats.resumes += 1;
    }
    state.lostAt = null;
    state.everConnected = true;
    setConn("connected");
    renderStats();
    fetchServed();
  }

  function openWebSocket(token) {
    let ws;
    try {
      ws = new WebSocket(wsUrl(token));
    } catch (err) {
      showError("Cannot open WebSocket: " + err.message);
      handleDrop();
      return;
    }
    state.ws = ws;
    ws.onopen = function () {
      opened();
      startPing();
      state.pending.forEach(sendSubscribe);
    };
    ws.onmessage = function (event) {
      noteDelivery();
      dispatch(parseJson(event.data));
    };
    ws.onclose = function () {
      if (state.ws === ws) {
        state.ws = null;
        handleDrop();
      }
    };
  }

  function openEventSource(token) {
    const es = new EventSource(sseUrl(token));
    state.es = es;
    es.onopen = function () {
      opened();
    };
    // Ticks are unnamed events (SPEC §6): they arrive here, typed by their JSON.
    es.onmessage = function (event) {
      onSseEvent(event, dispatch);
    };
    // Control events are named. Servers before SPEC §6 named ticks `tick` too.
    es.addEventListener("status", function (event) {
      onSseEvent(event, applyStatus);
    });
    es.addEventListener("reset", function (event) {
      onSseEvent(event, applyReset);
    });
    es.addEventListener("tick", function (event) {
      onSseEvent(event, applyTick);
    });
    // EventSource would retry on its own at the server's fixed `retry:` interval; closing
    // it and reconnecting ourselves gives the same backoff and state display as WebSocket.
    es.onerror = function () {
      if (state.es === es) {
        es.close();
        state.es = null;
        handleDrop();
      }
    };
  }

  function onSseEvent(event, handler) {
    // An opaque resume token (SPEC §6): sent back as is on reconnect, never parsed.
    if (event.lastEventId) {
      state.lastEventId = event.lastEventId;
    }
    noteDelivery();
    const data = parseJson(event.data);
    if (data && typeof data === "object") {
      handler(data);
    }
  }

  function closeTransport() {
    stopPing();
    const ws = state.ws;
    const es = state.es;
    state.ws = null; // detach first so the close handlers ignore this intended close
    state.es = null;
    if (ws) {
      ws.close(1000, "client closed");
    }
    if (es) {
      es.close();
    }
    state.upstream = null;
    state.upstreamSince = null;
    renderBanners();
  }

  function handleDrop() {
    stopPing();
    state.upstream = null;
    state.upstreamSince = null;
    if (state.lostAt === null) {
      state.lostAt = Date.now();
    }
    if (state.wanted) {
      scheduleReconnect();
    } else {
      setConn("disconnected");
    }
    renderBanners();
  }

  function noteDelivery() {
    // A connection that delivers data is healthy: the next drop starts from 1 s again.
    state.attempt = 0;
    state.messageTimes.push(Date.now());
  }

  function backoffDelay(attempt) {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * Math.pow(2, attempt));
    // Jitter spreads reconnecting dashboards after a server restart; keeping half of the
    // delay fixed keeps the countdown meaningful.
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  function scheduleReconnect() {
    clearRetry();
    const delay = backoffDelay(state.attempt);
    state.attempt += 1;
    state.retryAt = Date.now() + delay;
    state.retryTimer = setTimeout(function () {
      connect(true);
    }, delay);
    state.countdownTimer = setInterval(renderCountdown, COUNTDOWN_TICK_MS);
    renderCountdown();
  }

  function clearRetry() {
    clearTimeout(state.retryTimer);
    clearInterval(state.countdownTimer);
    state.retryTimer = null;
    state.countdownTimer = null;
  }

  function userConnect() {
    if (state.conn === "reconnecting") {
      // "Retry now": the same automatic reconnect, without waiting out the backoff.
      connect(true);
      return;
    }
    state.wanted = true;
    state.attempt = 0;
    state.lastEventId = null;
    state.resumeSeq = null;
    connect(false);
  }

  function userDisconnect() {
    state.wanted = false;
    clearRetry();
    closeTransport();
    if (state.lostAt === null) {
      state.lostAt = Date.now();
    }
    setConn("disconnected");
    renderBanners();
  }

  function switchTransport(value) {
    state.transport = value === "sse" ? "sse" : "ws";
    state.lastEventId = null;
    state.resumeSeq = null;
    renderFooter();
    if (state.wanted) {
      state.attempt = 0;
      connect(false);
    }
  }

  function startPing() {
    stopPing();
    state.pingTimer = setInterval(function () {
      sendJson({ op: "ping" });
    }, APP_PING_MS);
  }

  function stopPing() {
    clearInterval(state.pingTimer);
    state.pingTimer = null;
  }

  function wsOpen() {
    return state.ws !== null && state.ws.readyState === WebSocket.OPEN;
  }

  function sendJson(message) {
    if (!wsOpen()) {
      return false;
    }
    state.ws.send(JSON.stringify(message));
    return true;
  }

  function sendOp(op, symbol) {
    const id = state.nextOpId++;
    if (sendJson({ op: op, symbols: [symbol], id: id })) {
      state.pendingOps.set(id, symbol);
    }
  }

  function sendSubscribe(symbol) {
    sendOp("subscribe", symbol);
  }

  function fetchServed() {
    fetch(serverBase().http + "/symbols")
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (body) {
        if (body && Array.isArray(body.symbols)) {
          state.served = body.symbols.map(String);
          applyOrder();
          renderStats();
        }
      })
      .catch(function () {
        // Unreachable or not a tickcast server: gaps stay "not checked".
      });
  }

  // ---------------------------------------------------------------- messages

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (err) {
      return null;
    }
  }

  const HANDLERS = {
    tick: applyTick,
    status: applyStatus,
    ack: applyAck,
    error: applyError,
    reset: applyReset,
  };

  function dispatch(message) {
    if (!message || typeof message !== "object" || Array.isArray(message)) {
      return;
    }
    if (message.type === undefined) {
      // Seed-server shaped messages carry no type; they are ticks.
      if ("symbol" in message && "last_price" in message) {
        applyTick(message);
      }
      return;
    }
    const handler = Object.prototype.hasOwnProperty.call(HANDLERS, message.type)
      ? HANDLERS[message.type]
      : null;
    if (handler) {
      handler(message); // unknown types (pong, future ones) are ignored on purpose
    }
  }

  function applyTick(tick, fromSnapshot) {
    const symbol = typeof tick.symbol === "string" ? tick.symbol.toUpperCase() : "";
    if (!symbol) {
      return;
    }
    const accepted = acceptsSymbol(symbol);
    // The first tick per symbol on a fresh connection is the snapshot: its age says
    // nothing about delivery latency and its seq does not follow the previous one.
    // A resumed stream has no snapshot: what comes first is what was missed.
    const snapshot =
      fromSnapshot === true || (!state.resumedStream && !state.seen.has(symbol));
    if (accepted) {
      state.seen.add(symbol);
    }
    trackSeq(tick.seq, snapshot);
    if (!accepted) {
      return;
    }
    state.tickCount += 1;
    const now = Date.now();
    const sent = toNumber(tick.timestamp_ms);
    // Ticks stamped before this connection opened are snapshots or replays of a resume:
    // their delivery time says nothing of the feed's latency.
    const live = !snapshot && sent !== null && sent >= state.openedAt;
    if (live) {
      recordLatency(now - sent);
    }
    if (typeof tick.source === "string" && tick.source !== state.source) {
      state.source = tick.source;
      renderBanners();
    }
    if (state.upstreamSince !== null && state.upstream === "connected" && !snapshot) {
      state.upstreamSince = null; // the feed is back: data, not only a connection
      renderBanners();
    }
    const row = state.rows.get(symbol) || createRow(symbol);
    updateRow(row, tick, now, live, sent);
    chartTick(symbol, tick);
    renderFooter();
  }

  function applyStatus(status) {
    if (typeof status.upstream === "string") {
      state.upstream = status.upstream;
      if (status.upstream !== "connected" && state.upstreamSince === null) {
        // `since` is the server's Unix time in seconds; a follower node does not know it.
        const since = toNumber(status.since);
        state.upstreamSince = since !== null ? since * 1000 : Date.now();
      }
    }
    if (typeof status.source === "string") {
      state.source = status.source;
    }
    if (typeof status.node === "string") {
      state.node = status.node;
    }
    renderBanners();
    renderStats();
  }

  function applyAck(ack) {
    if (state.pendingOps.has(ack.id)) {
      state.pendingOps.delete(ack.id);
      clearError();
    }
  }

  function applyError(error) {
    const symbol = state.pendingOps.get(error.id);
    state.pendingOps.delete(error.id);
    const reason = error.message || error.code || "unknown error";
    if (symbol && state.pending.delete(symbol)) {
      showError("Cannot add " + symbol + ": " + reason);
    } else {
      showError("Server error: " + reason);
    }
  }

  function applyReset(reset) {
    // The server could not resume us (history gone, or a restarted server): what we hold
    // is replaced by its snapshot, and its last_seq is where live ticks continue.
    state.stats.resets += 1;
    const lastSeq = toNumber(reset.last_seq);
    state.seq.last = lastSeq;
    if (lastSeq !== null) {
      state.resumeSeq = lastSeq;
    }
    if (Array.isArray(reset.ticks)) {
      reset.ticks.forEach(function (tick) {
        if (tick && typeof tick === "object") {
          applyTick(tick, true);
        }
      });
    }
    renderStats();
  }

  function recordLatency(ms) {
    state.latencies.push(ms);
    if (state.latencies.length > LATENCY_WINDOW) {
      state.latencies.shift();
    }
    renderLatency();
  }

  function median(values) {
    const sorted = values.slice().sort(function (a, b) {
      return a - b;
    });
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }

  // ---------------------------------------------------------------- sequence gaps

  function subscribedToAll() {
    if (state.symbols === null) {
      return true; // the server's defaults are every symbol it serves
    }
    if (state.served === null) {
      return false;
    }
    return state.served.every(function (s) {
      return state.symbols.indexOf(s) >= 0;
    });
  }

  function trackSeq(value, snapshot) {
    const seq = toNumber(value);
    if (seq === null) {
      return; // a seed-server style tick: nothing to check
    }
    const s = state.seq;
    s.latest = seq;
    state.resumeSeq = state.resumeSeq === null ? seq : Math.max(state.resumeSeq, seq);
    const checking = subscribedToAll();
    if (checking !== s.checking) {
      s.checking = checking;
      s.last = null; // (re)starting checks: the next live tick is the baseline
    }
    if (!checking) {
      return;
    }
    if (snapshot) {
      if (s.last !== null) {
        s.last = Math.max(s.last, seq);
      }
      return;
    }
    if (s.last !== null) {
      if (seq > s.last + 1) {
        s.gaps += 1;
        s.missed += seq - s.last - 1;
        renderStats();
      } else if (seq <= s.last) {
        s.backwards += 1; // a restarted server numbering again from the start
      }
    }
    s.last = seq;
  }

  // ---------------------------------------------------------------- symbols

  function adoptDefaults() {
    // Once the server's defaults have filled the table, the table is the list: it is what
    // reconnects ask for and what add/remove edit.
    if (state.symbols === null && state.rows.size > 0) {
      state.symbols = manualOrder();
    }
  }

  function acceptsSymbol(symbol) {
    if (state.pending.delete(symbol)) {
      if (state.symbols !== null) {
        state.symbols.push(symbol);
        savePrefs();
      }
      return true;
    }
    return state.symbols === null || state.symbols.indexOf(symbol) >= 0;
  }

  function addSymbol(raw) {
    clearError();
    const symbol = raw.trim().toUpperCase();
    if (!SYMBOL_PATTERN.test(symbol)) {
      showError("Enter a symbol such as BTCUSDT (letters and digits only).");
      return false;
    }
    if (state.rows.has(symbol) || state.pending.has(symbol)) {
      showError(symbol + " is already in the table.");
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
    if (state.transport === "ws") {
      sendSubscribe(symbol); // when not open yet, onopen subscribes every pending symbol
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
        showError("Cannot add " + symbol + ": the server does not serve this symbol.");
      } else if (state.wanted && state.transport === "sse") {
        connect(false);
      }
    });
  }

  function checkSymbolServed(symbol) {
    const url = serverBase().http + "/price" + queryString({ symbol: symbol });
    return fetch(url)
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
    if (state.chart.symbol === symbol) {
      closeChart(false);
    }
    savePrefs();
    renderStats();
    if (state.transport === "ws") {
      sendOp("unsubscribe", symbol);
    } else if (state.wanted) {
      connect(false);
    }
  }

  function splitSymbol(symbol) {
    for (let i = 0; i < QUOTES.length; i++) {
      const quote = QUOTES[i];
      if (symbol.length > quote.length && symbol.slice(-quote.length) === quote) {
        return { base: symbol.slice(0, -quote.length), quote: quote };
      }
    }
    return { base: symbol, quote: "quote" };
  }

  // ---------------------------------------------------------------- formatting

  function toNumber(value) {
    if (value === null || value === undefined || value === "") {
      return null;
    }
    const n = Number(value);
    return Number.isFinite(n) ? n : null;
  }

  function fractionDigits(value) {
    const text = String(value);
    if (/e/i.test(text)) {
      return 8;
    }
    const dot = text.indexOf(".");
    return dot < 0 ? 0 : text.length - dot - 1;
  }

  function priceDigits(value) {
    // At least 2 decimals (4 below 1) and every digit the exchange sent, up to 8.
    const n = Math.abs(Number(value));
    const minimum = n >= 1 ? 2 : 4;
    return Math.min(8, Math.max(minimum, fractionDigits(value)));
  }

  function formatFixed(n, digits) {
    return n.toLocaleString(LOCALE, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function formatPrice(value) {
    const n = toNumber(value);
    return n === null ? "–" : formatFixed(n, priceDigits(value));
  }

  function formatPercent(value) {
    const n = toNumber(value);
    if (n === null) {
      return "–";
    }
    const text = formatFixed(Math.abs(n), 2);
    return (n > 0 ? "+" : n < 0 ? "−" : "") + text + "%";
  }

  function formatCompact(value) {
    const n = toNumber(value);
    if (n === null) {
      return "–";
    }
    return n.toLocaleString(LOCALE, { notation: "compact", maximumFractionDigits: 2 });
  }

  function formatClock(ms) {
    return new Date(ms).toLocaleTimeString(LOCALE, { hour12: false });
  }

  function formatAgo(ms) {
    if (ms < 1000) {
      return "now";
    }
    const seconds = Math.floor(ms / 1000);
    if (seconds < 60) {
      return seconds + " s ago";
    }
    if (seconds < 3600) {
      return Math.floor(seconds / 60) + " min ago";
    }
    return Math.floor(seconds / 3600) + " h ago";
  }

  function signClass(value) {
    const n = toNumber(value);
    if (n === null || n === 0) {
      return "flat";
    }
    return n > 0 ? "pos" : "neg";
  }

  function arrow(direction) {
    return direction === "up" ? "▲" : direction === "down" ? "▼" : "";
  }

  // ---------------------------------------------------------------- rendering: rows

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
    state.el.rows.appendChild(tr);
    if (state.chart.symbol === symbol) {
      row.button.setAttribute("aria-expanded", "true");
      tr.classList.add("charted");
    }
    applyOrder();
    renderEmpty();
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
      row.priceVal.textContent = formatPrice(tick.last_price);
      pushHistory(row, price);
    }
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
    setCell(row, "bid", tick, "bid", formatPrice);
    setCell(row, "ask", tick, "ask", formatPrice);
    setCell(row, "high", tick, "high", formatPrice);
    setCell(row, "low", tick, "low", formatPrice);
    setCell(row, "volume", tick, "volume", function (v) {
      return formatCompact(v) + " " + row.units.base;
    });
    setCell(row, "qvolume", tick, "quote_volume", function (v) {
      return formatCompact(v) + " " + row.units.quote;
    });
    row.values.quote_volume = toNumber(tick.quote_volume);
    renderSpread(row, tick);
    noteUpdate(row, now, live, sent);
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

  function renderSpread(row, tick) {
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
    const digits = Math.max(fractionDigits(tick.bid), fractionDigits(tick.ask));
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
    renderEmpty();
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

  function desiredOrder() {
    const manual = manualOrder();
    const key = state.sort.key;
    if (!key) {
      return manual;
    }
    const now = Date.now();
    const sign = state.sort.dir === "asc" ? 1 : -1;
    return manual
      .map(function (symbol, index) {
        return { symbol: symbol, index: index, v: sortValue(state.rows.get(symbol), key, now) };
      })
      .sort(function (a, b) {
        if (a.v === null || b.v === null) {
          return a.v === b.v ? a.index - b.index : a.v === null ? 1 : -1; // blanks last
        }
        if (a.v < b.v) {
          return -sign;
        }
        if (a.v > b.v) {
          return sign;
        }
        return a.index - b.index;
      })
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
    savePrefs();
    renderSortHeaders();
    applyOrder();
  }

  function renderSortHeaders() {
    state.el.sortHeaders.forEach(function (th) {
      const active = th.dataset.sort === state.sort.key;
      const dir = active ? (state.sort.dir === "asc" ? "ascending" : "descending") : "none";
      th.setAttribute("aria-sort", dir);
      th.querySelector(".sort-ind").textContent = active ? (state.sort.dir === "asc" ? " ▲" : " ▼") : "";
    });
  }

  // ---------------------------------------------------------------- chart

  function chartPanelOpen() {
    return !state.el.chartPanel.hidden;
  }

  function openChart(symbol, focus) {
    const chart = state.chart;
    if (chart.symbol !== symbol || !chartPanelOpen()) {
      destroyPlot();
      chart.symbol = symbol;
      chart.points = [];
      chart.live = [];
      chart.fromHistory = 0;
      chart.historyError = null;
      chart.loading = true;
      loadHistory(symbol);
    }
    state.el.chartPanel.hidden = false;
    state.el.main.classList.add("has-chart");
    state.el.chartTitle.textContent = symbol;
    state.rows.forEach(function (row, s) {
      row.button.setAttribute("aria-expanded", s === symbol ? "true" : "false");
      row.tr.classList.toggle("charted", s === symbol);
    });
    savePrefs();
    renderChart();
    if (focus) {
      state.el.chartTitle.focus();
    }
  }

  function closeChart(returnFocus) {
    const symbol = state.chart.symbol;
    destroyPlot();
    state.chart.symbol = null;
    state.chart.points = [];
    state.chart.live = [];
    state.el.chartPanel.hidden = true;
    state.el.main.classList.remove("has-chart");
    state.rows.forEach(function (row) {
      row.button.setAttribute("aria-expanded", "false");
      row.tr.classList.remove("charted");
    });
    savePrefs();
    const row = symbol ? state.rows.get(symbol) : null;
    if (returnFocus && row) {
      row.button.focus();
    }
  }

  function loadHistory(symbol) {
    const chart = state.chart;
    const id = ++chart.loadId;
    const url = serverBase().http + "/history/" + encodeURIComponent(symbol) +
      queryString({ limit: HISTORY_LIMIT });
    fetch(url)
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (ticks) {
        if (id !== chart.loadId) {
          return;
        }
        const points = [];
        (Array.isArray(ticks) ? ticks : []).forEach(function (tick) {
          appendPoint(points, tick);
        });
        chart.fromHistory = points.length;
        finishLoading(points);
      })
      .catch(function (err) {
        if (id !== chart.loadId) {
          return;
        }
        chart.historyError = err.message || "unreachable";
        finishLoading([]);
      });
  }

  function finishLoading(points) {
    const chart = state.chart;
    // Live ticks that came in meanwhile go after the history, minus what it already has.
    chart.live.forEach(function (tick) {
      appendPoint(points, tick);
    });
    chart.live = [];
    chart.points = points;
    chart.loading = false;
    renderChart();
  }

  function appendPoint(points, tick) {
    const p = toNumber(tick.last_price);
    const t = toNumber(tick.timestamp_ms);
    if (p === null || t === null) {
      return false;
    }
    const seq = toNumber(tick.seq);
    const last = points[points.length - 1];
    // Time never goes back for one symbol; the same time and seq is a tick we already have
    // (the snapshot repeats the newest history entry). A restarted server numbers seq from
    // the start again, but its ticks are later.
    if (last && (t < last.t || (t === last.t && (seq === null || seq <= last.seq)))) {
      return false;
    }
    points.push({ t: t, p: p, seq: seq === null ? -1 : seq });
    if (points.length > MAX_CHART_POINTS) {
      points.splice(0, points.length - MAX_CHART_POINTS);
    }
    return true;
  }

  function chartTick(symbol, tick) {
    const chart = state.chart;
    if (chart.symbol !== symbol) {
      return;
    }
    if (chart.loading) {
      chart.live.push(tick);
      return;
    }
    if (appendPoint(chart.points, tick)) {
      // The heading's price moves with the row's, not with the throttled redraw.
      const row = state.rows.get(symbol);
      setText(state.el.chartLast, row ? row.priceVal.textContent : formatPrice(tick.last_price));
      scheduleChart();
    }
  }

  function scheduleChart() {
    const chart = state.chart;
    if (chart.redrawTimer === null) {
      chart.redrawTimer = setTimeout(function () {
        chart.redrawTimer = null;
        renderChart();
      }, CHART_REDRAW_MS);
    }
  }

  function chartWindow() {
    const chart = state.chart;
    if (chart.range === "all") {
      return chart.points;
    }
    const since = Date.now() - Number(chart.range) * 1000;
    let i = chart.points.length;
    while (i > 0 && chart.points[i - 1].t >= since) {
      i -= 1;
    }
    return chart.points.slice(i);
  }

  function candleSeconds(points) {
    const chart = state.chart;
    if (chart.range !== "all") {
      return CANDLE_SECONDS[chart.range];
    }
    const span = points.length ? (points[points.length - 1].t - points[0].t) / 1000 : 0;
    for (let i = 0; i < CANDLE_STEPS.length; i++) {
      if (span / CANDLE_STEPS[i] <= 120) {
        return CANDLE_STEPS[i];
      }
    }
    return CANDLE_STEPS[CANDLE_STEPS.length - 1];
  }

  function lineData(points) {
    return [
      points.map(function (pt) {
        return pt.t / 1000;
      }),
      points.map(function (pt) {
        return pt.p;
      }),
    ];
  }

  function candleData(points, seconds) {
    // OHLC per bucket of `seconds`, from the prices of the ticks in it.
    const xs = [];
    const o = [];
    const h = [];
    const l = [];
    const c = [];
    const size = seconds * 1000;
    points.forEach(function (pt) {
      const start = Math.floor(pt.t / size) * seconds;
      const last = xs.length - 1;
      if (last >= 0 && xs[last] === start) {
        h[last] = Math.max(h[last], pt.p);
        l[last] = Math.min(l[last], pt.p);
        c[last] = pt.p;
      } else {
        xs.push(start);
        o.push(pt.p);
        h.push(pt.p);
        l.push(pt.p);
        c.push(pt.p);
      }
    });
    return [xs, o, h, l, c];
  }

  function renderChart() {
    const chart = state.chart;
    if (!chart.symbol || !chartPanelOpen()) {
      return;
    }
    if (typeof window.uPlot !== "function") {
      state.el.chartNote.textContent = "Chart library missing: vendor/uPlot.iife.min.js did not load.";
      return;
    }
    const points = chartWindow();
    const candles = chart.style === "candles";
    chart.bucketSec = candles ? candleSeconds(points) : 0;
    const data = candles ? candleData(points, chart.bucketSec) : lineData(points);
    if (!chart.plot || chart.plotStyle !== chart.style) {
      destroyPlot();
      chart.plot = makePlot(chart.style, data);
      chart.plotStyle = chart.style;
      observeChartSize();
    } else {
      chart.plot.setData(data, true);
    }
    chart.shown = data[0].length;
    renderChartText(points);
  }

  function renderChartText(points) {
    const chart = state.chart;
    const rangeText = { 60: "last minute", 300: "last 5 minutes", 900: "last 15 minutes" }[chart.range] ||
      "all ticks held";
    const notes = [];
    if (chart.loading) {
      notes.push("Loading history…");
    } else if (chart.historyError) {
      notes.push("History unavailable (" + chart.historyError + "): live ticks only.");
    } else {
      notes.push(chart.fromHistory + " ticks from history, then live.");
    }
    notes.push(points.length + " ticks shown, " + rangeText + ".");
    if (chart.style === "candles") {
      notes.push("Candles of " + chart.bucketSec + " s built from those ticks.");
    }
    state.el.chartNote.textContent = notes.join(" ");
    const last = points[points.length - 1];
    const row = state.rows.get(chart.symbol);
    // The row's text keeps the exchange's own digits; the chart only has the number.
    state.el.chartLast.textContent = row && row.priceVal.textContent
      ? row.priceVal.textContent
      : last ? formatPrice(last.p) : "";
    let summary = chart.symbol + " price, " + rangeText + ": ";
    if (points.length) {
      const prices = points.map(function (pt) {
        return pt.p;
      });
      summary += "low " + formatPrice(Math.min.apply(null, prices)) +
        ", high " + formatPrice(Math.max.apply(null, prices)) +
        ", last " + formatPrice(last.p) + " at " + formatClock(last.t);
    } else {
      summary += "no ticks yet";
    }
    state.el.chart.setAttribute("aria-label", summary);
  }

  function chartSize() {
    const el = state.el.chart;
    const width = Math.max(200, Math.floor(el.clientWidth));
    const height = window.innerWidth < 640 ? 220 : 260;
    return { width: width, height: height };
  }

  function xRange(_u, min, max) {
    const chart = state.chart;
    if (chart.range !== "all") {
      const now = Date.now() / 1000;
      return [now - Number(chart.range), now + (chart.bucketSec || 0)];
    }
    if (min === null || max === null || min === max) {
      const t = min === null ? Date.now() / 1000 : min;
      return [t - 30, t + 30];
    }
    return [min, max + (chart.bucketSec || 0)];
  }

  function timeValues(_u, splits, _axis, _space, incr) {
    // Two digits everywhere, 24 h: no am/pm and no date stacked under the first tick.
    const options = incr < 60
      ? { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }
      : incr < 86400
        ? { hour: "2-digit", minute: "2-digit", hour12: false }
        : { month: "short", day: "numeric" };
    return splits.map(function (v) {
      return v === null ? "" : new Date(v * 1000).toLocaleString(LOCALE, options);
    });
  }

  function axisValues(_u, splits) {
    return splits.map(function (v) {
      return v === null ? "" : formatAxisPrice(v);
    });
  }

  function formatAxisPrice(v) {
    const abs = Math.abs(v);
    const digits = abs >= 1000 ? 1 : abs >= 1 ? 3 : 6;
    return v.toLocaleString(LOCALE, { maximumFractionDigits: digits });
  }

  function yAxisSize(u, values) {
    if (!values) {
      return 50;
    }
    const longest = values.reduce(function (n, v) {
      return Math.max(n, String(v).length);
    }, 0);
    return Math.ceil(longest * 7.5) + 18;
  }

  function axisOptions(extra) {
    return Object.assign({
      stroke: COLORS.muted,
      grid: { stroke: COLORS.line, width: 1 },
      ticks: { stroke: COLORS.line, width: 1 },
      font: "12px system-ui, sans-serif",
    }, extra);
  }

  function makePlot(style, data) {
    const size = chartSize();
    const priceValue = function (_u, v) {
      return v === null || v === undefined ? "–" : formatPrice(v);
    };
    const hidden = function (label) {
      // Candles are drawn by the draw hook; these series only feed the y scale and legend.
      return { label: label, paths: function () { return null; }, points: { show: false },
        stroke: COLORS.muted, value: priceValue };
    };
    const series = style === "candles"
      ? [{ label: "Time" }, hidden("Open"), hidden("High"), hidden("Low"), hidden("Close")]
      : [{ label: "Time" }, {
        label: "Price", stroke: COLORS.price, width: 1.5, fill: COLORS.priceFill,
        points: { show: false }, value: priceValue,
      }];
    const opts = {
      width: size.width,
      height: size.height,
      scales: { x: { time: true, range: xRange } },
      axes: [
        axisOptions({ values: timeValues, space: 70 }),
        axisOptions({ values: axisValues, size: yAxisSize }),
      ],
      series: series,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      hooks: style === "candles" ? { draw: [drawCandles] } : {},
    };
    return new window.uPlot(opts, data, state.el.chart);
  }

  function drawCandles(u) {
    const xs = u.data[0];
    if (!xs.length) {
      return;
    }
    const seconds = state.chart.bucketSec;
    const ctx = u.ctx;
    const ratio = window.devicePixelRatio || 1;
    const slot = Math.abs(u.valToPos(xs[0] + seconds, "x", true) - u.valToPos(xs[0], "x", true));
    const body = Math.max(1 * ratio, Math.min(14 * ratio, slot * 0.7));
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
    ctx.clip();
    for (let i = 0; i < xs.length; i++) {
      const open = u.data[1][i];
      const close = u.data[4][i];
      const x = Math.round(u.valToPos(xs[i] + seconds / 2, "x", true));
      const top = u.valToPos(Math.max(open, close), "y", true);
      const bottom = u.valToPos(Math.min(open, close), "y", true);
      ctx.strokeStyle = ctx.fillStyle = close >= open ? COLORS.up : COLORS.down;
      ctx.lineWidth = ratio;
      ctx.beginPath();
      ctx.moveTo(x, u.valToPos(u.data[2][i], "y", true));
      ctx.lineTo(x, u.valToPos(u.data[3][i], "y", true));
      ctx.stroke();
      ctx.fillRect(Math.round(x - body / 2), top, Math.round(body), Math.max(ratio, bottom - top));
    }
    ctx.restore();
  }

  function destroyPlot() {
    const chart = state.chart;
    if (chart.observer) {
      chart.observer.disconnect();
      chart.observer = null;
    }
    if (chart.plot) {
      chart.plot.destroy();
      chart.plot = null;
      chart.plotStyle = null;
    }
    clearTimeout(chart.redrawTimer);
    chart.redrawTimer = null;
  }

  function observeChartSize() {
    const chart = state.chart;
    if (typeof ResizeObserver !== "function") {
      return;
    }
    chart.observer = new ResizeObserver(function () {
      if (chart.plot) {
        const size = chartSize();
        if (size.width !== chart.plot.width || size.height !== chart.plot.height) {
          chart.plot.setSize(size);
        }
      }
    });
    chart.observer.observe(state.el.chart);
  }

  function setChartRange(value) {
    state.chart.range = value;
    savePrefs();
    renderChart();
  }

  function setChartStyle(value) {
    state.chart.style = value === "candles" ? "candles" : "line";
    savePrefs();
    renderChart();
  }

  // ---------------------------------------------------------------- rendering: chrome

  function upstreamTrouble() {
    return state.conn === "connected" && state.upstream !== null &&
      (state.upstream !== "connected" || state.upstreamSince !== null);
  }

  function isFresh() {
    return state.conn === "connected" && !upstreamTrouble();
  }

  function setConn(name) {
    state.conn = name;
    if (name !== "reconnecting") {
      clearInterval(state.countdownTimer);
      state.countdownTimer = null;
    }
    const el = state.el.connState;
    el.dataset.state = name;
    if (name !== "reconnecting") {
      el.textContent = name;
    }
    // Connect is "Retry now" while a reconnect is pending; Disconnect also stops retrying.
    const connect = state.el.connect;
    connect.disabled = name === "connected" || name === "connecting";
    connect.textContent = name === "reconnecting" ? "Retry now" : "Connect";
    state.el.disconnect.disabled = !state.wanted;
    renderFreshness();
    renderEmpty();
  }

  function renderCountdown() {
    const seconds = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
    if (state.conn !== "reconnecting") {
      setConn("reconnecting");
    }
    // Screen readers hear "reconnecting" once: the ticking number is hidden from them.
    const el = state.el.connState;
    const text = "reconnecting in " + seconds + "s";
    if (el.textContent !== text) {
      el.textContent = "reconnecting";
      const count = document.createElement("span");
      count.setAttribute("aria-hidden", "true");
      count.textContent = " in " + seconds + "s";
      el.appendChild(count);
    }
  }

  function renderFreshness() {
    const fresh = isFresh();
    document.body.dataset.fresh = fresh ? "yes" : "no";
    renderLatency();
  }

  function renderBanners() {
    const sourceText = {
      sim: "Simulated data: not live market prices",
      replay: "Replayed data: recorded prices, not live",
    }[state.source];
    state.el.simBanner.hidden = !sourceText;
    if (sourceText) {
      state.el.simBanner.textContent = sourceText;
    }
    const now = Date.now();
    const trouble = upstreamTrouble();
    state.el.upstreamBanner.hidden = !trouble;
    if (trouble) {
      const since = state.upstreamSince === null ? "" : " since " + formatClock(state.upstreamSince);
      setText(state.el.upstreamText, state.upstream === "connected"
        ? "Upstream feed reconnected, waiting for data (stale" + since + "): prices may be stale"
        : "Upstream feed " + state.upstream + since + ": prices may be stale");
      setText(state.el.upstreamAgo,
        state.upstreamSince === null ? "" : " (" + formatAgo(now - state.upstreamSince) + ")");
    }
    const lost = state.lostAt !== null && state.conn !== "connected";
    state.el.staleBanner.hidden = !lost;
    if (lost) {
      let text;
      if (!state.wanted) {
        text = "Disconnected at " + formatClock(state.lostAt) + ": prices are not updating";
      } else if (state.everConnected) {
        text = "Connection lost at " + formatClock(state.lostAt) + ": prices are stale, reconnecting";
      } else {
        text = "Cannot reach the server (since " + formatClock(state.lostAt) + "): retrying";
      }
      setText(state.el.staleText, text);
      setText(state.el.staleAgo, " (" + formatAgo(now - state.lostAt) + ")");
    }
    renderFreshness();
  }

  function setText(el, text) {
    if (el.textContent !== text) {
      el.textContent = text;
    }
  }

  function renderLatency() {
    let text;
    if (!isFresh()) {
      text = state.conn === "connected" || state.lostAt !== null ? "stale" : "–";
    } else if (!state.latencies.length) {
      text = "–";
    } else {
      text = Math.round(median(state.latencies)) + " ms";
    }
    setText(state.el.latency, text);
  }

  function messageRate(now) {
    const times = state.messageTimes;
    while (times.length && times[0] < now - RATE_WINDOW_MS) {
      times.shift();
    }
    if (state.conn !== "connected") {
      return 0;
    }
    const span = Math.min(RATE_WINDOW_MS, Math.max(1000, now - state.openedAt));
    return (times.length * 1000) / span;
  }

  function renderStats() {
    const now = Date.now();
    const s = state.seq;
    const el = state.el;
    setText(el.statTransport, state.transport === "sse" ? "SSE" : "WebSocket");
    setText(el.statServer, serverBase().http.replace(/^https?:\/\//, ""));
    setText(el.statNode, state.node || "–");
    setText(el.statRate, messageRate(now).toLocaleString(LOCALE, { maximumFractionDigits: 1 }));
    setText(el.statReconnects, String(state.stats.reconnects));
    setText(el.statResumes, state.stats.resumes + (state.stats.resets ? " (" + state.stats.resets + " reset)" : ""));
    let gaps;
    if (!s.checking) {
      gaps = state.symbols !== null && state.served === null ? "–" : "not checked (subset)";
    } else {
      gaps = s.gaps === 0 ? "0" : s.gaps + " (" + s.missed + " ticks missed)";
    }
    setText(el.statGaps, gaps);
    el.statGaps.dataset.gaps = String(s.gaps);
    setText(el.statSeq, s.latest === null ? "–" : String(s.latest));
  }

  function renderFooter() {
    state.el.tickCount.textContent = state.tickCount.toLocaleString(LOCALE);
    state.el.transportLabel.textContent =
      "via " + (state.transport === "sse" ? "Server-Sent Events" : "WebSocket");
  }

  function renderEmpty() {
    const el = state.el.empty;
    el.hidden = state.rows.size > 0;
    if (state.symbols !== null && state.symbols.length === 0 && state.pending.size === 0) {
      el.textContent = "No symbols: add one above.";
    } else if (state.conn === "connected") {
      el.textContent = "Waiting for prices…";
    } else {
      el.textContent = "Not connected: prices appear once the server is reachable.";
    }
  }

  function showError(text) {
    state.el.error.textContent = text;
  }

  function clearError() {
    state.el.error.textContent = "";
  }

  function everySecond() {
    const now = Date.now();
    state.rows.forEach(function (row) {
      renderAge(row, now);
    });
    if (state.sort.key && now - state.lastResort >= RESORT_MS) {
      applyOrder();
    }
    if (state.chart.symbol && state.chart.range !== "all") {
      scheduleChart(); // the window slides even when no tick arrives
    }
    renderBanners();
    renderStats();
  }

  // ---------------------------------------------------------------- start-up

  function readOptions() {
    // ?transport=sse&symbols=BTCUSDT,ETHUSDT&token=...&throttle_ms=... preselect what the
    // page starts with; opened from disk, ?server=http://host:port names the server.
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
        return SYMBOL_PATTERN.test(s);
      });
    if (symbols.length) {
      state.symbols = symbols;
      state.symbolsFromUser = false; // the link's list, not the user's edits: not saved
    }
    state.token = params.get("token");
    const throttle = toNumber(params.get("throttle_ms"));
    state.throttleMs = throttle !== null && throttle > 0 ? throttle : null;
    const server = params.get("server");
    if (server && location.protocol === "file:") {
      try {
        state.server = toBase(server);
      } catch (err) {
        showError("Ignoring ?server=" + server + ": not a URL such as http://localhost:8000");
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
      error: byId("error"),
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
    if (target) {
      target.querySelector(".symbol-btn").focus();
    }
  }

  function bindTable() {
    state.el.rows.addEventListener("click", function (event) {
      const remove = event.target.closest("button.remove");
      const tr = event.target.closest("tr[data-symbol]");
      if (remove) {
        removeSymbol(tr.dataset.symbol);
      } else if (tr) {
        // Anywhere on the row; the symbol button is its keyboard equivalent (Enter/Space).
        // Focus moves to the chart's heading, which also scrolls it into view.
        openChart(tr.dataset.symbol, true);
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
        cycleSort(th.dataset.sort);
      });
    });
  }

  function bindChart() {
    state.el.chartClose.addEventListener("click", function () {
      closeChart(true);
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && chartPanelOpen() &&
          (state.el.chartPanel.contains(document.activeElement) ||
           document.activeElement === document.body)) {
        closeChart(true);
      }
    });
    document.querySelectorAll('input[name="chart-range"]').forEach(function (input) {
      input.checked = input.value === state.chart.range;
      input.addEventListener("change", function () {
        setChartRange(input.value);
      });
    });
    document.querySelectorAll('input[name="chart-style"]').forEach(function (input) {
      input.checked = input.value === state.chart.style;
      input.addEventListener("change", function () {
        setChartStyle(input.value);
      });
    });
  }

  function bindControls() {
    state.el.connect.addEventListener("click", userConnect);
    state.el.disconnect.addEventListener("click", userDisconnect);
    state.el.transport.addEventListener("change", function (event) {
      switchTransport(event.target.value);
    });
    state.el.addForm.addEventListener("submit", function (event) {
      event.preventDefault();
      if (addSymbol(state.el.addInput.value)) {
        state.el.addInput.value = "";
      }
    });
    bindTable();
    bindChart();
  }

  function exposeHook() {
    // A read-only window on the page's state for tests and for the curious (devtools).
    window.tickcast = {
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
      },
      stats: function () {
        return {
          conn: state.conn,
          fresh: isFresh(),
          transport: state.transport,
          node: state.node,
          upstream: state.upstream,
          messagesPerSecond: messageRate(Date.now()),
          reconnects: state.stats.reconnects,
          resumes: state.stats.resumes,
          resets: state.stats.resets,
          gapsChecked: state.seq.checking,
          gaps: state.seq.gaps,
          missed: state.seq.missed,
          lastSeq: state.seq.latest,
        };
      },
    };
  }

  function start() {
    findElements();
    loadPrefs();
    readOptions();
    state.el.transport.value = state.transport;
    bindControls();
    exposeHook();
    renderSortHeaders();
    renderFooter();
    renderBanners();
    renderStats();
    setInterval(everySecond, 1000);
    connect(false);
    if (state.chart.symbol) {
      openChart(state.chart.symbol, false); // the chart that was open before a reload
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
