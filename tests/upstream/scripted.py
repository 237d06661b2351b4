"""A Binance-shaped WebSocket server whose frames the test chooses, over real loopback sockets.

It acks every SUBSCRIBE like Binance (``{"result":null,"id":..}``) and sends, every
``interval`` seconds, the frames that ``script(step)`` returns to every connection; with no
script it stays silent (connections open, no data). ``in_thread`` runs it on its own event
loop, for tests whose own thread blocks (a server process polled with plain HTTP calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

Script = Callable[[int], Sequence[str | bytes]]


class ScriptedExchange:
    """Serves ``script``'s frames to every connection; counts connections and SUBSCRIBEs."""

    def __init__(self, script: Script | None = None, interval: float = 0.02) -> None:
        self.script = script
        self.interval = interval
        self.open_connections = 0
        self.connections_total = 0
        self.subscribed: list[str] = []
        self.frames_sent = 0
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await serve(self._serve, "127.0.0.1", 0, compression=None)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, ws: ServerConnection) -> None:
        self.open_connections += 1
        self.connections_total += 1
        answering = asyncio.create_task(self._answer(ws))
        try:
            if self.script is None:
                await ws.wait_closed()
                return
            step = 0
            while True:
                await asyncio.sleep(self.interval)
                for frame in self.script(step):
                    await ws.send(frame)
                    self.frames_sent += 1
                step += 1
        except ConnectionClosed:
            pass
        finally:
            answering.cancel()
            await asyncio.gather(answering, return_exceptions=True)
            self.open_connections -= 1

    async def _answer(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                request = orjson.loads(message)
                if request.get("method") == "SUBSCRIBE":
                    self.subscribed.extend(request["params"])
                    await ws.send(orjson.dumps({"result": None, "id": request["id"]}).decode())


@contextlib.contextmanager
def in_thread(exchange: ScriptedExchange) -> Iterator[ScriptedExchange]:
    """Run ``exchange`` on an event loop of its own thread until the block ends."""
    loop = asyncio.new_event_loop()
    stopped = asyncio.Event()
    started = threading.Event()

    async def main() -> None:
        await exchange.start()
        started.set()
        try:
            await stopped.wait()
        finally:
            await exchange.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        assert started.wait(10), "the scripted exchange did not start"
        yield exchange
    finally:
        loop.call_soon_threadsafe(stopped.set)
        thread.join(10)
        loop.close()
