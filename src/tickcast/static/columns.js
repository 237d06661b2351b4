/*
 * tickcast live dashboard: which columns of the prices table fit.
 *
 * Columns give way, least important first, only when the table would be wider than the
 * room it has. The room is measured, not guessed from the window's width: it depends on
 * the fonts, on the digits of the prices and on whether the chart takes part of the
 * screen. Symbol, price, change, age and remove always stay; when even they do not fit,
 * the table scrolls sideways inside its frame (never the page).
 */
(function (tc) {
  "use strict";

  const state = tc.core.state;

  // Least important first: the trend is in the chart, quote volume beside base volume.
  const DROP_ORDER = [["spark"], ["qvolume"], ["high", "low"], ["bid", "ask"], ["volume"], ["spread"]];

  let frame = null;
  let lastRoom = -1;

  function overflows() {
    const wrap = state.el.tableWrap;
    return wrap.scrollWidth > wrap.clientWidth;
  }

  function hide(count) {
    const names = [];
    DROP_ORDER.slice(0, count).forEach(function (group) {
      names.push.apply(names, group);
    });
    state.el.table.dataset.hide = names.join(" ");
  }

  function fit() {
    frame = null;
    lastRoom = state.el.tableWrap.clientWidth;
    if (lastRoom === 0) {
      return; // not laid out (hidden): nothing to measure against
    }
    // From every column down: each step forces a layout, but within one frame, so the
    // page never paints a state in between.
    let dropped = 0;
    hide(0);
    while (dropped < DROP_ORDER.length && overflows()) {
      dropped += 1;
      hide(dropped);
    }
    state.columnsDropped = dropped;
  }

  function scheduleFit() {
    if (frame === null) {
      frame = requestAnimationFrame(fit);
    }
  }

  function checkFit() {
    // Wider values (more digits, a longer age) can push the table past its room.
    if (overflows()) {
      scheduleFit();
    }
  }

  function watch() {
    // Fitting changes the table, never its frame's width, so observing the frame cannot
    // loop; only a change of width calls for a new fit (rows change the height).
    const observer = new ResizeObserver(function () {
      if (state.el.tableWrap.clientWidth !== lastRoom) {
        scheduleFit();
      }
    });
    observer.observe(state.el.tableWrap);
    scheduleFit();
  }

  Object.assign(tc.columns, {
    DROP_ORDER: DROP_ORDER,
    watch: watch,
    scheduleFit: scheduleFit,
    checkFit: checkFit,
  });
})(window.tickcast);
