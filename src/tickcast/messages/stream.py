"""Stream names: how a client chooses its data (SPEC §12).

A stream is ``SYMBOL@kind``, the symbol uppercase: ``BTCUSDT@ticker``, ``BTCUSDT@trades``,
``BTCUSDT@kline_1m``, ``BTCUSDT@book``, ``BTCUSDT@depth``, and the one stream of every
symbol's ticker, ``!tickers``. A bare symbol means ``SYMBOL@ticker``, so every client and
URL written before streams existed keeps working.

The symbol is read case-insensitively, as ``?symbols=`` always was; the kind is not, because
Binance's intervals tell a minute (``1m``) from a month (``1M``) by case alone. Whether a
well-formed stream is also *served* depends on the server's settings, not on its name.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final


class KlineInterval(enum.StrEnum):
    """Binance's kline intervals, in its own spelling, shortest first."""

    S1 = "1s"
    M1 = "1m"
    M3 = "3m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    H2 = "2h"
    H4 = "4h"
    H6 = "6h"
    H8 = "8h"
    H12 = "12h"
    D1 = "1d"
    D3 = "3d"
    W1 = "1w"
    MONTH = "1M"


KLINE_INTERVALS: Final = tuple(i.value for i in KlineInterval)

_UNIT_MS: Final = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

ALL_TICKERS: Final = "!tickers"

# Binance lists symbols of 2 to 20 ASCII capitals and digits; nothing else reaches a name.
_SYMBOL: Final = re.compile(r"[A-Z0-9]{2,20}")
_MAX_NAME: Final = 64


class StreamKind(enum.StrEnum):
    """What a stream carries; the value is the name's part after ``@`` (``kline`` takes an
    interval: ``kline_1m``)."""

    TICKER = "ticker"
    TRADES = "trades"
    KLINE = "kline"
    BOOK = "book"
    DEPTH = "depth"
    TICKERS = "tickers"


class StreamNameError(ValueError):
    """A name that is no stream tickcast knows; the message says why, for the client."""


@dataclass(frozen=True, slots=True)
class Stream:
    """One parsed stream name. ``symbol`` is None only for ``!tickers``; ``interval`` is
    set for ``kline`` streams only."""

    kind: StreamKind
    symbol: str | None
    interval: str | None = None

    @property
    def name(self) -> str:
        """The canonical name: ``BTCUSDT@ticker``, ``BTCUSDT@kline_1m``, ``!tickers``."""
        if self.kind is StreamKind.TICKERS:
            return ALL_TICKERS
        if self.kind is StreamKind.KLINE:
            return f"{self.symbol}@kline_{self.interval}"
        return f"{self.symbol}@{self.kind.value}"

    def __str__(self) -> str:
        return self.name


def parse_stream(text: str) -> Stream:
    """``text`` as a stream; raises ``StreamNameError`` saying what is wrong with it."""
    name = text.strip()
    if not name:
        raise StreamNameError("empty stream name")
    if len(name) > _MAX_NAME:
        raise StreamNameError(f"stream name longer than {_MAX_NAME} characters")
    if name == ALL_TICKERS:
        return Stream(StreamKind.TICKERS, None)
    symbol_text, at, kind_text = name.partition("@")
    symbol = symbol_text.upper()
    if not symbol.isascii() or _SYMBOL.fullmatch(symbol) is None:
        raise StreamNameError(f"{_shown(symbol_text)} is not a symbol (2-20 letters or digits)")
    if not at:
        return Stream(StreamKind.TICKER, symbol)
    if kind_text.startswith("kline_"):
        interval = kind_text.removeprefix("kline_")
        if interval not in KLINE_INTERVALS:
            raise StreamNameError(
                f"{_shown(interval)} is not a kline interval (one of {', '.join(KLINE_INTERVALS)})"
            )
        return Stream(StreamKind.KLINE, symbol, interval)
    try:
        kind = StreamKind(kind_text)
    except ValueError:
        kind = None
    if kind is None or kind in (StreamKind.KLINE, StreamKind.TICKERS):
        raise StreamNameError(f"{_shown(kind_text)} is not a stream kind ({_kinds_text()})")
    return Stream(kind, symbol)


def book_streams(symbol: str) -> tuple[str, str]:
    """A symbol's order book streams: its top levels and its whole book with diffs."""
    return f"{symbol}@book", f"{symbol}@depth"


def is_ticker_key(key: str) -> bool:
    """Whether a stream key is one symbol's ticker (its bare name), not another stream."""
    return "@" not in key and not key.startswith("!")


def stream_name(key: str) -> str:
    """A stream's name from its key: ``BTCUSDT@ticker`` for the bare ``BTCUSDT``."""
    return f"{key}@ticker" if is_ticker_key(key) else key


def served_keys(
    symbols: Iterable[str],
    carried: Iterable[str],
    trades: bool,
    intervals: Iterable[str],
    *,
    books: bool = False,
) -> frozenset[str]:
    """The keys of every stream served (SPEC §12): each symbol's ticker (its bare name),
    ``!tickers`` (all of them as one stream), and for each ``carried`` symbol its trades,
    a candle stream per interval and its book's two streams."""
    keys = {*symbols, ALL_TICKERS}
    intervals = tuple(intervals)
    for symbol in carried:
        if trades:
            keys.add(f"{symbol}@trades")
        if books:
            keys.update(book_streams(symbol))
        keys.update(f"{symbol}@kline_{interval}" for interval in intervals)
    return frozenset(keys)


def interval_ms(interval: str) -> int | None:
    """The length of a kline interval in milliseconds; None for ``1M`` (months differ)."""
    if interval not in KLINE_INTERVALS or interval == "1M":
        return None
    return int(interval[:-1]) * _UNIT_MS[interval[-1]]


def _kinds_text() -> str:
    kinds = [k.value for k in StreamKind if k not in (StreamKind.KLINE, StreamKind.TICKERS)]
    return ", ".join([*kinds, "kline_<interval>"])


def _shown(text: str) -> str:
    """A client's text quoted for an error message, cut short and printable."""
    return repr(text[:24])
