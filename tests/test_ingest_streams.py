"""Ingest of trades and candles (SPEC §12): the carried symbols only, in order, stamped
from the one seq shared with ticks, and published with the origin the Redis hub dedupes on."""

from __future__ import annotations

from tickcast.hub.base import Origin
from tickcast.hub.memory import MemoryHub
from tickcast.ingest import Ingest, kline_order
from tickcast.messages.kline import Kline
from tickcast.messages.message import Message
from tickcast.messages.tick import Tick
from tickcast.messages.trade import Trade
from tickcast.upstream.normalize import KlineEvent, TradeEvent, Update

MINUTE = 60_000


class RecordingHub(MemoryHub):
    """A memory hub that also remembers each message published with its origin."""

    def __init__(self) -> None:
        super().__init__(history_size=100)
        self.origins: list[tuple[Message, Origin | None]] = []

    def publish(self, message: Message, origin: Origin | None = None) -> None:
        self.origins.append((message, origin))
        super().publish(message, origin)


def make() -> tuple[Ingest, RecordingHub]:
    hub = RecordingHub()
    return Ingest(hub, ["BTCUSDT", "ETHUSDT"], carried=["BTCUSDT"]), hub


def ticker(order: int, symbol: str = "BTCUSDT") -> Update:
    return Update(symbol, "ticker", order, order, {"last_price": "1", "change_percent": "1"})


def trade_event(trade_id: int, symbol: str = "BTCUSDT", history: int = 1) -> TradeEvent:
    return TradeEvent(symbol, trade_id, "60000.5", "0.01", "sell", 1_000 + trade_id, 2_000, history)


def candle_event(
    open_time: int, event_time: int, closed: bool = False, history: int = 1
) -> KlineEvent:
    return KlineEvent(
        "BTCUSDT", "1m", open_time, open_time + MINUTE - 1, "1", "2", "1", "2", "3", "6", 4,
        closed, event_time, history,
    )  # fmt: skip


def test_trades_and_candles_share_the_one_seq_with_ticks() -> None:
    """Ticks, trades and candles, interleaved, get consecutive seqs from one count."""
    ingest, hub = make()
    base = hub.last_seq()
    published = [
        ingest.apply(ticker(1), "binance"),
        ingest.apply(trade_event(10), "binance"),
        ingest.apply(candle_event(0, 5), "binance"),
        ingest.apply(ticker(2, "ETHUSDT"), "binance"),
        ingest.apply(trade_event(11), "binance"),
        ingest.apply(candle_event(0, 6), "binance"),
    ]
    assert [type(m).__name__ for m in published] == [
        "Tick", "Trade", "Kline", "Tick", "Trade", "Kline"
    ]  # fmt: skip
    assert [m.seq - base for m in published if m is not None] == [1, 2, 3, 4, 5, 6]
    assert [m.seq for m, _ in hub.origins] == [m.seq for m in published if m is not None]
    assert hub.last_seq() == base + 6


def test_a_published_trade_and_candle_carry_the_events_values() -> None:
    """The trade and the candle published say what the event said, with the source."""
    ingest, hub = make()
    trade = ingest.apply(trade_event(10), "sim")
    assert isinstance(trade, Trade)
    assert (trade.key, trade.trade_id, trade.price, trade.qty, trade.side) == (
        "BTCUSDT@trades", 10, "60000.5", "0.01", "sell"
    )  # fmt: skip
    assert (trade.timestamp_ms, trade.source) == (1_010, "sim")
    candle = ingest.apply(candle_event(0, 5, closed=True), "sim")
    assert isinstance(candle, Kline)
    assert (candle.key, candle.open_time, candle.close_time, candle.closed) == (
        "BTCUSDT@kline_1m", 0, MINUTE - 1, True
    )  # fmt: skip
    assert hub.latest("BTCUSDT@kline_1m") is candle


def test_trades_and_candles_of_a_symbol_not_carried_are_ignored() -> None:
    """A served symbol whose streams are not carried gets its ticks, not its trades."""
    ingest, hub = make()
    assert ingest.apply(trade_event(1, "ETHUSDT"), "binance") is None
    assert ingest.apply(trade_event(1, "DOGEUSDT"), "binance") is None
    assert ingest.counts["ignored_symbol"] == 2
    assert isinstance(ingest.apply(ticker(1, "ETHUSDT"), "binance"), Tick)
    assert [type(m) for m, _ in hub.origins] == [Tick]


def test_stale_trades_are_counted_and_not_published() -> None:
    """A trade id at or below the last one of its history is refused, counted, and takes
    no seq."""
    ingest, hub = make()
    base = hub.last_seq()
    for trade_id in (5, 6, 6, 4, 7):
        ingest.apply(trade_event(trade_id), "binance")
    trades = [m for m, _ in hub.origins if isinstance(m, Trade)]
    assert [t.trade_id for t in trades] == [5, 6, 7]
    assert [t.seq - base for t in trades] == [1, 2, 3]
    assert ingest.order.counts["stale_trade"] == 2
    assert ingest.counts["published"] == 3


def test_late_and_stale_candles_are_counted_and_not_published() -> None:
    """An update of a closed or older candle, or one older than the last, is refused and
    counted; the next candle still passes."""
    ingest, hub = make()
    assert ingest.apply(candle_event(0, 10), "binance") is not None
    assert ingest.apply(candle_event(0, 9), "binance") is None  # older than the last
    assert ingest.apply(candle_event(0, 60, closed=True), "binance") is not None
    assert ingest.apply(candle_event(0, 61), "binance") is None  # after its close
    assert ingest.apply(candle_event(MINUTE, 62), "binance") is not None
    assert ingest.apply(candle_event(0, 63, closed=True, history=2), "binance") is None
    assert ingest.order.counts == {"stale_candle": 1, "late_candle": 2}
    assert [(m.open_time, m.closed) for m, _ in hub.origins if isinstance(m, Kline)] == [
        (0, False), (0, True), (MINUTE, False)
    ]  # fmt: skip


def test_origins_name_the_upstream_stream_history_and_order() -> None:
    """A trade's origin is (aggTrade, history, trade id); a candle's is (kline_<i>,
    history, kline_order), its close ordered after an update of the same millisecond."""
    ingest, hub = make()
    ingest.apply(trade_event(42, history=3), "binance")
    ingest.apply(candle_event(0, 1_000, history=3), "binance")
    closing = candle_event(0, 1_000, closed=True, history=3)
    ingest.apply(closing, "binance")
    origins = [origin for _, origin in hub.origins]
    assert origins == [
        Origin("aggTrade", 3, 42),
        Origin("kline_1m", 3, 2_000),
        Origin("kline_1m", 3, 2_001),
    ]
    assert kline_order(closing) == 2_001
