"""When the next order-book snapshot may be asked for: pure, no I/O.

Binance's REST budget is 6,000 weight a minute per address (``REQUEST_WEIGHT``), and a
snapshot at limit 5000 costs 250 of it: 24 a minute at most. A mass resync (every book
at once, after an exchange restart or at start) must be paced, or the 429s that follow
turn into a 418 ban of the address (ccxt #16620; cryptofeed resets every book of a feed
on one gap and storms the same way). So:

- each symbol waits once in one queue, served in the order it asked (a symbol that asks
  again while waiting or while its snapshot is on its way keeps its place);
- a request goes out only when it fits within ``share`` of the budget, counting what this
  process spent in the last ``window`` seconds, or what the server last reported
  (``X-MBX-USED-WEIGHT-1m``) when that is more: other requests from the same address
  count against the same budget;
- a 429 or 418 stops every request until its ``Retry-After`` has passed.

The caller gives the time (seconds, any monotonic clock) and the weight of each request.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from tickcast.upstream.rest import depth_weight

# Binance's REQUEST_WEIGHT per minute per address, and the share of it snapshots may use
# (the rest is for candle history, missed trades and whatever else shares the address).
WEIGHT_BUDGET: Final = 6000
WEIGHT_WINDOW: Final = 60.0
BUDGET_SHARE: Final = 0.8
# A 429 or 418 without Retry-After (Binance always sends one): wait out a whole window.
DEFAULT_REFUSAL_WAIT: Final = WEIGHT_WINDOW


class SnapshotPacer:
    """The queue of symbols waiting for a snapshot, and the weight budget they share."""

    def __init__(
        self,
        *,
        budget: int = WEIGHT_BUDGET,
        window: float = WEIGHT_WINDOW,
        share: float = BUDGET_SHARE,
    ) -> None:
        if budget < 1 or window <= 0 or not 0 < share <= 1:
            raise ValueError(f"budget {budget}, window {window}, share {share}: no budget")
        self.allowance = int(budget * share)
        self._window = window
        self._queue: dict[str, None] = {}  # insertion-ordered: served in order of asking
        self._in_flight: set[str] = set()
        self._spent: deque[tuple[float, int]] = deque()  # (when, weight), oldest first
        self._reported: tuple[float, int] | None = None  # (when, used weight)
        self._resume_at = 0.0
        self.refusals = 0

    def ask(self, symbol: str) -> bool:
        """Queue ``symbol`` for a snapshot; False when it is queued or being fetched
        already (that one serves: the book judges it when it comes)."""
        if symbol in self._queue or symbol in self._in_flight:
            return False
        self._queue[symbol] = None
        return True

    def drop(self, symbol: str) -> None:
        """Forget ``symbol``'s place in the queue (it no longer needs a snapshot)."""
        self._queue.pop(symbol, None)

    @property
    def queued(self) -> list[str]:
        """The symbols waiting, first to be served first."""
        return list(self._queue)

    @property
    def in_flight(self) -> frozenset[str]:
        return frozenset(self._in_flight)

    def used(self, now: float) -> int:
        """The weight counted as spent in the window ending at ``now``: this process's
        requests, or the server's last report while it is recent, whichever is more."""
        self._expire(now)
        local = sum(weight for _, weight in self._spent)
        if self._reported is not None:
            return max(local, self._reported[1])
        return local

    def wait_time(self, now: float, weight: int) -> float | None:
        """Seconds until a request of ``weight`` may go out (0: now); None when no symbol
        is waiting."""
        if not self._queue:
            return None
        self._expire(now)
        start = max(now, self._resume_at)
        return self._fits_at(start, weight) - now

    def take(self, now: float, weight: int) -> str | None:
        """The next symbol to fetch a snapshot for, its ``weight`` counted as spent now;
        None when none is waiting or the budget or a refusal says wait."""
        if self.wait_time(now, weight) != 0:
            return None
        symbol = next(iter(self._queue))
        del self._queue[symbol]
        self._in_flight.add(symbol)
        self._spent.append((now, weight))
        return symbol

    def answered(self, symbol: str, now: float, used_weight: int | None) -> None:
        """``symbol``'s snapshot came; ``used_weight`` is what the server says this
        address spent (None when it did not say)."""
        self._in_flight.discard(symbol)
        self.reported(now, used_weight)

    def failed(self, symbol: str, now: float, used_weight: int | None = None) -> None:
        """``symbol``'s request failed: it goes back to the head of the queue."""
        self._in_flight.discard(symbol)
        self._queue = {symbol: None, **self._queue}
        self.reported(now, used_weight)

    def refused(self, now: float, retry_after: float | None) -> None:
        """A 429 or 418: no request at all before ``retry_after`` seconds have passed."""
        self.refusals += 1
        wait = DEFAULT_REFUSAL_WAIT if retry_after is None else max(0.0, retry_after)
        self._resume_at = max(self._resume_at, now + wait)

    def hold(self, until: float) -> None:
        """No request before ``until`` (a backoff after a failure that was no refusal)."""
        self._resume_at = max(self._resume_at, until)

    def resume_now(self) -> None:
        """Forget a hold (not the budget): where the REST is has changed."""
        self._resume_at = 0.0

    def reported(self, now: float, used_weight: int | None) -> None:
        """The server said this address spent ``used_weight`` in its current minute."""
        if used_weight is not None:
            self._reported = (now, used_weight)

    def resume_at(self) -> float:
        return self._resume_at

    def _expire(self, now: float) -> None:
        window = self._window
        while self._spent and now - self._spent[0][0] >= window:
            self._spent.popleft()
        # The server's count is of its current minute: a window later that minute is over
        # and every weight it counts since was reported again, or spent here.
        if self._reported is not None and now - self._reported[0] >= window:
            self._reported = None

    def _fits_at(self, start: float, weight: int) -> float:
        """The earliest time from ``start`` at which ``weight`` more fits the allowance."""
        if weight > self.allowance:
            raise ValueError(f"a request of weight {weight} never fits {self.allowance}")
        window, infinity = self._window, float("inf")
        # What is counted only falls, as spends (oldest first) and the report age out.
        spends = [(when, spent) for when, spent in self._spent if start - when < window]
        local = sum(spent for _, spent in spends)
        reported = self._reported
        if reported is not None and start - reported[0] >= window:
            reported = None
        moment, index = start, 0
        while max(local, 0 if reported is None else reported[1]) + weight > self.allowance:
            spend_out = spends[index][0] + window if index < len(spends) else infinity
            report_out = infinity if reported is None else reported[0] + window
            moment = min(spend_out, report_out)
            if spend_out <= moment:
                local -= spends[index][1]
                index += 1
            if report_out <= moment:
                reported = None
        return moment


def snapshot_limit(books: int) -> int:
    """The deepest snapshot (5000, 1000, 500 or 100 levels a side) whose weight lets
    ``books`` books all start within one minute's share of the budget: 10 books at 5000
    (250 each), 100 at 500 (25 each), 200 at 100 (5 each); no start waits minutes for
    snapshots deeper than a screen shows (the diffs add the levels beyond as they move)."""
    budget = int(WEIGHT_BUDGET * BUDGET_SHARE)
    for limit in (5000, 1000, 500, 100):
        if depth_weight(limit) * books <= budget:
            return limit
    return 100
