"""The normalized tick: one symbol's full state after an upstream event, encoded once.

Values are kept as canonical decimal strings exactly as the exchange sent them (see
``decimals``), so a price of "0.3" reaches clients as ``0.3``, never as
``0.30000000000000004``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Final, Literal

import orjson

from tickcast.messages.decimals import fragment, raw_numbers

SourceLabel = Literal["binance", "sim", "replay"]

# SPEC §3: the symbols served when none are configured; the simulator plays the same ones.
DEFAULT_SYMBOLS: tuple[str, ...] = (
    "BTCUSDT",
    "ETHUSDT",
    "BNBUSDT",
    "SOLUSDT",
    "XRPUSDT",
    "ADAUSDT",
    "DOGEUSDT",
    "TRXUSDT",
    "LTCUSDT",
    "LINKUSDT",
)

DECIMAL_FIELDS: Final = (
    "last_price",
    "change_percent",
    "change",
    "open",
    "high",
    "low",
    "volume",
    "quote_volume",
    "bid",
    "ask",
)

# The fields that are prices, quoted at the symbol's tick size (``change`` is a difference).
PRICE_FIELDS: Final = ("last_price", "open", "high", "low", "bid", "ask")


def price_decimals(ticks: Iterable[Tick]) -> int | None:
    """The most decimals any price of ``ticks`` has: the symbol's tick size, as far as they
    show it; None when they hold no price.

    Trailing zeros are trimmed (``14.960`` is held as ``14.96``), so one price may show
    fewer decimals than its symbol uses; the six prices of each tick, over a few ticks,
    almost surely show them all.
    """
    most: int | None = None
    for tick in ticks:
        for name in PRICE_FIELDS:
            value = getattr(tick, name)
            if value is not None:
                places = len(value.partition(".")[2])
                most = places if most is None else max(most, places)
    return most


@dataclass(slots=True)
class Tick:
    """The latest state of one symbol, stamped with a global sequence number.

    Decimal fields hold canonical decimal strings (see ``canonical_decimal``) or ``None``
    when the upstream has not sent that value yet.
    """

    symbol: str
    seq: int
    timestamp_ms: int
    source: SourceLabel
    last_price: str | None = None
    change_percent: str | None = None
    change: str | None = None
    open: str | None = None
    high: str | None = None
    low: str | None = None
    volume: str | None = None
    quote_volume: str | None = None
    bid: str | None = None
    ask: str | None = None
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        """The stream a tick belongs to, as the hub and the edge key it: the bare symbol
        (``BTCUSDT`` is ``BTCUSDT@ticker``; SPEC §12)."""
        return self.symbol

    def encode(self) -> bytes:
        """The tick's JSON message, built once and shared by every subscriber."""
        if self._encoded is None:
            self._encoded = orjson.dumps(self.as_json_dict())
        return self._encoded

    def as_json_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "type": "tick",
            "symbol": self.symbol,
            "last_price": fragment(self.last_price),
            "change_percent": fragment(self.change_percent),
            "timestamp_ms": self.timestamp_ms,
        }
        for name in DECIMAL_FIELDS[2:]:
            out[name] = fragment(getattr(self, name))
        out["seq"] = self.seq
        out["source"] = self.source
        return out

    def evolve(self, **changes: object) -> Tick:
        """A copy with ``changes`` applied and no cached encoding."""
        return replace(self, _encoded=None, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, data: bytes) -> Tick:
        """Rebuild a tick from its own encoding (used by the Redis hub and replays).

        Decimal values are recovered from the raw JSON text, never via float.
        """
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("type") != "tick":
            raise ValueError("not a tick message")
        raw = raw_numbers(data)
        values: dict[str, str | None] = {}
        for name in DECIMAL_FIELDS:
            values[name] = raw.get(name) if obj.get(name) is not None else None
        source = obj["source"]
        if source not in ("binance", "sim", "replay"):
            raise ValueError(f"unknown tick source {source!r}")
        return cls(
            symbol=str(obj["symbol"]),
            seq=int(obj["seq"]),
            timestamp_ms=int(obj["timestamp_ms"]),
            source=source,
            _encoded=bytes(data),
            **values,
        )
