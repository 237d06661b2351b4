"""``!tickers``: every symbol's ticker as one stream (SPEC §12 "Every market").

A screen of every market follows one stream, not thousands: each ``tickers`` message holds
the ticks that changed in one upstream batch (on subscribe, every symbol's latest), and a
client that reads slower than they come gets them merged per symbol, the latest of each.
It counts as one subscription::

    {"type":"tickers","stream":"!tickers","ticks":[{"type":"tick","symbol":"BTCUSDT",...},
     ...],"seq":1240}

``seq`` is the newest of its ticks' (each tick keeps its own). The message is built by the
edge from the ticks the hub delivers, never stored in the hub: its ticks are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from tickcast.messages.stream import ALL_TICKERS
from tickcast.messages.tick import SourceLabel, Tick

_HEAD: Final = b'{"type":"tickers","stream":"!tickers","ticks":['


@dataclass(slots=True)
class Tickers:
    """Ticks of many symbols as one message, at most one per symbol (the newest)."""

    ticks: dict[str, Tick]
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, ticks: Iterable[Tick]) -> Tickers:
        """The newest tick of each symbol among ``ticks``, in the order they came."""
        by_symbol: dict[str, Tick] = {}
        for tick in ticks:
            held = by_symbol.get(tick.symbol)
            if held is None or tick.seq > held.seq:
                by_symbol[tick.symbol] = tick
        return cls(by_symbol)

    def merged(self, later: Tickers) -> Tickers:
        """This message with ``later``'s ticks over it: what a slow client gets for both."""
        ticks = dict(self.ticks)
        for symbol, tick in later.ticks.items():
            held = ticks.get(symbol)
            if held is None or tick.seq > held.seq:
                ticks[symbol] = tick
        return Tickers(ticks)

    @property
    def key(self) -> str:
        return ALL_TICKERS

    @property
    def symbol(self) -> str:
        return ALL_TICKERS

    @property
    def seq(self) -> int:
        return max((t.seq for t in self.ticks.values()), default=0)

    @property
    def source(self) -> SourceLabel:
        newest = max(self.ticks.values(), key=lambda t: t.seq, default=None)
        return "binance" if newest is None else newest.source

    def encode(self) -> bytes:
        """Built once for every subscriber, from each tick's own encoding."""
        if self._encoded is None:
            body = b",".join(t.encode() for t in self.ticks.values())
            self._encoded = _HEAD + body + b'],"seq":%d}' % self.seq
        return self._encoded
