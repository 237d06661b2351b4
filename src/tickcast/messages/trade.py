"""A trade of the tape (``SYMBOL@trades``, from Binance's ``@aggTrade``), encoded once.

Unlike a tick, a trade is an event, not a state: each one is delivered, never replaced by
a newer one (SPEC §12), so it carries the exchange's own id, which is what deduplicates
trades across overlapping connections and leader failovers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

import orjson

from tickcast.messages.decimals import canonical_decimal, fragment, raw_numbers
from tickcast.messages.tick import SourceLabel

Side = Literal["buy", "sell"]

_SOURCES: Final = ("binance", "sim", "replay")


@dataclass(slots=True)
class Trade:
    """One aggregate trade: ``side`` is the taker's (``buy`` when the buyer took the
    offer); ``price`` and ``qty`` are canonical decimal strings."""

    symbol: str
    trade_id: int
    price: str
    qty: str
    side: Side
    timestamp_ms: int
    seq: int
    source: SourceLabel
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_trade(self.price, self.qty, self.side)

    @property
    def key(self) -> str:
        """The stream the hub and the edge key it by: its name."""
        return self.stream

    @property
    def stream(self) -> str:
        return f"{self.symbol}@trades"

    def encode(self) -> bytes:
        """The trade's JSON message, built once and shared by every subscriber."""
        if self._encoded is None:
            self._encoded = orjson.dumps(
                {
                    "type": "trade",
                    "stream": self.stream,
                    "symbol": self.symbol,
                    "trade_id": self.trade_id,
                    "price": fragment(self.price),
                    "qty": fragment(self.qty),
                    "side": self.side,
                    "timestamp_ms": self.timestamp_ms,
                    "seq": self.seq,
                    "source": self.source,
                }
            )
        return self._encoded

    @classmethod
    def from_json(cls, data: bytes) -> Trade:
        """Rebuild a trade from its own encoding; decimals come from the raw JSON text."""
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("type") != "trade":
            raise ValueError("not a trade message")
        raw = raw_numbers(data)
        source = obj.get("source")
        if source not in _SOURCES:
            raise ValueError(f"unknown trade source {source!r}")
        side = obj.get("side")
        if side not in ("buy", "sell"):
            raise ValueError(f"unknown trade side {side!r}")
        return cls(
            symbol=str(obj["symbol"]),
            trade_id=int(obj["trade_id"]),
            price=raw["price"],
            qty=raw["qty"],
            side=side,
            timestamp_ms=int(obj["timestamp_ms"]),
            seq=int(obj["seq"]),
            source=source,
            _encoded=bytes(data),
        )


def check_trade(price: str, qty: str, side: str) -> None:
    """Raise ``ValueError`` naming what makes these values no trade: a price or quantity
    that is not a canonical positive decimal, or a side other than buy or sell."""
    for name, value in (("price", price), ("qty", qty)):
        if canonical_decimal(value) != value:
            raise ValueError(f"{name} {value!r} is not a canonical decimal")
        if value.startswith("-") or value == "0":
            raise ValueError(f"{name} {value!r} is not positive")
    if side not in ("buy", "sell"):
        raise ValueError(f"side {side!r} is neither buy nor sell")


def taker_side(buyer_is_maker: bool) -> Side:
    """Binance's ``m`` (the buyer was the maker) as the taker's side: a buyer that was the
    maker means a seller took the bid."""
    return "sell" if buyer_is_maker else "buy"
