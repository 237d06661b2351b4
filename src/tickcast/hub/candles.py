"""Candle history per symbol and interval: what ``GET /klines`` answers (SPEC §12).

Filled twice over, with one seam: the stream's candles as the hub delivers them, and the
candles before the first of those from the upstream's REST (``GET /api/v3/klines``),
fetched once the stream has delivered its first candle. Everything the REST answer holds
before that candle is closed, and the stream has everything from it on: no candle is
missing at the seam and none is held twice (the stream's version of a candle always wins
over the REST's, which is older). Pure: no I/O, the node feeds it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from tickcast.messages.kline import Kline


@dataclass(slots=True)
class _Series:
    """One symbol's candles of one interval, by open time; ``first_live`` is the open time
    of the first candle the stream delivered, where the REST history must end."""

    source: str
    first_live: int
    times: list[int] = field(default_factory=list)
    candles: dict[int, Kline] = field(default_factory=dict)
    filled: bool = False


Arrival = Literal["first", "held"]


class CandleHistory:
    """At most ``limit`` candles per (symbol, interval), the newest kept."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._series: dict[tuple[str, str], _Series] = {}

    def add(self, kline: Kline) -> Arrival:
        """Keep a candle from the stream. ``first``: the first of its series (or the first
        from another source, which starts the series over: a fallback's simulated candles
        and live ones are different markets), so its history is to be fetched, ending
        before ``kline.open_time``."""
        key = (kline.symbol, kline.interval)
        series = self._series.get(key)
        arrival: Arrival = "held"
        if series is None or series.source != kline.source:
            series = self._series[key] = _Series(kline.source, kline.open_time)
            arrival = "first"
        self._put(series, kline)
        return arrival

    def fill(self, symbol: str, interval: str, candles: Iterable[Kline]) -> int:
        """Add the REST history of a series: candles before its first live one, none
        replacing one held. Returns how many were added."""
        series = self._series.get((symbol, interval))
        if series is None:
            return 0
        held = set(series.candles)
        ours = empty = True
        for kline in candles:
            empty = False
            if kline.source != series.source:
                ours = False
                continue
            if kline.open_time >= series.first_live:
                continue
            if kline.open_time not in series.candles:
                self._put(series, kline)
        # The history of another source was fetched for a series that has since restarted
        # (the source changed while the fetch was in flight): the restarted series still
        # waits for its own.
        if ours or empty:
            series.filled = True
        # Counted at the end: a candle older than the limit allows is evicted as it comes.
        return len(series.candles.keys() - held)

    def _put(self, series: _Series, kline: Kline) -> None:
        times = series.times
        if kline.open_time not in series.candles:
            if not times or kline.open_time > times[-1]:
                times.append(kline.open_time)
            else:
                bisect.insort(times, kline.open_time)
        series.candles[kline.open_time] = kline
        while len(times) > self._limit:
            del series.candles[times.pop(0)]

    def candles(
        self,
        symbol: str,
        interval: str,
        limit: int,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Kline]:
        """Up to ``limit`` candles, oldest first, opened within ``[start_ms, end_ms]``: the
        first ``limit`` from ``start_ms`` when it is given, else the last ``limit`` up to
        ``end_ms`` (as Binance's ``/api/v3/klines`` answers)."""
        series = self._series.get((symbol, interval))
        if series is None or limit <= 0:
            return []
        times = series.times
        low = 0 if start_ms is None else bisect.bisect_left(times, start_ms)
        high = len(times) if end_ms is None else bisect.bisect_right(times, end_ms)
        chosen = times[low : low + limit] if start_ms is not None else times[low:high][-limit:]
        chosen = [t for t in chosen if end_ms is None or t <= end_ms]
        return [series.candles[t] for t in chosen]

    def filled(self, symbol: str, interval: str) -> bool:
        series = self._series.get((symbol, interval))
        return series is not None and series.filled

    def first_live(self, symbol: str, interval: str) -> tuple[str, int] | None:
        """The source and open time of a series' first live candle; None before any."""
        series = self._series.get((symbol, interval))
        return None if series is None else (series.source, series.first_live)

    def __len__(self) -> int:
        return sum(len(s.times) for s in self._series.values())
