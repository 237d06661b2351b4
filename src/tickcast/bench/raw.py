"""The raw broadcaster: the practical limit of fan-out in Python, for comparison.

``python -m tickcast.bench.raw --port P --upstream ws://127.0.0.1:S --symbols A,B
[--streams trades]``

A plain ``asyncio.Protocol`` server on uvloop: the WebSocket upgrade by hand, each tick
framed once, then one ``transport.write`` per subscribed client and nothing else: no
ASGI, no session, no conflation. The one policy it has is the minimum a server needs to
survive a client that stops reading: flow control marks the client paused, and a
sweep resets one paused longer than ``--slow-timeout``. It answers ``GET /price`` and
``GET /status`` (``{"edge": {"clients": ..., "closes": ...}}``) for the bench.

With ``--streams trades`` it reads ``<symbol>@aggTrade`` instead and relays each trade as
tickcast's trade message to the clients of ``/ws?streams=SYMBOL@trades``. It has no bound
on what it holds for a client: a client that stops reading gets every trade once it reads
again (or is reset by the sweep), however much piles up for it meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import socket
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast
from urllib.parse import parse_qs

import orjson
import uvloop

from tickcast.bench.upstream import (
    combined_url,
    follow,
    tick_message,
    ticker_event,
    trade_event,
    trade_message,
    wanted_streams,
    wanted_symbols,
)
from tickcast.bench.wsbytes import (
    MAX_HEAD,
    BadHead,
    http_response,
    parse_request,
    switching_protocols,
)
from tickcast.edge.wire import ws_text_frame

SWEEP_INTERVAL = 0.5
SNDBUF = 65536  # as tickcast's default TICKCAST_CLIENT_SNDBUF, for the same stall timing
WRITE_HIGH = 64 * 1024


class RawServer:
    """Subscribers per symbol, the latest message per symbol, the slow-client sweep."""

    def __init__(self, symbols: Sequence[str], slow_timeout: float, trades: bool = False) -> None:
        self.served = frozenset(symbols)
        self.slow_timeout = slow_timeout
        self.trades = trades
        self.event, self.message = (
            (trade_event, trade_message) if trades else (ticker_event, tick_message)
        )
        self.subscribers: dict[str, dict[RawClient, Callable[[bytes], None]]] = {
            s: {} for s in self.served
        }
        self.clients: set[RawClient] = set()
        self.latest: dict[str, bytes] = {}
        self.closes: Counter[str] = Counter()
        self._numbers = itertools.count(1)

    def on_frame(self, frame: bytes | str) -> None:
        event = self.event(frame)
        if event is None or event["s"] not in self.served:
            return
        message = self.message(event, next(self._numbers))
        self.latest[event["s"]] = message
        wire = ws_text_frame(message)
        for write in tuple(self.subscribers[event["s"]].values()):
            write(wire)

    def wanted(self, query: str) -> frozenset[str]:
        """The served symbols a client's query string asks for."""
        if self.trades:
            return wanted_streams(query, self.served)
        return wanted_symbols(query, self.served)

    def other(self, path: str, query: str) -> tuple[int, bytes] | None:
        """The answer to a request for another path (None: 404)."""
        return None

    def add(self, client: RawClient, symbols: frozenset[str]) -> None:
        self.clients.add(client)
        assert client.transport is not None
        for symbol in symbols:
            self.subscribers[symbol][client] = client.transport.write

    def remove(self, client: RawClient) -> None:
        self.clients.discard(client)
        for subscribers in self.subscribers.values():
            subscribers.pop(client, None)

    def status(self) -> bytes:
        edge = {"clients": {"total": len(self.clients)}, "closes": dict(self.closes)}
        return orjson.dumps({"edge": edge})

    async def sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = loop.time()
            for client in tuple(self.clients):
                since = client.paused_since
                if since is not None and now - since >= self.slow_timeout:
                    self.closes["slow_client"] += 1
                    self.remove(client)
                    if client.transport is not None:
                        client.transport.abort()


class RawClient(asyncio.Protocol):
    """One connection: a request head, then either a WebSocket or one HTTP answer."""

    def __init__(self, server: RawServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.upgraded = False
        self.paused_since: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_HIGH // 4)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.upgraded:
            # Client frames are only pongs or a close (opcode 8): close on the latter.
            if data[:1] == b"\x88":
                self.transport.close()
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self.transport.abort()
            return
        try:
            request = parse_request(self.head[:end])
        except BadHead:
            self._answer(400, b'{"error":"bad_request"}')
            return
        if request.path == "/ws" and request.headers.get("upgrade", "").lower() == "websocket":
            key = request.headers.get("sec-websocket-key", "")
            self.transport.write(switching_protocols(key))
            self.upgraded = True
            self.server.add(self, self.server.wanted(request.query))
        elif request.path == "/price":
            symbol = parse_qs(request.query).get("symbol", ["BTCUSDT"])[0].upper()
            message = self.server.latest.get(symbol)
            if message is None:
                self._answer(503, b'{"error":"no_data"}')
            else:
                self._answer(200, message)
        elif request.path == "/status":
            self._answer(200, self.server.status())
        else:
            answer = self.server.other(request.path, request.query)
            self._answer(*(answer or (404, b'{"error":"not_found"}')))

    def _answer(self, status: int, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(http_response(status, body))
        self.transport.close()

    def pause_writing(self) -> None:
        if self.transport is not None and self.paused_since is None:
            self.paused_since = asyncio.get_running_loop().time()

    def resume_writing(self) -> None:
        self.paused_since = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.remove(self)


async def serve(
    host: str, port: int, upstream: str, symbols: Sequence[str], slow: float, trades: bool
) -> None:
    server = RawServer(symbols, slow, trades)
    url = combined_url(upstream, symbols, "aggTrade" if trades else "ticker")
    await listen(server, host, port, url)


async def listen(
    server: RawServer, host: str, port: int, url: str, *more: Coroutine[Any, Any, None]
) -> None:
    """Serve clients from ``server`` fed by the combined stream ``url``, until cancelled;
    ``more`` runs beside them."""
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: RawClient(server), host, port, backlog=2048)
    async with listener, asyncio.TaskGroup() as tasks:
        tasks.create_task(follow(url, server.on_frame))
        tasks.create_task(server.sweep())
        for coroutine in more:
            tasks.create_task(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickcast.bench.raw")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="exchange base URL, ws://host:port")
    parser.add_argument("--symbols", required=True, help="comma separated")
    parser.add_argument("--slow-timeout", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--streams", choices=("ticker", "trades"), default="ticker")
    args = parser.parse_args(argv)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    trades = args.streams == "trades"
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, args.upstream, symbols, args.slow_timeout, trades))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
