"""The per-client session as plain calls: a recording transport, a clock the test moves."""

from __future__ import annotations

import orjson
import pytest

from tickcast.edge.session import Backlog, Limits, OpOutcome, Session
from tickcast.errors import CloseReason

from ..fakes import FakeTime, RecordingTransport, tick

SERVED = frozenset({"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"})


def make(
    *,
    limits: Limits | None = None,
    throttle_ms: float = 0.0,
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
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
    session.symbols.update(symbols)
    return session, transport, clock


def pause(transport: RecordingTransport) -> None:
    transport.writable = False
    assert transport.on_pause is not None
    transport.on_pause()


def resume(transport: RecordingTransport) -> None:
    transport.writable = True
    assert transport.on_resume is not None
    transport.on_resume()


def seqs(messages: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(m["symbol"], m["seq"]) for m in messages]


def op(session: Session, request: object) -> OpOutcome:
    return session.handle_text(orjson.dumps(request).decode())


# -- ticks, conflation, flow control ----------------------------------------------------


def test_ticks_are_written_at_once_while_the_transport_is_writable() -> None:
    """A writable transport gets each tick's bytes as soon as it is offered."""
    session, transport, _ = make()
    wire = tick("BTCUSDT", 1)
    session.offer(wire)
    session.offer(tick("ETHUSDT", 2))
    assert transport.writes[0] is wire.get("json")
    assert seqs(transport.messages()) == [("BTCUSDT", 1), ("ETHUSDT", 2)]
    assert session.delivered == 2
    assert session.conflated == 0


def test_a_paused_client_gets_the_latest_value_per_symbol_in_seq_order_on_resume() -> None:
    """While paused only each symbol's newest tick is kept; resume sends them in seq order."""
    session, transport, _ = make(symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"))
    pause(transport)
    for wire in [tick("BTCUSDT", 1), tick("ETHUSDT", 2), tick("BTCUSDT", 3),
                 tick("SOLUSDT", 4), tick("ETHUSDT", 5), tick("BTCUSDT", 6)]:  # fmt: skip
        session.offer(wire)
    assert transport.writes == []
    assert session.pending_count == 3
    assert session.conflated == 3
    resume(transport)
    assert seqs(transport.messages()) == [("SOLUSDT", 4), ("ETHUSDT", 5), ("BTCUSDT", 6)]
    assert session.pending_count == 0
    session.offer(tick("BTCUSDT", 7))
    assert seqs(transport.messages()) == [("BTCUSDT", 7)]


def test_a_flush_stops_when_the_transport_pauses_again_and_resumes_later() -> None:
    """A flush stops when the transport pauses; the rest waits, conflated, for the next resume."""
    session, transport, _ = make(symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"))
    pause(transport)
    session.offer(tick("BTCUSDT", 1))
    session.offer(tick("ETHUSDT", 2))
    session.offer(tick("SOLUSDT", 3))

    def write_then_pause(data: bytes) -> None:
        transport.writes.append(data)
        transport.writable = False

    transport.write = write_then_pause  # type: ignore[method-assign]
    transport.writable = True
    session.flush()
    assert seqs(transport.messages()) == [("BTCUSDT", 1)]
    session.offer(tick("ETHUSDT", 4))
    del transport.write
    resume(transport)
    assert seqs(transport.messages()) == [("SOLUSDT", 3), ("ETHUSDT", 4)]


def test_ticks_offered_while_others_are_held_wait_their_turn() -> None:
    """A tick arriving while older ones are held is queued behind them, not written ahead."""
    session, transport, _ = make()
    pause(transport)
    session.offer(tick("BTCUSDT", 1))
    transport.writable_before_resume()
    session.offer(tick("ETHUSDT", 2))
    assert transport.writes == []
    session.flush()
    assert seqs(transport.messages()) == [("BTCUSDT", 1), ("ETHUSDT", 2)]


def test_control_replies_queue_in_order_before_held_ticks() -> None:
    """Replies made while paused go out first, in order, then the held ticks."""
    session, transport, _ = make()
    pause(transport)
    session.offer(tick("BTCUSDT", 1))
    op(session, {"op": "ping", "id": 1})
    op(session, {"op": "list", "id": 2})
    session.send_message({"type": "status", "upstream": "connected"})
    assert transport.writes == []
    resume(transport)
    out = transport.messages()
    assert [(m["type"], m.get("id")) for m in out] == [
        ("pong", 1),
        ("ack", 2),
        ("status", None),
        ("tick", None),
    ]


def test_a_reply_made_while_ticks_are_held_is_not_overtaken_by_them() -> None:
    """With ticks held and the transport writable, a reply still goes in order with them."""
    session, transport, _ = make()
    pause(transport)
    session.offer(tick("BTCUSDT", 1))
    transport.writable_before_resume()
    op(session, {"op": "ping"})
    session.offer(tick("ETHUSDT", 2))
    session.flush()
    assert [m["type"] for m in transport.messages()] == ["pong", "tick", "tick"]


def test_throttle_holds_ticks_and_flushes_the_latest_on_the_timer() -> None:
    """throttle_ms sends at most one tick per window per symbol: the newest, when it ends."""
    session, transport, clock = make(throttle_ms=500)
    session.offer(tick("BTCUSDT", 1))
    assert seqs(transport.messages()) == [("BTCUSDT", 1)]
    clock.advance(0.1)
    session.offer(tick("BTCUSDT", 2))
    clock.advance(0.1)
    session.offer(tick("BTCUSDT", 3))
    assert transport.writes == []
    assert clock.armed == 1
    clock.advance(0.29)
    assert transport.writes == []
    clock.advance(0.02)
    assert seqs(transport.messages()) == [("BTCUSDT", 3)]
    assert session.conflated == 1
    clock.advance(0.2)
    session.offer(tick("BTCUSDT", 4))
    assert transport.writes == []
    clock.advance(0.31)
    assert seqs(transport.messages()) == [("BTCUSDT", 4)]
    clock.advance(1.0)
    session.offer(tick("BTCUSDT", 5))
    assert seqs(transport.messages()) == [("BTCUSDT", 5)]


def test_throttle_windows_are_per_symbol() -> None:
    """Each symbol's throttle window is its own; both symbols' ticks wait one window at most."""
    session, transport, clock = make(throttle_ms=1000)
    session.offer(tick("BTCUSDT", 1))
    session.offer(tick("ETHUSDT", 2))
    assert seqs(transport.messages()) == [("BTCUSDT", 1), ("ETHUSDT", 2)]
    clock.advance(0.5)
    session.offer(tick("ETHUSDT", 3))
    session.offer(tick("BTCUSDT", 4))
    clock.advance(0.6)
    assert seqs(transport.messages()) == [("ETHUSDT", 3), ("BTCUSDT", 4)]


def test_a_huge_throttle_still_sends_each_symbols_first_tick() -> None:
    """However long the throttle window, a symbol's first tick (its snapshot) goes at once."""
    session, transport, _ = make(throttle_ms=1e308)
    session.offer(tick("BTCUSDT", 1))
    session.offer(tick("ETHUSDT", 2))
    session.offer(tick("BTCUSDT", 3))
    assert seqs(transport.messages()) == [("BTCUSDT", 1), ("ETHUSDT", 2)]


def test_a_tick_waiting_out_its_window_holds_back_no_other_symbol() -> None:
    """Under a long throttle, a symbol whose window is open (a new subscription's snapshot)
    goes out at once although another symbol's tick waits for its own window."""
    session, transport, clock = make(throttle_ms=60_000)
    session.offer(tick("BTCUSDT", 1))
    clock.advance(0.2)
    session.offer(tick("BTCUSDT", 2))  # held for 60 s
    session.offer(tick("ETHUSDT", 3))
    assert seqs(transport.messages()) == [("BTCUSDT", 1), ("ETHUSDT", 3)]
    clock.advance(60)
    assert seqs(transport.messages()) == [("BTCUSDT", 2)]


def test_a_snapshot_sent_outside_offer_starts_the_throttle_window() -> None:
    """A snapshot the stream wrote itself (SSE's opening, a reset) counts as the symbol's
    last send: its next tick waits out the window, latest value wins."""
    session, transport, clock = make(throttle_ms=1000)
    session.sent_now(["BTCUSDT"])
    clock.advance(0.2)
    session.offer(tick("BTCUSDT", 2))
    session.offer(tick("BTCUSDT", 4))
    assert transport.writes == []
    clock.advance(0.79)
    assert transport.writes == []
    clock.advance(0.02)
    assert seqs(transport.messages()) == [("BTCUSDT", 4)]


def test_replies_to_a_throttled_client_are_not_held_by_the_throttle() -> None:
    """Replies go out at once while ticks wait for their throttle window."""
    session, transport, clock = make(throttle_ms=5000)
    session.offer(tick("BTCUSDT", 1))
    clock.advance(0.1)
    session.offer(tick("BTCUSDT", 2))
    transport.messages()
    op(session, {"op": "ping", "id": 1})
    assert transport.messages() == [{"type": "pong", "id": 1}]
    outcome = op(session, {"op": "subscribe", "symbols": ["SOLUSDT"], "id": 2})
    assert outcome.subscribe == ["SOLUSDT"]
    assert [m["type"] for m in transport.messages()] == ["ack"]
    clock.advance(5.0)
    assert seqs(transport.messages()) == [("BTCUSDT", 2)]


def test_unsubscribing_drops_the_held_tick_of_that_symbol() -> None:
    """A tick held for a symbol the client then unsubscribes is never delivered."""
    session, transport, _ = make()
    pause(transport)
    session.offer(tick("BTCUSDT", 1))
    session.offer(tick("ETHUSDT", 2))
    outcome = op(session, {"op": "unsubscribe", "symbols": ["ETHUSDT"], "id": 3})
    session.unsubscribed(outcome.unsubscribe)
    resume(transport)
    out = transport.messages()
    assert [(m["type"], m.get("symbol")) for m in out] == [("ack", None), ("tick", "BTCUSDT")]
    assert session.symbols == {"BTCUSDT"}


def test_unsubscribing_drops_a_throttled_tick_of_that_symbol() -> None:
    """A throttle-held tick of a symbol since unsubscribed is not sent when the window ends."""
    session, transport, clock = make(throttle_ms=500)
    session.offer(tick("ETHUSDT", 1))
    session.offer(tick("ETHUSDT", 2))
    transport.messages()
    session.unsubscribed(["ETHUSDT"])
    clock.advance(1.0)
    assert transport.writes == []


def test_a_held_symbol_goes_out_when_its_own_window_ends() -> None:
    """A symbol falling due before the timer already armed for another is not held until
    that later timer: each held symbol goes out when its own window ends."""
    session, transport, clock = make(throttle_ms=1000)
    session.offer(tick("BTCUSDT", 1))  # t=0: BTCUSDT's window ends at 1.0
    clock.advance(0.5)
    session.offer(tick("ETHUSDT", 2))  # t=0.5: ETHUSDT's window ends at 1.5
    transport.messages()
    clock.advance(0.1)
    session.offer(tick("ETHUSDT", 3))  # held, timer armed for 1.5
    clock.advance(0.1)
    session.offer(tick("BTCUSDT", 4))  # held, due at 1.0: earlier than the armed timer
    clock.advance(0.301)  # t=1.001
    assert seqs(transport.messages()) == [("BTCUSDT", 4)]
    clock.advance(0.5)  # t=1.501
    assert seqs(transport.messages()) == [("ETHUSDT", 3)]
    assert clock.armed == 0


def test_a_flush_on_resume_leaves_the_throttle_timer_cancellable() -> None:
    """The transport resuming while a throttle timer is armed does not lose track of
    that timer: closing the session still cancels it, so nothing stays armed."""
    session, transport, clock = make(throttle_ms=60_000)
    session.offer(tick("BTCUSDT", 1))
    session.offer(tick("BTCUSDT", 2))  # held for a minute
    pause(transport)
    resume(transport)
    assert clock.armed == 1
    session.close(CloseReason.SHUTDOWN)
    assert clock.armed == 0


def test_a_lost_session_cancels_its_timer_and_drops_what_it_holds() -> None:
    """``lost`` (what the edge calls on detach) cancels the throttle timer at once."""
    session, _transport, clock = make(throttle_ms=60_000)
    session.offer(tick("BTCUSDT", 1))
    session.offer(tick("BTCUSDT", 2))
    assert clock.armed == 1
    session.lost()
    assert clock.armed == 0
    assert session.pending_count == 0
    assert not session.ready


# -- resume backlog -------------------------------------------------------------------


class PacedTransport(RecordingTransport):
    """A transport whose flow control pauses once ``high`` bytes wait in it, like a
    socket's, and resumes when the test says the client read them."""

    def __init__(self, high: int) -> None:
        super().__init__()
        self.high = high

    def write(self, data: bytes) -> None:
        super().write(data)
        self.buffered_bytes += len(data)
        if self.buffered_bytes >= self.high:
            self.writable = False

    def client_reads(self) -> None:
        self.buffered_bytes = 0
        self.writable = True


def backlogged(
    missed: list[int], *, high: int, limit: int = 1000, limits: Limits | None = None
) -> tuple[Session, PacedTransport]:
    transport = PacedTransport(high)
    clock = FakeTime()
    ticks = [tick(("BTCUSDT", "ETHUSDT")[seq % 2], seq).message for seq in missed]
    session = Session(
        1, transport, SERVED, limits=limits or Limits(), clock=clock, schedule=clock.schedule
    )
    transport.on_pause = session.paused
    transport.on_resume = session.flush
    session.symbols.update(("BTCUSDT", "ETHUSDT"))
    session.replay(Backlog(ticks, limit))
    return session, transport


def test_a_backlog_is_written_only_as_fast_as_the_transport_takes_it() -> None:
    """A resume's missed ticks are written while the transport is writable and the rest
    waits for it to resume: never all at once, and nothing skipped or repeated."""
    session, transport = backlogged(list(range(1, 201)), high=2000)
    got = [m["seq"] for m in transport.messages()]
    assert 0 < len(got) < 200
    assert transport.buffered_bytes < 2000 + 1200, "at most one piece past the high mark"
    while len(got) < 200:
        transport.client_reads()
        got += [m["seq"] for m in transport.messages()]
    assert got == list(range(1, 201))
    assert session.delivered == 200
    # Caught up (the client read everything): the next live tick goes out at once and
    # the session is back on the fast path.
    transport.client_reads()
    session.offer(tick("BTCUSDT", 201))
    assert [m["seq"] for m in transport.messages()] == [201]
    assert session.ready


def test_live_ticks_wait_behind_the_backlog_and_are_never_conflated() -> None:
    """Ticks arriving during a resume queue behind the missed ones, every one of them (no
    conflation), then the session is back on the fast path."""
    session, transport = backlogged(list(range(1, 51)), high=1000)
    got = [m["seq"] for m in transport.messages()]
    for seq in range(51, 81):  # the same two symbols, many times each
        session.offer(tick(("BTCUSDT", "ETHUSDT")[seq % 2], seq))
        if seq % 7 == 0:
            transport.client_reads()
        got += [m["seq"] for m in transport.messages()]
    while not session.ready:
        transport.client_reads()
        got += [m["seq"] for m in transport.messages()]
    assert got == list(range(1, 81))
    assert session.conflated == 0
    session.offer(tick("BTCUSDT", 81))
    assert [m["seq"] for m in transport.messages()] == [81]


def test_replies_during_a_backlog_are_not_held_behind_it() -> None:
    """A reply made while the backlog drains goes out at the next chance, ahead of it."""
    session, transport = backlogged(list(range(1, 101)), high=1000)
    transport.messages()
    session.send_message({"type": "pong"})
    transport.client_reads()
    assert transport.messages()[0] == {"type": "pong"}


def test_a_backlog_that_passes_its_limit_closes_the_client() -> None:
    """A resuming client that falls further behind than the backlog may hold is closed
    as over its buffer: the backlog never grows without bound, and never conflates."""
    session, transport = backlogged(list(range(1, 11)), high=500, limit=20)
    for seq in range(11, 40):
        session.offer(tick("BTCUSDT", seq))
        if transport.closed_with is not None:
            break
    assert transport.closed_with is CloseReason.BUFFER_FULL
    assert seq < 40


def test_unsubscribing_drops_that_symbols_backlog_ticks() -> None:
    """After an unsubscribe, backlog ticks of that symbol are not delivered either."""
    session, transport = backlogged(list(range(1, 41)), high=400)
    before = transport.messages()
    session.unsubscribed(["ETHUSDT"])
    after: list[dict[str, object]] = []
    while not session.ready:
        transport.client_reads()
        after += transport.messages()
    assert len(before) < 20
    assert [m["seq"] for m in after] == [s for s in range(len(before) + 1, 41) if s % 2 == 0]


# -- slow clients ---------------------------------------------------------------------


def test_a_client_that_accepts_nothing_is_judged_slow_after_the_timeout() -> None:
    """Paused and taking no bytes for slow_client_timeout (not less): SLOW_CLIENT."""
    session, transport, clock = make(limits=Limits(slow_client_timeout=2.0))
    transport.buffered_bytes = 70_000
    pause(transport)
    session.offer(tick("BTCUSDT", 1))
    for _ in range(3):
        clock.advance(0.5)
        assert session.check(clock.now) is None
    clock.advance(0.49)
    assert session.check(clock.now) is None
    clock.advance(0.01)
    assert session.check(clock.now) is CloseReason.SLOW_CLIENT


def test_a_client_that_resumes_in_time_is_not_judged_slow() -> None:
    """Becoming writable again restarts the slow-client clock."""
    session, transport, clock = make(limits=Limits(slow_client_timeout=2.0))
    pause(transport)
    clock.advance(1.5)
    assert session.check(clock.now) is None
    resume(transport)
    assert session.check(clock.now) is None
    pause(transport)
    clock.advance(1.9)
    assert session.check(clock.now) is None
    clock.advance(0.1)
    assert session.check(clock.now) is CloseReason.SLOW_CLIENT


def test_a_paused_client_that_keeps_taking_bytes_is_slow_but_not_gone() -> None:
    """A paused client whose buffer keeps draining is not closed for accepting nothing."""
    session, transport, clock = make(limits=Limits(slow_client_timeout=2.0))
    transport.buffered_bytes = 65_000
    pause(transport)
    for _ in range(20):
        clock.advance(0.5)
        transport.buffered_bytes -= 1000
        assert session.check(clock.now) is None
    for _ in range(3):
        clock.advance(0.5)
        session.check(clock.now)
    clock.advance(0.5)
    assert session.check(clock.now) is CloseReason.SLOW_CLIENT


def test_pending_output_past_the_buffer_limit_is_buffer_full() -> None:
    """The verdict is BUFFER_FULL once transport and held bytes pass client_buffer_bytes."""
    session, transport, clock = make(limits=Limits(client_buffer_bytes=4096))
    transport.buffered_bytes = 4000
    assert session.check(clock.now) is None
    pause(transport)
    session.offer(tick("BTCUSDT", 1))
    assert session.pending_bytes() > 4096
    assert session.check(clock.now) is CloseReason.BUFFER_FULL


def test_a_write_that_leaves_too_much_buffered_closes_the_client() -> None:
    """A write leaving more than the limit buffered is judged BUFFER_FULL at the next check
    (not on the write itself: the fast path does no per-write bookkeeping), and the close
    is reported."""
    session, transport, clock = make(limits=Limits(client_buffer_bytes=1024))
    closes: list[CloseReason] = []
    session.on_close = lambda closed, reason: closes.append(reason)
    transport.buffered_bytes = 2000
    session.offer(tick("BTCUSDT", 1))
    verdict = session.check(clock.now)
    assert verdict is CloseReason.BUFFER_FULL
    session.close(verdict)
    assert transport.closed_with is CloseReason.BUFFER_FULL
    assert session.closed is CloseReason.BUFFER_FULL
    assert closes == [CloseReason.BUFFER_FULL]


def test_a_closed_session_ignores_ticks_and_cancels_its_timer() -> None:
    """After close nothing more is written and no flush timer stays armed."""
    session, transport, clock = make(throttle_ms=500)
    session.offer(tick("BTCUSDT", 1))
    session.offer(tick("BTCUSDT", 2))
    assert clock.armed == 1
    session.close(CloseReason.SHUTDOWN)
    assert transport.closed_with is CloseReason.SHUTDOWN
    assert clock.armed == 0
    transport.writes.clear()
    session.offer(tick("BTCUSDT", 3))
    session.send_message({"type": "pong"})
    clock.advance(1.0)
    assert transport.writes == []
    assert session.check(clock.now) is None


def test_a_client_that_never_reads_its_replies_is_closed() -> None:
    """Control replies held for a paused client are bounded: past the cap it is closed."""
    session, transport, clock = make(limits=Limits(ops_per_second=1e6, ops_burst=10_000))
    pause(transport)
    for i in range(300):
        op(session, {"op": "ping", "id": i})
        clock.advance(0.001)
    assert transport.closed_with is CloseReason.BUFFER_FULL


# -- ops ------------------------------------------------------------------------------


def test_subscribe_acks_with_the_id_and_returns_only_new_symbols() -> None:
    """subscribe acks with the id and normalized symbols and returns only the new ones."""
    session, transport, _ = make(symbols=("BTCUSDT",))
    outcome = op(session, {"op": "subscribe", "symbols": ["btcusdt", " ETHUSDT"], "id": 7})
    assert outcome.subscribe == ["ETHUSDT"]
    assert outcome.unsubscribe == []
    assert outcome.close is None
    assert transport.messages() == [
        {"type": "ack", "id": 7, "op": "subscribe", "symbols": ["BTCUSDT", "ETHUSDT"]}
    ]


def test_subscribe_star_means_every_served_symbol() -> None:
    """``*`` subscribes to every symbol served, sorted."""
    session, transport, _ = make(symbols=())
    outcome = op(session, {"op": "subscribe", "symbols": ["*"], "id": "all"})
    assert outcome.subscribe == sorted(SERVED)
    assert transport.messages()[0]["symbols"] == sorted(SERVED)


def test_a_subscribe_naming_unknown_symbols_subscribes_the_known_ones() -> None:
    """Known symbols are subscribed and acked; the unknown ones (and only they) are named
    in one unknown_symbol error with the op's id, sent before the ack."""
    session, transport, _ = make(symbols=("BTCUSDT",))
    request = {"op": "subscribe", "symbols": ["ETHUSDT", "FOOBAR", "SOLUSDT", "nope"], "id": 4}
    outcome = op(session, request)
    assert outcome.subscribe == ["ETHUSDT", "SOLUSDT"]
    error, ack = transport.messages()
    assert error == {
        "type": "error",
        "id": 4,
        "code": "unknown_symbol",
        "message": "not served here: FOOBAR, NOPE",
        "symbols": ["FOOBAR", "NOPE"],
    }
    assert ack == {"type": "ack", "id": 4, "op": "subscribe", "symbols": ["ETHUSDT", "SOLUSDT"]}


def test_a_subscribe_naming_only_unknown_symbols_is_an_error_alone() -> None:
    """With nothing known to subscribe, the op gets the error and no ack."""
    session, transport, _ = make(symbols=("BTCUSDT",))
    assert op(session, {"op": "subscribe", "symbols": ["FOOBAR"], "id": 5}) == OpOutcome()
    (reply,) = transport.messages()
    assert (reply["type"], reply["id"], reply["code"]) == ("error", 5, "unknown_symbol")
    assert session.symbols == {"BTCUSDT"}


def test_symbols_at_connect_follow_the_subscribe_rule() -> None:
    """``choose`` (used for ``?symbols=``) reports unknown names without an id and
    returns the served ones; past max_subscriptions it returns none, with the error."""
    session, transport, _ = make(limits=Limits(max_subscriptions=2), symbols=())
    assert session.choose(["btcusdt", "NOPE", "ETHUSDT"]) == ["BTCUSDT", "ETHUSDT"]
    assert transport.messages() == [
        {
            "type": "error",
            "code": "unknown_symbol",
            "message": "not served here: NOPE",
            "symbols": ["NOPE"],
        }
    ]
    assert session.choose(["BTCUSDT", "ETHUSDT", "SOLUSDT"]) == []
    (error,) = transport.messages()
    assert error["code"] == "too_many_subscriptions"
    assert "id" not in error


def test_unsubscribe_acks_what_was_removed() -> None:
    """unsubscribe acks the symbols it removes; ``*`` removes all of them."""
    session, transport, _ = make(symbols=("BTCUSDT", "ETHUSDT"))
    outcome = op(session, {"op": "unsubscribe", "symbols": ["ethusdt", "SOLUSDT"], "id": 1})
    assert outcome.unsubscribe == ["ETHUSDT"]
    assert transport.messages() == [
        {"type": "ack", "id": 1, "op": "unsubscribe", "symbols": ["ETHUSDT"]}
    ]
    outcome = op(session, {"op": "unsubscribe", "symbols": ["*"]})
    assert sorted(outcome.unsubscribe) == ["BTCUSDT", "ETHUSDT"]
    assert transport.messages()[0]["type"] == "ack"


def test_unsubscribe_naming_unknown_symbols_removes_the_known_ones() -> None:
    """Unsubscribe follows the subscribe rule: unknown names in one error, the rest done."""
    session, transport, _ = make(symbols=("BTCUSDT",))
    outcome = op(session, {"op": "unsubscribe", "symbols": ["BTCUSDT", "NOPE"], "id": 9})
    assert outcome.unsubscribe == ["BTCUSDT"]
    error, ack = transport.messages()
    assert (error["type"], error["id"], error["code"]) == ("error", 9, "unknown_symbol")
    assert error["symbols"] == ["NOPE"]
    assert ack == {"type": "ack", "id": 9, "op": "unsubscribe", "symbols": ["BTCUSDT"]}


def test_list_and_ping_reply_with_their_ids() -> None:
    """list acks the current symbols and their streams, sorted; ping gets pong; both echo
    the id."""
    session, transport, _ = make(symbols=("SOLUSDT", "BTCUSDT"))
    op(session, {"op": "list", "id": 2})
    op(session, {"op": "ping", "id": "p"})
    op(session, {"op": "ping"})
    assert transport.messages() == [
        {
            "type": "ack",
            "id": 2,
            "op": "list",
            "symbols": ["BTCUSDT", "SOLUSDT"],
            "streams": ["BTCUSDT@ticker", "SOLUSDT@ticker"],
        },
        {"type": "pong", "id": "p"},
        {"type": "pong"},
    ]


def test_too_many_subscriptions_is_refused_whole() -> None:
    """A subscribe that would pass max_subscriptions fails and adds nothing."""
    session, transport, _ = make(limits=Limits(max_subscriptions=3), symbols=("BTCUSDT",))
    outcome = op(session, {"op": "subscribe", "symbols": ["ETHUSDT", "SOLUSDT", "XRPUSDT"]})
    assert outcome == OpOutcome()
    assert transport.messages()[0]["code"] == "too_many_subscriptions"
    outcome = op(session, {"op": "subscribe", "symbols": ["ETHUSDT", "SOLUSDT", "BTCUSDT"]})
    assert outcome.subscribe == ["ETHUSDT", "SOLUSDT"]


@pytest.mark.parametrize(
    ("text", "code", "op_id"),
    [
        ("{not json", "invalid_json", None),
        ("", "invalid_json", None),
        ("[1, 2]", "invalid_op", None),
        ('"subscribe"', "invalid_op", None),
        ('{"id": 5}', "invalid_op", 5),
        ('{"op": 3, "id": "x"}', "invalid_op", "x"),
        ('{"op": "dance", "id": 6}', "unknown_op", 6),
        ('{"op": "ping", "id": {"a": 1}}', "invalid_op", None),
        ('{"op": "ping", "id": [1]}', "invalid_op", None),
        ('{"op": "subscribe", "id": 8}', "invalid_op", 8),
        ('{"op": "subscribe", "symbols": "BTCUSDT", "id": 8}', "invalid_op", 8),
        ('{"op": "subscribe", "symbols": [], "id": 8}', "invalid_op", 8),
        ('{"op": "subscribe", "symbols": [1], "id": 8}', "invalid_op", 8),
        ('{"op": "unsubscribe", "symbols": null}', "invalid_op", None),
    ],
)
def test_bad_ops_get_an_error_reply_and_change_nothing(text: str, code: str, op_id: object) -> None:
    """Malformed ops get a named error (with the id when readable) and change nothing."""
    session, transport, _ = make(symbols=("BTCUSDT",))
    assert session.handle_text(text) == OpOutcome()
    (reply,) = transport.messages()
    assert reply["type"] == "error"
    assert reply["code"] == code
    assert reply.get("id") == op_id
    assert isinstance(reply["message"], str) and reply["message"]
    assert session.symbols == {"BTCUSDT"}
    assert transport.closed_with is None


def test_binary_messages_get_an_error_reply() -> None:
    """A binary frame is answered with binary_not_supported."""
    session, transport, _ = make()
    session.handle_binary()
    assert transport.messages()[0]["code"] == "binary_not_supported"


def test_ops_over_the_rate_get_rate_limited_errors() -> None:
    """Past the burst, ops over ops_per_second get rate_limited; the bucket refills."""
    session, transport, clock = make(limits=Limits(ops_per_second=10, ops_burst=5))
    for i in range(5):
        op(session, {"op": "ping", "id": i})
    op(session, {"op": "ping", "id": 99})
    out = transport.messages()
    assert [m["type"] for m in out] == ["pong"] * 5 + ["error"]
    assert out[-1]["code"] == "rate_limited"
    assert out[-1]["id"] == 99, "the error names the op it refuses"
    op(session, {"op": "ping"})
    session.handle_text('{"op":"ping","id":[1]}')
    session.handle_text("not json")
    assert [m.get("id", "none") for m in transport.messages()] == ["none"] * 3
    clock.advance(0.1)
    op(session, {"op": "ping", "id": 100})
    assert transport.messages() == [{"type": "pong", "id": 100}]


def test_ops_sustained_over_the_rate_for_five_seconds_close_the_client() -> None:
    """Five seconds of ops over the rate close the client, though some ops get through."""
    session, _, clock = make(limits=Limits(ops_per_second=20, ops_burst=40))
    started = clock.now
    outcome = OpOutcome()
    while outcome.close is None and clock.now - started < 20:
        outcome = op(session, {"op": "ping"})
        clock.advance(0.01)  # 100 ops/s against 20 allowed
    assert outcome.close is CloseReason.RATE_LIMITED
    # Half a second of burst (40 spare tokens at 80/s net), then five seconds limited.
    assert 5.0 <= clock.now - started <= 6.5


def test_a_short_burst_over_the_rate_does_not_close_the_client() -> None:
    """Bursts that hit the limit now and then, with calm between them, never close."""
    session, transport, clock = make(limits=Limits(ops_per_second=20, ops_burst=40))
    for _ in range(10):
        for _ in range(60):
            assert op(session, {"op": "ping"}).close is None
        clock.advance(3.0)
    assert transport.closed_with is None
    assert any(m["type"] == "error" for m in transport.messages())


def test_an_op_makes_the_client_a_status_receiver() -> None:
    """Status goes only to clients that asked (or have sent any op)."""
    session, transport, _ = make()
    session.send_status({"type": "status", "upstream": "reconnecting"})
    assert transport.writes == []
    op(session, {"op": "ping"})
    transport.messages()
    session.send_status({"type": "status", "upstream": "connected"})
    assert transport.messages() == [{"type": "status", "upstream": "connected"}]


class ProgressTransport(RecordingTransport):
    """A transport that reports the kernel's acknowledged and outstanding bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.acked = 0
        self.outstanding = 0

    def progress(self) -> tuple[int, int]:
        return self.acked, self.outstanding


def test_no_acknowledged_bytes_for_the_timeout_is_a_stall() -> None:
    """Outstanding bytes with the peer's acknowledged count frozen for the timeout is a
    slow client, even while flow control still accepts writes."""
    clock = FakeTime()
    transport = ProgressTransport()
    session = Session(
        1, transport, SERVED, limits=Limits(slow_client_timeout=10), clock=clock,
        schedule=clock.schedule,
    )  # fmt: skip
    transport.outstanding = 500
    assert session.check_progress(0.0) is None
    transport.acked = 100  # it read something: nothing acknowledged since this check
    assert session.check_progress(1.0) is None
    assert session.check_progress(2.0) is None
    assert session.check_progress(10.5) is None
    assert session.check_progress(11.0) is CloseReason.SLOW_CLIENT


def test_an_idle_client_with_nothing_outstanding_is_never_a_stall() -> None:
    """No bytes outstanding: nothing to acknowledge, however long it lasts."""
    clock = FakeTime()
    transport = ProgressTransport()
    session = Session(
        1, transport, SERVED, limits=Limits(slow_client_timeout=1), clock=clock,
        schedule=clock.schedule,
    )  # fmt: skip
    for now in range(0, 100, 5):
        assert session.check_progress(float(now)) is None


def test_transports_without_progress_are_judged_by_flow_control_only() -> None:
    """A transport that cannot report progress (generic ASGI) is never judged by it."""
    session, _transport, clock = make()
    assert session.check_progress(clock()) is None
