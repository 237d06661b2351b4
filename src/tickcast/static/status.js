/*
 * tickcast live dashboard: connection state, banners, latency, stats panel and footer.
 *
 * Freshness. The page never presents old numbers as current: when the connection is down
 * or the server says its upstream is not `connected`, prices dim, a banner says since when,
 * and the latency figure reads "stale" (the rows' own stale marks are in table.js).
 */
(function (tc) {
  "use strict";

  const { LOCALE, formatClock, formatAgo, median, setText } = tc.format;
  const core = tc.core;
  const state = core.state;

  const RATE_WINDOW_MS = 5000;

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
    const fresh = isFresh() ? "yes" : "no";
    if (document.body.dataset.fresh !== fresh) {
      document.body.dataset.fresh = fresh;
      tc.ladder.schedule(); // its "live" becomes "stale", and back
    }
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
      } else if (state.refusal) {
        text = state.refusal + " Retrying since " + formatClock(state.lostAt);
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
    setText(el.statServer, core.serverBase().http.replace(/^https?:\/\//, ""));
    setText(el.statNode, state.node || "–");
    setText(el.statRate, messageRate(now).toLocaleString(LOCALE, { maximumFractionDigits: 1 }));
    setText(el.statReconnects, String(state.stats.reconnects));
    setText(el.statResumes, state.stats.resumes + (state.stats.resets ? " (" + state.stats.resets + " reset)" : ""));
    let gaps;
    if (!s.checking) {
      const why = tc.seq.unchecked();
      gaps = why === "unknown" || why === null ? "–" : "not checked (" + why + ")";
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
    const market = state.market;
    el.hidden = market.on ? market.view.length > 0 : state.rows.size > 0;
    if (market.on && market.list.length > 0) {
      el.textContent = "No symbol matches the search.";
    } else if (state.symbols !== null && state.symbols.length === 0 && state.pending.size === 0) {
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

  Object.assign(tc.statusView, {
    isFresh: isFresh,
    setConn: setConn,
    renderCountdown: renderCountdown,
    renderBanners: renderBanners,
    renderLatency: renderLatency,
    messageRate: messageRate,
    renderStats: renderStats,
    renderFooter: renderFooter,
    renderEmpty: renderEmpty,
    showError: showError,
    clearError: clearError,
  });
})(window.tickcast);
