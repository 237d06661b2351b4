"""Order books as ``tickcast tail`` keeps them (``SYMBOL@book``, ``SYMBOL@depth``, SPEC
§12): ``read_levels`` reads a side of a message, ``LocalBook`` keeps the whole book of a
``@depth`` stream from its first ``book`` and the ``depth`` diffs after it, and
``book_checksum`` names a whole book in eight hex digits. Pure: no I/O, no clock.

A ``@depth`` stream starts with the whole held book, then sends diffs; quantities are
absolute, 0 removes the level::

    {"type":"book","stream":"BTCUSDT@depth","symbol":"BTCUSDT","update_id":987654,
     "bids":[[60500.4,1.2],...],"asks":[[60500.6,0.8],...],"timestamp_ms":1678886400050,
     "seq":1237,"source":"binance"}
    {"type":"depth","stream":"BTCUSDT@depth","symbol":"BTCUSDT","first_update_id":987655,
     "update_id":987660,"bids":[[60500.4,0]],"asks":[[60500.7,2.5]],"seq":1238,
     "source":"binance"}

"``first_update_id`` follows the previous message's ``update_id``": a diff that does not
is a hole, and a book with a hole in it is wrong in a way nobody can see. So the book is
dropped there, and nothing is shown from it until the next whole ``book``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from tickcast.tail.formatting import to_decimal
from tickcast.tail.protocol import Message

# One price level: (price, quantity), exact decimals.
Level = tuple[Decimal, Decimal]


def read_levels(value: object, *, zero_ok: bool) -> list[Level] | None:
    """A side of a book or diff message as exact (price, quantity) pairs, in the order
    sent; None when it is no such list (a pair that is not two numbers, a price that is not
    positive, a negative quantity, or a 0 one unless ``zero_ok``: a diff's deletion)."""
    if not isinstance(value, list):
        return None
    levels = []
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            return None
        price, qty = to_decimal(pair[0]), to_decimal(pair[1])
        if price is None or qty is None or price <= 0 or qty < 0 or (qty == 0 and not zero_ok):
            return None
        levels.append((price, qty))
    return levels


def _update_id(message: Message, name: str = "update_id") -> int | None:
    value = message.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def decimal_key(number: Decimal) -> str:
    """A decimal as one text whatever digits it came with: ``60500.4`` for ``60500.40``,
    ``100`` for ``1E+2``."""
    return f"{number.normalize():f}"


def book_checksum(bids: Iterable[Level], asks: Iterable[Level]) -> str:
    """Eight hex digits naming a whole book: the CRC-32 of its levels written
    ``price:qty`` (``decimal_key``), bids best first then asks best first, each side's
    levels joined by ``,`` and the two sides by ``|``. Two books with the same levels have
    the same checksum, whatever digits their numbers were written with."""

    def side(levels: Iterable[Level]) -> str:
        return ",".join(f"{decimal_key(p)}:{decimal_key(q)}" for p, q in levels)

    text = f"{side(bids)}|{side(asks)}"
    return f"{zlib.crc32(text.encode()):08x}"


class BookState(StrEnum):
    """Whether a ``LocalBook`` holds a whole book."""

    WAITING = "waiting"  # no whole book yet
    WHOLE = "whole"
    GAP = "gap"  # a diff did not follow: dropped until the next whole book


@dataclass(frozen=True)
class Gap:
    """A diff that does not follow the book: it starts at ``first_update_id``, the book is
    at ``expected - 1``."""

    first_update_id: int
    expected: int

    @property
    def text(self) -> str:
        """``diff from 987670, expected 987661``."""
        return f"diff from {self.first_update_id}, expected {self.expected}"


class LocalBook:
    """The whole book of one ``@depth`` stream: replaced by each ``book`` message, changed
    by each ``depth`` diff that follows it, dropped at a diff that does not (a ``Gap``) or
    when the server says the book is not whole (``lose``)."""

    def __init__(self) -> None:
        self.state = BookState.WAITING
        self.update_id: int | None = None
        self.gap: Gap | None = None
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}

    def replace(self, book: Message) -> bool:
        """Start again from the whole book ``book``; False (nothing changed) when it is
        not one (no update id, or a side that is no list of levels)."""
        update_id = _update_id(book)
        bids = read_levels(book.get("bids"), zero_ok=False)
        asks = read_levels(book.get("asks"), zero_ok=False)
        if update_id is None or bids is None or asks is None:
            return False
        self._bids, self._asks = dict(bids), dict(asks)
        self.update_id = update_id
        self.state = BookState.WHOLE
        self.gap = None
        return True

    def apply(self, diff: Message) -> bool | Gap:
        """Apply the ``depth`` diff; True when the book changed, False when the diff was
        ignored (malformed, or no whole book to apply it to), a ``Gap`` when it does not
        follow the book, which is then dropped."""
        first, last = _update_id(diff, "first_update_id"), _update_id(diff)
        bids = read_levels(diff.get("bids"), zero_ok=True)
        asks = read_levels(diff.get("asks"), zero_ok=True)
        if first is None or last is None or bids is None or asks is None or first > last:
            return False
        if self.state is not BookState.WHOLE or self.update_id is None:
            return False
        if first != self.update_id + 1:
            gap = Gap(first, self.update_id + 1)
            self.lose()
            self.state, self.gap = BookState.GAP, gap
            return gap
        for side, changes in ((self._bids, bids), (self._asks, asks)):
            for price, qty in changes:
                if qty == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.update_id = last
        return True

    def lose(self) -> None:
        """Drop the book: the server said it is not whole; wait for the next one."""
        self._bids, self._asks = {}, {}
        self.update_id = None
        self.state = BookState.WAITING
        self.gap = None

    def bids(self, count: int | None = None) -> list[Level]:
        """The best ``count`` bids (all: None), highest price first."""
        return _best(self._bids, count, descending=True)

    def asks(self, count: int | None = None) -> list[Level]:
        """The best ``count`` asks (all: None), lowest price first."""
        return _best(self._asks, count, descending=False)

    @property
    def sizes(self) -> tuple[int, int]:
        """How many bid and ask levels the book holds."""
        return len(self._bids), len(self._asks)

    def checksum(self) -> str:
        """``book_checksum`` of the whole book."""
        return book_checksum(self.bids(), self.asks())


def _best(side: dict[Decimal, Decimal], count: int | None, *, descending: bool) -> list[Level]:
    prices: Sequence[Decimal] = sorted(side, reverse=descending)
    if count is not None:
        prices = prices[:count]
    return [(price, side[price]) for price in prices]


@dataclass(frozen=True)
class ServerSaid:
    """What a book ``status`` message said: the book is ``state`` (``syncing`` or
    ``broken``) for ``reason`` (``detail`` tells more)."""

    state: str
    reason: str
    detail: str

    @property
    def short(self) -> str:
        """``syncing``, or ``broken (gap)``: what a ladder shows instead of its levels."""
        return self.state if self.state == "syncing" else f"{self.state} ({self.reason})"

    @property
    def text(self) -> str:
        """``broken (gap: diff from 812, expected 790)``."""
        said = ": ".join(part for part in (self.reason, self.detail) if part)
        return f"{self.state} ({said})" if said else self.state


@dataclass
class FollowedBook:
    """One book stream as the tail follows it: its ``LocalBook``, how many updates it has
    had, and what the server last said when it is not whole."""

    stream: str
    symbol: str
    book: LocalBook
    said: ServerSaid | None = None
    updates: int = 0

    @property
    def depth(self) -> bool:
        """Whether this is a ``@depth`` stream (whole book, then diffs)."""
        return self.stream.endswith("@depth")

    @property
    def whole(self) -> bool:
        return self.book.state is BookState.WHOLE


@dataclass(frozen=True)
class Fed:
    """What one message did to the books followed: the book it changed, if any, and a line
    to say once (a gap, the server saying a book is not whole, a book whole again)."""

    changed: FollowedBook | None = None
    note: str | None = None
    taken: bool = True  # False: the message was no book message, or a malformed one


def book_stream(message: Message) -> str | None:
    """The stream a book message came on: its ``stream``, else ``SYMBOL@book``."""
    stream = message.get("stream")
    if isinstance(stream, str) and "@" in stream:
        return stream
    symbol = message.get("symbol")
    return f"{symbol.upper()}@book" if isinstance(symbol, str) and symbol else None


def is_book_status(message: Message) -> bool:
    """Whether ``message`` is a ``status`` about a book (it says ``book``), not the
    upstream's (it says ``upstream``)."""
    return message.get("type") == "status" and isinstance(message.get("book"), str)


class BookFeed:
    """Every book stream followed (``SYMBOL@book``, ``SYMBOL@depth``), each a
    ``FollowedBook``, in the order asked for, then as they first arrived."""

    def __init__(self, asked: Iterable[str] = ()) -> None:
        self.books: dict[str, FollowedBook] = {}
        for name in asked:
            if name.endswith(("@book", "@depth")):
                self._followed(name)

    def add(self, message: Message) -> Fed:
        """Fold in a ``book``, a ``depth`` diff or a book ``status``."""
        kind = message.get("type")
        if kind == "status" and is_book_status(message):
            return self._status(message)
        stream = book_stream(message)
        if stream is None or kind not in ("book", "depth"):
            return Fed(taken=False)
        followed = self._followed(stream)
        if kind == "book":
            return self._whole(followed, message)
        outcome = followed.book.apply(message)
        if isinstance(outcome, Gap):
            followed.updates += 1
            note = f"{stream}: a diff is missing ({outcome.text}); waiting for a whole book"
            return Fed(changed=followed, note=note)
        if not outcome:
            # Ignored: rightly while there is no whole book to apply it to (it is then
            # no malformed message), else because it is malformed.
            return Fed(taken=followed.book.state is not BookState.WHOLE)
        followed.updates += 1
        return Fed(changed=followed)

    def _followed(self, stream: str) -> FollowedBook:
        followed = self.books.get(stream)
        if followed is None:
            symbol = stream.partition("@")[0].upper()
            followed = self.books[stream] = FollowedBook(stream, symbol, LocalBook())
        return followed

    def _whole(self, followed: FollowedBook, message: Message) -> Fed:
        before = followed.book.update_id, followed.book.state
        troubled = followed.said is not None or followed.book.state is BookState.GAP
        if not followed.book.replace(message):
            return Fed(taken=False)
        followed.said = None
        if before == (followed.book.update_id, BookState.WHOLE):
            return Fed()  # the same book again (a reconnect's snapshot): nothing new
        followed.updates += 1
        note = None
        if troubled:
            note = f"{followed.stream}: whole again at update {followed.book.update_id}"
        return Fed(changed=followed, note=note)

    def _status(self, message: Message) -> Fed:
        said = ServerSaid(
            str(message.get("book")), str(message.get("reason") or ""),
            str(message.get("detail") or ""),
        )  # fmt: skip
        symbol = str(message.get("symbol") or "").upper()
        streams = message.get("streams")
        named = streams if isinstance(streams, list) else [f"{symbol}@book", f"{symbol}@depth"]
        hit = [self.books[str(name)] for name in named if str(name) in self.books]
        for followed in hit:
            followed.book.lose()
            followed.said = said
        return Fed(note=f"{symbol} book {said.text}")
