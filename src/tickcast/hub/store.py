"""Latest tick and bounded history per symbol: the state both hubs keep in memory."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from tickcast.messages.tick import Tick


class TickStore:
    """Latest tick per symbol plus the last ``history_size`` ticks of each.

    It remembers the highest ``seq`` it has evicted per symbol, so it can tell exactly
    whether a resume from a given ``seq`` is still complete.
    """

    def __init__(self, history_size: int, first_seq: int = 0) -> None:
        self._history_size = history_size
        self._latest: dict[str, Tick] = {}
        self._history: dict[str, deque[Tick]] = {}
        self._evicted: dict[str, int] = {}
        # Seqs of this store start above ``first_seq``: anything at or below it belongs to
        # another history (a previous run of the server), which cannot be resumed here.
        self._floor = first_seq
        self._last_seq = first_seq

    def add(self, tick: Tick) -> bool:
        """Record ``tick``; returns False (and records nothing) for a seq already held."""
        if tick.seq <= self._last_seq:
            return False
        self._last_seq = tick.seq
        self._latest[tick.symbol] = tick
        ring = self._history.get(tick.symbol)
        if ring is None:
            ring = self._history[tick.symbol] = deque(maxlen=self._history_size)
        if len(ring) == self._history_size:
            self._evicted[tick.symbol] = ring[0].seq
        ring.append(tick)
        return True

    def latest(self, symbol: str) -> Tick | None:
        return self._latest.get(symbol)

    def snapshot(self) -> dict[str, Tick]:
        return dict(self._latest)

    def history(self, symbol: str, limit: int) -> list[Tick]:
        ring = self._history.get(symbol)
        if not ring or limit <= 0:
            return []
        return list(ring)[-limit:]

    def since(self, symbols: Iterable[str], after_seq: int) -> list[Tick] | None:
        if self._floor and after_seq < self._floor:
            return None
        out: list[Tick] = []
        for symbol in symbols:
            evicted = self._evicted.get(symbol)
            if evicted is not None and evicted > after_seq:
                return None
            ring = self._history.get(symbol)
            if ring:
                out.extend(t for t in ring if t.seq > after_seq)
        out.sort(key=lambda t: t.seq)
        return out

    def last_seq(self) -> int:
        return self._last_seq

    def __len__(self) -> int:
        return len(self._latest)
