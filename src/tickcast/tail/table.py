"""The live terminal screen: ``TailState`` folds server messages into one row per symbol
(a rich table whose columns a narrow terminal drops rather than cuts), the trade tape
(``tape``), the candle board (``candles``) and the order book ladders (``ladder``) of the
streams followed. Pure: no I/O; the clock, when there is one, is given.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

import rich.table
from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.text import Text

from tickcast.tail.candles import CandleBoard
from tickcast.tail.columns import DOWN_STYLE, UP_STYLE, WARN_STYLE, fit_columns
from tickcast.tail.failures import Problem
from tickcast.tail.formatting import (
    PriceDecimals,
    format_age,
    format_percent,
    format_price,
    format_spread,
    format_volume,
    sparkline,
    to_decimal,
)
from tickcast.tail.ladder import DEFAULT_LEVELS, LadderBoard
from tickcast.tail.localbook import is_book_status
from tickcast.tail.protocol import Message, error_detail, message_kind
from tickcast.tail.subscription import is_stream
from tickcast.tail.tape import TradeTape, gap_text
from tickcast.tail.view import ConnectionState

SPARK_POINTS: Final = 30  # prices in a row's sparkline

SIMULATED_STYLE: Final = "bold black on yellow"


@dataclass
class SymbolRow:
    """What the table shows for one symbol: its latest tick and recent prices."""

    symbol: str
    tick: dict[str, object] = field(default_factory=dict)
    price: Decimal | None = None
    previous_price: Decimal | None = None
    direction: int = 0  # sign of the last price change: the colour of the price
    history: deque[Decimal] = field(default_factory=lambda: deque(maxlen=SPARK_POINTS))


# Columns in the order a narrower terminal drops them (from the end); the first
# ``ESSENTIAL`` are shown even when they do not fit.
COLUMNS: Final = (
    "Symbol", "Price", "Change", "Bid", "Ask", "Spread", "High", "Low", "Volume", "Age", "Trend",
)  # fmt: skip
_LEFT: Final = frozenset({"Symbol", "Trend"})


class TailState:
    """Everything the terminal shows; updated by ``apply``, drawn by ``screen`` (the tick
    table alone: ``render``).

    Pure: no I/O. Messages are the decoded JSON objects of SPEC §6 and §12 (WebSocket
    messages, or SSE event data, see ``sse_message``). ``asked`` are the names the tail
    asked for: the sections they need are shown before their first message. Book ladders
    show ``levels`` levels per side; ``clock`` (Unix ms) dates the ``@depth`` diffs, which
    carry no time of their own.
    """

    def __init__(
        self,
        asked: Sequence[str] = (),
        *,
        levels: int = DEFAULT_LEVELS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.rows: dict[str, SymbolRow] = {}
        # Each symbol's prices keep one number of decimals, so its columns keep their width.
        self.decimals = PriceDecimals()
        self.tape = TradeTape(self.decimals)
        self.candles = CandleBoard(self.decimals)
        names = [name.strip() for name in asked if name.strip()]
        self.ladders = LadderBoard(self.decimals, names, levels)
        self.clock = clock
        # No names: the server's default symbols, ticks only, as before streams existed.
        self.wants_ticks = not names or any(not is_stream(n) for n in names)
        self.wants_trades = any(n.endswith("@trades") for n in names)
        self.wants_candles = any("@kline_" in n for n in names)
        self.wants_books = any(n.endswith(("@book", "@depth")) for n in names)
        self.connection = ConnectionState.CONNECTING
        self.retry_in: float | None = None
        self.upstream: str | None = None
        self.source: str | None = None
        self.tick_count = 0
        self.ignored_count = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.notice: str | None = None  # stays shown across reconnects, unlike last_error

    # ------------------------------------------------------------------ input

    def apply(self, message: Message | None) -> None:
        """Fold one server message into the state; unknown or malformed ones are counted."""
        if message is None:
            self.ignored_count += 1
            return
        kind = message_kind(message)
        if kind == "tick":
            self._apply_tick(message)
        elif kind in ("book", "depth") or (kind == "status" and is_book_status(message)):
            self._apply_book(message)
        elif kind == "status":
            self._apply_status(message)
        elif kind == "reset":
            self._apply_reset(message)
        elif kind in ("trade", "kline"):
            self._apply_market(message)
        elif kind == "gap":
            self._apply_gap(message)
        elif kind == "error":
            detail = error_detail(message)
            self.last_error = f"server: {detail}"
        elif kind not in ("ack", "pong"):
            self.ignored_count += 1

    def set_connection(self, state: ConnectionState, *, retry_in: float | None = None) -> None:
        """Record the client's own connection state (and the seconds left before a retry)."""
        if state is ConnectionState.CONNECTED:
            self.last_error = None
        if state is not ConnectionState.CONNECTED:
            # What the server said about its upstream is stale once we lost the server.
            self.upstream = None
        self.connection = state
        self.retry_in = retry_in if state is ConnectionState.RECONNECTING else None

    def note_problem(self, problem: Problem, retry_in: float | None) -> None:
        """Show why the last connection failed; the title counts down to the retry."""
        self.last_error = problem.text
        if retry_in is not None:
            self.reconnects += 1

    def note(self, text: str) -> None:
        """Show ``text`` (such as a symbol not served) under the table from now on."""
        self.notice = text

    def _apply_tick(self, message: Message) -> None:
        symbol = message.get("symbol")
        price = to_decimal(message.get("last_price"))
        if not isinstance(symbol, str) or not symbol or price is None:
            self.ignored_count += 1
            return
        symbol = symbol.upper()
        row = self.rows.get(symbol)
        if row is None:
            row = self.rows[symbol] = SymbolRow(symbol)
        if row.price is not None and price != row.price:
            row.previous_price = row.price
            row.direction = 1 if price > row.price else -1
        row.price = price
        row.history.append(price)
        row.tick = dict(message)
        self.decimals.learn(symbol, message)
        source = message.get("source")
        if isinstance(source, str):
            self.source = source
        self.tick_count += 1

    def _apply_market(self, message: Message) -> None:
        added = self.tape.add_trade(message) if message_kind(message) == "trade" else None
        if added is None:
            added = self.candles.add(message)
        if not added:
            self.ignored_count += 1
            return
        source = message.get("source")
        if isinstance(source, str):
            self.source = source

    def _apply_book(self, message: Message) -> None:
        received = None if self.clock is None else self.clock()
        if not self.ladders.add(message, received):
            self.ignored_count += 1
            return
        source = message.get("source")
        if isinstance(source, str):
            self.source = source

    def _apply_gap(self, message: Message) -> None:
        stream = message.get("stream")
        if isinstance(stream, str) and stream.endswith("@trades"):
            self.tape.add_gap(message)  # shown where it happened, among the trades
        else:
            self.notice = gap_text(message)

    def _apply_status(self, message: Message) -> None:
        upstream = message.get("upstream")
        source = message.get("source")
        if isinstance(upstream, str):
            self.upstream = upstream
        if isinstance(source, str):
            self.source = source

    def _apply_reset(self, message: Message) -> None:
        ticks = message.get("ticks")
        if not isinstance(ticks, list):
            self.ignored_count += 1
            return
        for tick in ticks:
            if isinstance(tick, Mapping):
                self._apply_tick(tick)
            else:
                self.ignored_count += 1

    # ------------------------------------------------------------------ output

    def render(self, width: int | None = None, now_ms: float | None = None) -> rich.table.Table:
        """The live table: one row per symbol, the state line as title, counts as caption.

        ``width`` is the terminal's: columns that do not fit are dropped from the end of
        ``COLUMNS``, never shortened, since a cut price is a wrong price. The Age column
        (time since the tick's exchange timestamp) needs ``now_ms``.
        """
        return self._tick_table(width, now_ms, self._title(), self._caption())

    def screen(self, width: int | None = None, now_ms: float | None = None) -> RenderableType:
        """What the terminal shows: the tick table alone (``render``) when only ticks are
        followed; else the state line, then the tick table, the trade tape, the candle
        board and the book ladders, each when asked for or once it has data, then what went
        wrong, if anything.
        """
        tape = self.wants_trades or bool(self.tape.entries)
        board = self.wants_candles or bool(self.candles.series)
        books = self.wants_books or bool(self.ladders.books)
        if not (tape or board or books):
            return self.render(width, now_ms)
        parts: list[RenderableType] = [self._title()]
        if self.wants_ticks or self.rows:
            parts.append(self._tick_table(width, now_ms, None, self._tick_counts()))
        if tape:
            parts.append(self.tape.render(width))
        if board:
            parts.append(self.candles.render(width))
        if books:
            parts.append(self.ladders.render(width, now_ms))
        status = self._status()
        if status.plain:
            parts.append(status)
        return Group(*parts)

    def _tick_table(
        self, width: int | None, now_ms: float | None, title: Text | None, caption: Text
    ) -> rich.table.Table:
        headers = [name for name in COLUMNS if name != "Age" or now_ms is not None]
        rows = [self._cells(row, now_ms) for row in self.rows.values()]
        widths = [max([cell_len(h), *(row[h].cell_len for row in rows)]) for h in headers]
        shown = fit_columns(widths, width)
        # Rich wraps the title to the table's width: keep a table with few (or no) rows
        # at least as wide as its state line, as far as the terminal allows.
        min_width = max(len(title.plain) if title else 0, len(caption.plain))
        table = rich.table.Table(
            title=title,
            caption=caption,
            title_justify="left",
            caption_justify="left" if title is None else "center",
            min_width=min_width if width is None else min(min_width, width),
        )
        for header, cells in zip(headers[:shown], widths, strict=False):
            table.add_column(
                header,
                justify="left" if header in _LEFT else "right",
                style="bold" if header == "Symbol" else None,
                no_wrap=True,
                min_width=cells,  # rich may not shrink a column below what its cells need
                overflow="fold",
            )
        for row in rows:
            table.add_row(*(row[header] for header in headers[:shown]))
        return table

    def _cells(self, row: SymbolRow, now_ms: float | None) -> dict[str, Text]:
        tick = row.tick
        price_style = {1: UP_STYLE, -1: DOWN_STYLE}.get(row.direction, "")
        change = to_decimal(tick.get("change_percent"))
        change_style = (
            "" if change is None or change == 0 else (UP_STYLE if change > 0 else DOWN_STYLE)
        )
        bid, ask = to_decimal(tick.get("bid")), to_decimal(tick.get("ask"))
        places = self.decimals.of(row.symbol)
        cells = {
            "Symbol": Text(row.symbol),
            "Price": Text(format_price(tick.get("last_price"), places), style=price_style),
            "Change": Text(format_percent(tick.get("change_percent")), style=change_style),
            "Bid": Text(format_price(bid, places)),
            "Ask": Text(format_price(ask, places)),
            "Spread": Text(format_spread(bid, ask, places)),
            "High": Text(format_price(tick.get("high"), places)),
            "Low": Text(format_price(tick.get("low"), places)),
            "Volume": Text(format_volume(tick.get("volume"))),
            "Trend": Text(sparkline(row.history), style=price_style or "dim"),
        }
        if now_ms is not None:
            cells["Age"] = Text(format_age(tick.get("timestamp_ms"), now_ms), style="dim")
        return cells

    def _title(self) -> Text:
        title = Text("tickcast  ", style="bold")
        connection_style = {
            ConnectionState.CONNECTED: "green",
            ConnectionState.CONNECTING: "yellow",
            ConnectionState.RECONNECTING: "yellow",
        }[self.connection]
        label = str(self.connection)
        if self.connection is ConnectionState.RECONNECTING and self.retry_in is not None:
            label += f" in {max(0, math.ceil(self.retry_in))}s"
        title.append(f"● {label}", style=connection_style)
        if self.upstream is not None:
            upstream_style = "green" if self.upstream == "connected" else WARN_STYLE
            title.append("  upstream: ")
            title.append(self.upstream, style=upstream_style)
        if self.source is not None:
            title.append(f"  source: {self.source}")
            if self.source == "sim":
                title.append("  ")
                title.append(" SIMULATED DATA ", style=SIMULATED_STYLE)
            elif self.source == "replay":
                title.append("  ")
                title.append(" REPLAYED DATA ", style=SIMULATED_STYLE)
        return title

    def _caption(self) -> Text:
        caption = Text(f"{self.tick_count} ticks", style="dim")
        if self.reconnects:
            caption.append(f" · {self.reconnects} reconnects", style="dim")
        if not self.rows:
            caption.append(" · waiting for ticks…", style="dim")
        status = self._status()
        if status.plain:
            caption.append(" · ")
            caption.append_text(status)
        return caption

    def _tick_counts(self) -> Text:
        caption = Text(f"{self.tick_count} ticks", style="dim")
        if not self.rows:
            caption.append(" · waiting for ticks…", style="dim")
        return caption

    def _status(self) -> Text:
        """Reconnects, notices and the last error: what the screen says under its tables."""
        parts = [
            (f"{self.reconnects} reconnects" if self.reconnects else "", "dim"),
            (self.notice or "", "yellow"),
            (self.last_error or "", "yellow"),
        ]
        status = Text()
        for text, style in parts:
            if text:
                status.append(" · " if status.plain else "", style="dim")
                status.append(text, style=style)
        return status
