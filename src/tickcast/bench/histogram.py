"""A fixed-size latency histogram: constant memory and cost per sample, mergeable.

Samples are integers in units of ``UNIT_US`` microseconds: one bucket per unit (0.1 ms)
up to ``FINE`` units (10 s), then 10 ms buckets up to 600 s (an overloaded baseline lags
by many seconds, and its p50 must still read as a number), then one overflow bucket;
the exact maximum is kept apart. Load-generator processes each fill one and the bench
adds them up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

UNIT_US = 100  # 0.1 ms per fine bucket
UNITS_PER_MS = 1000 // UNIT_US
FINE = 100_000  # fine buckets: 0..10 s
COARSE_UNITS = 100  # 10 ms per coarse bucket
COARSE = 59_000  # coarse buckets: 10..600 s
BUCKETS = FINE + COARSE  # the index of the overflow bucket (beyond 600 s)


def bucket_of(units: int) -> int:
    """The bucket of a sample of ``units`` (negative counts as 0)."""
    if units < FINE:
        return max(0, units)
    return min(FINE + (units - FINE) // COARSE_UNITS, BUCKETS)


def lower_units(bucket: int) -> int:
    """The inclusive lower edge of ``bucket`` in units."""
    return bucket if bucket <= FINE else FINE + (bucket - FINE) * COARSE_UNITS


def upper_units(bucket: int) -> int | None:
    """The exclusive upper edge of ``bucket`` in units; None for the overflow bucket."""
    if bucket < FINE:
        return bucket + 1
    if bucket < BUCKETS:
        return FINE + (bucket - FINE + 1) * COARSE_UNITS
    return None


class LatencyHistogram:
    """Counts per bucket (see ``bucket_of``), plus the exact maximum."""

    __slots__ = ("counts", "max_units")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * (BUCKETS + 1)
        self.max_units = 0

    def add(self, units: int) -> None:
        """One sample of ``units`` (negative values count as 0)."""
        self.counts[bucket_of(units)] += 1
        self.max_units = max(self.max_units, units)

    @property
    def total(self) -> int:
        return sum(self.counts)

    def merge(self, other: LatencyHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.max_units = max(self.max_units, other.max_units)

    def percentile_ms(self, fraction: float) -> float | None:
        """The latency under which ``fraction`` of the samples fall (bucket upper edge,
        capped at the maximum); None without samples."""
        total = self.total
        if total == 0:
            return None
        # Rounded first: 0.99 * 100 is 99.00000000000001 in floating point.
        rank = max(1, math.ceil(round(fraction * total, 6)))
        seen = 0
        for bucket, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                upper = upper_units(bucket)
                return min(upper or self.max_units, self.max_units) / UNITS_PER_MS
        return self.max_units / UNITS_PER_MS  # pragma: no cover - rank <= total

    def mean_ms(self) -> float | None:
        total = self.total
        if total == 0:
            return None
        # Each bucket at its lower edge, the overflow bucket at the maximum.
        weighted = sum(
            (lower_units(bucket) if bucket < BUCKETS else self.max_units) * count
            for bucket, count in enumerate(self.counts)
            if count
        )
        return weighted / total / UNITS_PER_MS

    def max_ms(self) -> float | None:
        return None if self.total == 0 else self.max_units / UNITS_PER_MS

    def to_sparse(self) -> dict[int, int]:
        """Non-empty buckets only: what crosses the pipe from a load-generator process."""
        return {bucket: count for bucket, count in enumerate(self.counts) if count}

    @classmethod
    def from_sparse(cls, buckets: Mapping[int, int], max_units: int) -> LatencyHistogram:
        histogram = cls()
        for bucket, count in buckets.items():
            histogram.counts[min(max(0, int(bucket)), BUCKETS)] += int(count)
        histogram.max_units = max_units
        return histogram

    @classmethod
    def merged(cls, parts: Iterable[LatencyHistogram]) -> LatencyHistogram:
        out = cls()
        for part in parts:
            out.merge(part)
        return out

    def summary(self) -> dict[str, float | int | None]:
        """p50, p99, p99.9, max and mean in ms, and the sample count."""
        return {
            "p50_ms": self.percentile_ms(0.50),
            "p99_ms": self.percentile_ms(0.99),
            "p999_ms": self.percentile_ms(0.999),
            "max_ms": self.max_ms(),
            "mean_ms": _round(self.mean_ms()),
            "samples": self.total,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
