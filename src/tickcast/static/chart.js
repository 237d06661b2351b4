/*
 * tickcast live dashboard: the chart panel of the selected symbol.
 *
 * uPlot (static/vendor/, see its README.md) in one of two styles. "Candles" (the default)
 * draws the symbol's real one-minute candles, the exchange's own OHLC of every trade:
 * /klines history, then the SYMBOL@kline_1m stream (candles.js), over a span of 1 h, 4 h or
 * every candle held. "Line" draws the last price of each ticker tick: /history/{symbol},
 * then live ticks, over the last 1, 5 or 15 minutes or every tick held. The panel also holds
 * the symbol's trade tape (tape.js) and its order book ladder (ladder.js); selecting a
 * symbol follows its streams (follow.js).
 */
(function (tc) {
  "use strict";

  const { LOCALE, toNumber, formatPrice, formatClock, setText } = tc.format;
  const core = tc.core;
  const state = core.state;

  const HISTORY_LIMIT = 1000; // the server caps it at its TICKCAST_HISTORY_SIZE
  const MAX_CHART_POINTS = 20000;
  const CHART_REDRAW_MS = 200;
  const COLORS = {
    text: "#e6edf3",
    muted: "#9da7b3",
    line: "#30363d",
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
      tc.follow.select(symbol);
    }
    state.el.chartPanel.hidden = false;
    state.el.main.classList.add("has-chart");
    state.el.chartTitle.textContent = symbol;
    state.rows.forEach(function (row, s) {
      row.button.setAttribute("aria-expanded", s === symbol ? "true" : "false");
      row.tr.classList.toggle("charted", s === symbol);
    });
    tc.market.redraw();
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
    tc.follow.select(null);
    state.el.chartPanel.hidden = true;
    state.el.main.classList.remove("has-chart");
    state.rows.forEach(function (row) {
      row.button.setAttribute("aria-expanded", "false");
      row.tr.classList.remove("charted");
    });
    tc.market.redraw();
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
    core.restFetch(url)
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
    const data = candles ? tc.candles.plotData() : lineData(points);
    if (!chart.plot || chart.plotStyle !== chart.style) {
      destroyPlot();
      chart.plot = makePlot(chart.style, data);
      chart.plotStyle = chart.style;
      observeChartSize();
    } else {
      chart.plot.setData(data, true);
    }
    chart.shown = data[0].length;
    if (candles) {
      renderCandleText();
    } else {
      renderChartText(points);
    }
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
    state.el.chartNote.textContent = notes.join(" ");
    const last = points[points.length - 1];
    const digits = tc.decimals.of(chart.symbol);
    renderLast(last ? last.p : null);
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

  function renderLast(price) {
    // The row's text keeps the exchange's own digits; the chart only has the number.
    const row = state.rows.get(state.chart.symbol);
    state.el.chartLast.textContent = row && row.priceVal.textContent
      ? row.priceVal.textContent
      : price !== null ? formatPrice(price, tc.decimals.of(state.chart.symbol)) : "";
  }

  function renderCandleText() {
    const chart = state.chart;
    const c = state.candles;
    const spanText = { 60: "last hour", 240: "last 4 hours" }[chart.span] || "all candles held";
    let note;
    if (c.loading) {
      note = "Loading candles…";
    } else if (c.error && !c.list.length) {
      note = "Candles unavailable (" + c.error + "). Line shows the ticker's prices.";
    } else {
      note = c.list.length + " one-minute candles: " + c.fromHistory +
        " from history, then live. Showing the " + spanText + ".";
    }
    state.el.chartNote.textContent = note;
    state.el.chart.dataset.candles = String(c.list.length);
    const shown = tc.candles.visible();
    const last = shown[shown.length - 1];
    renderLast(last ? last.c : null);
    const digits = tc.decimals.of(chart.symbol);
    let summary = chart.symbol + " price, one-minute candles, " + spanText + ": ";
    if (last) {
      const highs = shown.map(function (k) {
        return k.h;
      });
      const lows = shown.map(function (k) {
        return k.l;
      });
      summary += "open " + formatPrice(shown[0].o, digits) +
        ", low " + formatPrice(Math.min.apply(null, lows), digits) +
        ", high " + formatPrice(Math.max.apply(null, highs), digits) +
        ", last close " + formatPrice(last.c, digits) + " in the minute from " + formatClock(last.t);
    } else {
      summary += "no candles yet";
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
    if (chart.style === "candles") {
      return tc.candles.xRange(min, max);
    }
    if (chart.range !== "all") {
      const now = Date.now() / 1000;
      return [now - Number(chart.range), now];
    }
    if (min === null || max === null || min === max) {
      const t = min === null ? Date.now() / 1000 : min;
      return [t - 30, t + 30];
    }
    return [min, max];
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
      hooks: style === "candles" ? { draw: [tc.candles.draw] } : {},
    };
    return new window.uPlot(opts, data, state.el.chart);
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

  function setChartSpan(value) {
    state.chart.span = value;
    core.savePrefs();
    renderChart();
  }

  function setChartStyle(value) {
    state.chart.style = value === "candles" ? "candles" : "line";
    showStyleControls();
    core.savePrefs();
    renderChart();
  }

  function showStyleControls() {
    // Candles have spans of hours, the line ranges of minutes: one set at a time.
    const candles = state.chart.style === "candles";
    state.el.chartSpan.hidden = !candles;
    state.el.chartRange.hidden = candles;
  }

  Object.assign(tc.priceChart, {
    chartPanelOpen: chartPanelOpen,
    openChart: openChart,
    closeChart: closeChart,
    chartTick: chartTick,
    scheduleChart: scheduleChart,
    setChartRange: setChartRange,
    setChartSpan: setChartSpan,
    setChartStyle: setChartStyle,
    showStyleControls: showStyleControls,
  });
})(window.tickcast);
