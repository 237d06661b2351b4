"""Trades, ticks and candles through one session on arbitrary sequences of offers, pauses,
resumes cut short and an unsubscribe (hypothesis), checked against SPEC §12's rules.

The test plays the fan-out (it offers each message to the session) and the transport (it
pauses, resumes, and may pause again after a few writes). At the end the client resumes
for good and what it received must be: every market message once, in seq order; the
trades of each stream an in-order subsequence of those offered, each hole announced by
gaps before the trade after it, the gaps adding up to exactly the trades missing; every
closed candle; and each stream's latest tick and candle.
"""

from __future__ import annotations

import json
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from tickcast.edge.session import Limits, Session
from tickcast.edge.wire import Wire

from ..fakes import FakeTime, RecordingTransport, tick
from .test_session_streams import MINUTE, SERVED, T0, candle, trade

BTC_TRADES, ETH_TRADES = "BTCUSDT@trades", "ETHUSDT@trades"
CANDLES = "BTCUSDT@kline_1m"

actions = st.lists(
    st.one_of(
        st.tuples(st.just("trade"), st.sampled_from(["BTCUSDT", "ETHUSDT"])),
        st.tuples(st.just("trade"), st.sampled_from(["BTCUSDT", "ETHUSDT"])),
        st.tuples(st.just("tick"), st.just("BTCUSDT")),
        st.tuples(st.just("candle"), st.booleans()),
        st.tuples(st.just("pause"), st.none()),
        st.tuples(st.just("pause"), st.none()),
        st.tuples(st.just("resume"), st.none()),
        st.tuples(st.just("resume_short"), st.integers(min_value=1, max_value=4)),
        st.tuples(st.just("unsubscribe"), st.just(ETH_TRADES)),
    ),
    min_size=8,
    max_size=80,
)


class FlakyTransport(RecordingTransport):
    """A recording transport that may stop taking writes again after ``budget`` of them,
    as a socket does when its buffers fill in the middle of a flush."""

    def __init__(self) -> None:
        super().__init__()
        self.budget: int | None = None

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.budget is not None:
            self.budget -= 1
            if self.budget <= 0:
                self.budget = None
                self.writable = False


class Feed:
    """What the test offered, by stream, and the candle being built."""

    def __init__(self) -> None:
        self.seq = 0
        self.trades: dict[str, list[int]] = defaultdict(list)
        self.last_tick = 0
        self.open_time = T0
        self.candle_closed = False
        self.closed_candles: list[int] = []
        self.last_candle: dict[int, int] = {}  # open_time -> seq of its latest update

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def trade(self, symbol: str) -> Wire:
        seq = self.next_seq()
        self.trades[f"{symbol}@trades"].append(seq)
        return trade(symbol, seq)

    def tick(self) -> Wire:
        self.last_tick = self.next_seq()
        return tick("BTCUSDT", self.last_tick)

    def candle(self, closes: bool) -> Wire:
        if self.candle_closed:
            self.open_time += MINUTE
            self.candle_closed = False
        seq = self.next_seq()
        self.last_candle[self.open_time] = seq
        if closes:
            self.candle_closed = True
            self.closed_candles.append(self.open_time)
        return candle(seq, self.open_time, closed=closes)


def run(
    steps: list[tuple[str, object]], trade_queue: int
) -> tuple[Feed, list[dict[str, object]], int | None, Session]:
    transport = FlakyTransport()
    clock = FakeTime()
    session = Session(1, transport, SERVED, limits=Limits(trade_queue=trade_queue),
                      clock=clock, schedule=clock.schedule)  # fmt: skip
    transport.on_pause = session.paused
    transport.on_resume = session.flush
    session.symbols.update({"BTCUSDT", BTC_TRADES, ETH_TRADES, CANDLES})
    feed = Feed()
    received: list[dict[str, object]] = []
    unsubscribed_at: int | None = None
    for action, arg in steps:
        if action == "trade":
            assert isinstance(arg, str)
            if arg == "ETHUSDT" and unsubscribed_at is not None:
                continue  # the fan-out no longer offers it
            session.offer(feed.trade(arg))
        elif action == "tick":
            session.offer(feed.tick())
        elif action == "candle":
            session.offer(feed.candle(bool(arg)))
        elif action == "pause":
            transport.writable = False
        elif action == "resume":
            transport.budget = None
            transport.writable = True
        elif action == "resume_short":
            assert isinstance(arg, int)
            transport.budget = arg
            transport.writable = True
        elif action == "unsubscribe" and unsubscribed_at is None:
            received.extend(transport.messages())
            unsubscribed_at = len(received)
            session.unsubscribed([ETH_TRADES])
    transport.budget = None
    transport.writable = True
    received.extend(transport.messages())
    return feed, received, unsubscribed_at, session


def check_trades(stream: str, offered: list[int], received: list[dict[str, object]]) -> int:
    """The trades of ``stream`` arrive in order, a subsequence of those offered; before
    each trade, gaps have announced at least the trades skipped so far; in the end they
    announce exactly the ones missing (the client has resumed for good: none is held). Returns how many were missing."""
    position = {seq: at for at, seq in enumerate(offered)}
    index = skipped = announced = 0
    for message in received:
        if message.get("stream") != stream:
            continue
        if message["type"] == "gap":
            missed = message["missed"]
            assert isinstance(missed, int) and missed > 0
            announced += missed
            continue
        at = position[message["seq"]]  # type: ignore[index]
        assert at >= index, f"{stream}: seq {message['seq']} out of order or twice"
        skipped += at - index
        index = at + 1
        assert announced >= skipped, f"{stream}: a hole before seq {message['seq']} untold"
    skipped += len(offered) - index  # dropped at the end, with no trade after them
    assert announced == skipped, f"{stream}: gaps told {announced}, {skipped} missing"
    return skipped


@settings(max_examples=500, deadline=None)
@given(steps=actions, trade_queue=st.integers(min_value=1, max_value=4))
def test_trades_candles_and_ticks_follow_their_rules_whatever_the_client_does(
    steps: list[tuple[str, object]], trade_queue: int
) -> None:
    """Whatever the order of offers, pauses, short resumes and an unsubscribe: market
    messages arrive once and in seq order, trade holes are told exactly by gaps, every
    closed candle and each stream's latest value arrive."""
    feed, received, unsubscribed_at, session = run(steps, trade_queue)
    market = [m for m in received if m["type"] in ("tick", "trade", "kline")]
    seqs = [m["seq"] for m in market]
    assert seqs == sorted(set(seqs)), json.dumps(seqs)  # type: ignore[type-var]

    missing = check_trades(BTC_TRADES, feed.trades[BTC_TRADES], received)
    if unsubscribed_at is None:
        missing += check_trades(ETH_TRADES, feed.trades[ETH_TRADES], received)
        assert session.dropped == missing
    else:
        after = received[unsubscribed_at:]
        assert not [m for m in after if m.get("stream") == ETH_TRADES]

    candles = [m for m in received if m["type"] == "kline"]
    closed = [m["open_time"] for m in candles if m["closed"]]
    assert closed == feed.closed_candles
    latest = {m["open_time"]: m["seq"] for m in candles}
    assert latest == feed.last_candle

    ticks = [m["seq"] for m in received if m["type"] == "tick"]
    assert (ticks[-1] if ticks else 0) == feed.last_tick
    assert session.pending_count == 0
    assert session.ready
