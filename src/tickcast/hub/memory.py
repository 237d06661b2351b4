"""The in-memory hub: one process, listeners called synchronously on publish."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from tickcast.hub.base import Listener, Origin
from tickcast.hub.store import TickStore
from tickcast.tick import Tick

log = logging.getLogger(__name__)


class MemoryHub:
    """Keeps the latest state and history in a ``TickStore`` and fans out in-process."""

    def __init__(self, history_size: int) -> None:
        self._store = TickStore(history_size)
        self._listeners: list[Listener] = []
        self.published = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._listeners.clear()

    @property
    def connected(self) -> bool:
        return True

    def publish(self, tick: Tick, origin: Origin | None = None) -> None:
        if not self._store.add(tick):
            return
        self.published += 1
        for listener in tuple(self._listeners):
            # One listener's bug must not starve the others or the ingest.
            try:
                listener(tick)
            except Exception:
                log.exception("hub listener failed on %s seq %d", tick.symbol, tick.seq)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def latest(self, symbol: str) -> Tick | None:
        return self._store.latest(symbol)

    def snapshot(self) -> dict[str, Tick]:
        return self._store.snapshot()

    def history(self, symbol: str, limit: int) -> list[Tick]:
        return self._store.history(symbol, limit)

    def since(self, symbols: Iterable[str], after_seq: int) -> list[Tick] | None:
        return self._store.since(symbols, after_seq)

    def last_seq(self) -> int:
        return self._store.last_seq()

    def status(self) -> dict[str, object]:
        return {
            "kind": "memory",
            "connected": True,
            "symbols": len(self._store),
            "last_seq": self._store.last_seq(),
            "published": self.published,
        }
