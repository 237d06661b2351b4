"""Slow, stalled and vanishing clients against a real server: nobody else waits for them.

One server for the module: 50 ticks/s per symbol, a 2 s slow-client timeout and a 16 KiB
kernel send buffer per client, so backpressure shows within a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tickcast.settings import DEFAULT_SYMBOLS

from ..rawclient import RawWebSocket, abort_socket, raw_http_get
from ..support import TICKERS_ONLY, ServerProcess, eventually, newest_seq, running_server

SLOW_CLIENT_TIMEOUT = 2.0
RATE = 50
HEALTHY = 50

# Each test times a close, counts ticks at full rate or bounds memory while 50 clients
# read 5,000 ticks/s: on a busy machine the clients themselves fall behind. Run alone.
pytestmark = pytest.mark.solo


@pytest.fixture(scope="module")
def slow_feed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A second server, 2 ticks/s per symbol, for the slow-feed test. Started (not waited
    for) together with the module's server, so the two start-ups overlap."""
    env = {"TICKCAST_SIM_RATE": "2", "TICKCAST_SLOW_CLIENT_TIMEOUT": "2"}
    process = ServerProcess(["--source", "sim"], env, tmp_path_factory.mktemp("feed") / "s.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, slow_feed: ServerProcess
) -> Iterator[ServerProcess]:
    env = {
        "TICKCAST_SIM_RATE": str(RATE),
        "TICKCAST_SLOW_CLIENT_TIMEOUT": str(SLOW_CLIENT_TIMEOUT),
        "TICKCAST_CLIENT_SNDBUF": "16384",
        "TICKCAST_LOG_LEVEL": "warning",
        **TICKERS_ONLY,
    }
    with running_server(tmp_path_factory.mktemp("slow"), ["--source", "sim"], env) as s:
        yield s


def edge_status(server: ServerProcess) -> dict[str, object]:
    edge = server.status()["edge"]
    assert isinstance(edge, dict)
    return edge


def clients_total(server: ServerProcess) -> int:
    clients = edge_status(server)["clients"]
    assert isinstance(clients, dict)
    return int(clients["total"])


def server_closes(server: ServerProcess) -> int:
    closes = edge_status(server)["closes"]
    assert isinstance(closes, dict)
    return int(closes.get("slow_client", 0)) + int(closes.get("buffer_full", 0))


def rss_bytes(server: ServerProcess) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def history_seqs(server: ServerProcess, symbol: str) -> list[int]:
    return [int(t["seq"]) for t in server.get(f"/history/{symbol}?limit=1000").json()]


async def idle(server: ServerProcess) -> None:
    """Wait until earlier tests' clients are gone."""
    await eventually(lambda: clients_total(server) == 0, timeout=10)


async def receive_until(
    ws: ClientConnection, stop: asyncio.Event, into: list[dict[str, object]] | None = None
) -> list[dict[str, object]]:
    out: list[dict[str, object]] = [] if into is None else into
    while not stop.is_set():
        try:
            raw = await asyncio.wait_for(ws.recv(), 0.2)
        except TimeoutError:
            continue
        out.append(orjson.loads(raw))
    return out


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_a_client_that_never_reads_is_closed_and_harms_nobody(
    server: ServerProcess, deflate: bool
) -> None:
    """A stalled client is closed on time; 50 others get every tick; memory stays bounded.
    The same for a stalled client with permessage-deflate, whose frames are smaller."""
    await idle(server)
    rss_before = rss_bytes(server)
    closes_before = server_closes(server)
    plans = [(DEFAULT_SYMBOLS[i % 10], DEFAULT_SYMBOLS[(i + 3) % 10]) for i in range(HEALTHY)]
    healthy = [await connect(f"{server.ws_base}/ws?symbols={a},{b}") for a, b in plans]
    stop = asyncio.Event()
    try:
        got: list[list[dict[str, object]]] = [[] for _ in healthy]
        receivers = [
            asyncio.create_task(receive_until(ws, stop, into))
            for ws, into in zip(healthy, got, strict=True)
        ]
        await eventually(lambda: all(len(messages) > 2 for messages in got))  # snapshots, live
        stalled = await RawWebSocket.connect(
            server.ws_base + "/ws?symbols=*", rcvbuf=4096, deflate=deflate
        )
        stalled_at = time.monotonic()
        try:
            await eventually(lambda: server_closes(server) > closes_before, timeout=15)
            closed_after = time.monotonic() - stalled_at
            await eventually(lambda: clients_total(server) == HEALTHY, timeout=5)
            # The others read on for another second of ticks.
            after_close = newest_seq(server)
            await eventually(lambda: newest_seq(server) > after_close + RATE * 10)
        finally:
            stalled.close()
        stop.set()
        received = await asyncio.gather(*receivers)
    finally:
        stop.set()
        for ws in healthy:
            await ws.close()
    assert SLOW_CLIENT_TIMEOUT <= closed_after < SLOW_CLIENT_TIMEOUT + 4.0
    assert rss_bytes(server) - rss_before < 50 * 2**20

    history = {symbol: history_seqs(server, symbol) for symbol in DEFAULT_SYMBOLS}
    for (a, b), messages in zip(plans, received, strict=True):
        assert {m["type"] for m in messages} == {"tick"}
        for symbol in (a, b):
            got = [int(str(m["seq"])) for m in messages if m["symbol"] == symbol]
            reference = [s for s in history[symbol] if got[0] <= s <= got[-1]]
            assert got == reference, f"{symbol}: a healthy client missed ticks"
            # Snapshot plus live for the whole run (about 4 s at 50/s): full rate.
            assert len(got) >= RATE * 2.5, (symbol, len(got))


async def test_a_slow_reader_gets_conflated_current_values(server: ServerProcess) -> None:
    """A slow reader gets fewer, never older, values, stays open and is current on catch-up.
    (Conflation is the session's, whatever the frames: the stalled-client test above runs
    with permessage-deflate too.)"""
    await idle(server)
    conflated_before = edge_status(server)["conflated"]
    ws = await RawWebSocket.connect(server.ws_base + "/ws", rcvbuf=4096)
    try:
        first_seq = int(server.get("/price").json()["seq"])
        seen: list[dict[str, object]] = []
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            seen.append(await ws.next_message(size=512))
            await asyncio.sleep(0.02)
        published = int(server.get("/price").json()["seq"]) - first_seq
        latest = {t["symbol"]: int(t["seq"]) for t in server.get("/prices").json()}
        newest: dict[object, int] = {}
        caught_up_at = time.monotonic()
        while any(newest.get(s, 0) < seq for s, seq in latest.items()):
            assert time.monotonic() - caught_up_at < 5.0, "never caught up"
            message = await ws.next_message()
            newest[message["symbol"]] = int(message["seq"])  # type: ignore[call-overload]
            seen.append(message)
        caught_up = time.monotonic() - caught_up_at
        assert clients_total(server) == 1, "the slow reader was closed"
    finally:
        ws.close()
    assert {m["type"] for m in seen} == {"tick"}
    last: dict[object, int] = {}
    for m in seen:
        seq = int(m["seq"])  # type: ignore[call-overload]
        assert seq > last.get(m["symbol"], 0), f"{m['symbol']}: seq {seq} after {last}"
        last[m["symbol"]] = seq
    assert published > 1000
    assert len(seen) < published / 3, (len(seen), published)
    assert caught_up < 1.0
    assert int(str(edge_status(server)["conflated"])) > int(str(conflated_before)) + 100


async def test_500_websocket_clients_vanishing_at_once_are_all_forgotten(
    server: ServerProcess,
) -> None:
    """500 WebSocket clients reset at once: client and subscription counts return to 0."""
    await idle(server)
    gate = asyncio.Semaphore(50)

    async def one() -> RawWebSocket:
        async with gate:
            ws = await RawWebSocket.connect(
                server.ws_base + "/ws?symbols=BTCUSDT,ETHUSDT&throttle_ms=1000"
            )
            assert ws.response is not None and ws.response.status_code == 101
            return ws

    clients = await asyncio.gather(*(one() for _ in range(500)), return_exceptions=True)
    sockets = [c for c in clients if isinstance(c, RawWebSocket)]
    try:
        assert len(sockets) == 500, [c for c in clients if isinstance(c, BaseException)][:3]
        await eventually(lambda: clients_total(server) == 500, timeout=15)
        assert edge_status(server)["subscriptions"] == 1000
    finally:
        for ws in sockets:
            ws.abort()
    await eventually(lambda: clients_total(server) == 0, timeout=10)
    assert edge_status(server)["subscriptions"] == 0
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT") as fresh:
        assert orjson.loads(await asyncio.wait_for(fresh.recv(), 5))["symbol"] == "BTCUSDT"


async def test_100_sse_clients_vanishing_at_once_are_all_forgotten(
    server: ServerProcess,
) -> None:
    """100 SSE clients reset their connections at once; the edge forgets all of them."""
    await idle(server)
    gate = asyncio.Semaphore(50)

    async def one() -> object:
        async with gate:
            sock, head = await raw_http_get(
                server.base + "/sse?symbols=BTCUSDT,ETHUSDT&throttle_ms=1000"
            )
            if not head.startswith(b"HTTP/1.1 200"):
                sock.close()
                raise AssertionError(head)
            return sock

    opened = await asyncio.gather(*(one() for _ in range(100)), return_exceptions=True)
    sockets = [s for s in opened if not isinstance(s, BaseException)]
    try:
        assert len(sockets) == 100, [s for s in opened if isinstance(s, BaseException)][:3]
        await eventually(lambda: clients_total(server) == 100, timeout=15)
        assert edge_status(server)["subscriptions"] == 200
    finally:
        for sock in sockets:
            abort_socket(sock)  # type: ignore[arg-type]
    await eventually(lambda: clients_total(server) == 0, timeout=10)
    assert edge_status(server)["subscriptions"] == 0


async def test_a_client_that_stops_reading_a_slow_feed_is_closed_on_time(
    slow_feed: ServerProcess,
) -> None:
    """At 2 ticks/s of one symbol (about 0.5 KB/s) the socket buffers would take minutes
    to fill; the kernel's acknowledged-bytes counter shows the stall within the timeout."""
    slow_feed.wait_ready()
    before = server_closes(slow_feed)
    stalled = await RawWebSocket.connect(slow_feed.ws_base + "/ws?symbols=BTCUSDT", rcvbuf=1024)
    started = time.monotonic()
    try:
        await eventually(lambda: server_closes(slow_feed) > before, timeout=20)
        closed_after = time.monotonic() - started
    finally:
        stalled.close()
    closes = edge_status(slow_feed)["closes"]
    assert isinstance(closes, dict)
    assert closes.get("slow_client", 0) >= 1
    # The timeout, plus up to one check period (timeout/4) and the buffers' first second.
    assert closed_after < 2 + 0.5 + 4.0
