/*
 * tickcast live dashboard: sequence-gap counting, and the resume point of a WebSocket.
 *
 * `seq` is stamped once per published message by the server's ingest and is global across
 * symbols and streams (ticks, trades, candles, books, their diffs and statuses), so it is
 * contiguous only for a client that receives every stream the server serves. Gaps are
 * therefore counted only while the page is subscribed to all of them: every symbol of
 * /symbols (its defaults are all of them) and every other stream /streams lists; otherwise
 * the panel says "not checked" and why. A server that carries books never qualifies: the
 * page follows the selected symbol's SYMBOL@book (the top levels, published at most every
 * 100 ms and conflated for a slow client), never the SYMBOL@depth diffs that take seqs
 * between them, so their seqs could only ever show false gaps.
 * The baseline is the first live tick after the snapshot (snapshot ticks carry each
 * symbol's latest seq, which are not contiguous), a `reset`'s `last_seq`,
 * or, across a resumed reconnect, the last seq seen before the drop: the server promises
 * every missed tick on a resume, so a hole there is a real gap. A throttled stream
 * (?throttle_ms=) or a conflating server drops ticks on purpose: those are counted too,
 * because the page did miss them.
 */
(function (tc) {
  "use strict";

  const { toNumber } = tc.format;
  const state = tc.core.state;
  const statusView = tc.statusView;

  function seqUnchecked() {
    // Why gaps cannot be counted now: "unknown" (not yet known), "subset" (symbols left
    // out), "other streams" (trades or candles not followed); null when they can.
    if (state.market.on) {
      // `!tickers` merges a slow client's ticks per symbol: a hole there is no loss.
      return "every market";
    }
    // The server's defaults (state.symbols null) are every symbol it serves.
    if (state.symbols !== null) {
      if (state.served === null) {
        return "unknown";
      }
      const all = state.served.every(function (s) {
        return state.symbols.indexOf(s) >= 0;
      });
      if (!all) {
        return "subset";
      }
    }
    const every = tc.follow.followsEveryStream();
    if (every === false) {
      return "other streams";
    }
    // Streams asked for but not yet acknowledged may still be missing messages.
    const asking = Array.from(state.pendingOps.values()).some(function (name) {
      return name.indexOf("@") >= 0;
    });
    return every === null || asking ? "unknown" : null;
  }

  function track(value, snapshot) {
    const seq = toNumber(value);
    if (seq === null) {
      return; // a seed-server style tick: nothing to check
    }
    const s = state.seq;
    s.latest = seq;
    state.resumeSeq = state.resumeSeq === null ? seq : Math.max(state.resumeSeq, seq);
    const checking = seqUnchecked() === null;
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
        statusView.renderStats();
      } else if (seq <= s.last) {
        s.backwards += 1; // a restarted server numbering again from the start
      }
    }
    s.last = seq;
  }

  Object.assign(tc.seq, {
    track: track,
    unchecked: seqUnchecked,
  });
})(window.tickcast);
