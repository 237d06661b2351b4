"""A candle (``SYMBOL@kline_<interval>``, from Binance's ``@kline_<interval>``), encoded once.

A candle is a state while it is open (each update replaces the last, so a slow client gets
the latest) and an event once it closes (every closed candle reaches every client: a chart
must not miss one). ``open_time`` names the candle; ``closed`` says which of the two it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Protocol

import orjson

from tickcast.messages.decimals import canonical_decimal, fragment, raw_numbers
from tickcast.messages.stream import KLINE_INTERVALS, interval_ms
from tickcast.messages.tick import SourceLabel

PRICE_FIELDS: Final = ("open", "high", "low", "close")
DECIMAL_FIELDS: Final = (*PRICE_FIELDS, "volume", "quote_volume")

_SOURCES: Final = ("binance", "sim", "replay")


@dataclass(slots=True)
class Kline:
    """One candle of ``interval`` starting at ``open_time``; decimals are canonical strings,
    ``trades`` the number of trades in it."""

    symbol: str
    interval: str
    open_time: int
    close_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trades: int
    closed: bool
    seq: int
    source: SourceLabel
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_kline(self)

    @property
    def key(self) -> str:
        """The stream the hub and the edge key it by: its name."""
        return self.stream

    @property
    def stream(self) -> str:
        return f"{self.symbol}@kline_{self.interval}"

    def encode(self) -> bytes:
        """The candle's JSON message, built once and shared by every subscriber."""
        if self._encoded is None:
            self._encoded = orjson.dumps(
                {
                    "type": "kline",
                    "stream": self.stream,
                    "symbol": self.symbol,
                    "interval": self.interval,
                    "open_time": self.open_time,
                    "close_time": self.close_time,
                    **{name: fragment(getattr(self, name)) for name in DECIMAL_FIELDS},
                    "trades": self.trades,
                    "closed": self.closed,
                    "seq": self.seq,
                    "source": self.source,
                }
            )
        return self._encoded

    @classmethod
    def of(cls, candle: Candle, *, closed: bool, seq: int, source: SourceLabel) -> Kline:
        """The message of ``candle`` (an upstream event, a REST row), stamped ``seq``."""
        return cls(
            symbol=candle.symbol,
            interval=candle.interval,
            open_time=candle.open_time,
            close_time=candle.close_time,
            open=candle.open,
            high=candle.high,
            low=candle.low,
            close=candle.close,
            volume=candle.volume,
            quote_volume=candle.quote_volume,
            trades=candle.trades,
            closed=closed,
            seq=seq,
            source=source,
        )

    @classmethod
    def from_json(cls, data: bytes) -> Kline:
        """Rebuild a candle from its own encoding; decimals come from the raw JSON text."""
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("type") != "kline":
            raise ValueError("not a kline message")
        raw = raw_numbers(data)
        source = obj.get("source")
        if source not in _SOURCES:
            raise ValueError(f"unknown kline source {source!r}")
        closed = obj.get("closed")
        if not isinstance(closed, bool):
            raise ValueError(f"closed {closed!r} is not a boolean")
        return cls(
            symbol=str(obj["symbol"]),
            interval=str(obj["interval"]),
            open_time=int(obj["open_time"]),
            close_time=int(obj["close_time"]),
            **{name: raw[name] for name in DECIMAL_FIELDS},
            trades=int(obj["trades"]),
            closed=closed,
            seq=int(obj["seq"]),
            source=source,
            _encoded=bytes(data),
        )


class Candle(Protocol):
    """What makes a candle, as a ``Kline`` message, an upstream kline event and a REST
    kline row all hold it."""

    @property
    def symbol(self) -> str: ...

    @property
    def interval(self) -> str: ...
    @property
    def open_time(self) -> int: ...
    @property
    def close_time(self) -> int: ...
    @property
    def open(self) -> str: ...
    @property
    def high(self) -> str: ...
    @property
    def low(self) -> str: ...
    @property
    def close(self) -> str: ...
    @property
    def volume(self) -> str: ...
    @property
    def quote_volume(self) -> str: ...
    @property
    def trades(self) -> int: ...


def check_kline(kline: Candle) -> None:
    """Raise ``ValueError`` naming what makes ``kline`` no candle: an unknown interval,
    times that do not span one interval, decimals that are not canonical, a negative
    volume or trade count, or prices outside ``low <= open, close <= high``."""
    if kline.interval not in KLINE_INTERVALS:
        raise ValueError(f"interval {kline.interval!r} is not a kline interval")
    length = interval_ms(kline.interval)
    if length is not None and kline.close_time != kline.open_time + length - 1:
        raise ValueError(
            f"close_time {kline.close_time} does not end the {kline.interval} candle "
            f"opened at {kline.open_time}"
        )
    if length is None and kline.close_time <= kline.open_time:
        raise ValueError(f"close_time {kline.close_time} is not after open_time")
    values: dict[str, Decimal] = {}
    for name in DECIMAL_FIELDS:
        text = getattr(kline, name)
        if not isinstance(text, str) or canonical_decimal(text) != text:
            raise ValueError(f"{name} {text!r} is not a canonical decimal")
        values[name] = Decimal(text)
        if values[name] < 0:
            raise ValueError(f"{name} {text} is negative")
    if kline.trades < 0:
        raise ValueError(f"trades {kline.trades} is negative")
    low, high = values["low"], values["high"]
    if low > high:
        raise ValueError(f"low {kline.low} is above high {kline.high}")
    for name in ("open", "close"):
        if not low <= values[name] <= high:
            raise ValueError(f"{name} {getattr(kline, name)} is outside low-high")
