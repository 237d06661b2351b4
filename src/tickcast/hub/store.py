"""Latest message and bounded history per stream: the state both hubs keep in memory."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from tickcast.hub.books import HeldBooks
from tickcast.messages.book import Book, BookStatus, Depth
from tickcast.messages.message import Message


class MessageStore:
    """Latest message per stream key plus the last ``history_size`` messages of each.

    A stream's key is the message's ``key``: the bare symbol for ticks, the stream name for
    the other kinds (``BTCUSDT@trades``). It remembers the highest ``seq`` it has evicted
    per key, so it can tell exactly whether a resume from a given ``seq`` is still complete.

    Order books are held whole (``books``): the latest of ``SYMBOL@depth`` is the whole
    held book, not the last diff, and a book that is not whole has no latest at all.
    """

    def __init__(self, history_size: int, first_seq: int = 0) -> None:
        self._history_size = history_size
        self._latest: dict[str, Message] = {}
        self._history: dict[str, deque[Message]] = {}
        self._evicted: dict[str, int] = {}
        # Seqs of this store start above ``first_seq``: anything at or below it belongs to
        # another history (a previous run of the server), which cannot be resumed here.
        self._floor = first_seq
        self._last_seq = first_seq
        self.books = HeldBooks()

    def add(self, message: Message) -> bool:
        """Record ``message``; returns False (and records nothing) for a seq already held."""
        if message.seq <= self._last_seq:
            return False
        self._last_seq = message.seq
        key = message.key
        self._latest[key] = message
        ring = self._history.get(key)
        if ring is None:
            ring = self._history[key] = deque(maxlen=self._history_size)
        if len(ring) == self._history_size:
            self._evicted[key] = ring[0].seq
        ring.append(message)
        if isinstance(message, Depth | Book | BookStatus):
            self.books.add(message)
        return True

    def latest(self, key: str) -> Message | None:
        symbol, _, kind = key.partition("@")
        if kind == "depth":
            return self.books.depth(symbol)
        if kind == "book":
            return self.books.top(symbol)
        if kind == "book-status":
            return self.books.status(symbol)
        return self._latest.get(key)

    def snapshot(self) -> dict[str, Message]:
        return dict(self._latest)

    def history(self, key: str, limit: int) -> list[Message]:
        ring = self._history.get(key)
        if not ring or limit <= 0:
            return []
        return list(ring)[-limit:]

    def since(self, keys: Iterable[str], after_seq: int) -> list[Message] | None:
        if self._floor and after_seq < self._floor:
            return None
        out: list[Message] = []
        for key in keys:
            evicted = self._evicted.get(key)
            if evicted is not None and evicted > after_seq:
                return None
            ring = self._history.get(key)
            if ring:
                out.extend(m for m in ring if m.seq > after_seq)
        out.sort(key=lambda m: m.seq)
        return out

    def last_seq(self) -> int:
        return self._last_seq

    def symbols(self) -> int:
        """How many symbols have a tick held (a tick's key is its bare symbol)."""
        return sum("@" not in key for key in self._latest)

    def __len__(self) -> int:
        return len(self._latest)
