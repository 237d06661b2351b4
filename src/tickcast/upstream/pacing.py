"""Timing policies for the upstream client: backoff, connection-attempt budget, send pacing.

Pure objects: they are given the time and return how long to wait, so tests drive them
with plain calls and a fake clock.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Exponential backoff with full jitter: delay ~ U(0, min(maximum, initial * 2**n)).

    Full jitter spreads the reconnects of many clients (or shards) that lost their
    connection at the same moment, instead of having them retry in lockstep.
    """

    initial: float = 0.5
    maximum: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * 2 ** min(self.attempt, 32))
        self.attempt += 1
        return self.rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class AttemptBudget:
    """At most ``limit`` connection attempts in any ``window`` seconds.

    Binance allows 300 connection attempts per 5 minutes per IP; going past it risks a ban,
    so every shard draws from one budget.
    """

    def __init__(self, limit: int = 300, window: float = 300.0) -> None:
        self._limit = limit
        self._window = window
        self._times: deque[float] = deque()

    def wait_time(self, now: float) -> float:
        """Seconds to wait before the next attempt may start (0 when it may start now)."""
        while self._times and now - self._times[0] >= self._window:
            self._times.popleft()
        if len(self._times) < self._limit:
            return 0.0
        return self._times[0] + self._window - now

    def record(self, now: float) -> None:
        self._times.append(now)

    def __len__(self) -> int:
        return len(self._times)


class SendPacer:
    """Spaces outgoing control messages at least ``interval`` seconds apart.

    Binance counts every incoming frame (SUBSCRIBE, ping, pong) against 5 per second per
    connection and closes with 1008 past it. Pacing with no burst at 4 per second leaves
    room for the pong we owe its pings (a token bucket with a burst of 5 lets 9 frames into
    one second at its edge).
    """

    def __init__(self, per_second: float = 4.0) -> None:
        self._interval = 1.0 / per_second
        self._next = 0.0

    def reserve(self, now: float) -> float:
        """Reserve the next slot; returns the seconds to wait before sending in it."""
        slot = max(now, self._next)
        self._next = slot + self._interval
        return slot - now
