"""Keep-alive pings from one wheel for every connection: a client that answers keeps
being pinged and stays, one that never answers is closed, and a cancelled ping never
fires."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from websockets.frames import Opcode

from tickcast.edge.leanio import PingWheel

from ..rawclient import RawWebSocket
from ..support import running_server


class Pinged:
    """Stands for a protocol: what the wheel reads and calls."""

    def __init__(self) -> None:
        self.ping_timer: Any = None
        self.pings: list[float] = []

    def send_keepalive_ping(self) -> None:
        self.pings.append(asyncio.get_running_loop().time())


async def test_the_wheel_fires_each_ping_once_near_its_time_and_not_when_cancelled() -> None:
    loop = asyncio.get_running_loop()
    wheel = PingWheel(loop)
    start = loop.time()
    due = [Pinged() for _ in range(50)]
    for i, p in enumerate(due):
        p.ping_timer = wheel.schedule(p, 0.05 + (i % 5) * 0.05)  # type: ignore[arg-type]
    cancelled = Pinged()
    cancelled.ping_timer = wheel.schedule(cancelled, 0.1)  # type: ignore[arg-type]
    cancelled.ping_timer.cancel()
    assert wheel.pending() == 50
    await asyncio.sleep(0.6)
    assert wheel.pending() == 0
    assert cancelled.pings == []
    for i, p in enumerate(due):
        assert len(p.pings) == 1 and p.ping_timer is None
        delay = 0.05 + (i % 5) * 0.05
        assert delay <= p.pings[0] - start <= delay + PingWheel.SLOT + 0.1


async def test_a_replaced_entry_does_not_fire() -> None:
    """A connection that rescheduled (its timer is now another entry) is skipped."""
    wheel = PingWheel(asyncio.get_running_loop())
    p = Pinged()
    wheel.schedule(p, 0.05)  # type: ignore[arg-type]
    p.ping_timer = wheel.schedule(p, 0.3)  # type: ignore[arg-type]
    await asyncio.sleep(0.15)
    assert p.pings == []
    await asyncio.sleep(0.3)
    assert len(p.pings) == 1


async def count_pings(ws: RawWebSocket, seconds: float) -> int:
    """Read (answering pings, as the client protocol does) for ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    pings = 0
    while (left := deadline - loop.time()) > 0:
        try:
            if not await ws._read(timeout=left):
                break
        except TimeoutError:
            break
        pings += sum(f.opcode is Opcode.PING for f in ws._frames)
        ws._frames = [f for f in ws._frames if f.opcode is not Opcode.PING]
    return pings


async def test_clients_that_answer_are_pinged_and_stay_and_silent_ones_are_closed(
    tmp_path: Path,
) -> None:
    # Pings every 0.25 s; a pong 1 s overdue (idle timeout less the interval) closes.
    env = {"TICKCAST_PING_INTERVAL": "0.25", "TICKCAST_IDLE_TIMEOUT": "1.25"}
    with running_server(tmp_path, ["--source", "sim"], env) as server:
        url = f"{server.ws_base}/ws?symbols=BTCUSDT"
        answering = [await RawWebSocket.connect(url) for _ in range(3)]
        silent = await RawWebSocket.connect(url)
        try:
            counts = await asyncio.gather(*(count_pings(ws, 2.0) for ws in answering))
            assert all(count >= 4 for count in counts), counts
            # Never read, so never answered: closed once the pong is 1 s overdue. The
            # others go on answering meanwhile, and are still open and pinged after.
            *later, _ = await asyncio.gather(
                *(count_pings(ws, 1.0) for ws in answering),
                _read_to_end_without_answering(silent),
            )
            assert all(count >= 1 for count in later), later
            assert silent.protocol.close_rcvd is not None
            assert silent.protocol.close_rcvd.code == 1011
            assert silent.protocol.close_rcvd.reason == "keepalive ping timeout"
        finally:
            for ws in [*answering, silent]:
                ws.close()


async def _read_to_end_without_answering(ws: RawWebSocket) -> None:
    """Everything the server sent until it closed, parsed but not answered (the server
    has closed: a pong now would only meet a reset)."""
    loop = asyncio.get_running_loop()
    while data := await asyncio.wait_for(loop.sock_recv(ws.sock, 65536), 5):
        ws.protocol.receive_data(data)
