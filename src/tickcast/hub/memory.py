"""The in-memory hub: one process, listeners called synchronously on publish."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from tickcast.hooks import Hooks
from tickcast.hub.base import Listener, Origin
from tickcast.hub.store import TickStore
from tickcast.messages.tick import Tick


def clock_seq() -> int:
    """A first seq for a server's run: the clock in microseconds (well inside a JavaScript
    number's exact range), above every seq of a previous run, so a client resuming with
    an id from before a restart gets a reset, not the new run's history passed off as
    what it missed."""
    return time.time_ns() // 1000


class MemoryHub:
    """Keeps the latest state and history in a ``TickStore`` and fans out in-process."""

    def __init__(self, history_size: int, first_seq: int = 0) -> None:
        # Seqs start above ``first_seq`` (a server passes ``clock_seq()``).
        self._store = TickStore(history_size, first_seq=first_seq)
        self._listeners: Hooks[Tick] = Hooks("hub listener", tick_name)
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
        self._listeners(tick)  # one listener's bug must not starve the others or the ingest

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def on_reset(self, hook: Callable[[str], None]) -> Callable[[], None]:
        # History held in this process is never lost while it runs: no reset to tell.
        return _nothing

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


def _nothing() -> None:
    return None


def tick_name(tick: Tick) -> str:
    """How a tick is named in a log line."""
    return f"{tick.symbol} seq {tick.seq}"
