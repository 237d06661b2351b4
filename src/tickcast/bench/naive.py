"""The naive broadcaster: the seed server's design, kept as the bench's baseline.

``python -m tickcast.bench.naive --port P --upstream ws://127.0.0.1:S --symbols A,B``

FastAPI on uvicorn (``ws="websockets-sansio"``): a listener reads the exchange with the
``websockets`` client into an unbounded ``asyncio.Queue``; one broadcaster takes each
tick and does ``await asyncio.gather(*(ws.send_text(msg) for ws in clients))``: a
coroutine, a task and an ``await send`` per client per tick. The unbounded queue and the
gather that waits for the slowest client are the design under test, not oversights: one
client that stops reading freezes every client, and the queue then grows.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response

from tickcast.bench.upstream import (
    combined_url,
    follow,
    tick_message,
    ticker_event,
    wanted_symbols,
)


def create_app(upstream: str, symbols: Sequence[str]) -> FastAPI:
    served = frozenset(symbols)
    clients: dict[WebSocket, frozenset[str]] = {}
    latest: dict[str, bytes] = {}
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()  # unbounded, as in the seed
    numbers = itertools.count(1)

    def on_frame(frame: bytes | str) -> None:
        event = ticker_event(frame)
        if event is None:
            return
        message = tick_message(event, next(numbers))
        latest[event["s"]] = message
        queue.put_nowait((event["s"], message.decode()))

    async def broadcast() -> None:
        while True:
            symbol, text = await queue.get()
            targets = [ws for ws, wanted in clients.items() if symbol in wanted]
            results = await asyncio.gather(
                *(ws.send_text(text) for ws in targets), return_exceptions=True
            )
            for ws, result in zip(targets, results, strict=True):
                if isinstance(result, Exception):
                    clients.pop(ws, None)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with asyncio.TaskGroup() as tasks:
            listener = tasks.create_task(follow(combined_url(upstream, symbols), on_frame))
            broadcaster = tasks.create_task(broadcast())
            try:
                yield
            finally:
                listener.cancel()
                broadcaster.cancel()

    app = FastAPI(lifespan=lifespan)

    @app.websocket("/ws")
    async def ws_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        clients[websocket] = wanted_symbols(websocket.url.query, served)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            clients.pop(websocket, None)

    @app.get("/price")
    async def price(symbol: str = "BTCUSDT") -> Response:
        message = latest.get(symbol.upper())
        if message is None:
            return JSONResponse({"error": "no_data"}, status_code=503)
        return Response(message, media_type="application/json")

    @app.get("/status")
    async def status() -> dict[str, object]:
        return {"edge": {"clients": {"total": len(clients)}, "closes": {}}, "queue": queue.qsize()}

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickcast.bench.naive")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="exchange base URL, ws://host:port")
    parser.add_argument("--symbols", required=True, help="comma separated")
    args = parser.parse_args(argv)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    uvicorn.run(
        create_app(args.upstream, symbols),
        host=args.host,
        port=args.port,
        ws="websockets-sansio",
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
