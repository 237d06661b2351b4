/*
 * tickcast live dashboard: number, time and text formatting helpers. Pure functions, apart
 * from setText, which writes an element's text only when it changes.
 */
(function (tc) {
  "use strict";

  const LOCALE = "en-US";
  // Quote assets, longest first, to split BTCUSDT into BTC / USDT for volume units.
  const QUOTES = [
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "EURI", "BTC", "ETH", "BNB", "EUR",
    "GBP", "TRY", "BRL", "JPY", "AUD", "DAI", "XRP", "TRX", "DOGE", "USD",
  ].sort(function (a, b) {
    return b.length - a.length;
  });

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

  function priceFloor(value) {
    // Fewer decimals than this look wrong for a price: 2, or 4 below 1.
    return Math.abs(Number(value)) >= 1 ? 2 : 4;
  }

  function priceDigits(value, known) {
    // A symbol's own decimals when known (table.js learns them); else at least the floor
    // and every digit the exchange sent, up to 8.
    if (known !== null && known !== undefined) {
      return known;
    }
    return Math.min(8, Math.max(priceFloor(value), fractionDigits(value)));
  }

  // One formatter per set of options, built once: Number.toLocaleString with options builds
  // a new one on every call, and a table of every market formats thousands of values.
  const formatters = new Map();

  function formatter(key, options) {
    let format = formatters.get(key);
    if (format === undefined) {
      format = new Intl.NumberFormat(LOCALE, options);
      formatters.set(key, format);
    }
    return format;
  }

  function formatFixed(n, digits) {
    return formatter(digits, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(n);
  }

  function formatPrice(value, known) {
    const n = toNumber(value);
    return n === null ? "–" : formatFixed(n, priceDigits(value, known));
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
    return formatter("compact", { notation: "compact", maximumFractionDigits: 2 }).format(n);
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

  function median(values) {
    const sorted = values.slice().sort(function (a, b) {
      return a - b;
    });
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
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

  function setText(el, text) {
    if (el.textContent !== text) {
      el.textContent = text;
    }
  }

  Object.assign(tc.format, {
    LOCALE: LOCALE,
    toNumber: toNumber,
    fractionDigits: fractionDigits,
    priceFloor: priceFloor,
    formatFixed: formatFixed,
    formatPrice: formatPrice,
    formatPercent: formatPercent,
    formatCompact: formatCompact,
    formatClock: formatClock,
    formatAgo: formatAgo,
    signClass: signClass,
    arrow: arrow,
    median: median,
    splitSymbol: splitSymbol,
    setText: setText,
  });
})(window.tickcast);
