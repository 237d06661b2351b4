/*
 * tickcast live dashboard: the streams the page follows beside the table's tickers.
 *
 * The selected symbol's trades, one-minute candles and order book (SPEC §12), each when the
 * server's /streams lists it. Over WebSocket they are subscribed and unsubscribed with ops on the
 * open connection (another symbol selected: the old ones unsubscribed first); over SSE,
 * whose streams are chosen at connect, by connecting again with `?streams=` naming them.
 * After every (re)connect /klines and /trades are fetched again and merged (by open time,
 * by trade id): a resume replays only the streams its URL named, and this refetch fills
 * what a drop missed either way, without duplicates. The book needs no such merge: each
 * SYMBOL@book message is the whole ladder, and a subscription starts with the current one.
 */
(function (tc) {
  "use strict";

  const core = tc.core;
  const state = core.state;

  function streamsFor(symbol) {
    const served = state.follow.served;
    if (!symbol || served === null) {
      return [];
    }
    const names = [symbol + "@trades", symbol + "@kline_" + tc.candles.INTERVAL, symbol + "@book"];
    return names.filter(function (name) {
      return served.indexOf(name) >= 0;
    });
  }

  function sameList(a, b) {
    return a.length === b.length && a.every(function (name, i) {
      return name === b[i];
    });
  }

  function select(symbol) {
    state.follow.symbol = symbol;
    tc.candles.select(symbol);
    tc.tape.select(symbol);
    tc.ladder.select(symbol);
    sync();
  }

  function sync() {
    // Called on every change of what is wanted, and every second (app.js) to catch up.
    state.follow.wanted = streamsFor(state.follow.symbol);
    if (state.transport === "sse") {
      syncSse();
    } else {
      syncWs();
    }
  }

  function syncWs() {
    const f = state.follow;
    if (!tc.connection.wsOpen()) {
      return; // the connection subscribes what is wanted when it opens
    }
    const drop = f.active.filter(function (name) {
      return f.wanted.indexOf(name) < 0;
    });
    const add = f.wanted.filter(function (name) {
      return f.active.indexOf(name) < 0;
    });
    if (drop.length) {
      tc.connection.sendStreamsOp("unsubscribe", drop);
    }
    if (add.length) {
      tc.connection.sendStreamsOp("subscribe", add);
    }
    f.active = f.wanted.slice();
  }

  function nameable() {
    // Streams in the URL replace the server's default symbols: they are named only once
    // the table's own list is known (after the first connection's snapshot).
    // The table of every market names its own stream, `!tickers`: these can be added.
    return state.symbols === null && !state.market.on ? [] : state.follow.wanted;
  }

  function syncSse() {
    if (state.es === null || !state.wanted) {
      return; // the next connection names them
    }
    tc.table.adoptDefaults();
    if (!sameList(state.follow.sse, nameable())) {
      tc.connection.connect(false);
    }
  }

  function urlStreams() {
    // The streams a connection opening now names in its URL.
    state.follow.wanted = streamsFor(state.follow.symbol);
    state.follow.sse = nameable().slice();
    return state.follow.sse;
  }

  function opened() {
    // The connection's URL named these (``urlStreams``): a resume replayed what they
    // missed; the rest are subscribed now and fetched once acked (``subscribed``).
    state.follow.active = state.follow.sse.slice();
    sync();
    subscribed();
  }

  function subscribed() {
    tc.candles.refresh();
    tc.tape.refresh();
    tc.ladder.refresh();
  }

  function fetchStreams() {
    return core.restFetch(core.serverBase().http + "/streams")
      .then(function (response) {
        if (response.status === 404) {
          return { streams: [] }; // a server of tickers only
        }
        return response.ok ? response.json() : null;
      })
      .then(function (body) {
        if (body && Array.isArray(body.streams)) {
          state.follow.tickers = body.streams.indexOf("!tickers") >= 0;
          state.follow.served = body.streams.map(String).filter(function (name) {
            return name.indexOf("@") > 0 && !/@ticker$/.test(name);
          });
          sync();
          tc.statusView.renderStats();
        }
      })
      .catch(function () {
        // Unreachable: tried again on the next connection.
      });
  }

  function followsEveryStream() {
    // Whether this page receives every stream beside the tickers: they share one seq. With
    // books carried it never does: their SYMBOL@depth diffs are not followed here.
    const served = state.follow.served;
    if (served === null) {
      return null;
    }
    const followed = state.transport === "sse" ? state.follow.sse : state.follow.active;
    return served.every(function (name) {
      return followed.indexOf(name) >= 0;
    });
  }

  Object.assign(tc.follow, {
    select: select,
    sync: sync,
    urlStreams: urlStreams,
    opened: opened,
    subscribed: subscribed,
    fetchStreams: fetchStreams,
    followsEveryStream: followsEveryStream,
  });
})(window.tickcast);
