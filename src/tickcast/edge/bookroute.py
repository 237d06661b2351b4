"""Which of a book's messages reach clients, and what a client is told of a book that is
not whole (SPEC §12).

The hub carries every whole ``SYMBOL@depth`` book the leader publishes, including the ones
published again only so that a node reading the hub late can start from them
(checkpoints): a client already following the book must not get those, so a whole book
at the update id its stream is already at stops here. A book's first whole book, and the
one after it broke, go out.
"""

from __future__ import annotations

from tickcast.hub.books import HeldBooks
from tickcast.messages.book import Book, BookStatus, Depth
from tickcast.messages.message import Message
from tickcast.messages.stream import book_streams


class BookRoutes:
    """Per symbol, the update id the ``@depth`` stream's clients are at."""

    __slots__ = ("_at", "checkpoints")

    def __init__(self) -> None:
        self._at: dict[str, int] = {}
        self.checkpoints = 0

    def passes(self, message: Message) -> bool:
        """Whether ``message`` (of a book's streams) goes to clients."""
        if isinstance(message, Depth):
            self._at[message.symbol] = message.update_id
        elif isinstance(message, Book) and message.kind == "depth":
            if self._at.get(message.symbol) == message.update_id:
                self.checkpoints += 1
                return False
            self._at[message.symbol] = message.update_id
        elif isinstance(message, BookStatus):
            self._at.pop(message.symbol, None)
        return True


def not_whole(books: HeldBooks, key: str) -> dict[str, object] | None:
    """The ``status`` a client subscribing to ``key`` gets instead of a snapshot when it is
    a book stream whose book is not whole (None otherwise)."""
    symbol, _, kind = key.partition("@")
    if kind not in ("book", "depth") or books.state(symbol) == "synced":
        return None
    status = books.status(symbol)
    return {
        "type": "status",
        "symbol": symbol,
        "streams": list(book_streams(symbol)),
        "book": books.state(symbol),
        "reason": status.reason if status is not None else "starting",
        "detail": status.detail if status is not None else "waiting for a whole book",
    }
