/*
 * tickcast live dashboard: the connection to the server (WebSocket or SSE), reconnects with
 * backoff, resume tokens and incoming messages (their seq is checked by seq.js). The
 * selected symbol's trades, candles and book arrive here too and go to tape.js, candles.js
 * and ladder.js.
 */
(function (tc) {
  "use strict";

  const { toNumber } = tc.format;
  const core = tc.core;
  const table = tc.table;
  const priceChart = tc.priceChart;
  const statusView = tc.statusView;
  const state = core.state;

  const LATENCY_WINDOW = 50;
  const BACKOFF_FIRST_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  const COUNTDOWN_TICK_MS = 250;
  // The server closes clients silent for 60 s; an application ping keeps us talking even
  // if a proxy in between swallows protocol-level pongs.
  const APP_PING_MS = 25000;

  // ---------------------------------------------------------------- urls

  function wsUrl(token) {
    // Pending symbols are subscribed with ops after opening, so an unknown one gets an
    // `error` reply instead of spoiling the whole connection.
    const symbols = state.symbols && state.symbols.length ? state.symbols.join(",") : null;
    // The followed streams are named too, so that a resume replays what they missed.
    const streams = tableStreams().concat(tc.follow.urlStreams());
    return core.serverBase().ws + "/ws" + core.queryString({
      status: "1",
      symbols: symbols,
      streams: streams.length ? streams.join(",") : null,
      throttle_ms: state.throttleMs,
      last_event_id: token,
      token: state.token,
    });
  }

  function sseUrl(token) {
    const list = (state.symbols || []).concat(Array.from(state.pending));
    const streams = tableStreams().concat(tc.follow.urlStreams());
    return core.serverBase().http + "/sse" + core.queryString({
      symbols: list.length ? list.join(",") : null,
      streams: streams.length ? streams.join(",") : null,
      throttle_ms: state.throttleMs,
      last_event_id: token,
      token: state.token,
    });
  }

  function tableStreams() {
    // The table of every market follows one stream, not a subscription per symbol (a
    // client may hold TICKCAST_MAX_SUBSCRIPTIONS streams): without ?symbols= in the URL,
    // the connection gets nothing else.
    return state.market.on ? ["!tickers"] : [];
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
    table.adoptDefaults();
    state.seen.clear();
    state.pendingOps.clear();
    state.latencies = [];
    const token = resume ? resumeToken() : null;
    state.resumedStream = token !== null;
    if (!state.resumedStream) {
      state.seq.last = null; // a fresh stream: the next live tick is the new baseline
    }
    state.autoRetry = Boolean(resume);
    statusView.setConn("connecting");
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
    tc.probe.forget();
    state.everConnected = true;
    statusView.setConn("connected");
    statusView.renderStats();
    fetchServed();
    tc.follow.opened();
  }

  function openWebSocket(token) {
    let ws;
    try {
      ws = new WebSocket(wsUrl(token));
    } catch (err) {
      statusView.showError("Cannot open WebSocket: " + err.message);
      handleDrop();
      return;
    }
    state.ws = ws;
    let didOpen = false;
    ws.onopen = function () {
      didOpen = true;
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
        if (!didOpen) {
          tc.probe.explainFailure(); // a refused upgrade does not say why: ask
        }
        handleDrop();
      }
    };
  }

  function openEventSource(token) {
    const es = new EventSource(sseUrl(token));
    state.es = es;
    let didOpen = false;
    es.onopen = function () {
      didOpen = true;
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
    es.addEventListener("gap", function (event) {
      onSseEvent(event, applyGap);
    });
    es.addEventListener("tick", function (event) {
      onSseEvent(event, applyTick);
    });
    // EventSource would retry on its own at the server's fixed `retry:` interval; closing
    // it and reconnecting ourselves gives the same backoff and state display as WebSocket.
    es.onerror = function (event) {
      // The server's own `event: error` (a symbol not served) arrives here too, as a
      // message with data: it is a reply to show, not a broken connection.
      if (typeof event.data === "string") {
        onSseEvent(event, applyError);
        return;
      }
      if (state.es === es) {
        es.close();
        state.es = null;
        if (!didOpen) {
          tc.probe.explainFailure();
        }
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
    statusView.renderBanners();
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
      statusView.setConn("disconnected");
    }
    statusView.renderBanners();
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
    state.countdownTimer = setInterval(statusView.renderCountdown, COUNTDOWN_TICK_MS);
    statusView.renderCountdown();
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
    tc.probe.forget();
    if (state.lostAt === null) {
      state.lostAt = Date.now();
    }
    statusView.setConn("disconnected");
    statusView.renderBanners();
  }

  function switchTransport(value) {
    state.transport = value === "sse" ? "sse" : "ws";
    state.lastEventId = null;
    state.resumeSeq = null;
    statusView.renderFooter();
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

  function sendStreamsOp(op, streams) {
    const id = state.nextOpId++;
    if (sendJson({ op: op, streams: streams, id: id })) {
      state.pendingOps.set(id, streams.join(", "));
    }
  }

  function fetchServed() {
    return Promise.all([fetchSymbols(), tc.follow.fetchStreams()]).then(tc.market.decide);
  }

  function fetchSymbols() {
    return core.restFetch(core.serverBase().http + "/symbols")
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (body) {
        if (body && Array.isArray(body.symbols)) {
          state.served = body.symbols.map(String);
          table.dropUnserved();
          tc.decimals.applyServed(body.price_decimals);
          tc.market.redraw();
          table.renderSuggestions();
          table.applyOrder();
          statusView.renderStats();
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
    tickers: applyTickers,
    status: applyStatus,
    ack: applyAck,
    error: applyError,
    reset: applyReset,
    trade: applyTrade,
    kline: applyKline,
    book: applyBook,
    gap: applyGap,
    token_expiring: applyTokenExpiring,
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
    if (state.market.on) {
      applyTickers({ ticks: [tick], seq: tick.seq }, fromSnapshot); // one table at a time
      return;
    }
    const accepted = table.acceptsSymbol(symbol);
    // The first tick per symbol on a fresh connection is the snapshot: its age says
    // nothing about delivery latency and its seq does not follow the previous one.
    // A resumed stream has no snapshot: what comes first is what was missed.
    const snapshot =
      fromSnapshot === true || (!state.resumedStream && !state.seen.has(symbol));
    if (accepted) {
      state.seen.add(symbol);
    }
    tc.seq.track(tick.seq, snapshot);
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
      statusView.renderBanners();
    }
    if (state.upstreamSince !== null && state.upstream === "connected" && !snapshot) {
      state.upstreamSince = null; // the feed is back: data, not only a connection
      statusView.renderBanners();
    }
    const row = state.rows.get(symbol) || table.createRow(symbol);
    table.updateRow(row, tick, now, live, sent);
    priceChart.chartTick(symbol, tick);
    statusView.renderFooter();
  }

  function applyTickers(message, fromSnapshot) {
    // `!tickers`: the ticks of one upstream batch, or on subscribe every symbol's latest.
    if (!state.market.on || !Array.isArray(message.ticks)) {
      return; // a table of its own symbols has no use for it
    }
    const snapshot =
      fromSnapshot === true || (!state.resumedStream && !state.seen.has("!tickers"));
    state.seen.add("!tickers");
    // Its seq is its newest tick's: the resume point, as a single tick's would be.
    tc.seq.track(message.seq, snapshot);
    const now = Date.now();
    let taken = 0;
    message.ticks.forEach(function (tick) {
      if (!tick || typeof tick !== "object" || typeof tick.symbol !== "string" || !tick.symbol) {
        return;
      }
      const symbol = tick.symbol.toUpperCase();
      const sent = toNumber(tick.timestamp_ms);
      if (!snapshot && sent !== null && sent >= state.openedAt) {
        state.latencies.push(now - sent);
      }
      if (typeof tick.source === "string") {
        state.source = tick.source;
      }
      tc.market.accept(symbol === tick.symbol ? tick : Object.assign({}, tick, { symbol: symbol }),
        now, sent, snapshot);
      priceChart.chartTick(symbol, tick);
      taken += 1;
    });
    // The page's own figures once per message, not once per tick.
    if (state.latencies.length > LATENCY_WINDOW) {
      state.latencies.splice(0, state.latencies.length - LATENCY_WINDOW);
    }
    state.tickCount += taken;
    if (state.upstreamSince !== null && state.upstream === "connected" && !snapshot && taken) {
      state.upstreamSince = null; // the feed is back: data, not only a connection
    }
    statusView.renderLatency();
    statusView.renderBanners();
    statusView.renderFooter();
  }

  function applyTrade(trade) {
    tc.seq.track(trade.seq, false); // trades have no snapshot
    tc.tape.accept(trade);
  }

  function applyKline(kline) {
    // The first candle of a stream on a connection is its snapshot, as a ticker's tick is.
    const snapshot = !state.seen.has(kline.stream);
    state.seen.add(kline.stream);
    tc.seq.track(kline.seq, snapshot);
    tc.candles.accept(kline);
  }

  function applyBook(book) {
    // The stream's first book on a connection is its snapshot (seq not contiguous).
    const snapshot = !state.seen.has(book.stream);
    state.seen.add(book.stream);
    tc.seq.track(book.seq, snapshot);
    tc.ladder.accept(book);
  }

  function applyBookStatus(status) {
    // One book is not whole: about its streams, not the connection or the upstream. On
    // subscribe it comes instead of the snapshot (no seq); when a book breaks, live.
    const stream = status.symbol + "@book";
    const snapshot = !state.seen.has(stream);
    state.seen.add(stream);
    tc.seq.track(status.seq, snapshot);
    tc.ladder.acceptStatus(status);
  }

  function applyGap(gap) {
    tc.tape.acceptGap(gap);
  }

  function applyStatus(status) {
    if (typeof status.book === "string") {
      applyBookStatus(status);
      return;
    }
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
    statusView.renderBanners();
    statusView.renderStats();
  }

  function applyAck(ack) {
    const name = state.pendingOps.get(ack.id);
    if (name !== undefined) {
      state.pendingOps.delete(ack.id);
      if (name.indexOf("@") < 0) {
        statusView.clearError(); // a symbol added: its error, if any, is over
      } else if (ack.op === "subscribe") {
        // Live from here on: what came before is fetched now, not before the server
        // subscribed (a trade between the two would be in neither).
        tc.follow.subscribed();
      }
    }
  }

  function applyError(error) {
    const symbol = state.pendingOps.get(error.id);
    state.pendingOps.delete(error.id);
    const reason = error.message || error.code || "unknown error";
    if (symbol === undefined && state.market.on) {
      // Not a reply: a symbol the server stopped serving (delisted) leaves the table.
      const named = Array.isArray(error.symbols) ? error.symbols : [error.symbol];
      tc.market.drop(named);
    }
    if (symbol && state.pending.delete(symbol)) {
      statusView.showError("Cannot add " + symbol + ": " + reason);
    } else if (symbol && symbol.indexOf("@") >= 0) {
      statusView.showError("Cannot follow " + symbol + ": " + reason);
    } else {
      statusView.showError("Server error: " + reason);
    }
  }

  function applyTokenExpiring(message) {
    // A page that embeds the dashboard may hand over fresh tokens: window.tickcastRenewToken,
    // a function returning a token (or a promise of one) for the same subject.
    const renew = window.tickcastRenewToken;
    const ws = state.ws;
    if (typeof renew === "function" && ws) {
      Promise.resolve()
        .then(renew)
        .then(function (token) {
          if (typeof token === "string" && token && state.ws === ws) {
            state.token = token; // reconnects use it too
            ws.send(JSON.stringify({ op: "refresh", token: token }));
          }
        })
        .catch(function () {});
      return;
    }
    const seconds = Math.max(0, Math.round((toNumber(message.in_ms) || 0) / 1000));
    statusView.showError(
      "The access token expires in " + seconds + " s: open this page again with a new ?token=."
    );
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
      // The snapshot of every stream followed, each message with its own type.
      reset.ticks.forEach(function (message) {
        if (!message || typeof message !== "object") {
          return;
        }
        if (message.type === "kline") {
          state.seen.add(message.stream);
          tc.candles.accept(message);
        } else if (message.type === "book") {
          state.seen.add(message.stream);
          tc.ladder.accept(message);
        } else if (message.type === "status" && typeof message.book === "string") {
          state.seen.add(message.symbol + "@book");
          tc.ladder.acceptStatus(message);
        } else if (message.type === "tickers") {
          applyTickers(message, true);
        } else if (message.type === "tick" || message.type === undefined) {
          applyTick(message, true);
        }
      });
    }
    tc.candles.refresh(); // what was no longer held for a resume is still in /klines
    tc.tape.refresh();
    statusView.renderStats();
  }

  function recordLatency(ms) {
    state.latencies.push(ms);
    if (state.latencies.length > LATENCY_WINDOW) {
      state.latencies.shift();
    }
    statusView.renderLatency();
  }

  Object.assign(tc.connection, {
    connect: connect,
    userConnect: userConnect,
    userDisconnect: userDisconnect,
    switchTransport: switchTransport,
    sendOp: sendOp,
    sendSubscribe: sendSubscribe,
    sendStreamsOp: sendStreamsOp,
    wsOpen: wsOpen,
    fetchServed: fetchServed,
  });
})(window.tickcast);
