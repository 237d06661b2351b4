"""The fast path's parts: the lean queue and event, the kernel's progress counters, and
real clients on it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path

import httpx
import websockets

from tickcast.edge.leanio import LeanEvent, LeanQueue
from tickcast.edge.sockets import in_flight, tcp_progress, unacked_bytes

from ..support import running_server


async def test_lean_queue_is_fifo_and_get_waits_for_a_put() -> None:
    """get returns items in put order, and waits while the queue is empty."""
    queue = LeanQueue()
    assert queue.empty()
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert await queue.get() == 1
    waiter = asyncio.create_task(queue.get())
    assert await queue.get() == 2
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.put_nowait(3)
    assert await asyncio.wait_for(waiter, 1) == 3
    assert queue.empty()


async def test_lean_event_wakes_every_waiter_and_can_be_cleared() -> None:
    """set wakes all waiters; after clear, wait blocks again until the next set."""
    event = LeanEvent()
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    event.set()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert event.is_set()
    event.clear()
    blocked = asyncio.create_task(event.wait())
    await asyncio.sleep(0.01)
    assert not blocked.done()
    event.set()
    await asyncio.wait_for(blocked, 1)


def test_retransmitted_bytes_are_not_outstanding() -> None:
    """A segment sent twice and acknowledged once leaves nothing in flight: bytes_sent
    counts the retransmission, and a quiet feed must not make that look like a stall."""
    assert in_flight(acked=10_000, sent=10_276, retrans=276) == 0
    assert in_flight(acked=10_000, sent=10_500, retrans=276) == 224
    assert in_flight(acked=10_000, sent=10_000, retrans=0) == 0


def test_tcp_progress_reads_a_real_socket() -> None:
    """On a connected loopback socket the kernel's counters read back sensibly: what was
    sent and read is acknowledged, and nothing stays outstanding."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        client.sendall(b"x" * 5000)
        received = 0
        while received < 5000:
            received += len(peer.recv(65536))
        deadline = time.monotonic() + 2
        progress = tcp_progress(client)
        while progress is not None and progress[1] and time.monotonic() < deadline:
            time.sleep(0.01)
            progress = tcp_progress(client)
        assert progress is not None
        acked, outstanding = progress
        assert acked >= 5000 and outstanding == 0
    finally:
        for sock in (client, peer, server):
            sock.close()


def test_unacked_bytes_counts_what_a_peer_that_stopped_reading_has_not_taken() -> None:
    """The descriptor-level count the sweep asks first: nothing once the peer took it all,
    the bytes stuck in the kernel while the peer's window is shut, None for a closed
    descriptor."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the peer's, from accept
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    client.connect(server.getsockname())
    peer, _ = server.accept()
    try:
        client.setblocking(False)
        assert unacked_bytes(client.fileno()) == 0
        sent, before = 0, -1
        while sent != before:  # until the peer's window and the send buffer are full
            before = sent
            with contextlib.suppress(BlockingIOError):
                while True:
                    sent += client.send(b"x" * 65536)
            time.sleep(0.05)
        stuck = unacked_bytes(client.fileno())
        assert stuck is not None and 0 < stuck <= sent
        peer.setblocking(False)
        received = 0
        deadline = time.monotonic() + 5
        while received < sent and time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                received += len(peer.recv(1 << 20))
        assert received == sent
        while unacked_bytes(client.fileno()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert unacked_bytes(client.fileno()) == 0
    finally:
        for sock in (client, peer, server):
            sock.close()
    closed = socket.socket()
    fd = closed.fileno()
    closed.close()
    assert unacked_bytes(fd) is None
    assert unacked_bytes(-1) is None


async def test_real_clients_are_served_on_the_fast_path(tmp_path: Path) -> None:
    """Under the pinned uvicorn, start-up logs the fast write path and every WebSocket
    and SSE client is written to on it: a silent fallback to the queued path fails here."""
    with running_server(tmp_path, ["--source", "sim"]) as server:
        async with (
            websockets.connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws,
            httpx.AsyncClient(base_url=server.base, timeout=10) as http,
            http.stream("GET", "/sse?symbols=BTCUSDT") as sse,
        ):
            assert await asyncio.wait_for(ws.recv(), 10)
            assert sse.status_code == 200
            edge = server.status()["edge"]
            assert isinstance(edge, dict)
            assert edge["write_paths"] == {"fast": 2, "portable": 0}
        assert "write path: fast)" in server.log()
