"""Ingest: dedupe, merge, sequencing, publishing."""

from __future__ import annotations

from tickcast.hub.memory import MemoryHub
from tickcast.ingest import Ingest, StreamOrder
from tickcast.messages.tick import Tick
from tickcast.upstream.normalize import KlineEvent, TradeEvent, Update


def ticker(symbol: str, order: int, price: str) -> Update:
    return Update(symbol, "ticker", order, order, {"last_price": price, "change_percent": "1"})


def make() -> tuple[Ingest, MemoryHub, list[Tick]]:
    hub = MemoryHub(history_size=10)
    seen: list[Tick] = []
    hub.subscribe(seen.append)
    return Ingest(hub, ["BTCUSDT", "ETHUSDT"]), hub, seen


def test_seq_increases_across_symbols() -> None:
    """Every published tick gets the next seq, whatever its symbol."""
    ingest, hub, seen = make()
    base = hub.last_seq()  # this run's floor (see MemoryHub)
    ingest.apply(ticker("BTCUSDT", 1, "1"), "sim")
    ingest.apply(ticker("ETHUSDT", 1, "2"), "sim")
    ingest.apply(ticker("BTCUSDT", 2, "3"), "sim")
    assert [t.seq - base for t in seen] == [1, 2, 3]
    latest = hub.latest("BTCUSDT")
    assert latest is not None
    assert latest.last_price == "3"


def test_duplicates_and_older_events_are_dropped() -> None:
    """The same event from two connections is published once; an older one never."""
    ingest, _hub, seen = make()
    for order in (5, 5, 4, 6, 6):
        ingest.apply(ticker("BTCUSDT", order, str(order)), "binance")
    assert [t.last_price for t in seen] == ["5", "6"]
    assert ingest.counts["duplicates"] == 3


def test_dedupe_is_per_source_and_kind() -> None:
    """Orders of different kinds or sources never shadow each other."""
    ingest, _hub, seen = make()
    ingest.apply(ticker("BTCUSDT", 100, "1"), "sim")
    ingest.apply(Update("BTCUSDT", "bookTicker", 3, 7, {"bid": "1", "ask": "2"}), "sim")
    ingest.apply(ticker("BTCUSDT", 50, "2"), "binance")
    assert len(seen) == 3


def test_forget_source_accepts_restarted_ids() -> None:
    """After forget_source, a source whose ids restarted is accepted again."""
    ingest, _hub, seen = make()
    ingest.apply(ticker("BTCUSDT", 100, "1"), "replay")
    ingest.forget_source("replay")
    ingest.apply(ticker("BTCUSDT", 1, "2"), "replay")
    assert [t.last_price for t in seen] == ["1", "2"]


def test_book_update_merges_into_the_latest_state() -> None:
    """A bookTicker update keeps the last price and changes bid/ask."""
    ingest, _hub, seen = make()
    ingest.apply(ticker("BTCUSDT", 1, "10"), "sim")
    ingest.apply(Update("BTCUSDT", "bookTicker", 1, 99, {"bid": "9.5", "ask": "10.5"}), "sim")
    last = seen[-1]
    assert (last.last_price, last.bid, last.ask, last.timestamp_ms) == ("10", "9.5", "10.5", 99)


def test_nothing_is_published_before_a_last_price() -> None:
    """A symbol's book updates are held until its first price, then merged into it."""
    ingest, hub, seen = make()
    base = hub.last_seq()
    ingest.apply(Update("ETHUSDT", "bookTicker", 1, 5, {"bid": "1", "ask": "2"}), "sim")
    assert seen == []
    ingest.apply(ticker("ETHUSDT", 6, "1.5"), "sim")
    assert (seen[0].seq - base, seen[0].bid, seen[0].last_price) == (1, "1", "1.5")


def test_unserved_symbols_are_ignored() -> None:
    """Updates for symbols not configured are counted and dropped."""
    ingest, _hub, seen = make()
    assert ingest.apply(ticker("DOGEUSDT", 1, "1"), "sim") is None
    assert seen == []
    assert ingest.counts["ignored_symbol"] == 1


def book(symbol: str, order: int, bid: str, ask: str, at_ms: int, history: int = 0) -> Update:
    return Update(symbol, "bookTicker", order, at_ms, {"bid": bid, "ask": ask}, history)


def full_ticker(order: int, price: str, bid: str, ask: str) -> Update:
    values = {"last_price": price, "change_percent": "1", "high": price, "bid": bid, "ask": ask}
    return Update("BTCUSDT", "ticker", order, order, values)


def test_a_new_source_never_carries_the_previous_sources_fields() -> None:
    """A live book update after simulated prices is held until live sends a price; the
    published live tick carries no simulated value, and the reverse holds too."""
    ingest, hub, seen = make()
    ingest.apply(full_ticker(100, "50", "49", "51"), "sim")
    assert ingest.apply(book("BTCUSDT", 7, "60000", "60001", 150), "binance") is None
    latest = hub.latest("BTCUSDT")
    assert latest is not None and (latest.source, latest.last_price) == ("sim", "50")
    ingest.apply(ticker("BTCUSDT", 200, "60000.5"), "binance")
    live = seen[-1]
    assert (live.source, live.last_price, live.bid, live.ask) == (
        "binance",
        "60000.5",
        "60000",
        "60001",
    )
    assert live.high is None  # the simulator's high is not the exchange's
    ingest.apply(ticker("BTCUSDT", 300, "51"), "sim")
    back = seen[-1]
    assert (back.source, back.last_price, back.bid, back.ask) == ("sim", "51", None, None)


def test_book_quotes_win_over_the_tickers_older_bid_ask() -> None:
    """With bookTicker on, bid/ask come from it: a later 24h ticker's b/a (a 1 s old
    snapshot) does not put them back, and timestamp_ms never goes backwards."""
    ingest, _hub, seen = make()
    ingest.apply(full_ticker(1_000, "10", "9", "11"), "binance")
    ingest.apply(book("BTCUSDT", 5, "9.9", "10.1", 1_500), "binance")
    ingest.apply(full_ticker(1_400, "10.05", "9", "11"), "binance")
    last = seen[-1]
    assert (last.last_price, last.bid, last.ask) == ("10.05", "9.9", "10.1")
    assert [t.timestamp_ms for t in seen] == [1_000, 1_500, 1_500]
    ingest.apply(book("BTCUSDT", 6, "10", "10.2", 1_600), "binance")
    assert (seen[-1].bid, seen[-1].timestamp_ms) == ("10", 1_600)


def test_a_new_history_restarts_dedupe_but_a_rotation_overlap_does_not() -> None:
    """Updates of the same history are deduplicated (the rotation overlap); an update of a
    new history (a restarted exchange) is accepted even though its id went backwards."""
    ingest, _hub, seen = make()
    ingest.apply(ticker("BTCUSDT", 1, "10"), "sim")
    for order in (500, 501, 501, 500):
        ingest.apply(book("BTCUSDT", order, f"9.{order}", "11", 2, history=1), "sim")
    assert [t.bid for t in seen[1:]] == ["9.500", "9.501"]
    ingest.apply(book("BTCUSDT", 3, "8", "12", 3, history=2), "sim")
    assert seen[-1].bid == "8"
    assert ingest.counts["dedupe_resets"] == 1
    assert ingest.counts["duplicates"] == 2


# -- the order of trades and candles ----------------------------------------------------


def trade_event(trade_id: int, history: int = 1, symbol: str = "BTCUSDT") -> TradeEvent:
    return TradeEvent(symbol, trade_id, "60000.5", "0.01", "buy", 1_000, 1_000, history)


def candle_event(
    open_time: int, event_time: int, closed: bool = False, interval: str = "1m"
) -> KlineEvent:
    return KlineEvent(
        "BTCUSDT", interval, open_time, open_time + 59_999, "1", "2", "1", "2", "3", "6", 4,
        closed, event_time,
    )  # fmt: skip


def test_trade_ids_only_go_up_within_a_history() -> None:
    """A trade seen again (a rotation's overlap) or an id going back is refused and
    counted; another symbol, another source or a fresh history is its own order."""
    order = StreamOrder()
    assert order.trade(trade_event(10), "binance")
    assert order.trade(trade_event(11), "binance")
    assert not order.trade(trade_event(11), "binance")
    assert not order.trade(trade_event(5), "binance")
    assert order.counts["stale_trade"] == 2
    assert order.trade(trade_event(3, symbol="ETHUSDT"), "binance")
    assert order.trade(trade_event(10), "sim")
    assert order.trade(trade_event(1, history=2), "binance")  # a restarted exchange
    assert order.trade(trade_event(2, history=2), "binance")


def test_a_candle_takes_updates_until_it_closes_and_never_after() -> None:
    """Updates of the open candle pass in time order; its close passes once; a late
    update of a closed or older candle is refused, even on a new connection."""
    order = StreamOrder()
    minute = 60_000
    assert order.candle(candle_event(0, 2_000), "binance")
    assert order.candle(candle_event(0, 4_000), "binance")
    assert not order.candle(candle_event(0, 3_000), "binance")  # older than the last
    assert order.candle(candle_event(0, 60_000, closed=True), "binance")
    assert not order.candle(candle_event(0, 60_001, closed=True), "binance")  # closed twice
    assert not order.candle(candle_event(0, 60_002), "binance")
    assert order.candle(candle_event(minute, 62_000), "binance")
    assert not order.candle(candle_event(0, 62_500, closed=True), "binance")  # an old candle
    assert order.counts == {"stale_candle": 1, "late_candle": 3}
    assert order.candle(candle_event(0, 1_000, interval="5m"), "binance")  # its own series
