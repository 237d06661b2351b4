"""Timing policies for the upstream client: backoff, connection-attempt budget, send pacing,
and how often to log connect failures.

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

    @property
    def steps(self) -> int:
        """How many different ceilings the delays go through before the cap: 7 for
        0.5 s to 30 s (0.5, 1, 2, 4, 8, 16, 30)."""
        steps = 1
        while self.initial * 2 ** (steps - 1) < self.maximum and steps < 64:
            steps += 1
        return steps


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


class FailureLog:
    """Which of a run of failures to log: each of the first ``first`` on a line of its
    own, then at most one line per ``interval`` seconds that counts the failures since the
    last line.

    A client that cannot connect retries for ever: offline, that is two attempts a minute
    at the backoff's cap, each worth a warning to nobody. The first failures, while the
    backoff still grows, each say something new; after that, a count a minute is enough.
    """

    def __init__(self, first: int, interval: float = 60.0) -> None:
        self.first = first
        self.interval = interval
        self.streak = 0
        self._unlogged = 0
        self._last_line = 0.0

    @property
    def summarizing(self) -> bool:
        """Past the first ``first`` failures: lines are summaries with a count."""
        return self.streak > self.first

    def failed(self, now: float) -> int:
        """Count one failure at ``now``. Returns how many failures the line to write now
        covers (this one included), or 0 when no line is due."""
        self.streak += 1
        self._unlogged += 1
        if self.streak > self.first and now - self._last_line < self.interval:
            return 0
        covered, self._unlogged, self._last_line = self._unlogged, 0, now
        return covered

    def succeeded(self) -> int:
        """The run of failures is over; returns how long it was."""
        streak, self.streak, self._unlogged = self.streak, 0, 0
        return streak
