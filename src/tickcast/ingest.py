"""Ingest: upstream updates -> deduplicated, sequenced ticks published to the hub.

Pure logic with no I/O: the sources call ``apply`` for every parsed update.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tickcast.hub.base import Hub
from tickcast.tick import SourceLabel, Tick
from tickcast.upstream.normalize import Update


@dataclass(slots=True)
class _Partial:
    """Values of a symbol seen before its first last price (e.g. a bookTicker first)."""

    values: dict[str, str] = field(default_factory=dict)


class Ingest:
    """Turns updates into ticks: drops duplicates, merges into the symbol's state, stamps
    a monotonically increasing ``seq`` and publishes to the hub.

    Two connections to the same stream (make-before-break rotation, or a shard reconnect)
    deliver the same events; an update whose ``order`` is not above the last one seen for
    its (source, symbol, kind) is a duplicate and is dropped.
    """

    def __init__(self, hub: Hub, symbols: Iterable[str]) -> None:
        self._hub = hub
        self._symbols = frozenset(symbols)
        self._last_order: dict[tuple[str, str, str], int] = {}
        self._partial: dict[str, _Partial] = {}
        self._seq = hub.last_seq()
        self.counts: Counter[str] = Counter()

    @property
    def symbols(self) -> frozenset[str]:
        return self._symbols

    def apply(self, update: Update, source: SourceLabel) -> Tick | None:
        """Apply one update; returns the published tick, or None when it was dropped."""
        if update.symbol not in self._symbols:
            self.counts["ignored_symbol"] += 1
            return None
        key = (source, update.symbol, update.kind)
        last = self._last_order.get(key)
        if last is not None and update.order <= last:
            self.counts["duplicates"] += 1
            return None
        self._last_order[key] = update.order
        tick = self._merge(update, source)
        if tick is None:
            self.counts["held_partial"] += 1
            return None
        self._hub.publish(tick)
        self.counts["published"] += 1
        return tick

    def forget_source(self, source: SourceLabel) -> None:
        """Drop dedupe state of ``source`` (its event ids restart when it comes back)."""
        for key in [k for k in self._last_order if k[0] == source]:
            del self._last_order[key]

    def _merge(self, update: Update, source: SourceLabel) -> Tick | None:
        previous = self._hub.latest(update.symbol)
        values = update.values
        if previous is None:
            partial = self._partial.setdefault(update.symbol, _Partial())
            partial.values.update(update.values)
            if "last_price" not in partial.values:
                return None
            values = self._partial.pop(update.symbol).values
        # The hub may also be fed by another node (Redis): never go backwards in seq.
        self._seq = max(self._seq, self._hub.last_seq()) + 1
        if previous is not None:
            return previous.evolve(
                seq=self._seq, timestamp_ms=update.event_time_ms, source=source, **values
            )
        return Tick(
            symbol=update.symbol,
            seq=self._seq,
            timestamp_ms=update.event_time_ms,
            source=source,
            **values,  # type: ignore[arg-type]
        )
