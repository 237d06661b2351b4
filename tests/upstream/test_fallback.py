"""The portable path: the same app under uvicorn's stock protocols, which do not offer the
``tickcast.raw`` extension, so every client goes through the queued ASGI transport."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import uvicorn
from websockets.asyncio.client import connect

from tickcast.serve.api import create_app
from tickcast.settings import Settings

from ..support import eventually, free_port


@pytest.fixture
async def stock_server() -> AsyncIterator[str]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        source="sim",
        sim_rate=20,
        symbols=["BTCUSDT", "ETHUSDT"],
    )
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws="websockets-sansio", http="h11", log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        base = f"http://127.0.0.1:{port}"

        async def has_price() -> bool:
            async with httpx.AsyncClient() as client:
                with contextlib.suppress(httpx.HTTPError):
                    return (await client.get(base + "/price")).status_code == 200
            return False

        await eventually(has_price, timeout=15)
        assert app.state.edge is not None
        yield base
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_websocket_works_without_the_extension(stock_server: str) -> None:
    """Snapshot, live ticks in order, and op replies, through the queued transport."""
    url = stock_server.replace("http", "ws") + "/ws?symbols=BTCUSDT"
    async with connect(url) as ws:
        first = orjson.loads(await ws.recv())
        assert first["symbol"] == "BTCUSDT"
        await ws.send('{"op":"list","id":1}')
        seqs = [first["seq"]]
        reply = None
        while len(seqs) < 10 or reply is None:
            message = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
            if message["type"] == "tick":
                seqs.append(message["seq"])
            else:
                reply = message
        assert reply == {
            "type": "ack",
            "id": 1,
            "op": "list",
            "symbols": ["BTCUSDT"],
            "streams": ["BTCUSDT@ticker"],
        }
        assert seqs == sorted(set(seqs))


async def test_sse_works_without_the_extension(stock_server: str) -> None:
    """SSE streams ticks with ids through the queued transport."""
    ids: list[int] = []
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", stock_server + "/sse?symbols=ETHUSDT") as stream,
    ):
        async for line in stream.aiter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            if len(ids) >= 5:
                break
    assert ids == sorted(set(ids))
