"""The portable, queued transport against clients that stop reading, over real sockets.

The app runs under uvicorn's stock protocols (no ``tickcast.raw`` extension, as under any
other ASGI server), where a write to a stalled client blocks in ``await send()``. The
listening socket's small send buffer (inherited by accepted sockets) and the clients'
small receive buffers make that happen within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from tickcast.serve.api import TickcastApp, create_app
from tickcast.settings import Settings

from ..rawclient import RawWebSocket, raw_http_get
from ..support import eventually


@dataclass
class Stock:
    app: TickcastApp
    base: str


@pytest.fixture
async def stock() -> AsyncIterator[Stock]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        source="sim",
        sim_rate=100,
        slow_client_timeout=1.0,
    )
    app = create_app(settings)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app, ws="websockets-sansio", http="httptools", log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    base = f"http://127.0.0.1:{port}"
    try:

        async def has_price() -> bool:
            async with httpx.AsyncClient() as client:
                with contextlib.suppress(httpx.HTTPError):
                    return (await client.get(base + "/price")).status_code == 200
            return False

        await eventually(has_price, timeout=15)
        yield Stock(app, base)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        listener.close()


async def test_a_stalled_websocket_client_is_closed_and_forgotten(stock: Stock) -> None:
    """A WebSocket client that stops reading is closed as slow and its session detached,
    although the sender is blocked in ``send`` and the client sends nothing."""
    edge = stock.app.edge
    ws = await RawWebSocket.connect(stock.base.replace("http", "ws") + "/ws?symbols=*", rcvbuf=4096)
    try:
        await eventually(lambda: len(edge.sessions) == 1, timeout=5)
        await eventually(lambda: edge.closes["slow_client"] >= 1, timeout=10)
        await eventually(lambda: not edge.sessions, timeout=3)
    finally:
        ws.close()


async def test_a_stalled_event_stream_is_closed_and_forgotten(stock: Stock) -> None:
    """An SSE client that stops reading is closed as slow and its session detached,
    although the sender is blocked in ``send`` and no disconnect arrives."""
    edge = stock.app.edge
    sock, head = await raw_http_get(stock.base + "/sse?symbols=*", rcvbuf=4096)
    try:
        assert head.startswith(b"HTTP/1.1 200")
        await eventually(lambda: len(edge.sessions) == 1, timeout=5)
        await eventually(lambda: edge.closes["slow_client"] >= 1, timeout=10)
        await eventually(lambda: not edge.sessions, timeout=3)
    finally:
        sock.close()
