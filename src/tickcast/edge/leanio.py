"""Small event-loop pieces the fast path's WebSocket protocol uses in place of asyncio's
general ones, for tens of thousands of connections: a receive queue and an event with
one slot each, and one keep-alive timer per event loop for every connection's pings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, cast


class Pingable(Protocol):
    """A connection the ``PingWheel`` pings: its pending entry, and the ping itself."""

    ping_timer: Any

    def send_keepalive_ping(self) -> None: ...


class LeanQueue:
    """What uvicorn's WebSocket protocol needs of its receive queue (``put_nowait``,
    ``get``, ``empty``), without ``asyncio.Queue``'s three deques and an event: about
    3 KB per connection for a queue that rarely holds more than one message."""

    __slots__ = ("_handler", "_items", "_waiter")

    def __init__(self) -> None:
        # Made on first use: a connection's queue usually holds one message, once, and
        # none after ``deliver_to``.
        self._items: list[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._handler: Callable[[Any], None] | None = None

    @property
    def direct(self) -> bool:
        return self._handler is not None

    def deliver_to(self, handler: Callable[[Any], None]) -> None:
        """From now on hand every message to ``handler`` as it arrives (what was
        queued first): nothing waits on ``get`` any more."""
        self._handler = handler
        items, self._items = self._items, None
        for item in items or ():
            handler(item)

    def put_nowait(self, item: Any) -> None:
        if self._handler is not None:
            self._handler(item)
            return
        if self._items is None:
            self._items = []
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items


class LeanEvent:
    """``asyncio.Event``'s interface with one slot instead of a deque of waiters."""

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[asyncio.Future[None]] | None = None  # made on first wait

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> None:
        while not self._flag:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter


class _PingEntry:
    """A connection's place in the ``PingWheel``; ``cancel`` like a TimerHandle."""

    __slots__ = ("_bucket", "_protocol")

    def __init__(self, bucket: set[_PingEntry], protocol: Pingable) -> None:
        self._bucket = bucket
        self._protocol = protocol

    def cancel(self) -> None:
        self._bucket.discard(self)


class PingWheel:
    """Every WebSocket connection's next keep-alive ping, in buckets of ``SLOT`` seconds,
    served by one timer per event loop. Pings stay spread over time (20,000 clients
    pinged every 20 s are 100 pings per 0.1 s slot), each up to ``SLOT`` late."""

    SLOT: ClassVar[float] = 0.1
    _wheels: ClassVar[dict[asyncio.AbstractEventLoop, PingWheel]] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, set[_PingEntry]] = {}
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> PingWheel:
        wheel = cls._wheels.get(loop)
        if wheel is None or loop.is_closed():
            cls._wheels = {lp: w for lp, w in cls._wheels.items() if not lp.is_closed()}
            wheel = cls._wheels[loop] = cls(loop)
        return wheel

    def schedule(self, protocol: Pingable, delay: float) -> _PingEntry:
        slot = int((self._loop.time() + delay) / self.SLOT) + 1
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = set()
        entry = _PingEntry(bucket, protocol)
        bucket.add(entry)
        if self._timer is None:
            self._timer = self._loop.call_at(slot * self.SLOT, self._turn)
        return entry

    def pending(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def _turn(self) -> None:
        self._timer = None
        now = self._loop.time()
        for slot in sorted(s for s in self._buckets if s * self.SLOT <= now):
            for entry in self._buckets.pop(slot):
                protocol = entry._protocol
                if cast(object, protocol.ping_timer) is entry:
                    protocol.ping_timer = None
                    protocol.send_keepalive_ping()
        if self._buckets:
            self._timer = self._loop.call_at(min(self._buckets) * self.SLOT, self._turn)
