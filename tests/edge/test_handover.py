"""A fast-path WebSocket after its handshake belongs to its protocol and its session: the
app's task ends (no coroutine waits per client), and the connection goes on being served,
answered and closed as before. In process, under the real server's protocols."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
import uvicorn
import websockets

from tickcast.edge import ws as ws_module
from tickcast.edge.fanout import Edge
from tickcast.serve.api import TickcastApp
from tickcast.serve.server import uvicorn_config
from tickcast.settings import Settings

from ..support import eventually


@dataclass
class Served:
    server: uvicorn.Server
    edge: Edge
    url: str


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    settings = Settings(_env_file=None, source="sim", sim_rate=20)  # type: ignore[call-arg]
    config = uvicorn_config(settings)
    config.log_config = None
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    app = config.app
    assert isinstance(app, TickcastApp)
    try:
        await eventually(lambda: server.started, timeout=15)
        yield Served(server, app.edge, f"ws://127.0.0.1:{port}/ws?symbols=BTCUSDT")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        listener.close()


async def next_tick(ws: websockets.ClientConnection) -> dict[str, object]:
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if message.get("type") == "tick":
            assert isinstance(message, dict)
            return message


async def test_connections_outlive_their_app_tasks_and_are_served_to_the_end(
    served: Served,
) -> None:
    """Three clients get ticks with no app task left running; ops are answered; a client
    that leaves is forgotten; the server's shutdown closes the others with 1001."""
    clients = [await websockets.connect(served.url) for _ in range(3)]
    for ws in clients:
        await next_tick(ws)
    assert len(served.server.server_state.connections) == 3
    assert served.server.server_state.tasks == set()
    assert len(served.edge.sessions) == 3
    await clients[0].send(orjson.dumps({"op": "ping", "id": 5}).decode())
    while (reply := orjson.loads(await asyncio.wait_for(clients[0].recv(), 10)))["type"] == "tick":
        pass
    assert reply == {"type": "pong", "id": 5}
    await clients[0].close()
    await eventually(lambda: len(served.edge.sessions) == 2)
    await next_tick(clients[1])  # the others go on
    served.server.should_exit = True
    for ws in clients[1:]:
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1001


async def test_an_error_handling_a_message_closes_that_client_with_1011(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault of the server while handling one client's message (no app task is left to
    fail with it) is logged, that client is closed with 1011 and forgotten, and the others
    are not touched."""
    real = ws_module._on_message

    def failing(edge: Edge, session: object, message: dict[str, object]) -> None:
        if message.get("text") == "boom":
            raise RuntimeError("a fault of the server")
        real(edge, session, message)  # type: ignore[arg-type]

    monkeypatch.setattr(ws_module, "_on_message", failing)
    victim, other = [await websockets.connect(served.url) for _ in range(2)]
    await next_tick(victim)
    with caplog.at_level(logging.ERROR, logger="tickcast.edge.ws"):
        await victim.send("boom")
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(victim.recv(), 10)
    assert victim.close_code == 1011
    assert victim.close_reason == "internal error"
    assert any("after an error handling its message" in r.message for r in caplog.records)
    assert any(r.exc_info for r in caplog.records)
    await eventually(lambda: len(served.edge.sessions) == 1)
    await next_tick(other)
    await other.send(orjson.dumps({"op": "ping", "id": 1}).decode())
    while (reply := orjson.loads(await asyncio.wait_for(other.recv(), 10)))["type"] == "tick":
        pass
    assert reply == {"type": "pong", "id": 1}
    await other.close()
