/*
 * tickcast live dashboard: how many decimals each symbol's prices are shown with.
 *
 * Every price of a symbol is shown with the same number of decimals, so its column keeps
 * its width: the most any of its prices has had (the wire trims trailing zeros: 14.96 is
 * 14.960 of a symbol quoted to 0.001, and the six prices of a tick show the symbol's
 * decimals all but surely), at least 2 (4 while the last price is below 1), and at least
 * what the server's /symbols says (learned from the prices it holds, and fetched before
 * the first connection). It grows, never shrinks.
 */
(function (tc) {
  "use strict";

  const { toNumber, fractionDigits, priceFloor } = tc.format;
  const state = tc.core.state;

  // The fields of a tick that are prices, quoted at the symbol's tick size.
  const PRICE_FIELDS = ["last_price", "open", "high", "low", "bid", "ask"];
  const MAX_DECIMALS = 8;

  function of(symbol) {
    const digits = state.decimals.get(symbol);
    return digits === undefined ? null : digits;
  }

  function raise(symbol, digits) {
    const before = of(symbol);
    if (before === null || digits > before) {
      state.decimals.set(symbol, Math.min(MAX_DECIMALS, digits));
      return true;
    }
    return false;
  }

  function learn(symbol, tick) {
    PRICE_FIELDS.forEach(function (field) {
      if (toNumber(tick[field]) !== null) {
        const floor = field === "last_price" ? priceFloor(tick[field]) : 0;
        raise(symbol, Math.max(floor, fractionDigits(tick[field])));
      }
    });
  }

  function applyServed(served) {
    // /symbols' price_decimals: { "BTCUSDT": 2, ... }; rows already drawn are redrawn.
    if (!served || typeof served !== "object") {
      return;
    }
    Object.keys(served).forEach(function (symbol) {
      const digits = toNumber(served[symbol]);
      if (digits !== null && digits >= 0 && raise(symbol, Math.floor(digits))) {
        const row = state.rows.get(symbol);
        if (row && row.tick) {
          tc.table.renderPrices(row);
        }
      }
    });
  }

  Object.assign(tc.decimals, {
    of: of,
    learn: learn,
    applyServed: applyServed,
  });
})(window.tickcast);
