"""Request-head limits on a real server: oversized heads get 431, slow heads are closed."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tickcast.edge.guard import HandshakeGuard, HeadLimits, refusal

from ..rawclient import open_socket
from ..support import ServerProcess, running_server

HANDSHAKE_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"TICKCAST_HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT)}
    with running_server(tmp_path_factory.mktemp("guard"), ["--source", "sim"], env) as process:
        yield process


async def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes (or ``timeout`` passes)."""
    loop = asyncio.get_running_loop()
    received = b""
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received


async def send_until_refused(sock: socket.socket, first: bytes, filler: bytes, most: int) -> int:
    """Send ``first`` then ``filler`` until the server stops taking it; returns bytes sent."""
    loop = asyncio.get_running_loop()
    sent = 0
    try:
        await loop.sock_sendall(sock, first)
        sent += len(first)
        while sent < most:
            await asyncio.wait_for(loop.sock_sendall(sock, filler), 2)
            sent += len(filler)
    except (ConnectionError, TimeoutError):
        pass
    return sent


async def read_response(sock: socket.socket) -> bytes:
    """One whole /healthz response (its body ends the response)."""
    loop = asyncio.get_running_loop()
    received = b""
    while not received.endswith(b'{"status":"ok"}'):
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        assert chunk, f"closed after {received!r}"
        received += chunk
    return received


def handshakes(server: ServerProcess) -> dict[str, int]:
    status = server.status()
    edge = status["edge"]
    assert isinstance(edge, dict)
    return edge["handshakes"]  # type: ignore[no-any-return]


async def test_an_endless_header_line_gets_431_and_is_closed(server: ServerProcess) -> None:
    """A header line that never ends is cut off at the limit with 431, not buffered."""
    before = handshakes(server)["too_large"]
    sock = await open_socket("127.0.0.1", server.port)
    try:
        sent = await send_until_refused(
            sock, b"GET /price HTTP/1.1\r\nHost: x\r\nX-Junk: ", b"a" * 65536, 50_000_000
        )
        reply = await read_until_closed(sock, 5)
    finally:
        sock.close()
    assert sent < 50_000_000, "the server kept accepting an endless header"
    assert reply.startswith(b"HTTP/1.1 431 ") or reply == b""
    assert handshakes(server)["too_large"] == before + 1


@pytest.mark.parametrize(
    "head",
    [
        b"GET /price?x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /price HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
        b"GET /price HTTP/1.1\r\nHost: x\r\n" + b"X-Many: 0123456789abcdef\r\n" * 2000 + b"\r\n",
    ],
    ids=["request-line", "one-header", "many-headers"],
)
async def test_oversized_heads_get_431(server: ServerProcess, head: bytes) -> None:
    """A request line or header over 8 KB, or a head over 32 KB in all, gets 431."""
    sock = await open_socket("127.0.0.1", server.port)
    try:
        await asyncio.get_running_loop().sock_sendall(sock, head)
        reply = await read_until_closed(sock, 5)
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert b"connection: close" in reply


async def test_half_sent_heads_are_closed_after_the_handshake_timeout(
    server: ServerProcess,
) -> None:
    """Slowloris: connections that never finish their head are closed with 408, all of
    them, shortly after the timeout, and counted."""
    before = handshakes(server)["timeouts"]
    socks = [await open_socket("127.0.0.1", server.port) for _ in range(30)]
    loop = asyncio.get_running_loop()
    try:
        for sock in socks:
            await loop.sock_sendall(sock, b"GET /price HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        replies = await asyncio.gather(
            *(read_until_closed(s, HANDSHAKE_TIMEOUT + 5) for s in socks)
        )
        elapsed = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    assert all(r.startswith(b"HTTP/1.1 408 ") for r in replies), replies[0][:100]
    assert elapsed < HANDSHAKE_TIMEOUT + 3
    assert handshakes(server)["timeouts"] == before + 30
    assert handshakes(server)["in_handshake"] == 0
    metrics = server.get("/metrics").text
    assert f'tickcast_handshakes_refused_total{{reason="timeout"}} {before + 30}.0' in metrics


async def test_a_silent_connection_is_closed_after_the_handshake_timeout(
    server: ServerProcess,
) -> None:
    """A connection that sends nothing at all does not hold a descriptor for long."""
    sock = await open_socket("127.0.0.1", server.port)
    try:
        reply = await read_until_closed(sock, HANDSHAKE_TIMEOUT + 5)
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 408 ")


async def test_slow_but_timely_heads_and_keep_alive_requests_are_served(
    server: ServerProcess,
) -> None:
    """A head that arrives in pieces within the timeout is served, and so is a second
    request on the same connection, under the limits."""
    sock = await open_socket("127.0.0.1", server.port)
    loop = asyncio.get_running_loop()
    try:
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"X-Ok: " + b"c" * 7000):
            await loop.sock_sendall(sock, piece)
            await asyncio.sleep(HANDSHAKE_TIMEOUT / 4)
        await loop.sock_sendall(sock, b"\r\n\r\n")
        first = await read_response(sock)
        await loop.sock_sendall(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        second = await read_response(sock)
    finally:
        sock.close()
    assert first.startswith(b"HTTP/1.1 200 ")
    assert second.startswith(b"HTTP/1.1 200 ")


async def test_long_lived_streams_outlive_the_handshake_timeout(server: ServerProcess) -> None:
    """The timeout covers the head only: WebSocket and SSE clients stay connected."""
    async with (
        websockets.connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws,
        httpx.AsyncClient(base_url=server.base, timeout=10) as http,
        http.stream("GET", "/sse?symbols=BTCUSDT") as sse,
    ):
        await asyncio.sleep(HANDSHAKE_TIMEOUT * 2)
        assert (await asyncio.wait_for(ws.recv(), 5)) is not None
        lines = sse.aiter_lines()
        assert any([await anext(lines) for _ in range(3)])


def test_refusal_is_a_complete_response() -> None:
    """The refusal bytes carry a status, a body of the stated length and connection: close."""
    raw = refusal((431, "Request Header Fields Too Large", "too large"))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert f"content-length: {len(body)}".encode() in head


def test_guard_counts_handshakes_per_ip() -> None:
    """Entering and leaving the handshake keeps per-IP counts exact, with no leftovers."""
    guard = HandshakeGuard(HeadLimits())
    for _ in range(3):
        guard.enter("10.0.0.1")
    guard.enter("10.0.0.2")
    guard.leave("10.0.0.1")
    assert guard.in_handshake == {"10.0.0.1": 2, "10.0.0.2": 1}
    guard.leave("10.0.0.1")
    guard.leave("10.0.0.1")
    guard.leave("10.0.0.2")
    assert guard.in_handshake == {}
    assert guard.status()["in_handshake"] == 0


def test_server_log_has_no_traceback(server: ServerProcess, tmp_path: Path) -> None:
    """None of the above made the server log a traceback."""
    assert "Traceback" not in server.log()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"TICKCAST_HANDSHAKE_TIMEOUT": "2", "TICKCAST_MAX_CONNECTIONS_PER_IP": "4"}
    with running_server(tmp_path_factory.mktemp("limited"), ["--source", "sim"], env) as process:
        yield process


async def test_half_sent_heads_count_against_the_per_ip_limit(limited: ServerProcess) -> None:
    """An address holding its limit in half-sent heads gets 429 at once for more
    connections, and WebSocket admission counts its heads beside its sessions."""
    loop = asyncio.get_running_loop()
    heads = [await open_socket("127.0.0.1", limited.port) for _ in range(2)]
    try:
        for sock in heads:
            await loop.sock_sendall(sock, b"GET /price HTTP/1.1\r\nHost: x\r\n")
        async with (
            websockets.connect(limited.ws_base + "/ws?symbols=BTCUSDT"),
            websockets.connect(limited.ws_base + "/ws?symbols=BTCUSDT"),
        ):
            # 2 sessions + 2 heads = the limit of 4: a third WebSocket is refused.
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(limited.ws_base + "/ws?symbols=BTCUSDT"):
                    pass
            assert refused.value.response.status_code == 429
        more = [await open_socket("127.0.0.1", limited.port) for _ in range(2)]
        heads += more
        for sock in more:
            await loop.sock_sendall(sock, b"GET /price HTTP/1.1\r\nHost: x\r\n")
        await asyncio.sleep(0.2)
        # 4 heads pending: the next connection is refused before it sends anything.
        extra = await open_socket("127.0.0.1", limited.port)
        try:
            reply = await read_until_closed(extra, 5)
        finally:
            extra.close()
        assert reply.startswith(b"HTTP/1.1 429 "), reply[:100]
    finally:
        for sock in heads:
            sock.close()
    assert handshakes(limited)["per_ip"] >= 1
    # Once the heads are gone the address is welcome again.
    async with websockets.connect(limited.ws_base + "/ws?symbols=BTCUSDT") as ws:
        assert await asyncio.wait_for(ws.recv(), 10)
