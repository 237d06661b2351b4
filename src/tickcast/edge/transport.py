"""The portable transport: for ASGI servers without the ``tickcast.raw`` extension.

One sender task per client drains a bounded outbox through ASGI ``send``. It is correct
everywhere and slower than the raw path (a task switch per client per batch); the
session treats it the same way: past the high-water mark it stops writing and conflates.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from tickcast.edge.session import TransportKind
from tickcast.edge.wire import WireFormat
from tickcast.errors import CloseReason

HIGH_WATER = 64 * 1024

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
        if self._closing is None:
            self._closing = reason
            self._outbox.clear()
            self._size = 0
            self._wake.set()

    async def run(self) -> None:
        """Send until closed; returns after the close has been sent."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox and self._closing is None:
                data = self._outbox.popleft()
                await self._send(data)
                self._size -= len(data)
            if self._closing is not None:
                await self._closer(self._closing)
                return
            if self._was_full and self._size < HIGH_WATER // 4:
                self._was_full = False
                if self.on_resume is not None:
                    self.on_resume()
