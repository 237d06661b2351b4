/*
 * tickcast live dashboard: the chart's candles.
 *
 * Real one-minute candles of the selected symbol (SPEC §12): its /klines history (the
 * server keeps them from the exchange's own REST history, then from the stream), then its
 * SYMBOL@kline_1m stream, which sends the open candle again on every change and once more
 * with `closed: true` when it ends. Candles are keyed by open time, so a candle that comes
 * both from /klines and from the stream (the open one, or those a refetch after a
 * reconnect repeats) is held once: a closed candle is final, and of two open ones the
 * later seq wins, whichever arrived first. A server that has just started fetches each
 * series' history from the exchange only once the series' first candle arrives: until
 * /streams no longer lists it as pending, the page asks again every few seconds.
 */
(function (tc) {
  "use strict";

  const { toNumber } = tc.format;
  const core = tc.core;
  const state = core.state;

  const INTERVAL = "1m";
  const INTERVAL_MS = 60000;
  const KLINE_LIMIT = 1000; // the most /klines answers at once
  const MAX_CANDLES = 2000;
  const HISTORY_POLL_MS = 2000;
  const HISTORY_POLLS = 30;
  const UP = "#56d364";
  const DOWN = "#ff7b72";

  // ---------------------------------------------------------------- data

  function select(symbol) {
    const c = state.candles;
    c.symbol = symbol;
    c.list = [];
    c.fromHistory = 0;
    c.error = null;
    c.loading = Boolean(symbol);
    c.loadId += 1;
    c.polls = 0;
    c.waiting = false;
    clearTimeout(c.pollTimer);
    if (symbol) {
      load(symbol, null);
    }
  }

  function refresh() {
    // After a (re)connect: the candles a drop may have missed, from the newest one held on
    // (a WebSocket resume replays only the streams its URL names, not these).
    const c = state.candles;
    if (!c.symbol || c.loading) {
      return;
    }
    const last = c.list[c.list.length - 1];
    if (!last) {
      c.loading = true;
    }
    load(c.symbol, last ? last.t : null);
  }

  function load(symbol, since) {
    const c = state.candles;
    const id = ++c.loadId;
    const url = core.serverBase().http + "/klines/" + encodeURIComponent(symbol) +
      core.queryString({ interval: INTERVAL, limit: KLINE_LIMIT, start_ms: since });
    fetchJson(url)
      .then(function (klines) {
        if (id !== c.loadId) {
          return;
        }
        const rows = Array.isArray(klines) ? klines : [];
        rows.forEach(merge);
        if (since === null) {
          c.fromHistory = rows.length;
          checkHistory(symbol);
        }
        c.loading = false;
        c.error = null;
        changed();
      })
      .catch(function (err) {
        if (id !== c.loadId) {
          return;
        }
        c.loading = false;
        c.error = err.message || "unreachable";
        changed();
      });
  }

  function checkHistory(symbol) {
    // Called after a full load, then every HISTORY_POLL_MS while the history is filling.
    const c = state.candles;
    clearTimeout(c.pollTimer);
    if (c.polls >= HISTORY_POLLS) {
      return;
    }
    const series = symbol + "@kline_" + INTERVAL;
    fetchJson(core.serverBase().http + "/streams")
      .then(function (body) {
        const backfill = body && body.backfill;
        const pending = backfill && Array.isArray(backfill.pending) &&
          backfill.pending.indexOf(series) >= 0;
        if (c.symbol !== symbol) {
          return;
        }
        // Fetched, unless none was pending and /klines had a candle or none (the fetch
        // starts with the series' first candle): then asked again too.
        if (!pending && !c.waiting && c.fromHistory > 1) {
          return;
        }
        c.waiting = pending;
        c.polls += 1;
        c.pollTimer = setTimeout(function () {
          if (c.symbol !== symbol) {
            return;
          }
          if (pending) {
            checkHistory(symbol);
          } else {
            load(symbol, null);
          }
        }, HISTORY_POLL_MS);
      })
      .catch(function () {
        // An older server without /streams' backfill: what /klines gave is all there is.
      });
  }

  function fetchJson(url) {
    // The server's JSON error says why (a symbol whose candles it does not carry).
    return core.restFetch(url).then(function (response) {
      return response.json().catch(function () {
        return null;
      }).then(function (body) {
        if (!response.ok) {
          const reason = body && typeof body.message === "string" ? body.message : null;
          throw new Error(reason || "HTTP " + response.status);
        }
        return body;
      });
    });
  }

  function accept(kline) {
    // A kline message of the stream (or of a reset's snapshot).
    const c = state.candles;
    if (kline.symbol !== c.symbol || kline.interval !== INTERVAL) {
      return;
    }
    if (merge(kline)) {
      changed();
    }
  }

  function toCandle(kline) {
    const candle = {
      t: toNumber(kline.open_time),
      o: toNumber(kline.open),
      h: toNumber(kline.high),
      l: toNumber(kline.low),
      c: toNumber(kline.close),
      v: toNumber(kline.volume),
      closed: kline.closed === true,
      seq: toNumber(kline.seq) || 0,
    };
    return [candle.t, candle.o, candle.h, candle.l, candle.c].indexOf(null) >= 0 ? null : candle;
  }

  function supersedes(candle, held) {
    if (candle.closed !== held.closed) {
      return candle.closed; // a closed candle is final; a late open one is older news
    }
    return candle.seq > held.seq;
  }

  function merge(kline) {
    const candle = toCandle(kline);
    if (candle === null) {
      return false;
    }
    const list = state.candles.list;
    // From the end: live updates are about the newest candle, history comes in order.
    let i = list.length;
    while (i > 0 && list[i - 1].t > candle.t) {
      i -= 1;
    }
    if (i > 0 && list[i - 1].t === candle.t) {
      if (!supersedes(candle, list[i - 1])) {
        return false;
      }
      list[i - 1] = candle;
      return true;
    }
    list.splice(i, 0, candle);
    if (list.length > MAX_CANDLES) {
      list.splice(0, list.length - MAX_CANDLES);
    }
    return true;
  }

  function changed() {
    if (state.chart.style === "candles") {
      tc.priceChart.scheduleChart();
    }
  }

  // ---------------------------------------------------------------- drawing

  function plotData() {
    // uPlot's columns: open time in seconds, then open, high, low, close.
    const list = state.candles.list;
    const pick = function (key, scale) {
      return list.map(function (candle) {
        return candle[key] / scale;
      });
    };
    return [pick("t", 1000), pick("o", 1), pick("h", 1), pick("l", 1), pick("c", 1)];
  }

  function xRange(min, max) {
    // Anchored to the newest candle, not the clock: a candle spans its whole minute.
    const span = state.chart.span;
    if (min === null || max === null) {
      const now = Date.now() / 1000;
      return [now - 3600, now + 60];
    }
    const end = max + INTERVAL_MS / 1000;
    return span === "all" ? [min, end] : [Math.max(min, end - Number(span) * 60), end];
  }

  function draw(u) {
    const xs = u.data[0];
    if (!xs.length) {
      return;
    }
    const seconds = INTERVAL_MS / 1000;
    const ctx = u.ctx;
    const ratio = window.devicePixelRatio || 1;
    const slot = Math.abs(u.valToPos(xs[0] + seconds, "x", true) - u.valToPos(xs[0], "x", true));
    const body = Math.max(ratio, Math.min(14 * ratio, slot * 0.7));
    const from = u.scales.x.min - seconds;
    const to = u.scales.x.max;
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
    ctx.clip();
    ctx.lineWidth = ratio;
    for (let i = 0; i < xs.length; i++) {
      if (xs[i] < from || xs[i] > to) {
        continue;
      }
      const open = u.data[1][i];
      const close = u.data[4][i];
      const x = Math.round(u.valToPos(xs[i] + seconds / 2, "x", true));
      const top = u.valToPos(Math.max(open, close), "y", true);
      const bottom = u.valToPos(Math.min(open, close), "y", true);
      ctx.strokeStyle = ctx.fillStyle = close >= open ? UP : DOWN;
      ctx.beginPath();
      ctx.moveTo(x, u.valToPos(u.data[2][i], "y", true));
      ctx.lineTo(x, u.valToPos(u.data[3][i], "y", true));
      ctx.stroke();
      ctx.fillRect(Math.round(x - body / 2), top, Math.round(body), Math.max(ratio, bottom - top));
    }
    ctx.restore();
  }

  function visible() {
    // The candles inside the span shown, for the chart's text summary.
    const list = state.candles.list;
    if (state.chart.span === "all" || !list.length) {
      return list;
    }
    const since = list[list.length - 1].t - (Number(state.chart.span) - 1) * INTERVAL_MS;
    let i = list.length;
    while (i > 0 && list[i - 1].t >= since) {
      i -= 1;
    }
    return list.slice(i);
  }

  Object.assign(tc.candles, {
    INTERVAL: INTERVAL,
    select: select,
    refresh: refresh,
    accept: accept,
    plotData: plotData,
    xRange: xRange,
    draw: draw,
    visible: visible,
  });
})(window.tickcast);
