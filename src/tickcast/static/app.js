/*
 * tickcast live dashboard.
 *
 * A classic script wrapped in an IIFE (not an ES module: Chromium refuses module scripts
 * from file://). Everything lives in one `state` object; the DOM is only written by the
 * render helpers near the end. Protocol: SPEC §6 (WebSocket /ws, SSE /sse).
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
  const DISK_SERVER = { ws: "ws://localhost:8000", http: "http://localhost:8000" };
  const LOCALE = "en-US";

  const state = {
    transport: "ws",
    token: null,
    wanted: true, // false once the user pressed Disconnect
    conn: "disconnected",
    ws: null,
    es: null,
    attempt: 0,
    retryTimer: null,
    retryAt: 0,
    countdownTimer: null,
    pingTimer: null,
    lastEventId: null, // SSE resume point, used only for automatic reconnects
    // null: the server's default symbols (first load). Otherwise the symbols the table keeps.
    symbols: null,
    pending: new Set(), // symbols added by the user whose first tick has not arrived
    pendingOps: new Map(), // op id -> symbol, to match `error` replies
    nextOpId: 1,
    seen: new Set(), // symbols that got their snapshot tick on this connection
    rows: new Map(), // symbol -> row view
    latencies: [],
    tickCount: 0,
    source: null,
    upstream: null,
    el: {},
  };

  // ---------------------------------------------------------------- endpoints

  function serverBase() {
    if (location.protocol === "file:") {
      return DISK_SERVER;
    }
    const wsScheme = location.protocol === "https:" ? "wss:" : "ws:";
    return { ws: wsScheme + "//" + location.host, http: location.origin };
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

  function wsUrl() {
    // Pending symbols are subscribed with ops after opening, so an unknown one gets an
    // `error` reply instead of spoiling the whole connection.
    const symbols = state.symbols && state.symbols.length ? state.symbols.join(",") : null;
    return serverBase().ws + "/ws" + queryString({ status: "1", symbols: symbols, token: state.token });
  }

  function sseUrl(resume) {
    const list = (state.symbols || []).concat(Array.from(state.pending));
    return serverBase().http + "/sse" + queryString({
      symbols: list.length ? list.join(",") : null,
      last_event_id: resume ? state.lastEventId : null,
      token: state.token,
    });
  }

  // ---------------------------------------------------------------- connection lifecycle

  function connect(resume) {
    clearRetry();
    closeTransport();
    adoptDefaults();
    state.seen.clear();
    state.pendingOps.clear();
    setConn("connecting");
    if (state.transport === "sse") {
      openEventSource(Boolean(resume));
    } else {
      openWebSocket();
    }
  }

  function openWebSocket() {
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (err) {
      showError("Cannot open WebSocket: " + err.message);
      handleDrop();
      return;
    }
    state.ws = ws;
    ws.onopen = function () {
      setConn("connected");
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

  function openEventSource(resume) {
    const es = new EventSource(sseUrl(resume));
    state.es = es;
    es.onopen = function () {
      setConn("connected");
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
    renderBanners();
  }

  function handleDrop() {
    stopPing();
    state.upstream = null;
    renderBanners();
    if (state.wanted) {
      scheduleReconnect();
    } else {
      setConn("disconnected");
    }
  }

  function noteDelivery() {
    // A connection that delivers data is healthy: the next drop starts from 1 s again.
    state.attempt = 0;
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
    state.wanted = true;
    state.attempt = 0;
    state.lastEventId = null;
    connect(false);
  }

  function userDisconnect() {
    state.wanted = false;
    clearRetry();
    closeTransport();
    setConn("disconnected");
  }

  function switchTransport(value) {
    state.transport = value === "sse" ? "sse" : "ws";
    state.lastEventId = null;
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
    if (!symbol || !acceptsSymbol(symbol)) {
      return;
    }
    state.tickCount += 1;
    // The first tick per symbol on a connection is the snapshot: its age says nothing
    // about delivery latency.
    const snapshot = fromSnapshot === true || !state.seen.has(symbol);
    state.seen.add(symbol);
    if (!snapshot) {
      recordLatency(tick.timestamp_ms);
    }
    if (typeof tick.source === "string") {
      state.source = tick.source;
      renderBanners();
    }
    updateRow(state.rows.get(symbol) || createRow(symbol), tick);
    renderFooter();
  }

  function applyStatus(status) {
    if (typeof status.upstream === "string") {
      state.upstream = status.upstream;
    }
    if (typeof status.source === "string") {
      state.source = status.source;
    }
    renderBanners();
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
    if (Array.isArray(reset.ticks)) {
      reset.ticks.forEach(function (tick) {
        if (tick && typeof tick === "object") {
          applyTick(tick, true);
        }
      });
    }
  }

  function recordLatency(timestampMs) {
    const sent = Number(timestampMs);
    if (!Number.isFinite(sent) || sent <= 0) {
      return;
    }
    state.latencies.push(Date.now() - sent);
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

  // ---------------------------------------------------------------- symbols

  function adoptDefaults() {
    // Once the server's defaults have filled the table, the table is the list: it is what
    // reconnects ask for and what add/remove edit.
    if (state.symbols === null && state.rows.size > 0) {
      state.symbols = Array.from(state.rows.keys());
    }
  }

  function acceptsSymbol(symbol) {
    if (state.pending.delete(symbol)) {
      if (state.symbols !== null) {
        state.symbols.push(symbol);
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
    state.pending.delete(symbol);
    removeRow(symbol);
    if (state.transport === "ws") {
      sendOp("unsubscribe", symbol);
    } else if (state.wanted) {
      connect(false);
    }
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

  function formatPrice(value) {
    const n = toNumber(value);
    if (n === null) {
      return "–";
    }
    // At least 2 decimals (4 below 1) and every digit the exchange sent, up to 8.
    const minimum = Math.abs(n) >= 1 ? 2 : 4;
    const digits = Math.min(8, Math.max(minimum, fractionDigits(value)));
    return n.toLocaleString(LOCALE, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function formatPercent(value) {
    const n = toNumber(value);
    if (n === null) {
      return "–";
    }
    const text = n.toLocaleString(LOCALE, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    return (n > 0 ? "+" : "") + text + "%";
  }

  function formatVolume(value) {
    const n = toNumber(value);
    if (n === null) {
      return "–";
    }
    return n.toLocaleString(LOCALE, { notation: "compact", maximumFractionDigits: 2 });
  }

  function signClass(value) {
    const n = toNumber(value);
    if (n === null || n === 0) {
      return "flat";
    }
    return n > 0 ? "pos" : "neg";
  }

  // ---------------------------------------------------------------- rendering: rows

  function createRow(symbol) {
    const tr = state.el.rowTemplate.content.firstElementChild.cloneNode(true);
    tr.dataset.symbol = symbol;
    const row = {
      tr: tr,
      price: tr.querySelector(".price"),
      change: tr.querySelector(".change"),
      high: tr.querySelector(".high"),
      low: tr.querySelector(".low"),
      volume: tr.querySelector(".volume"),
      spark: tr.querySelector(".spark svg"),
      line: tr.querySelector(".spark polyline"),
      lastPrice: null,
      history: [],
      flashTimer: null,
    };
    tr.querySelector(".symbol").textContent = symbol;
    const remove = tr.querySelector("button.remove");
    remove.setAttribute("aria-label", "Remove " + symbol);
    remove.title = "Remove " + symbol;
    state.rows.set(symbol, row);
    state.el.rows.appendChild(tr);
    renderEmpty();
    return row;
  }

  function updateRow(row, tick) {
    const price = toNumber(tick.last_price);
    if (price !== null) {
      if (row.lastPrice !== null && price !== row.lastPrice) {
        flash(row, price > row.lastPrice ? "up" : "down");
      }
      row.lastPrice = price;
      row.price.textContent = formatPrice(tick.last_price);
      pushHistory(row, price);
    }
    if ("change_percent" in tick) {
      row.change.textContent = formatPercent(tick.change_percent);
      row.change.className = "num change " + signClass(tick.change_percent);
    }
    setCell(row.high, tick, "high", formatPrice);
    setCell(row.low, tick, "low", formatPrice);
    setCell(row.volume, tick, "volume", formatVolume);
  }

  function setCell(cell, tick, field, format) {
    if (field in tick) {
      cell.textContent = format(tick[field]);
      cell.title = tick[field] === null || tick[field] === undefined ? "" : String(tick[field]);
    }
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

  // ---------------------------------------------------------------- rendering: chrome

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
    state.el.connect.disabled = name === "connected" || name === "connecting";
    state.el.disconnect.disabled = !state.wanted;
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

  function renderBanners() {
    const sourceText = {
      sim: "Simulated data: not live market prices",
      replay: "Replayed data: recorded prices, not live",
    }[state.source];
    state.el.simBanner.hidden = !sourceText;
    if (sourceText) {
      state.el.simBanner.textContent = sourceText;
    }
    const upstreamDown = state.upstream !== null && state.upstream !== "connected";
    state.el.upstreamBanner.hidden = !upstreamDown;
    if (upstreamDown) {
      state.el.upstreamBanner.textContent =
        "Upstream feed " + state.upstream + ": prices may be stale";
    }
  }

  function renderLatency() {
    state.el.latency.textContent = Math.round(median(state.latencies)) + " ms";
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

  // ---------------------------------------------------------------- start-up

  function readOptions() {
    // ?transport=sse&symbols=BTCUSDT,ETHUSDT&token=... preselect what the page starts with.
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
    }
    state.token = params.get("token");
  }

  function findElements() {
    const byId = function (id) {
      return document.getElementById(id);
    };
    state.el = {
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
      tickCount: byId("tick-count"),
      transportLabel: byId("transport-label"),
    };
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
    state.el.rows.addEventListener("click", function (event) {
      const button = event.target.closest("button.remove");
      if (button) {
        removeSymbol(button.closest("tr").dataset.symbol);
      }
    });
  }

  function start() {
    findElements();
    readOptions();
    state.el.transport.value = state.transport;
    bindControls();
    renderFooter();
    renderBanners();
    connect(false);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
