"""The session's delivery of trades and candles (SPEC §12) as plain calls: trades are never
conflated (bounded, then one ``gap`` per stream), candles keep every closed one, and the
ops name streams as well as symbols."""

from __future__ import annotations

import orjson
import pytest

from tickcast.edge.session import Limits, OpOutcome, Session
from tickcast.edge.wire import Wire
from tickcast.errors import CloseReason
from tickcast.messages.kline import Kline
from tickcast.messages.trade import Trade

from ..fakes import FakeTime, RecordingTransport, tick

MINUTE = 60_000
T0 = 1_700_000_040_000  # a minute boundary
SERVED = frozenset(
    {
        "BTCUSDT",
        "ETHUSDT",
        "BTCUSDT@trades",
        "ETHUSDT@trades",
        "BTCUSDT@kline_1m",
        "BTCUSDT@kline_1M",
        "ETHUSDT@kline_1m",
    }
)
STREAMS = ("BTCUSDT", "BTCUSDT@trades", "ETHUSDT@trades", "BTCUSDT@kline_1m")


def trade(symbol: str, seq: int) -> Wire:
    return Wire(Trade(symbol=symbol, trade_id=seq, price="60000.5", qty="0.01", side="buy",
                      timestamp_ms=T0 + seq, seq=seq, source="sim"))  # fmt: skip


def candle(seq: int, open_time: int = T0, *, closed: bool = False, close: str = "2") -> Wire:
    return Wire(Kline(symbol="BTCUSDT", interval="1m", open_time=open_time,
                      close_time=open_time + MINUTE - 1, open="2", high="9", low="1",
                      close=close, volume="3", quote_volume="6", trades=4, closed=closed,
                      seq=seq, source="sim"))  # fmt: skip


def make(
    *,
    limits: Limits | None = None,
    throttle_ms: float = 0.0,
    streams: tuple[str, ...] = STREAMS,
) -> tuple[Session, RecordingTransport, FakeTime]:
    transport = RecordingTransport()
    clock = FakeTime()
    session = Session(
        1,
        transport,
        SERVED,
        limits=limits or Limits(),
        clock=clock,
        schedule=clock.schedule,
        throttle_ms=throttle_ms,
    )
    transport.on_pause = session.paused
    transport.on_resume = session.flush
    session.symbols.update(streams)
    return session, transport, clock


def delivered(transport: RecordingTransport) -> list[tuple[object, ...]]:
    """What the client got, compactly: (stream, seq) for market data, (gap, stream, n),
    and (type,) for a reply."""
    out: list[tuple[object, ...]] = []
    for message in transport.messages():
        if message["type"] == "gap":
            out.append(("gap", message["stream"], message["missed"]))
        elif message["type"] == "tick":
            out.append((message["symbol"], message["seq"]))
        elif "stream" in message:
            out.append((message["stream"], message["seq"]))
        else:
            out.append((message["type"],))
    return out


def op(session: Session, request: object) -> OpOutcome:
    return session.handle_text(orjson.dumps(request).decode())


# -- trades ------------------------------------------------------------------------------


def test_trades_to_a_paused_client_all_arrive_in_order_on_resume() -> None:
    """Under the bound, every trade offered while paused is delivered, in order, no gap."""
    session, transport, _ = make(limits=Limits(trade_queue=5))
    transport.writable = False
    for seq in range(1, 6):
        session.offer(trade("BTCUSDT", seq))
    assert transport.writes == []
    assert session.pending_count == 5
    transport.writable = True
    assert delivered(transport) == [("BTCUSDT@trades", s) for s in range(1, 6)]
    assert (session.dropped, session.conflated, session.pending_count) == (0, 0, 0)
    assert session.ready


def test_past_the_bound_one_gap_with_the_exact_count_then_the_newest_trades() -> None:
    """Past ``trade_queue`` the oldest trades are dropped: the resume sends one gap with
    how many, then the newest ``trade_queue`` trades in order, none twice."""
    session, transport, _ = make(limits=Limits(trade_queue=3))
    transport.writable = False
    for seq in range(1, 11):
        session.offer(trade("BTCUSDT", seq))
    assert session.pending_count == 3
    assert session.dropped == 7
    transport.writable = True
    assert delivered(transport) == [
        ("gap", "BTCUSDT@trades", 7),
        ("BTCUSDT@trades", 8),
        ("BTCUSDT@trades", 9),
        ("BTCUSDT@trades", 10),
    ]
    session.offer(trade("BTCUSDT", 11))
    assert delivered(transport) == [("BTCUSDT@trades", 11)]  # the gap is told once


def test_each_trade_stream_gets_its_own_gap() -> None:
    """Drops are counted per stream: each stream that lost trades gets one gap with its
    own count, before the trades left, which follow in seq order."""
    session, transport, _ = make(limits=Limits(trade_queue=3))
    transport.writable = False
    for seq, symbol in enumerate(["BTCUSDT", "ETHUSDT", "BTCUSDT", "BTCUSDT", "ETHUSDT",
                                  "BTCUSDT", "ETHUSDT"], 1):  # fmt: skip
        session.offer(trade(symbol, seq))
    transport.writable = True
    got = delivered(transport)
    assert sorted(got[:2]) == [("gap", "BTCUSDT@trades", 3), ("gap", "ETHUSDT@trades", 1)]
    assert got[2:] == [("ETHUSDT@trades", 5), ("BTCUSDT@trades", 6), ("ETHUSDT@trades", 7)]
    assert session.dropped == 4


def test_a_flush_cut_short_then_more_drops_gives_a_second_gap() -> None:
    """A resume cut short by another pause sends what it can; trades dropped after that
    are announced by a second gap before the trades that follow them."""
    session, transport, _ = make(limits=Limits(trade_queue=2))
    transport.writable = False
    for seq in range(1, 5):
        session.offer(trade("BTCUSDT", seq))

    def write_then_pause(data: bytes) -> None:
        transport.writes.append(data)
        if orjson.loads(data)["type"] == "trade":
            transport.writable = False

    transport.write = write_then_pause  # type: ignore[method-assign]
    transport.writable = True
    assert delivered(transport) == [("gap", "BTCUSDT@trades", 2), ("BTCUSDT@trades", 3)]
    for seq in range(5, 8):
        session.offer(trade("BTCUSDT", seq))
    del transport.write
    transport.writable = True
    assert delivered(transport) == [
        ("gap", "BTCUSDT@trades", 2),
        ("BTCUSDT@trades", 6),
        ("BTCUSDT@trades", 7),
    ]
    assert session.dropped == 4


def test_trades_ticks_and_candles_offered_while_paused_arrive_in_seq_order() -> None:
    """On resume, queued trades are merged with the held tick and candle in seq order."""
    session, transport, _ = make()
    transport.writable = False
    session.offer(tick("BTCUSDT", 1))
    session.offer(trade("BTCUSDT", 2))
    session.offer(candle(3))
    session.offer(trade("ETHUSDT", 4))
    session.offer(tick("BTCUSDT", 5))  # replaces seq 1
    session.offer(trade("BTCUSDT", 6))
    session.offer(candle(7))  # replaces seq 3: the same open candle
    session.offer(trade("BTCUSDT", 8))
    transport.writable = True
    assert delivered(transport) == [
        ("BTCUSDT@trades", 2),
        ("ETHUSDT@trades", 4),
        ("BTCUSDT", 5),
        ("BTCUSDT@trades", 6),
        ("BTCUSDT@kline_1m", 7),
        ("BTCUSDT@trades", 8),
    ]
    assert session.conflated == 2


def test_a_trade_waits_behind_a_reply_held_for_a_paused_client() -> None:
    """A reply made while paused goes first on resume; the trades queued after it follow."""
    session, transport, _ = make()
    transport.writable = False
    op(session, {"op": "ping", "id": 1})
    session.offer(trade("BTCUSDT", 1))
    transport.writable = True
    messages = transport.messages()
    assert [m["type"] for m in messages] == ["pong", "trade"]


def test_a_throttle_never_delays_a_trade() -> None:
    """Under ``throttle_ms`` ticks wait out their window but trades go out at once, even
    while a tick of the same symbol is held."""
    session, transport, clock = make(throttle_ms=1000)
    session.offer(tick("BTCUSDT", 1))
    session.offer(tick("BTCUSDT", 2))  # held: its window is not over
    session.offer(trade("BTCUSDT", 3))
    session.offer(trade("BTCUSDT", 4))
    assert delivered(transport) == [("BTCUSDT", 1), ("BTCUSDT@trades", 3), ("BTCUSDT@trades", 4)]
    clock.advance(1.0)
    assert delivered(transport) == [("BTCUSDT", 2)]


def test_a_throttled_client_gets_its_queued_trades_on_resume_without_waiting() -> None:
    """A throttled client that was paused gets its trades as soon as it resumes; the
    ticks still inside their window wait for it."""
    session, transport, clock = make(throttle_ms=1000)
    session.offer(tick("BTCUSDT", 1))
    transport.messages()
    transport.writable = False
    session.offer(tick("BTCUSDT", 2))
    session.offer(trade("BTCUSDT", 3))
    transport.writable = True
    assert delivered(transport) == [("BTCUSDT@trades", 3)]
    clock.advance(1.0)
    assert delivered(transport) == [("BTCUSDT", 2)]


def test_a_client_closed_by_a_queued_trade_keeps_no_timer() -> None:
    """A trade sent on resume that puts the client past its buffer limit closes it; the
    tick still waiting out its throttle window does not leave a timer armed behind."""
    session, transport, clock = make(throttle_ms=1000, limits=Limits(client_buffer_bytes=100))
    session.offer(tick("BTCUSDT", 1))
    session.offer(tick("BTCUSDT", 2))  # held: its window is not over
    transport.writable = False
    session.offer(trade("BTCUSDT", 3))
    transport.buffered_bytes = 1000
    transport.writable = True
    assert transport.closed_with is CloseReason.BUFFER_FULL
    assert clock.armed == 0


def test_unsubscribing_drops_held_trades_and_the_pending_gap_of_that_stream() -> None:
    """After unsubscribing a trade stream nothing of it arrives: neither its queued trades
    nor the gap its drops were waiting to report; other streams are untouched."""
    session, transport, _ = make(limits=Limits(trade_queue=2))
    transport.writable = False
    for seq, symbol in enumerate(["BTCUSDT", "ETHUSDT", "BTCUSDT", "BTCUSDT", "ETHUSDT"], 1):
        session.offer(trade(symbol, seq))
    outcome = op(session, {"op": "unsubscribe", "streams": ["BTCUSDT@trades"], "id": 1})
    assert outcome.unsubscribe == ["BTCUSDT@trades"]
    session.unsubscribed(outcome.unsubscribe)
    transport.writable = True
    assert delivered(transport) == [
        ("ack",),
        ("gap", "ETHUSDT@trades", 1),
        ("ETHUSDT@trades", 5),
    ]
    assert session.pending_count == 0


def test_a_gap_survives_unsubscribing_the_stream_whose_trades_were_left() -> None:
    """Dropped trades of one stream are reported even when every trade still queued
    belonged to another stream that the client then unsubscribed: the gap comes on
    resume, before the stream's next trade."""
    session, transport, _ = make(limits=Limits(trade_queue=2))
    transport.writable = False
    session.offer(trade("BTCUSDT", 1))
    session.offer(trade("BTCUSDT", 2))
    session.offer(trade("ETHUSDT", 3))
    session.offer(trade("ETHUSDT", 4))  # BTCUSDT's two were dropped
    session.unsubscribed(["ETHUSDT@trades"])
    transport.writable = True
    session.offer(trade("BTCUSDT", 5))
    assert delivered(transport) == [("gap", "BTCUSDT@trades", 2), ("BTCUSDT@trades", 5)]


def test_an_owed_gap_goes_before_a_trade_offered_just_as_the_client_resumes() -> None:
    """With only a gap owed (the trades left were unsubscribed), a trade offered once the
    transport takes writes again, before its resume callback, still follows its gap."""
    session, transport, _ = make(limits=Limits(trade_queue=2))
    transport.writable = False
    for seq, symbol in enumerate(["BTCUSDT", "BTCUSDT", "ETHUSDT", "ETHUSDT"], 1):
        session.offer(trade(symbol, seq))
    session.unsubscribed(["ETHUSDT@trades"])
    transport.writable_before_resume()
    session.offer(trade("BTCUSDT", 5))
    session.flush()
    assert delivered(transport) == [("gap", "BTCUSDT@trades", 2), ("BTCUSDT@trades", 5)]


def test_a_reset_drops_queued_trades_and_their_gap_counts() -> None:
    """A reset replaces everything held: no queued trade and no gap follows it."""
    session, transport, _ = make(limits=Limits(trade_queue=2))
    transport.writable = False
    for seq in range(1, 6):
        session.offer(trade("BTCUSDT", seq))
    session.reset(b'{"type":"reset"}', 5)
    assert session.pending_count == 0
    transport.writable = True
    assert [m["type"] for m in transport.messages()] == ["reset"]
    session.offer(trade("BTCUSDT", 6))
    assert delivered(transport) == [("BTCUSDT@trades", 6)]


def test_queued_trades_count_in_pending_bytes() -> None:
    """The bytes of queued trades count toward the client's pending output."""
    session, transport, _ = make()
    transport.writable = False
    wire = trade("BTCUSDT", 1)
    session.offer(wire)
    session.offer(trade("BTCUSDT", 2))
    assert session.pending_bytes() == 2 * len(wire.get("json"))


# -- candles -----------------------------------------------------------------------------


def test_a_closed_candle_and_the_next_open_one_both_arrive_closed_first() -> None:
    """The close of a candle is never replaced by the next candle's first update."""
    session, transport, _ = make()
    transport.writable = False
    session.offer(candle(1))
    session.offer(candle(2, closed=True))
    session.offer(candle(3, T0 + MINUTE))
    session.offer(candle(4, T0 + MINUTE, close="3"))
    transport.writable = True
    messages = transport.messages()
    assert [(m["open_time"], m["closed"], m["seq"]) for m in messages] == [
        (T0, True, 2),
        (T0 + MINUTE, False, 4),
    ]


def test_an_open_candle_updated_while_paused_arrives_once_as_its_latest() -> None:
    """Five updates of the open candle while paused: only the last is delivered."""
    session, transport, _ = make()
    transport.writable = False
    for seq in range(1, 6):
        session.offer(candle(seq, close=str(seq + 1)))
    assert session.pending_count == 1
    assert session.conflated == 4
    transport.writable = True
    (message,) = transport.messages()
    assert (message["seq"], message["close"], message["closed"]) == (5, 6, False)


def test_every_closed_candle_held_for_a_paused_client_is_delivered() -> None:
    """Many candles closing while paused each arrive, in order, with their latest values."""
    session, transport, _ = make()
    transport.writable = False
    seq = 0
    for minute in range(4):
        for _ in range(3):
            seq += 1
            session.offer(candle(seq, T0 + minute * MINUTE))
        seq += 1
        session.offer(candle(seq, T0 + minute * MINUTE, closed=True))
    transport.writable = True
    messages = transport.messages()
    assert [(m["open_time"], m["closed"]) for m in messages] == [
        (T0 + minute * MINUTE, True) for minute in range(4)
    ]


def test_a_throttled_candle_stream_keeps_each_closed_candle() -> None:
    """Under a throttle, the close of a candle held in its window survives the next
    candle's updates; both go out when the window ends, the closed one first."""
    session, transport, clock = make(throttle_ms=1000)
    session.offer(candle(1))
    session.offer(candle(2, closed=True))
    session.offer(candle(3, T0 + MINUTE))
    session.offer(candle(4, T0 + MINUTE, close="3"))
    assert [m["seq"] for m in transport.messages()] == [1]
    clock.advance(1.0)
    assert [(m["seq"], m["closed"]) for m in transport.messages()] == [(2, True), (4, False)]


def test_unsubscribing_a_candle_stream_drops_its_held_candles() -> None:
    """Held candles of an unsubscribed stream, closed ones too, are not delivered."""
    session, transport, _ = make()
    transport.writable = False
    session.offer(candle(1, closed=True))
    session.offer(candle(2, T0 + MINUTE))
    session.offer(tick("BTCUSDT", 3))
    session.unsubscribed(["BTCUSDT@kline_1m"])
    assert session.pending_count == 1
    transport.writable = True
    assert delivered(transport) == [("BTCUSDT", 3)]


# -- ops with stream names ---------------------------------------------------------------


def test_subscribe_with_streams_acks_them_under_streams() -> None:
    """A subscribe naming ``streams`` is acked with their canonical names under
    ``streams``; the symbol is read case-insensitively, the kind is not."""
    session, transport, _ = make(streams=())
    request = {"op": "subscribe", "streams": ["btcusdt@trades", "BTCUSDT@kline_1m"], "id": 3}
    outcome = op(session, request)
    assert outcome.subscribe == ["BTCUSDT@trades", "BTCUSDT@kline_1m"]
    assert transport.messages() == [
        {
            "type": "ack",
            "id": 3,
            "op": "subscribe",
            "streams": ["BTCUSDT@trades", "BTCUSDT@kline_1m"],
        }
    ]


def test_a_ticker_stream_name_is_the_bare_symbol() -> None:
    """``BTCUSDT@ticker`` subscribes the same stream as ``BTCUSDT``: it is not new twice."""
    session, _, _ = make(streams=("BTCUSDT",))
    outcome = op(session, {"op": "subscribe", "streams": ["btcusdt@ticker"], "id": 1})
    assert outcome.subscribe == []


def test_unsubscribe_and_list_with_streams() -> None:
    """Unsubscribe by stream name acks under ``streams``; list names tickers both ways."""
    session, transport, _ = make(streams=("BTCUSDT", "BTCUSDT@trades", "BTCUSDT@kline_1m"))
    outcome = op(session, {"op": "unsubscribe", "streams": ["BTCUSDT@trades"], "id": 1})
    assert outcome.unsubscribe == ["BTCUSDT@trades"]
    session.symbols.difference_update(outcome.unsubscribe)  # the edge's part
    op(session, {"op": "list", "id": 2})
    assert transport.messages() == [
        {"type": "ack", "id": 1, "op": "unsubscribe", "streams": ["BTCUSDT@trades"]},
        {
            "type": "ack",
            "id": 2,
            "op": "list",
            "symbols": ["BTCUSDT"],
            "streams": ["BTCUSDT@kline_1m", "BTCUSDT@ticker"],
        },
    ]


@pytest.mark.parametrize(
    "name",
    [
        "BTCUSDT@nope",
        "@trades",
        "btcusdt@kline_2m",
        "BTCUSDT@Trades",
        "BTCUSDT@kline_",
        "BTCUSDT@kline",
        "BTCUSDT@@trades",
        "!nope",
        "B@trades",
        "SOLUSDT@trades",  # well formed, not served
        "BTC-USDT@trades",
        "A" * 93 + "@trades",  # 100 characters
        "BTCUSDT@" + "x" * 92,
    ],
)
def test_names_that_are_no_served_stream_are_unknown_stream(name: str) -> None:
    """A stream name that is malformed or not served gets one ``unknown_stream`` error
    naming it under ``streams``, and subscribes nothing."""
    session, transport, _ = make(streams=())
    outcome = op(session, {"op": "subscribe", "streams": [name], "id": 1})
    assert outcome == OpOutcome()
    (error,) = transport.messages()
    assert (error["type"], error["id"], error["code"]) == ("error", 1, "unknown_stream")
    assert error["streams"] == [name]
    assert "symbols" not in error
    assert session.symbols == set()


def test_a_long_bare_name_is_an_unknown_symbol() -> None:
    """A bare name (no ``@``), however long, is a symbol: ``unknown_symbol``."""
    session, transport, _ = make(streams=())
    op(session, {"op": "subscribe", "symbols": ["a" * 100], "id": 1})
    (error,) = transport.messages()
    assert (error["code"], error["symbols"]) == ("unknown_symbol", ["A" * 100])


def test_a_mixed_request_subscribes_the_good_stream_and_reports_both_errors() -> None:
    """One good stream, one unknown symbol and one unknown stream: the good one is
    subscribed and acked, and each kind of unknown name gets its own error."""
    session, transport, _ = make(streams=())
    request = {
        "op": "subscribe",
        "symbols": ["NOPEUSDT"],
        "streams": ["ETHUSDT@trades", "ETHUSDT@nope"],
        "id": 9,
    }
    outcome = op(session, request)
    assert outcome.subscribe == ["ETHUSDT@trades"]
    assert transport.messages() == [
        {
            "type": "error",
            "id": 9,
            "code": "unknown_symbol",
            "message": "not served here: NOPEUSDT",
            "symbols": ["NOPEUSDT"],
        },
        {
            "type": "error",
            "id": 9,
            "code": "unknown_stream",
            "message": "not served here: ETHUSDT@nope",
            "streams": ["ETHUSDT@nope"],
        },
        {"type": "ack", "id": 9, "op": "subscribe", "streams": ["ETHUSDT@trades"]},
    ]


def test_unsubscribe_naming_an_unknown_stream_reports_it() -> None:
    """Unsubscribe follows the subscribe rule for stream names too."""
    session, transport, _ = make(streams=("BTCUSDT@trades",))
    outcome = op(session, {"op": "unsubscribe", "streams": ["BTCUSDT@trades", "X@y"], "id": 2})
    assert outcome.unsubscribe == ["BTCUSDT@trades"]
    error, ack = transport.messages()
    assert (error["code"], error["streams"]) == ("unknown_stream", ["X@y"])
    assert ack["streams"] == ["BTCUSDT@trades"]


def test_a_month_and_a_minute_are_different_candle_streams() -> None:
    """``kline_1M`` (a month) and ``kline_1m`` (a minute) are two streams; a candle of one
    held for a paused client never replaces the other's."""
    session, transport, _ = make(streams=())
    outcome = op(session, {"op": "subscribe", "streams": ["BTCUSDT@kline_1M", "BTCUSDT@kline_1m"]})
    assert outcome.subscribe == ["BTCUSDT@kline_1M", "BTCUSDT@kline_1m"]
    transport.messages()
    session.symbols.update(outcome.subscribe)
    outcome = op(session, {"op": "unsubscribe", "streams": ["BTCUSDT@kline_1M"]})
    assert outcome.unsubscribe == ["BTCUSDT@kline_1M"]
    month = Kline(symbol="BTCUSDT", interval="1M", open_time=T0, close_time=T0 + 30 * 86_400_000,
                  open="1", high="1", low="1", close="1", volume="0", quote_volume="0",
                  trades=0, closed=False, seq=2, source="sim")  # fmt: skip
    transport.writable = False
    session.offer(candle(1))
    session.offer(Wire(month))
    assert session.pending_count == 2


def test_an_ethusdt_month_stream_not_served_is_unknown() -> None:
    """An interval served for one symbol is not served for another by that alone."""
    session, transport, _ = make(streams=())
    op(session, {"op": "subscribe", "streams": ["ETHUSDT@kline_1M"]})
    (error,) = transport.messages()
    assert error["code"] == "unknown_stream"


def test_max_subscriptions_counts_streams() -> None:
    """Each stream of a symbol counts as one subscription toward the limit."""
    session, transport, _ = make(limits=Limits(max_subscriptions=3), streams=("BTCUSDT",))
    outcome = op(
        session,
        {"op": "subscribe", "streams": ["BTCUSDT@trades", "BTCUSDT@kline_1m", "ETHUSDT"]},
    )
    assert outcome == OpOutcome()
    assert transport.messages()[0]["code"] == "too_many_subscriptions"
    outcome = op(session, {"op": "subscribe", "streams": ["BTCUSDT@trades", "BTCUSDT@kline_1m"]})
    assert outcome.subscribe == ["BTCUSDT@trades", "BTCUSDT@kline_1m"]
