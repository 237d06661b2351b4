"""The session on arbitrary sequences of ops, ticks, pauses, resumes and time (hypothesis).

The test plays the driver's part (the edge applies what an op asks for) and checks after
every step that nothing raised and the session's state is consistent: subscriptions
within the served set and the limit, nothing held for a symbol not subscribed, ``ready``
exactly when the fast path is safe, and what the client received is in order per symbol
and never a tick of a symbol it had unsubscribed (with its ack) or never subscribed.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tickcast.edge.backlog import Backlog
from tickcast.edge.session import Limits, Session

from ..fakes import FakeTime, RecordingTransport, tick

SERVED = frozenset({"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"})
NAMES = [*sorted(SERVED), "NOPE", "btcusdt", "", "A" * 40]
LIMITS = Limits(max_subscriptions=3, ops_per_second=5, ops_burst=4, client_buffer_bytes=4096)

ops = st.one_of(
    st.fixed_dictionaries(
        {
            "op": st.sampled_from(["subscribe", "unsubscribe"]),
            "symbols": st.one_of(
                st.lists(st.sampled_from(NAMES), max_size=6),
                st.sampled_from(["*", "BTCUSDT", None, 5]),
            ),
        },
        optional={"id": st.one_of(st.integers(), st.text(max_size=5), st.none())},
    ),
    st.fixed_dictionaries({"op": st.sampled_from(["list", "ping", "dance", ""])}),
    st.recursive(st.none() | st.integers() | st.text(max_size=5), st.lists, max_leaves=5),
)

actions = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.sampled_from(sorted(SERVED))),
        st.tuples(st.just("tick"), st.sampled_from(sorted(SERVED))),
        st.tuples(
            st.just("op"),
            st.lists(st.sampled_from(sorted(SERVED)), min_size=1, max_size=3).map(
                lambda names: json.dumps({"op": "subscribe", "symbols": names, "id": 1})
            ),
        ),
        st.tuples(st.just("op"), ops.map(json.dumps)),
        st.tuples(
            st.just("op"),
            st.lists(st.sampled_from(sorted(SERVED)), min_size=1, max_size=2).map(
                lambda names: json.dumps({"op": "unsubscribe", "symbols": names, "id": 2})
            ),
        ),
        st.tuples(st.just("text"), st.text(max_size=30)),
        st.tuples(st.just("pause"), st.none()),
        st.tuples(st.just("pause"), st.none()),
        st.tuples(st.just("resume"), st.none()),
        st.tuples(st.just("buffered"), st.integers(min_value=0, max_value=8192)),
        st.tuples(st.just("time"), st.floats(min_value=0, max_value=3)),
    ),
    max_size=80,
)


class Client:
    """What the client has received, checked as it arrives."""

    def __init__(self) -> None:
        self.last_seq: dict[str, int] = {}
        self.allowed: set[str] = set()

    def read(self, transport: RecordingTransport) -> None:
        for message in transport.messages():
            kind = message.get("type")
            if kind == "ack":
                symbols = message.get("symbols")
                assert isinstance(symbols, list)
                if message["op"] == "subscribe":
                    self.allowed.update(symbols)  # type: ignore[arg-type]
                elif message["op"] == "unsubscribe":
                    self.allowed.difference_update(symbols)  # type: ignore[arg-type]
            elif kind == "tick":
                symbol, seq = message["symbol"], message["seq"]
                assert isinstance(symbol, str) and isinstance(seq, int)
                assert symbol in self.allowed, f"tick of {symbol} not subscribed"
                assert seq > self.last_seq.get(symbol, 0), f"{symbol} {seq} out of order"
                self.last_seq[symbol] = seq


@settings(max_examples=1000, deadline=None)
@given(
    throttle_ms=st.sampled_from([0.0, 0.0, 250.0]),
    missed=st.integers(min_value=0, max_value=6),
    steps=actions,
)
def test_any_sequence_keeps_the_session_consistent(
    throttle_ms: float, missed: int, steps: list[tuple[str, object]]
) -> None:
    """After a resume of any size, ops, ticks, flow control and time in any order never
    raise, and the session's subscriptions, held ticks, readiness and output stay
    consistent."""
    transport, clock, client = RecordingTransport(), FakeTime(), Client()
    session = Session(
        1,
        transport,
        SERVED,
        limits=LIMITS,
        clock=clock,
        schedule=clock.schedule,
        throttle_ms=throttle_ms,
    )
    transport.on_pause = session.paused
    transport.on_resume = session.flush
    # A resume, as the edge does it: the missed ticks first, then the subscription.
    session.replay(Backlog([tick("BTCUSDT", n).message for n in range(1, missed + 1)], missed + 40))
    session.symbols.add("BTCUSDT")
    client.allowed.add("BTCUSDT")
    seq = missed
    for action, arg in steps:
        if session.closed is not None:
            break
        if action == "tick":
            seq += 1
            if arg in session.symbols:
                session.offer(tick(str(arg), seq))
        elif action in ("op", "text"):
            outcome = session.handle_text(str(arg))
            session.symbols.update(outcome.subscribe)  # what the edge does
            session.unsubscribed(outcome.unsubscribe)
            if outcome.close is not None:
                session.close(outcome.close)
        elif action == "pause":
            transport.writable = False
        elif action == "resume":
            transport.writable = True
        elif action == "buffered":
            transport.buffered_bytes = int(arg)  # type: ignore[call-overload]
        elif action == "time":
            clock.advance(float(arg))  # type: ignore[arg-type]
        if transport.closed_with is None:
            client.read(transport)
        check(session, transport)


def check(session: Session, transport: RecordingTransport) -> None:
    assert session.symbols <= SERVED
    assert len(session.symbols) <= LIMITS.max_subscriptions
    assert set(session._pending) <= session.symbols, "a tick held for a symbol not subscribed"
    if session.closed is not None:
        assert not session.ready
        return
    safe = (
        not session._throttle
        and not session._pending
        and not session._control
        and session._backlog is None
        and transport.writable
    )
    assert session.ready == safe or (not session.ready and safe is False), (
        "ready while something is held or the transport is paused"
    )
    if session.ready:
        assert safe
