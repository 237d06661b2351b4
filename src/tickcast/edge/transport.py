"""The portable transport: for ASGI servers without the ``tickcast.raw`` extension.

One sender task per client drains a bounded outbox through ASGI ``send``. It is correct
everywhere and slower than the raw path (a task switch per client per batch); the
session treats it the same way: past the high-water mark it stops writing and conflates.

ASGI's ``send`` may wait for as long as the client does not read (uvicorn's waits while
the socket is paused), so nothing here waits on it to close a client: ``close`` wakes the
endpoint at once (``wait_closed``), and leaving ``running`` cancels the sender wherever it
is blocked and gives the close message a bounded time of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from tickcast.edge.contracts import TransportKind
from tickcast.edge.wire import WireFormat
from tickcast.errors import CloseReason
from tickcast.tasks import cancel_and_wait

HIGH_WATER = 64 * 1024
# How long the close message (a WebSocket close frame, the end of an SSE body) may wait
# for a client to take it; one that reads nothing would otherwise hold its endpoint forever.
CLOSE_GRACE = 2.0

SendBytes = Callable[[bytes], Awaitable[None]]
Closer = Callable[[CloseReason], Awaitable[None]]


class QueuedTransport:
    def __init__(
        self, kind: TransportKind, wire_format: WireFormat, send: SendBytes, closer: Closer
    ) -> None:
        self.kind: TransportKind = kind
        self.wire_format: WireFormat = wire_format
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None
        self._send = send
        self._closer = closer
        self._outbox: deque[bytes] = deque()
        self._size = 0
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing: CloseReason | None = None
        self._was_full = False

    @property
    def writable(self) -> bool:
        return self._closing is None and self._size < HIGH_WATER

    def write(self, data: bytes) -> None:
        if self._closing is not None:
            return
        self._outbox.append(data)
        self._size += len(data)
        self._wake.set()
        if self._size >= HIGH_WATER and not self._was_full:
            self._was_full = True
            if self.on_pause is not None:
                self.on_pause()

    def buffered(self) -> int:
        return self._size

    def close(self, reason: CloseReason) -> None:
        """Stop taking writes and drop what is queued; the endpoint is woken at once."""
        if self._closing is None:
            self._closing = reason
            self._outbox.clear()
            self._size = 0
            self._wake.set()
            self._closed.set()

    async def wait_closed(self) -> None:
        """Return once ``close`` has been called (by the session, or on a send failure)."""
        await self._closed.wait()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the sender for the body of the ``async with``; on the way out, close (if
        not closed yet), stop the sender even if it is blocked in ``send``, and send the
        close message, giving up after ``CLOSE_GRACE`` seconds."""
        sender = asyncio.create_task(self._send_queued(), name=f"{self.kind}-sender")
        try:
            yield
        finally:
            self.close(CloseReason.SHUTDOWN)
            await cancel_and_wait(sender)
            reason = self._closing or CloseReason.SHUTDOWN
            # TimeoutError included: the client took nothing in time, the server's own
            # clean-up ends the connection once the endpoint returns.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._closer(reason), CLOSE_GRACE)

    async def until_closed(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (the endpoint's own loop) until it returns or this transport is
        closed, whichever comes first; the other is cancelled."""
        task = asyncio.create_task(work)
        closed = asyncio.create_task(self.wait_closed())
        try:
            await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(task, closed)

    async def _send_queued(self) -> None:
        while self._closing is None:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox and self._closing is None:
                data = self._outbox.popleft()
                try:
                    await self._send(data)
                except Exception:
                    # The connection is gone (the server raises on a send after the
                    # disconnect): nothing more can be written to it.
                    self.close(CloseReason.GONE)
                    return
                if self._closing is None:  # close() has already emptied the count
                    self._size -= len(data)
            if self._was_full and self._size < HIGH_WATER // 4:
                self._was_full = False
                if self.on_resume is not None:
                    self.on_resume()
