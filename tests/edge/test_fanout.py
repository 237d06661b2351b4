"""The edge in-process: admission, fan-out to sessions, close accounting and clean-up.

A real ``Node`` with its memory hub (its source is never started) and recording transports.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import orjson
import pytest
import uvloop

from tickcast.edge.fanout import ClientRequest, Edge
from tickcast.edge.fastpath import SocketTuning
from tickcast.edge.session import MAX_PENDING_CONTROL
from tickcast.errors import CloseReason
from tickcast.messages.tick import Tick
from tickcast.node import Node
from tickcast.settings import Settings

from ..fakes import RecordingTransport
from ..support import eventually

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"source": "binance", "symbols": SYMBOLS, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def request(ip: str = "10.0.0.1", **fields: str | None) -> ClientRequest:
    values: dict[str, str | None] = {
        "origin": None, "authorization": None, "token_param": None, "host": None,
    }  # fmt: skip
    values.update(fields)
    return ClientRequest(ip=ip, **values)


async def publish(node: Node, symbol: str, seq: int, price: str = "1") -> Tick:
    """Publish one tick and let the event loop finish its step: the fan-out writes each
    client at the end of the step in which ticks were handed to it."""
    tick = Tick(symbol=symbol, seq=seq, timestamp_ms=seq, source="sim", last_price=price)
    node.hub.publish(tick)
    await asyncio.sleep(0)
    return tick


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    edge = Edge(settings(slow_client_timeout=0.3), Node(settings()))
    await edge.start()
    try:
        yield edge
    finally:
        await edge.stop()


def symbols_of(transport: RecordingTransport) -> list[tuple[object, object]]:
    return [(m.get("symbol"), m.get("seq")) for m in transport.messages()]


# -- admission ------------------------------------------------------------------------


def test_admission_without_limits_lets_anyone_in() -> None:
    """By default no token, origin or per-IP limit applies."""
    edge = Edge(settings(), Node(settings()))
    assert edge.admit(request(origin="https://anywhere.example")) is None


def test_a_token_is_needed_by_header_or_parameter() -> None:
    """With a token set, a client needs ``Authorization: Bearer`` or ``?token=`` (401)."""
    edge = Edge(settings(token="s3cret"), Node(settings()))
    denial = edge.admit(request())
    assert denial is not None
    assert (denial.status, denial.close) == (401, CloseReason.UNAUTHORIZED)
    assert edge.admit(request(token_param="wrong")) is not None
    assert edge.admit(request(authorization="Bearer nope")) is not None
    assert edge.admit(request(token_param="s3cret")) is None
    assert edge.admit(request(authorization="Bearer s3cret")) is None
    assert edge.admit(request(authorization="bearer s3cret")) is None
    assert edge.admit_token(request()) is not None


def test_only_allowed_origins_are_admitted() -> None:
    """With allowed origins set, a present Origin not listed is refused with 403; a client
    without an Origin (not a browser) is admitted, token permitting."""
    edge = Edge(settings(allowed_origins="https://ok.example", token="s3cret"), Node(settings()))
    assert edge.admit(request(origin="https://ok.example", token_param="s3cret")) is None
    assert edge.admit(request(origin=None, token_param="s3cret")) is None
    for origin in ("https://evil.example", "null", ""):
        denial = edge.admit(request(origin=origin, token_param="s3cret"))
        assert denial is not None
        assert denial.status == 403
    denial = edge.admit(request(origin=None))
    assert denial is not None and denial.status == 401


def test_the_servers_own_origin_is_admitted_beside_the_allowed_ones() -> None:
    """With allowed origins set, an Origin naming the request's own Host (the dashboard the
    server serves) is admitted, default ports implied; another host or port is not."""
    edge = Edge(settings(allowed_origins="https://ok.example"), Node(settings()))
    admitted = [
        ("http://127.0.0.1:8123", "127.0.0.1:8123"),
        ("http://Example.COM", "example.com:80"),
        ("https://example.com:443", "example.com"),
        ("http://[::1]:8000", "[::1]:8000"),
    ]
    for origin, host in admitted:
        assert edge.admit(request(origin=origin, host=host)) is None, (origin, host)
    refused = [
        ("http://127.0.0.1:8123", "127.0.0.1:8124"),
        ("http://localhost:8123", "127.0.0.1:8123"),
        ("https://example.com", "example.com:80"),
        ("null", "example.com"),
        ("http://127.0.0.1:8123", None),
    ]
    for origin, host in refused:
        denial = edge.admit(request(origin=origin, host=host))
        assert denial is not None and denial.status == 403, (origin, host)


async def test_connection_limits_refuse_with_503_and_429(edge: Edge) -> None:
    """Past max_connections: 503; past the per-IP limit: 429; a detach frees the slot."""
    limited = Edge(settings(max_connections=3, max_connections_per_ip=2), edge.node)
    sessions = [
        limited.open(RecordingTransport(), "10.0.0.1", []),
        limited.open(RecordingTransport(), "10.0.0.1", []),
    ]
    denial = limited.admit(request("10.0.0.1"))
    assert denial is not None
    assert (denial.status, denial.close) == (429, CloseReason.TRY_AGAIN_LATER)
    sessions.append(limited.open(RecordingTransport(), "10.0.0.2", []))
    denial = limited.admit(request("10.0.0.3"))
    assert denial is not None
    assert denial.status == 503
    limited.detach(sessions[0])
    assert limited.admit(request("10.0.0.1")) is None


# -- fan-out --------------------------------------------------------------------------


async def test_a_tick_goes_once_to_each_subscriber_of_its_symbol(edge: Edge) -> None:
    """Subscribers of the symbol get the same encoded bytes; others get nothing."""
    a, b, c = RecordingTransport(), RecordingTransport(), RecordingTransport()
    edge.open(a, "1.1.1.1", ["BTCUSDT"])
    edge.open(b, "1.1.1.2", ["BTCUSDT", "ETHUSDT"])
    edge.open(c, "1.1.1.3", ["ETHUSDT"])
    await publish(edge.node, "BTCUSDT", 1)
    assert len(a.writes) == len(b.writes) == 1
    assert a.writes[0] is b.writes[0]
    assert c.writes == []
    await publish(edge.node, "ETHUSDT", 2)
    assert symbols_of(a) == [("BTCUSDT", 1)]
    assert symbols_of(b) == [("BTCUSDT", 1), ("ETHUSDT", 2)]
    assert symbols_of(c) == [("ETHUSDT", 2)]


async def test_ticks_handed_over_in_one_step_reach_each_client_in_one_write(
    edge: Edge,
) -> None:
    """A burst (ticks published in one event-loop step, as from one upstream read or one
    Redis answer) costs each client one write, still one message per tick in seq order;
    nothing waits past the step, and the next step's tick is a write of its own."""
    a, b = RecordingTransport("sse_event"), RecordingTransport("sse_event")
    edge.open(a, "1.1.1.1", SYMBOLS, snapshot=False)
    edge.open(b, "1.1.1.2", ["ETHUSDT"], snapshot=False)
    for seq, symbol in enumerate(["BTCUSDT", "ETHUSDT", "SOLUSDT", "ETHUSDT"], 1):
        edge.node.hub.publish(
            Tick(symbol=symbol, seq=seq, timestamp_ms=seq, source="sim", last_price="1")
        )
    assert a.writes == b.writes == []
    await asyncio.sleep(0)
    assert len(a.writes) == len(b.writes) == 1
    assert [s for _, s in symbols_of(a)] == [1, 2, 3, 4]
    assert [s for _, s in symbols_of(b)] == [2, 4]
    await publish(edge.node, "BTCUSDT", 5)
    assert len(a.writes) == 1
    assert symbols_of(a) == [("BTCUSDT", 5)]
    assert edge.delivered_total() == 7


async def test_what_a_client_is_sent_mid_step_keeps_its_place_behind_the_burst(
    edge: Edge,
) -> None:
    """A reply, and the snapshot of a symbol subscribed in the same step, go out after the
    ticks already handed to the client (the reply makes the fan-out write them first) and
    before later ones: no tick twice, none out of order."""
    transport = RecordingTransport("sse_event")
    session = edge.open(transport, "1.1.1.1", ["BTCUSDT"], snapshot=False)
    await publish(edge.node, "ETHUSDT", 1)
    transport.writes.clear()
    for seq in (2, 3):
        edge.node.hub.publish(Tick(symbol="BTCUSDT", seq=seq, timestamp_ms=seq, source="sim"))
    session.handle_text('{"op":"ping","id":7}')
    edge.subscribe(session, ["ETHUSDT"])
    edge.node.hub.publish(Tick(symbol="ETHUSDT", seq=4, timestamp_ms=4, source="sim"))
    # The two ticks in one write, then the pong, the snapshot; the last tick waits for
    # the end of the step.
    assert [len(w.split(b"\n\n")) - 1 for w in transport.writes] == [2, 1, 1]
    await asyncio.sleep(0)
    assert [(m["type"], m.get("seq")) for m in transport.messages()] == [
        ("tick", 2),
        ("tick", 3),
        ("pong", None),
        ("tick", 1),
        ("tick", 4),
    ]


async def test_a_client_closed_or_gone_mid_step_is_not_written_to(edge: Edge) -> None:
    """A client closed, or found gone, after a tick was routed to it and before the step
    ended gets nothing more (a write after the close would fail the recording transport);
    the others still get the tick."""
    closed, gone, healthy = RecordingTransport(), RecordingTransport(), RecordingTransport()
    sessions = [edge.open(t, f"1.1.1.{i}", ["BTCUSDT"]) for i, t in enumerate([closed, gone])]
    edge.open(healthy, "1.1.1.9", ["BTCUSDT"])
    edge.node.hub.publish(Tick(symbol="BTCUSDT", seq=1, timestamp_ms=1, source="sim"))
    sessions[0].close(CloseReason.SLOW_CLIENT)
    sessions[1].lost()
    await asyncio.sleep(0)
    assert closed.writes == gone.writes == []
    assert symbols_of(healthy) == [("BTCUSDT", 1)]


async def test_a_hub_reset_gives_every_client_a_snapshot_in_place_of_what_it_held(
    edge: Edge,
) -> None:
    """When the hub lost history (Redis lost its data): a client gets a ``reset`` with
    the snapshot of its own symbols, after what it was already sent; a client whose
    socket was full gets the reset instead of the old ticks held for it."""
    live, blocked = RecordingTransport(), RecordingTransport()
    edge.open(live, "1.1.1.1", ["BTCUSDT"], snapshot=False)
    edge.open(blocked, "1.1.1.2", ["BTCUSDT", "ETHUSDT"], snapshot=False)
    blocked.writable = False
    await publish(edge.node, "BTCUSDT", 1)
    await publish(edge.node, "ETHUSDT", 2)
    assert blocked.writes == []
    edge.node.hub.publish(Tick(symbol="BTCUSDT", seq=3, timestamp_ms=3, source="sim"))
    edge.reset_clients("incarnation")
    await asyncio.sleep(0)
    got = live.messages()
    assert [(m["type"], m.get("seq")) for m in got] == [("tick", 1), ("tick", 3), ("reset", None)]
    assert got[-1]["last_seq"] == 3
    assert [t["seq"] for t in got[-1]["ticks"]] == [3]  # type: ignore[index, union-attr]
    blocked.writable = True
    (reset,) = blocked.messages()
    assert reset["type"] == "reset"
    assert [t["seq"] for t in reset["ticks"]] == [2, 3]  # type: ignore[index, union-attr]
    await publish(edge.node, "ETHUSDT", 4)
    assert symbols_of(blocked) == [("ETHUSDT", 4)]


async def test_a_new_session_gets_the_snapshot_then_live_ticks(edge: Edge) -> None:
    """Opening sends the latest tick of each requested symbol in seq order (whatever the
    order the symbols were named in), then live ones."""
    await publish(edge.node, "BTCUSDT", 1)
    await publish(edge.node, "ETHUSDT", 2)
    await publish(edge.node, "BTCUSDT", 3)
    transport = RecordingTransport()
    edge.open(transport, "1.1.1.1", ["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    assert symbols_of(transport) == [("ETHUSDT", 2), ("BTCUSDT", 3)]
    await publish(edge.node, "SOLUSDT", 4)
    assert symbols_of(transport) == [("SOLUSDT", 4)]


async def test_a_status_client_gets_the_upstream_state_first(edge: Edge) -> None:
    """``wants_status`` clients get a status message at open and on every change."""
    transport, quiet = RecordingTransport(), RecordingTransport()
    await publish(edge.node, "BTCUSDT", 1)
    edge.open(transport, "1.1.1.1", ["BTCUSDT"], wants_status=True)
    edge.open(quiet, "1.1.1.2", ["BTCUSDT"])
    first = transport.messages()
    assert [m["type"] for m in first] == ["status", "tick"]
    assert "upstream" in first[0]
    edge.broadcast_status({"type": "status", "upstream": "reconnecting"})
    assert transport.messages() == [{"type": "status", "upstream": "reconnecting"}]
    assert [m["type"] for m in quiet.messages()] == ["tick"]


async def test_a_slow_client_never_holds_up_the_others(edge: Edge) -> None:
    """A paused client is conflated while the others get every tick at once."""
    slow, fast = RecordingTransport(), RecordingTransport()
    edge.open(slow, "1.1.1.1", ["BTCUSDT"])
    edge.open(fast, "1.1.1.2", ["BTCUSDT"])
    slow.writable = False
    for seq in range(1, 101):
        await publish(edge.node, "BTCUSDT", seq)
    assert [s for _, s in symbols_of(fast)] == list(range(1, 101))
    assert slow.writes == []
    assert edge.status()["pending_conflated"] == 1
    assert edge.conflated_total() == 99


async def test_unsubscribe_stops_ticks_including_held_ones(edge: Edge) -> None:
    """After an unsubscribe op no tick of that symbol arrives, not even a held one."""
    transport = RecordingTransport()
    session = edge.open(transport, "1.1.1.1", ["BTCUSDT", "ETHUSDT"])
    transport.writable = False
    await publish(edge.node, "BTCUSDT", 1)
    await publish(edge.node, "ETHUSDT", 2)
    edge.apply(session, session.handle_text('{"op":"unsubscribe","symbols":["ETHUSDT"]}'))
    transport.writable = True
    session.flush()
    await publish(edge.node, "ETHUSDT", 3)
    await publish(edge.node, "BTCUSDT", 4)
    out = transport.messages()
    assert [(m["type"], m.get("seq")) for m in out] == [("ack", None), ("tick", 1), ("tick", 4)]
    assert edge.status()["subscriptions"] == 1


async def test_an_unsubscribe_in_the_step_of_a_tick_gets_the_tick_before_its_ack(
    edge: Edge,
) -> None:
    """A tick handed over, then an unsubscribe op in the same step (before the fan-out's
    writes): the tick goes first, then the ack, then nothing more of that symbol; for a
    client that can write and for one whose socket is full until after the op."""
    live, blocked = RecordingTransport("sse_event"), RecordingTransport("sse_event")
    sessions = [
        edge.open(t, f"1.1.1.{i}", ["BTCUSDT"], snapshot=False)
        for i, t in enumerate([live, blocked])
    ]
    blocked.writable = False
    edge.node.hub.publish(Tick(symbol="BTCUSDT", seq=1, timestamp_ms=1, source="sim"))
    for session in sessions:
        edge.apply(session, session.handle_text('{"op":"unsubscribe","symbols":["BTCUSDT"]}'))
    await asyncio.sleep(0)
    blocked.writable = True
    await publish(edge.node, "BTCUSDT", 2)
    assert [(m["type"], m.get("seq")) for m in live.messages()] == [("tick", 1), ("ack", None)]
    # Held while the socket was full, and forgotten with the unsubscribe: the ack alone.
    assert [m["type"] for m in blocked.messages()] == ["ack"]


async def test_a_reset_in_the_step_of_a_tick_comes_after_it_and_nothing_repeats(
    edge: Edge,
) -> None:
    """A tick handed over, then a hub reset in the same step: the client gets the tick,
    then the reset whose snapshot holds it; the tick is not written again after."""
    transport = RecordingTransport("sse_event")
    edge.open(transport, "1.1.1.1", ["BTCUSDT"], snapshot=False)
    edge.node.hub.publish(Tick(symbol="BTCUSDT", seq=1, timestamp_ms=1, source="sim"))
    edge.reset_clients("incarnation")
    await asyncio.sleep(0)
    got = transport.messages()
    assert [(m["type"], m.get("seq")) for m in got] == [("tick", 1), ("reset", None)]
    assert [t["seq"] for t in got[-1]["ticks"]] == [1]  # type: ignore[index, union-attr]


async def test_subscribe_op_acks_then_sends_a_snapshot_of_each_new_symbol(edge: Edge) -> None:
    """A subscribe op is acked, then each new symbol's latest tick follows, in seq order."""
    await publish(edge.node, "ETHUSDT", 1)
    await publish(edge.node, "SOLUSDT", 2)
    transport = RecordingTransport()
    session = edge.open(transport, "1.1.1.1", [])
    op = orjson.dumps({"op": "subscribe", "symbols": ["SOLUSDT", "ETHUSDT"], "id": 1})
    edge.apply(session, session.handle_text(op.decode()))
    out = transport.messages()
    assert out[0] == {"type": "ack", "id": 1, "op": "subscribe", "symbols": ["SOLUSDT", "ETHUSDT"]}
    assert [(m["symbol"], m["seq"]) for m in out[1:]] == [("ETHUSDT", 1), ("SOLUSDT", 2)]


# -- closes and clean-up --------------------------------------------------------------


async def test_the_sweeper_closes_a_client_that_accepts_nothing(edge: Edge) -> None:
    """A client paused past slow_client_timeout is closed by the sweeper and counted."""
    transport = RecordingTransport()
    edge.open(transport, "1.1.1.1", ["BTCUSDT"])
    transport.writable = False
    await publish(edge.node, "BTCUSDT", 1)
    await eventually(lambda: transport.closed_with is not None, timeout=5)
    assert transport.closed_with is CloseReason.SLOW_CLIENT
    assert edge.status()["closes"] == {"slow_client": 1}


async def test_every_server_close_is_counted_by_reason(edge: Edge) -> None:
    """Closes the session decides itself (replies piling up unread) are counted too."""
    tight = Edge(settings(), edge.node)
    transport = RecordingTransport()
    flooded = tight.open(transport, "1.1.1.1", ["BTCUSDT"])
    transport.writable = False
    for _ in range(MAX_PENDING_CONTROL + 1):
        flooded.send_message({"type": "pong"})
    assert transport.closed_with is CloseReason.BUFFER_FULL
    session = tight.open(RecordingTransport(), "1.1.1.2", [])
    tight.drop(session, CloseReason.RATE_LIMITED)
    tight.drop(session, CloseReason.RATE_LIMITED)
    assert tight.status()["closes"] == {"buffer_full": 1, "rate_limited": 1}


async def test_detach_forgets_the_client_and_its_subscriptions(edge: Edge) -> None:
    """However a connection ends, detach leaves no session, subscription or IP count."""
    sessions = [edge.open(RecordingTransport(), "1.1.1.1", SYMBOLS) for _ in range(5)]
    status = edge.status()
    assert status["clients"] == {"ws": 5, "sse": 0, "total": 5}
    assert status["subscriptions"] == 15
    for session in sessions:
        edge.detach(session)
        edge.detach(session)
    assert edge.status()["clients"] == {"ws": 0, "sse": 0, "total": 0}
    assert edge.status()["subscriptions"] == 0
    await publish(edge.node, "BTCUSDT", 1)
    assert all(s.transport.writes == [] for s in sessions)  # type: ignore[attr-defined]


async def test_a_detached_throttled_client_leaves_nothing_behind(edge: Edge) -> None:
    """Detaching a session whose throttle timer is armed cancels the timer: nothing keeps
    the session or its transport alive once the connection has gone."""
    transport = RecordingTransport()
    session = edge.open(transport, "1.1.1.1", ["BTCUSDT"], throttle_ms=60_000)
    await publish(edge.node, "BTCUSDT", 1)
    await publish(edge.node, "BTCUSDT", 2)  # held for a minute, on a timer
    assert session.pending_count == 1
    gone = weakref.ref(transport)
    edge.detach(session)
    del session, transport
    gc.collect()
    assert gone() is None, gc.get_referrers(gone())


async def test_a_replay_goes_first_in_full_then_live_ticks(edge: Edge) -> None:
    """Ticks given to ``open`` as a replay (a resume) reach the client in order and in
    full as its transport takes them, and the live ticks published meanwhile follow."""
    history = [await publish(edge.node, ("BTCUSDT", "ETHUSDT")[n % 2], n) for n in range(1, 41)]
    transport = RecordingTransport()
    transport.writable = False
    session = edge.open(transport, "1.1.1.1", ["BTCUSDT", "ETHUSDT"], replay=history[9:])
    for n in range(41, 61):
        await publish(edge.node, ("BTCUSDT", "ETHUSDT")[n % 2], n)
    assert transport.writes == []
    transport.writable = True
    assert [s for _, s in symbols_of(transport)] == list(range(10, 61))
    assert session.ready


async def test_stop_closes_every_client_as_going_away(edge: Edge) -> None:
    """Stopping the edge closes each client with SHUTDOWN (1001)."""
    transports = [RecordingTransport() for _ in range(3)]
    for transport in transports:
        edge.open(transport, "1.1.1.1", ["BTCUSDT"])
    await edge.stop()
    assert [t.closed_with for t in transports] == [CloseReason.SHUTDOWN] * 3
    assert CloseReason.SHUTDOWN.code == 1001


def test_socket_tuning_sets_write_limits_on_uvloop_transports() -> None:
    """The per-client write high-water mark is applied to uvloop transports too."""

    async def limits() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        try:
            SocketTuning(write_high=8192).apply(transport)
            low, high = transport.get_write_buffer_limits()
            return int(low), int(high)
        finally:
            transport.close()
            server.close()
            await server.wait_closed()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(limits()) == (2048, 8192)


# -- the fast path and write coalescing ------------------------------------------------


class ClosedSocket(RecordingTransport):
    """A transport whose socket closed a moment before its protocol heard of it."""

    def write(self, data: bytes) -> None:
        raise RuntimeError("unable to perform operation: the handler is closed")


async def test_a_socket_closed_under_the_fast_path_stops_nobody() -> None:
    """A write that fails because the socket just closed marks that session lost; the
    other subscribers still get the tick and later ones."""
    edge = Edge(settings(), Node(settings()))
    await edge.start()
    try:
        gone, healthy = ClosedSocket(), RecordingTransport()
        lost = edge.open(gone, "1.1.1.1", ["BTCUSDT"])
        edge.open(healthy, "1.1.1.2", ["BTCUSDT"])
        for seq in (1, 2):
            await publish(edge.node, "BTCUSDT", seq)
        assert [s for _, s in symbols_of(healthy)] == [1, 2]
        assert lost.closed is CloseReason.GONE
        assert not lost.ready
    finally:
        await edge.stop()


async def test_coalescing_writes_each_client_once_per_window_in_order() -> None:
    """With TICKCAST_FLUSH_MS, the ticks of one window reach a client in one write, still
    one message per tick, in seq order; nothing is written before the window ends."""
    edge = Edge(settings(flush_ms=20), Node(settings()))
    await edge.start()
    try:
        a, b = RecordingTransport("sse_event"), RecordingTransport("sse_event")
        edge.open(a, "1.1.1.1", SYMBOLS, snapshot=False)
        edge.open(b, "1.1.1.2", ["BTCUSDT"], snapshot=False)
        for seq, symbol in enumerate(["BTCUSDT", "ETHUSDT", "BTCUSDT", "SOLUSDT"], 1):
            await publish(edge.node, symbol, seq)
        assert a.writes == []
        assert b.writes == []
        await eventually(lambda: a.writes and b.writes, timeout=2)
        assert len(a.writes) == 1
        assert len(b.writes) == 1
        # "json" format: one JSON object per tick, concatenated in one write.
        assert a.writes[0].count(b'"type":"tick"') == 4
        seqs = [int(part.split(b",")[0]) for part in a.writes[0].split(b'"seq":')[1:]]
        assert seqs == [1, 2, 3, 4]
        assert b.writes[0].count(b'"type":"tick"') == 2
        assert edge.delivered_total() == 6
    finally:
        await edge.stop()


async def test_coalesced_replies_keep_their_place_among_ticks() -> None:
    """A reply sent while ticks wait in the coalescing buffer goes out after them, in the
    same write, never ahead."""
    edge = Edge(settings(flush_ms=20), Node(settings()))
    await edge.start()
    try:
        transport = RecordingTransport("sse_event")
        session = edge.open(transport, "1.1.1.1", ["BTCUSDT"], snapshot=False)
        await publish(edge.node, "BTCUSDT", 1)
        session.handle_text('{"op":"ping","id":7}')
        await publish(edge.node, "BTCUSDT", 2)
        await eventually(lambda: transport.writes, timeout=2)
        joined = transport.writes[0]
        assert joined.index(b'"seq":1') < joined.index(b'"pong"') < joined.index(b'"seq":2')
    finally:
        await edge.stop()


async def test_status_counts_follow_clients_as_they_come_and_go(edge: Edge) -> None:
    """The counts kept as clients open and detach (by kind, write path, compression) and
    the totals summed in one pass agree with the sessions there are."""
    ws, sse, other = RecordingTransport(), RecordingTransport("sse_event"), RecordingTransport()
    sse.kind = "sse"
    sessions = [edge.open(t, "1.1.1.1", ["BTCUSDT"]) for t in (ws, sse, other)]
    await publish(edge.node, "BTCUSDT", 1)
    status = edge.status()
    assert status["clients"] == {"ws": 2, "sse": 1, "total": 3}
    assert status["write_paths"] == {"fast": 0, "portable": 3}
    assert status["ws_deflate"] == 0
    assert status["subscriptions"] == 3
    delivered = status["delivered"]
    assert isinstance(delivered, int) and delivered >= 3
    edge.detach(sessions[0])
    edge.detach(sessions[0])  # twice: counted once
    edge.detach(sessions[1])
    status = edge.status()
    assert status["clients"] == {"ws": 1, "sse": 0, "total": 1}
    assert status["write_paths"] == {"fast": 0, "portable": 1}
    assert status["subscriptions"] == 1
    assert status["delivered"] == delivered  # the gone sessions' counts kept
