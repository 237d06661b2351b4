"""Candles (``SYMBOL@kline_<interval>``, SPEC §12) as ``tickcast tail`` shows them:
``kline_line`` for pipes, ``CandleLines`` deciding which updates get a line, and
``CandleBoard`` for the terminal (each stream's open candle and its last closed ones).
Pure: no I/O, no clock.

A candle as the server sends it; updates of the open candle repeat its ``open_time``,
and the one with ``closed: true`` ends it::

    {"type":"kline","stream":"BTCUSDT@kline_1m","symbol":"BTCUSDT","interval":"1m",
     "open_time":1678886400000,"close_time":1678886459999,"open":60490.1,"high":60510.0,
     "low":60480.2,"close":60500.5,"volume":12.5,"quote_volume":756210.3,"trades":311,
     "closed":false,"seq":1236,"source":"binance"}
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

import rich.table
from rich.text import Text

from tickcast.messages.stream import interval_ms
from tickcast.tail.columns import DOWN_STYLE, UP_STYLE, Column, captioned, fitted_table
from tickcast.tail.formatting import (
    MISSING,
    PriceDecimals,
    decimal_text,
    exact_text,
    format_clock,
    format_instant,
    format_price,
    format_volume,
    to_decimal,
)
from tickcast.tail.protocol import Message

CLOSED_KEPT: Final = 3  # closed candles the terminal keeps per stream, under the open one
_DAY_MS: Final = 86_400_000
OHLC: Final = ("open", "high", "low", "close")

BOARD_COLUMNS: Final = (
    Column("Stream", left=True), Column("Open time (UTC)", left=True), Column("Open"),
    Column("High"), Column("Low"), Column("Close"), Column("Volume"), Column("Trades"),
    Column("State", left=True),
)  # fmt: skip
# What a narrow terminal keeps longest: the stream, where it closed, and whether it has.
BOARD_KEEP: Final = (
    "Stream", "Close", "State", "Open time (UTC)", "High", "Low", "Open", "Volume", "Trades",
)  # fmt: skip


def kline_stream(kline: Message) -> str:
    """The stream a candle came on: its ``stream``, else ``SYMBOL@kline_<interval>``."""
    stream = kline.get("stream")
    if isinstance(stream, str) and stream:
        return stream
    return f"{kline_symbol(kline)}@kline_{kline.get('interval') or '-'}"


def kline_symbol(kline: Message) -> str:
    """The candle's symbol, uppercased; ``-`` when it has none."""
    symbol = kline.get("symbol")
    return symbol.upper() if isinstance(symbol, str) and symbol else "-"


def kline_line(kline: Message, places: int | None = None) -> str:
    """``2026-12-07T17:30:00Z BTCUSDT@kline_1m O=60490.10 H=60510.00 L=60480.20
    C=60500.50 V=12.5 trades=311 closed`` (``live`` for an update of the open candle).

    The open time, then fixed ``KEY=value`` fields: prices at ``places`` decimals (the
    symbol's), the volume with exactly the digits the server sent.
    """
    prices = [
        f"{name[0].upper()}="
        + decimal_text(to_decimal(kline.get(name)), grouping=False, missing="-", places=places)
        for name in OHLC
    ]
    trades = kline.get("trades")
    fields = [
        format_instant(kline.get("open_time")),
        kline_stream(kline),
        *prices,
        f"V={exact_text(kline.get('volume'))}",
        f"trades={trades if isinstance(trades, int) else '-'}",
        "closed" if kline.get("closed") is True else "live",
    ]
    return " ".join(fields)


def _open_time(kline: Message) -> int | None:
    value = kline.get("open_time")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _shape(kline: Message) -> tuple[object, ...]:
    """What a line of ``kline`` shows: two updates of one shape print the same line."""
    return tuple(kline.get(name) for name in ("open_time", *OHLC, "volume", "trades", "closed"))


class CandleLines:
    """Which candle messages get a line: each closed candle once, and each update of the
    open candle that changes what its line shows (a reconnect's snapshot repeats the open
    candle; an update of a candle older than one already seen is late, and skipped)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[object, ...]] = {}
        self._newest: dict[str, int] = {}

    def is_new(self, kline: Message) -> bool:
        """Whether ``kline`` gets a line; remembered as printed when it does."""
        open_time = _open_time(kline)
        if open_time is None or to_decimal(kline.get("close")) is None:
            return False
        stream, shape = kline_stream(kline), _shape(kline)
        if open_time < self._newest.get(stream, open_time) or self._last.get(stream) == shape:
            return False
        self._newest[stream] = open_time
        self._last[stream] = shape
        return True


@dataclass
class CandleSeries:
    """What the board shows of one stream: its open candle and its last closed ones."""

    stream: str
    symbol: str
    interval: str
    live: Message | None = None
    closed: deque[Message] = field(default_factory=lambda: deque(maxlen=CLOSED_KEPT))

    def add(self, kline: Message, open_time: int) -> None:
        last_closed = _open_time(self.closed[-1]) if self.closed else None
        if last_closed is not None and open_time <= last_closed:
            if open_time == last_closed and kline.get("closed") is True:
                self.closed[-1] = kline  # the same candle again (a resume): the latest wins
            return  # an update of a candle already closed arrived late
        live_time = None if self.live is None else _open_time(self.live)
        if kline.get("closed") is True:
            self.closed.append(kline)
            if live_time is not None and live_time <= open_time:
                self.live = None  # it just closed (or an older one did not, and never will)
        elif live_time is None or open_time >= live_time:
            self.live = kline


class CandleBoard:
    """Every ``@kline_<interval>`` stream followed: its open candle and the last
    ``CLOSED_KEPT`` closed ones, in the order the streams first arrived."""

    def __init__(self, decimals: PriceDecimals) -> None:
        self.decimals = decimals
        self.series: dict[str, CandleSeries] = {}
        self.update_count = 0

    def add(self, kline: Message) -> bool:
        """Fold in one candle message; False for one without an open time or a close."""
        open_time = _open_time(kline)
        if open_time is None or to_decimal(kline.get("close")) is None:
            return False
        stream, symbol = kline_stream(kline), kline_symbol(kline)
        series = self.series.get(stream)
        if series is None:
            interval = str(kline.get("interval") or stream.partition("@kline_")[2])
            series = self.series[stream] = CandleSeries(stream, symbol, interval)
        self.decimals.learn_prices(symbol, [kline.get(name) for name in OHLC])
        series.add(dict(kline), open_time)
        self.update_count += 1
        return True

    def render(self, width: int | None = None) -> rich.table.Table:
        """The board as a table: per stream its closed candles, oldest first, then the
        open one; a rule between streams."""
        rows: list[dict[str, Text]] = []
        ends: list[bool] = []
        for series in self.series.values():
            candles = [*series.closed, *([series.live] if series.live is not None else [])]
            for index, kline in enumerate(candles):
                rows.append(self._cells(series, kline))
                ends.append(index == len(candles) - 1)
        table = fitted_table(BOARD_COLUMNS, BOARD_KEEP, rows, width, sections=ends)
        caption = Text(f"{self.update_count} candle updates", style="dim")
        if not rows:
            caption.append(" · waiting for candles…", style="dim")
        return captioned(table, caption, width)

    def _cells(self, series: CandleSeries, kline: Message) -> dict[str, Text]:
        places = self.decimals.of(series.symbol)
        length = interval_ms(series.interval)
        # A day or longer opens at midnight: its date says it; shorter ones need the time.
        daily = length is None or length >= _DAY_MS
        opened = kline.get("open_time")
        when = format_clock(opened, millis=False, date=daily)
        when = when.partition(" ")[0] if daily else when
        open_, close = to_decimal(kline.get("open")), to_decimal(kline.get("close"))
        style = ""
        if open_ is not None and close is not None and close != open_:
            style = UP_STYLE if close > open_ else DOWN_STYLE
        closed = kline.get("closed") is True
        trades = kline.get("trades")
        return {
            "Stream": Text(series.stream, style="bold"),
            "Open time (UTC)": Text(when, style="dim" if closed else ""),
            "Open": Text(format_price(kline.get("open"), places)),
            "High": Text(format_price(kline.get("high"), places)),
            "Low": Text(format_price(kline.get("low"), places)),
            "Close": Text(format_price(kline.get("close"), places), style=style),
            "Volume": Text(format_volume(kline.get("volume"))),
            "Trades": Text(str(trades) if isinstance(trades, int) else MISSING),
            "State": Text("closed", style="dim") if closed else Text("● live", style="green"),
        }
