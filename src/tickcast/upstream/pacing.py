"""Timing policies for the upstream client: backoff, connection-attempt budget, send pacing,
how often to log connect failures, and the retries of REST requests.

Pure objects: they are given the time and return how long to wait, so tests drive them
with plain calls and a fake clock.
"""

from __future__ import annotations

import random
from collections import Counter, deque
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


@dataclass
class RetryPacer:
    """How long to wait before retrying a failed REST request.

    The server's ``Retry-After`` wins when it gave one (Binance bans an address that asks
    again sooner). Otherwise exponential backoff with equal jitter: the delay is drawn from
    the upper half of ``min(maximum, initial * 2**n)``, so it still grows with each
    failure (full jitter could retry at once many times in a row against a server that is
    down) while clients that failed together do not retry together. A success starts over.
    """

    initial: float = 1.0
    maximum: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def failed(self, retry_after: float | None = None) -> float:
        """Count one failure; returns the seconds to wait before the next request."""
        ceiling = min(self.maximum, self.initial * 2 ** min(self.attempt, 32))
        self.attempt += 1
        if retry_after is not None:
            return max(0.0, retry_after)
        return self.rng.uniform(ceiling / 2, ceiling)

    def succeeded(self) -> None:
        self.attempt = 0


class ErrorTally:
    """Which failures of a run to log: the first of each kind, with what came back; later
    ones of a kind already logged are only counted. A success ends the run: it is worth
    one line (``succeeded`` returns how many failures it ended), and the next failure of
    any kind is logged again.

    A request retried for ever against a server that is down fails every minute; each
    failure after the first of its kind tells nobody anything new.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.last_error: str | None = None
        self._logged: set[str] = set()
        self._streak = 0

    def failed(self, kind: str, text: str) -> bool:
        """Count a failure of ``kind``; returns whether to log it."""
        self.counts[kind] += 1
        self.last_error = text
        self._streak += 1
        if kind in self._logged:
            return False
        self._logged.add(kind)
        return True

    def succeeded(self) -> int:
        """The run of failures is over; returns how long it was (0: there was none)."""
        streak, self._streak = self._streak, 0
        self._logged.clear()
        return streak
