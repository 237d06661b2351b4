"""The in-memory hub: one process, listeners called synchronously on publish."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from tickcast.hooks import Hooks
from tickcast.hub.base import Listener, Origin
from tickcast.hub.books import HeldBooks
from tickcast.hub.store import MessageStore
from tickcast.messages.message import Message


def clock_seq() -> int:
    """A first seq for a server's run: the clock in microseconds (well inside a JavaScript
    number's exact range), above every seq of a previous run, so a client resuming with
    an id from before a restart gets a reset, not the new run's history passed off as
    what it missed."""
    return time.time_ns() // 1000


class MemoryHub:
    """Keeps the latest state and history in a ``MessageStore`` and fans out in-process."""

    def __init__(self, history_size: int, first_seq: int = 0) -> None:
        # Seqs start above ``first_seq`` (a server passes ``clock_seq()``).
        self._store = MessageStore(history_size, first_seq=first_seq)
        self._listeners: Hooks[Message] = Hooks("hub listener", message_name)
        self.published = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._listeners.clear()

    @property
    def connected(self) -> bool:
        return True

    def publish(self, message: Message, origin: Origin | None = None) -> None:
        if not self._store.add(message):
            return
        self.published += 1
        self._listeners(message)  # one listener's bug must not starve the others or the ingest

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def on_reset(self, hook: Callable[[str], None]) -> Callable[[], None]:
        # History held in this process is never lost while it runs: no reset to tell.
        return _nothing

    def latest(self, key: str) -> Message | None:
        return self._store.latest(key)

    def snapshot(self) -> dict[str, Message]:
        return self._store.snapshot()

    def history(self, key: str, limit: int) -> list[Message]:
        return self._store.history(key, limit)

    def books(self) -> HeldBooks:
        return self._store.books

    def since(self, keys: Iterable[str], after_seq: int) -> list[Message] | None:
        return self._store.since(keys, after_seq)

    def last_seq(self) -> int:
        return self._store.last_seq()

    def status(self) -> dict[str, object]:
        return {
            "kind": "memory",
            "connected": True,
            "symbols": self._store.symbols(),
            "streams": len(self._store),
            "last_seq": self._store.last_seq(),
            "published": self.published,
        }


def _nothing() -> None:
    return None


def message_name(message: Message) -> str:
    """How a message is named in a log line."""
    return f"{message.key} seq {message.seq}"
