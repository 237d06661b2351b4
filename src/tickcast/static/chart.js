/*
 * tickcast live dashboard: the chart panel.
 *
 * uPlot (static/vendor/, see its README.md), filled from /history/{symbol} and then live
 * ticks. "Candles" builds OHLC candles in the browser from the ticks held, in buckets sized
 * to the range (5 s for 1 minute up to 1 min for 15 minutes): the server publishes ticks,
 * not trades or klines, so they summarise the last prices seen, not every trade.
 */
(function (tc) {
  "use strict";

  const { LOCALE, toNumber, formatPrice, formatClock, setText } = tc.format;
  const core = tc.core;
  const state = core.state;

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

  // ---------------------------------------------------------------- panel and data

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
    core.savePrefs();
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
    core.savePrefs();
    const row = symbol ? state.rows.get(symbol) : null;
    if (returnFocus && row) {
      row.button.focus();
    }
  }

  function loadHistory(symbol) {
    const chart = state.chart;
    const id = ++chart.loadId;
    const url = core.serverBase().http + "/history/" + encodeURIComponent(symbol) +
      core.queryString({ limit: HISTORY_LIMIT });
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
      const digits = tc.decimals.of(symbol);
      setText(state.el.chartLast, row ? row.priceVal.textContent : formatPrice(tick.last_price, digits));
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

  // ---------------------------------------------------------------- drawing

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
    const digits = tc.decimals.of(chart.symbol);
    // The row's text keeps the exchange's own digits; the chart only has the number.
    state.el.chartLast.textContent = row && row.priceVal.textContent
      ? row.priceVal.textContent
      : last ? formatPrice(last.p, digits) : "";
    let summary = chart.symbol + " price, " + rangeText + ": ";
    if (points.length) {
      const prices = points.map(function (pt) {
        return pt.p;
      });
      summary += "low " + formatPrice(Math.min.apply(null, prices), digits) +
        ", high " + formatPrice(Math.max.apply(null, prices), digits) +
        ", last " + formatPrice(last.p, digits) + " at " + formatClock(last.t);
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
      const digits = tc.decimals.of(state.chart.symbol);
      return v === null || v === undefined ? "–" : formatPrice(v, digits);
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
    core.savePrefs();
    renderChart();
  }

  function setChartStyle(value) {
    state.chart.style = value === "candles" ? "candles" : "line";
    core.savePrefs();
    renderChart();
  }

  Object.assign(tc.priceChart, {
    chartPanelOpen: chartPanelOpen,
    openChart: openChart,
    closeChart: closeChart,
    chartTick: chartTick,
    scheduleChart: scheduleChart,
    setChartRange: setChartRange,
    setChartStyle: setChartStyle,
  });
})(window.tickcast);
