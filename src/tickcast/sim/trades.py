"""The simulated exchange's trade clock: how many trades are due, and bursts. No I/O.

Binance's trades do not follow the ticker: ``@ticker`` reports once a second while a
busy symbol trades hundreds of times in it, and a news spike brings thousands in a
second. With ``--trade-rate`` the simulator paces trades apart from its ticker steps, and
``POST /_sim/burst?symbol=&count=&seconds=`` adds ``count`` trades of one symbol spread
over ``seconds`` on top of that pace. Each trade is a real step of the symbol's market
(its aggregate id one above the last, its price on the tick size), so a client can count
what it missed by id.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

# The shortest sleep of a trade clock: at 2,000 trades a second it wakes every 5 ms and
# sends the ten that are due, instead of 2,000 timer wake-ups.
MIN_WAKE: Final = 0.005
# A steady clock this far behind (a suspended or overloaded host) starts again from now
# instead of sending the missed trades in one lump nobody asked for.
MAX_LAG: Final = 1.0
MAX_BURST: Final = 1_000_000
_SYMBOL_RE: Final = re.compile(r"[a-z0-9]{2,20}")


@dataclass
class TradePace:
    """Trades due at ``rate`` per second from ``start`` (loop time); a burst has a
    ``total`` and is done once it has sent that many, a steady clock never is."""

    rate: float
    start: float
    total: int | None = None
    sent: int = 0

    def due(self, now: float) -> int:
        """How many trades to send at ``now`` (and counts them as sent)."""
        if self.total is not None and now >= self.start + self.total / self.rate:
            target = self.total  # the last wake-up sends the rest, whatever the rounding
        else:
            target = math.floor((now - self.start) * self.rate + 1e-9)
            if self.total is None and target - self.sent > self.rate * MAX_LAG:
                self.start, self.sent, target = now, 0, 0
            elif self.total is not None:
                target = min(target, self.total)
        count = max(0, target - self.sent)
        self.sent += count
        return count

    def wake_at(self, now: float) -> float:
        """When the next trade is due, but not sooner than ``MIN_WAKE`` from ``now``."""
        if self.total is not None and self.sent >= self.total:
            return now
        return max(self.start + (self.sent + 1) / self.rate, now + MIN_WAKE)

    @property
    def done(self) -> bool:
        return self.total is not None and self.sent >= self.total


@dataclass(frozen=True)
class BurstRequest:
    """``count`` extra trades of the lowercase ``symbol`` over ``seconds``."""

    symbol: str
    count: int
    seconds: float

    def pace(self, start: float) -> TradePace:
        return TradePace(self.count / self.seconds, start, total=self.count)


def parse_burst_query(query: str) -> BurstRequest:
    """``symbol=BTCUSDT&count=2000&seconds=1`` from ``POST /_sim/burst``; ValueError
    naming the bad parameter. ``seconds`` defaults to 1."""
    params = parse_qs(query, keep_blank_values=True)
    symbol = params.get("symbol", [""])[0].strip().lower()
    if _SYMBOL_RE.fullmatch(symbol) is None:
        raise ValueError(f"parameter 'symbol' must be a symbol such as BTCUSDT, got {symbol!r}")
    count_text = params.get("count", [""])[0]
    if not count_text.isdigit() or not 1 <= int(count_text) <= MAX_BURST:
        raise ValueError(f"parameter 'count' must be a whole number 1..{MAX_BURST}")
    seconds_text = params.get("seconds", ["1"])[0]
    try:
        seconds = float(seconds_text)
    except ValueError:
        raise ValueError(f"parameter 'seconds' {seconds_text!r} is not a number") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("parameter 'seconds' must be a positive number")
    return BurstRequest(symbol, int(count_text), seconds)
