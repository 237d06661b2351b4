"""Order books (``SYMBOL@book``, ``SYMBOL@depth``, SPEC §12) as ``tickcast tail`` shows
them: ``book_line`` for pipes (best bid and ask, spread, update id; for ``@depth`` the
whole book's size and checksum), and ``LadderBoard`` for the terminal: per stream a ladder
of its best levels, asks above (highest first, down to the best ask), the spread, then bids
from the best down. Pure: no I/O, no clock.

The books themselves are kept by ``localbook``: a ladder shows what its ``FollowedBook``
holds, or, while the book is not whole, what the server (or a hole in the diffs) said.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Final

import rich.table
from rich.console import Group, RenderableType
from rich.text import Text

from tickcast.tail.columns import DOWN_STYLE, UP_STYLE, WARN_STYLE, Column, captioned, fitted_table
from tickcast.tail.formatting import (
    MISSING,
    PriceDecimals,
    decimal_text,
    format_age,
    format_price,
    format_spread,
    format_timestamp,
)
from tickcast.tail.localbook import BookFeed, BookState, FollowedBook, Level
from tickcast.tail.protocol import Message

DEFAULT_LEVELS: Final = 10  # per side: two sides and the spread fit a 25-line terminal
_BPS: Final = Decimal(10_000)

LADDER_COLUMNS: Final = (
    Column("Side", left=True), Column("Price"), Column("Qty"), Column("Total"),
)  # fmt: skip
# What a narrow terminal keeps longest: the price, how much is there, and which side.
LADDER_KEEP: Final = ("Price", "Qty", "Side", "Total")


def spread_bps(bid: Decimal, ask: Decimal) -> Decimal:
    """The spread in basis points of the mid price: ``(ask - bid) / mid * 10000``."""
    mid = (bid + ask) / 2
    return (ask - bid) / mid * _BPS if mid else Decimal(0)


def bps_text(bid: Decimal, ask: Decimal) -> str:
    """The spread in basis points, ``0.33``, with two significant digits below 1: one
    tick of BTCUSDT is ``0.0017``, which two decimals would show as a spread of nothing."""
    bps = spread_bps(bid, ask)
    places = 2 if bps == 0 or abs(bps) >= 1 else max(2, 1 - bps.adjusted())
    return f"{bps:.{places}f}"


def format_bps(bid: Decimal | None, ask: Decimal | None) -> str:
    """``0.33 bps``; ``MISSING`` without both sides."""
    if bid is None or ask is None:
        return MISSING
    return f"{bps_text(bid, ask)} bps"


def _best(levels: Sequence[Level]) -> tuple[Decimal | None, Decimal | None]:
    return (levels[0][0], levels[0][1]) if levels else (None, None)


def book_line(followed: FollowedBook, timestamp_ms: object, places: int | None = None) -> str:
    """``2026-12-07T17:32:41.174Z BTCUSDT@book bid 60500.40 1.2 ask 60500.60 0.8
    spread 0.20 0.33bps id=987654``; a ``@depth`` line ends with the whole book's size and
    checksum: `` levels=312/298 crc=1a2b3c4d`` (see ``localbook.book_checksum``).

    Fixed fields, space separated, ``-`` for a missing value (a diff carries no time):
    prices at ``places`` decimals (the symbol's), quantities with the digits sent.
    """
    book = followed.book
    bid, bid_qty = _best(book.bids(1))
    ask, ask_qty = _best(book.asks(1))

    def price(number: Decimal | None) -> str:
        return decimal_text(number, grouping=False, missing="-", places=places)

    def qty(number: Decimal | None) -> str:
        return "-" if number is None else f"{number:f}"

    spread = "-" if bid is None or ask is None else format_spread(bid, ask, places).replace(",", "")
    bps = "-" if bid is None or ask is None else f"{bps_text(bid, ask)}bps"
    fields = [
        format_timestamp(timestamp_ms), followed.stream,
        "bid", price(bid), qty(bid_qty), "ask", price(ask), qty(ask_qty),
        "spread", spread, bps, f"id={book.update_id if book.update_id is not None else '-'}",
    ]  # fmt: skip
    if followed.depth:
        bids, asks = book.sizes
        fields += [f"levels={bids}/{asks}", f"crc={book.checksum()}"]
    return " ".join(fields)


def _prices(levels: Iterable[Level]) -> list[object]:
    return [price for price, _ in levels]


class LadderBoard:
    """Every book stream followed, each drawn as a ladder of ``levels`` levels per side.

    Prices take each symbol's decimals from ``decimals`` (shared with the tick table). A
    ``@depth`` diff carries no exchange time: its ladder's age counts from ``received_ms``
    when ``add`` is told it, else from the last whole book.
    """

    def __init__(
        self, decimals: PriceDecimals, asked: Iterable[str] = (), levels: int = DEFAULT_LEVELS
    ) -> None:
        self.decimals = decimals
        self.feed = BookFeed(asked)
        self.levels = max(1, levels)
        self._stamp: dict[str, float] = {}

    @property
    def books(self) -> dict[str, FollowedBook]:
        return self.feed.books

    def add(self, message: Message, received_ms: float | None = None) -> bool:
        """Fold in a book message (or a book status); False for none, or a malformed one."""
        fed = self.feed.add(message)
        followed = fed.changed
        if followed is not None and followed.whole:
            book = followed.book
            levels = [*book.bids(self.levels), *book.asks(self.levels)]
            self.decimals.learn_prices(followed.symbol, _prices(levels))
            stamp = message.get("timestamp_ms")
            if isinstance(stamp, int):
                self._stamp[followed.stream] = stamp
            elif received_ms is not None:
                self._stamp[followed.stream] = received_ms
        return fed.taken

    def render(self, width: int | None = None, now_ms: float | None = None) -> RenderableType:
        """One ladder per stream, in the order they were asked for."""
        return Group(*(self.ladder(f, width, now_ms) for f in self.books.values()))

    def ladder(
        self, followed: FollowedBook, width: int | None = None, now_ms: float | None = None
    ) -> rich.table.Table:
        """``followed``'s ladder: its title says the stream, the update id and the age; its
        caption the spread's place or what keeps the book from being shown."""
        book = followed.book
        rows: list[dict[str, Text]] = []
        ends: list[bool] = []
        if followed.whole:
            places = self.decimals.of(followed.symbol)
            asks, bids = book.asks(self.levels), book.bids(self.levels)
            ask_rows = self._rows("ask", asks, places, DOWN_STYLE)
            rows += reversed(ask_rows)
            ends += [False] * len(ask_rows)
            if ends:
                ends[-1] = True
            rows.append(self._spread_row(_best(bids)[0], _best(asks)[0], places))
            ends.append(True)
            rows += self._rows("bid", bids, places, UP_STYLE)
            ends += [False] * len(bids)
        table = fitted_table(LADDER_COLUMNS, LADDER_KEEP, rows, width, sections=ends)
        table.title = self._title(followed, now_ms)
        return captioned(table, self._caption(followed), width)

    def _rows(
        self, side: str, levels: Sequence[Level], places: int | None, style: str
    ) -> list[dict[str, Text]]:
        total = Decimal(0)
        rows = []
        for price, qty in levels:
            total += qty
            rows.append(
                {
                    "Side": Text(side, style=style),
                    "Price": Text(format_price(price, places), style=style),
                    "Qty": Text(f"{qty:f}"),
                    "Total": Text(f"{total:f}", style="dim"),
                }
            )
        return rows

    def _spread_row(
        self, bid: Decimal | None, ask: Decimal | None, places: int | None
    ) -> dict[str, Text]:
        return {
            "Side": Text("spread", style="bold"),
            "Price": Text(format_spread(bid, ask, places), style="bold"),
            "Qty": Text(format_bps(bid, ask), style="bold"),
            "Total": Text(""),
        }

    def _title(self, followed: FollowedBook, now_ms: float | None) -> Text:
        title = Text(followed.stream, style="bold")
        book = followed.book
        if followed.whole and book.update_id is not None:
            title.append(f"  update {book.update_id}")
            stamp = self._stamp.get(followed.stream)
            if now_ms is not None and stamp is not None:
                title.append(f"  {format_age(stamp, now_ms)} old", style="dim")
        return title

    def _caption(self, followed: FollowedBook) -> Text:
        book = followed.book
        if followed.said is not None:
            return Text(f"book {followed.said.short}: {followed.said.detail}", style=WARN_STYLE)
        if book.state is BookState.GAP and book.gap is not None:
            return Text(f"gap: {book.gap.text}; waiting for a whole book", style=WARN_STYLE)
        if not followed.whole:
            return Text("waiting for the book…", style="dim")
        caption = Text(f"{followed.updates} updates", style="dim")
        if followed.depth:
            bids, asks = book.sizes
            caption.append(f" · whole book: {bids} bids, {asks} asks", style="dim")
        return caption
