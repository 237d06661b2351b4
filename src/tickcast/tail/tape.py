"""Trades (``SYMBOL@trades``, SPEC §12) as ``tickcast tail`` shows them: ``trade_line``
for pipes, ``TradeTape`` for the terminal (the newest trades, newest on top, as an
exchange's trade list has them), and ``gap_text`` for the trades a slow client missed.
Pure: no I/O, no clock.

A trade as the server sends it::

    {"type":"trade","stream":"BTCUSDT@trades","symbol":"BTCUSDT","trade_id":123,
     "price":60500.5,"qty":0.012,"side":"buy","timestamp_ms":1678886400000,
     "seq":1235,"source":"binance"}

``side`` is the taker's: a buy lifted an ask, a sell hit a bid.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

import rich.table
from rich.text import Text

from tickcast.tail.columns import DOWN_STYLE, UP_STYLE, WARN_STYLE, Column, captioned, fitted_table
from tickcast.tail.formatting import (
    MISSING,
    PriceDecimals,
    decimal_text,
    exact_text,
    format_clock,
    format_price,
    format_timestamp,
    to_decimal,
)
from tickcast.tail.protocol import Message

TAPE_ROWS: Final = 12  # trades the terminal keeps in view
# The side is marked by a triangle as well as a colour: a terminal without colour, or a
# reader who cannot tell green from red, still reads it.
SIDE_MARKS: Final = {"buy": ("▲ buy", UP_STYLE), "sell": ("▼ sell", DOWN_STYLE)}

TAPE_COLUMNS: Final = (
    Column("Time (UTC)", left=True), Column("Symbol", left=True), Column("Side", left=True),
    Column("Price"), Column("Qty"),
)  # fmt: skip
# What a narrow terminal keeps longest: which way, at what price, how much.
TAPE_KEEP: Final = ("Side", "Price", "Qty", "Symbol", "Time (UTC)")


def trade_symbol(trade: Message) -> str:
    """The trade's symbol, uppercased; ``-`` when it has none."""
    symbol = trade.get("symbol")
    return symbol.upper() if isinstance(symbol, str) and symbol else "-"


def trade_stream(trade: Message) -> str:
    """The stream a trade came on: its ``stream``, else ``SYMBOL@trades``."""
    stream = trade.get("stream")
    return stream if isinstance(stream, str) and stream else f"{trade_symbol(trade)}@trades"


def trade_line(trade: Message, places: int | None = None) -> str:
    """``2026-12-07T17:30:01.123Z BTCUSDT@trades buy 60500.50 0.012 id=123``.

    Fixed fields, space separated, ``-`` for a missing value, so ``awk`` and ``grep`` read
    them: the price at ``places`` decimals (the symbol's, as tick lines show it), the
    quantity with exactly the digits the server sent.
    """
    side = trade.get("side")
    price = to_decimal(trade.get("price"))
    trade_id = trade.get("trade_id")
    fields = [
        format_timestamp(trade.get("timestamp_ms")),
        trade_stream(trade),
        side if side in SIDE_MARKS else "-",
        decimal_text(price, grouping=False, missing="-", places=places),
        exact_text(trade.get("qty")),
        f"id={trade_id}" if isinstance(trade_id, int) else "id=-",
    ]
    return " ".join(str(field) for field in fields)


def gap_text(gap: Message) -> str:
    """``BTCUSDT@trades: 42 trades missed (the client fell behind)``."""
    stream = gap.get("stream")
    stream = stream if isinstance(stream, str) and stream else "a stream"
    missed = gap.get("missed")
    count = str(missed) if isinstance(missed, int) else "some"
    noun = "trades" if stream.endswith("@trades") else "messages"
    return f"{stream}: {count} {noun} missed (the client fell behind)"


@dataclass(frozen=True)
class TapeEntry:
    """One row of the tape: a trade, or the mark of a gap between trades."""

    trade: Message | None = None
    gap: Message | None = None


class TradeTape:
    """The newest trades of every ``@trades`` stream followed, newest first, with the gaps
    the server reported where they happened. Prices take each symbol's decimals from
    ``decimals`` (shared with the tick table, so a symbol reads the same in both)."""

    def __init__(self, decimals: PriceDecimals, rows: int = TAPE_ROWS) -> None:
        self.decimals = decimals
        self.entries: deque[TapeEntry] = deque(maxlen=rows)
        self.trade_count = 0
        self.missed = 0
        self.last_gap: str | None = None
        self._last_seq: dict[str, object] = {}

    def add_trade(self, trade: Message) -> bool:
        """Keep ``trade``; False (and nothing kept) for one without a price or a repeat."""
        if to_decimal(trade.get("price")) is None:
            return False
        stream, seq = trade_stream(trade), trade.get("seq")
        if seq is not None and self._last_seq.get(stream) == seq:
            return False
        self._last_seq[stream] = seq
        self.decimals.learn_prices(trade_symbol(trade), [trade.get("price")])
        self.entries.appendleft(TapeEntry(trade=dict(trade)))
        self.trade_count += 1
        return True

    def add_gap(self, gap: Message) -> None:
        """Mark where the server dropped trades this client could not take in time."""
        missed = gap.get("missed")
        if isinstance(missed, int):
            self.missed += missed
        self.last_gap = gap_text(gap)
        self.entries.appendleft(TapeEntry(gap=dict(gap)))

    def render(self, width: int | None = None) -> rich.table.Table:
        """The tape as a table, newest on top; its caption counts trades and gaps."""
        rows = [self._cells(entry) for entry in self.entries]
        table = fitted_table(TAPE_COLUMNS, TAPE_KEEP, rows, width)
        caption = Text(f"{self.trade_count} trades", style="dim")
        if not self.entries:
            caption.append(" · waiting for trades…", style="dim")
        if self.last_gap:
            caption.append(f" · {self.last_gap}", style="yellow")
        return captioned(table, caption, width)

    def _cells(self, entry: TapeEntry) -> dict[str, Text]:
        if entry.gap is not None:
            missed = entry.gap.get("missed")
            count = str(missed) if isinstance(missed, int) else "?"
            stream = str(entry.gap.get("stream") or "")
            return {
                "Time (UTC)": Text(""),
                "Symbol": Text(stream.partition("@")[0]),
                "Side": Text("⋯ gap", style=WARN_STYLE),
                "Price": Text(f"{count} missed", style=WARN_STYLE),
                "Qty": Text(""),
            }
        trade = entry.trade or {}
        symbol = trade_symbol(trade)
        mark, style = SIDE_MARKS.get(str(trade.get("side")), (MISSING, ""))
        return {
            "Time (UTC)": Text(format_clock(trade.get("timestamp_ms")), style="dim"),
            "Symbol": Text(symbol, style="bold"),
            "Side": Text(mark, style=style),
            "Price": Text(format_price(trade.get("price"), self.decimals.of(symbol)), style=style),
            "Qty": Text(exact_text(trade.get("qty"), MISSING)),
        }
