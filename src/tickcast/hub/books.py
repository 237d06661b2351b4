"""The order books a hub holds, rebuilt from its own messages on every node.

The leader publishes, per symbol, a whole ``Book`` of ``SYMBOL@depth`` when the book
becomes whole (and, with Redis, again now and then: a node that reads the stream late
starts from the newest), a ``Depth`` diff for each change, a ``Book`` of ``SYMBOL@book``
(the top levels) at most every book interval, and a ``BookStatus`` when the book stops
being whole. ``HeldBooks`` applies them in seq order, as every node's store receives them,
so every node holds the same book at the same ``update_id``: what a new ``@depth``
subscriber gets first, what ``/book`` answers, and what a new leader continues from.

A held book is served only while it is whole: from a whole ``Book`` on, with every diff
since connecting to the one before (``first_update_id`` one past the held ``update_id``).
A diff that does not connect (this node missed a message) or a ``BookStatus`` makes the
book not whole until the next whole ``Book``; meanwhile nothing is served from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tickcast.messages.book import Book, BookStatus, Depth, apply_levels, sorted_levels
from tickcast.messages.tick import SourceLabel

HeldState = Literal["synced", "syncing", "broken"]


@dataclass(slots=True)
class _Held:
    """One symbol's book as the hub's messages built it."""

    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)
    update_id: int = 0
    seq: int = 0
    timestamp_ms: int = 0
    source: SourceLabel = "sim"
    whole: bool = False
    status: BookStatus | None = None
    top: Book | None = None
    # The whole book as a message, built on first use after each change.
    full: Book | None = None


class HeldBooks:
    """Every symbol's held book (see the module docstring); fed in seq order by ``add``."""

    def __init__(self) -> None:
        self._books: dict[str, _Held] = {}
        # Diffs that did not connect to the held book, by symbol (a message missed).
        self.disconnected = 0

    def add(self, message: Book | Depth | BookStatus) -> None:
        held = self._books.get(message.symbol)
        if held is None:
            held = self._books[message.symbol] = _Held()
        if type(message) is Depth:
            self._apply(held, message)
        elif type(message) is Book:
            held.timestamp_ms = max(held.timestamp_ms, message.timestamp_ms)
            if message.kind == "depth":
                self._replace(held, message)
            elif held.whole:
                held.top = message
        elif type(message) is BookStatus:
            self._lose(held, message)

    def _replace(self, held: _Held, book: Book) -> None:
        held.bids = dict(book.bids)
        held.asks = dict(book.asks)
        held.update_id = book.update_id
        held.seq = book.seq
        held.source = book.source
        held.whole = True
        held.status = None
        held.full = book

    def _apply(self, held: _Held, diff: Depth) -> None:
        if not held.whole:
            return  # no book to apply it to: the next whole book starts it over
        if diff.first_update_id != held.update_id + 1:
            self.disconnected += 1
            detail = f"diff from {diff.first_update_id}, held book at {held.update_id}"
            self._lose(
                held, BookStatus(diff.symbol, "broken", "gap", detail, diff.seq, diff.source)
            )
            return
        apply_levels(held.bids, diff.bids)
        apply_levels(held.asks, diff.asks)
        held.update_id = diff.update_id
        held.seq = diff.seq
        held.full = None

    def _lose(self, held: _Held, status: BookStatus) -> None:
        held.whole = False
        held.status = status
        held.top = None
        held.full = None
        held.bids, held.asks = {}, {}

    def state(self, symbol: str) -> HeldState:
        """``synced`` while the held book is whole; ``broken`` after a status (or a diff)
        said it is not; ``syncing`` before the first whole book."""
        held = self._books.get(symbol)
        if held is not None and held.whole:
            return "synced"
        if held is not None and held.status is not None:
            return held.status.state
        return "syncing"

    def status(self, symbol: str) -> BookStatus | None:
        """Why ``symbol``'s book is not whole, when a status said so."""
        held = self._books.get(symbol)
        return None if held is None or held.whole else held.status

    def depth(self, symbol: str) -> Book | None:
        """The whole held book of ``symbol`` as a ``SYMBOL@depth`` book (None unless
        whole), carrying the seq of the last message applied to it."""
        held = self._books.get(symbol)
        if held is None or not held.whole:
            return None
        if held.full is None:
            held.full = Book(
                symbol=symbol,
                update_id=held.update_id,
                bids=sorted_levels(held.bids, descending=True),
                asks=sorted_levels(held.asks, descending=False),
                timestamp_ms=held.timestamp_ms,
                seq=held.seq,
                source=held.source,
                kind="depth",
                checked=False,
            )
        return held.full

    def top(self, symbol: str) -> Book | None:
        """The latest ``SYMBOL@book`` message of a whole book."""
        held = self._books.get(symbol)
        return held.top if held is not None and held.whole else None

    def symbols(self) -> list[str]:
        return list(self._books)
