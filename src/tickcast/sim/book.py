"""A simulated full order book for one symbol, and Binance's depth payloads: no I/O.

Prices and quantities are integer counts of 1e-8 on the symbol's tick and lot. The
book holds a few hundred levels a side, dense near the top and sparse far away. Two
things change it: trades, which set the top (``set_top``: the walk in ``market``
decides the new best bid and ask and the levels they cross go), and ``churn``, the
order flow between trades, applied every 100 ms, which adds, changes and removes
levels, near the top far more often than deep in the book. The spread never closes.

Every level change counts one ``update_id``, Binance's ``u``; the changes since the
last ``take_diff`` make one ``BookDiff`` (``U`` to ``u``, the latest quantity of each
level touched, 0 for a removed level). A client that applies every diff in order to a
snapshot holds the same book as this one.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import random
from dataclasses import dataclass, field
from typing import Final

# Levels a side, drawn once per book.
MIN_LEVELS: Final = 300
MAX_LEVELS: Final = 800
# How far a side reaches from the top, as a fraction of the price, unless the tick is so
# coarse that the levels need more room (two ticks a level on average).
_REACH: Final = 0.006
# Level changes per churn (every 100 ms), and how deep they go: the index into a side is
# exponential with this mean, so most changes land in the top few dozen levels.
_CHURN_CHANGES: Final = (3, 14)
_CHURN_DEPTH_MEAN: Final = 12.0
# Far levels added or trimmed per churn to bring a side back towards its size.
_REFILL_PER_CHURN: Final = 6
# Market makers quote into a wide spread and into holes near the top (a trade that moves
# the price leaves one): the widest spread a churn leaves, and how deep it fills holes.
_MAX_SPREAD_TICKS: Final = 2
_FILL_DEPTH: Final = 10


class Side(enum.Enum):
    """A side of the book."""

    BID = "bid"
    ASK = "ask"


@dataclass(slots=True)
class BookDiff:
    """The changes between two update ids: ``first_id`` (``U``) to ``last_id`` (``u``)
    inclusive, with each touched level's latest quantity (0: removed)."""

    first_id: int
    last_id: int
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)

    def merge(self, later: BookDiff) -> None:
        """Fold ``later`` (which must follow on at once) into this diff, as Binance's
        1 s stream is its 100 ms one merged: the latest quantity of each level wins."""
        if later.first_id != self.last_id + 1:
            raise ValueError(f"diff {later.first_id} does not follow {self.last_id}")
        self.last_id = later.last_id
        self.bids.update(later.bids)
        self.asks.update(later.asks)


class _Levels:
    """One side: quantity by price, and the prices kept sorted ascending."""

    __slots__ = ("prices", "qty")

    def __init__(self) -> None:
        self.qty: dict[int, int] = {}
        self.prices: list[int] = []

    def __len__(self) -> int:
        return len(self.prices)

    def put(self, price: int, qty: int) -> None:
        if price not in self.qty:
            bisect.insort(self.prices, price)
        self.qty[price] = qty

    def remove(self, price: int) -> None:
        del self.qty[price]
        del self.prices[bisect.bisect_left(self.prices, price)]


class OrderBook:
    """The true book of one symbol. ``update_id`` counts every level change."""

    def __init__(
        self,
        *,
        tick: int,
        lot: int,
        typical_lots: int,
        bid: tuple[int, int],
        ask: tuple[int, int],
        update_id: int,
        rng: random.Random,
    ) -> None:
        if bid[0] >= ask[0]:
            raise ValueError(f"best bid {bid[0]} must be below best ask {ask[0]}")
        self.tick = tick
        self.lot = lot
        self.update_id = update_id
        self._typical = typical_lots
        self._rng = rng
        self._bids = _Levels()
        self._asks = _Levels()
        self._size = {Side.BID: rng.randint(MIN_LEVELS, MAX_LEVELS)}
        self._size[Side.ASK] = rng.randint(MIN_LEVELS, MAX_LEVELS)
        self._pending: BookDiff | None = None
        self._build(Side.BID, *bid)
        self._build(Side.ASK, *ask)

    # Reading

    @property
    def best_bid(self) -> tuple[int, int]:
        """Price and quantity of the best bid."""
        price = self._bids.prices[-1]
        return price, self._bids.qty[price]

    @property
    def best_ask(self) -> tuple[int, int]:
        """Price and quantity of the best ask."""
        price = self._asks.prices[0]
        return price, self._asks.qty[price]

    def depth(self, side: Side) -> int:
        """How many levels ``side`` holds."""
        return len(self._side(side))

    def levels(self, side: Side, limit: int | None = None) -> list[tuple[int, int]]:
        """The best ``limit`` levels of ``side`` (all: None), best first."""
        levels = self._side(side)
        prices = levels.prices
        n = len(prices) if limit is None else min(limit, len(prices))
        chosen = reversed(prices[len(prices) - n :]) if side is Side.BID else prices[:n]
        return [(p, levels.qty[p]) for p in chosen]

    # Changing

    def set_top(self, bid: tuple[int, int], ask: tuple[int, int]) -> int:
        """Make ``bid`` and ``ask`` (price, quantity) the best levels: what a trade
        leaves. Levels they cross go; returns how many level changes that made."""
        if bid[0] >= ask[0]:
            raise ValueError(f"best bid {bid[0]} must be below best ask {ask[0]}")
        before = self.update_id
        bids, asks = self._bids, self._asks
        while bids.prices and bids.prices[-1] > bid[0]:
            self._change(Side.BID, bids.prices[-1], 0)
        while asks.prices and asks.prices[0] < ask[0]:
            self._change(Side.ASK, asks.prices[0], 0)
        if bids.qty.get(bid[0]) != bid[1]:
            self._change(Side.BID, bid[0], bid[1])
        if asks.qty.get(ask[0]) != ask[1]:
            self._change(Side.ASK, ask[0], ask[1])
        return self.update_id - before

    def churn(self) -> int:
        """The order flow of one 100 ms: a few levels added, changed or removed, mostly
        near the top, and each side brought back towards its size far from it.
        Returns how many level changes that made."""
        before = self.update_id
        rng = self._rng
        for _ in range(rng.randint(*_CHURN_CHANGES)):
            side = Side.BID if rng.random() < 0.5 else Side.ASK
            index = min(int(rng.expovariate(1.0 / _CHURN_DEPTH_MEAN)), self.depth(side) - 1)
            roll = rng.random()
            if roll < 0.5:
                price = self.levels(side, index + 1)[index][0]
                self._change(side, price, self._quantity(index))
            elif roll < 0.8:
                self._insert_after(side, index)
            elif self.depth(side) > 1:
                self._change(side, self.levels(side, index + 1)[index][0], 0)
        self._tighten()
        for side in Side:
            self._fill_holes(side)
            self._refill(side)
        return self.update_id - before

    def take_diff(self) -> BookDiff | None:
        """The changes since the last call (None: there were none)."""
        pending, self._pending = self._pending, None
        return pending

    # Internals

    def _side(self, side: Side) -> _Levels:
        return self._bids if side is Side.BID else self._asks

    def _change(self, side: Side, price: int, qty: int) -> None:
        levels = self._side(side)
        if qty:
            levels.put(price, qty)
        else:
            levels.remove(price)
        self.update_id += 1
        pending = self._pending
        if pending is None:
            pending = self._pending = BookDiff(self.update_id, self.update_id)
        pending.last_id = self.update_id
        (pending.bids if side is Side.BID else pending.asks)[price] = qty

    def _quantity(self, index: int) -> int:
        """A level's quantity in lots: larger on average deeper in the book."""
        scale = self._typical * (1.0 + index / 60.0)
        return self.lot * max(1, round(self._rng.expovariate(1.0) * scale * 3))

    def _away(self, side: Side) -> int:
        """+1 tick or -1 tick: the direction away from the top on ``side``."""
        return -self.tick if side is Side.BID else self.tick

    def _build(self, side: Side, price: int, qty: int) -> None:
        """A fresh side: the top at ``price``, then levels reaching ``_REACH`` of the
        price away, spaced quadratically so that they crowd near the top."""
        levels = self._side(side)
        levels.put(price, qty)
        n = self._size[side]
        reach_ticks = max(2 * n, int(price * _REACH) // self.tick)
        step = self._away(side)
        offset = 0
        for i in range(1, n):
            target = int(reach_ticks * (i / n) ** 2)
            jitter = self._rng.randint(0, max(0, target - offset - 1) // 2)
            offset = max(offset + 1, target - jitter)
            level_price = price + offset * step
            if level_price <= 0:
                break
            levels.put(level_price, self._quantity(i))

    def _insert_after(self, side: Side, index: int) -> None:
        """A new level between the ``index``-th and the next; a new best level when
        the spread leaves room (it stays at least one tick)."""
        rng = self._rng
        top = self.levels(side, index + 2)
        step = self._away(side)
        if index == 0 and rng.random() < 0.3:
            other = self.best_ask[0] if side is Side.BID else self.best_bid[0]
            inside = top[0][0] - step
            if abs(other - inside) >= self.tick:
                self._change(side, inside, self._quantity(0))
            return
        near = top[index][0]
        far = top[index + 1][0] if index + 1 < len(top) else near + 8 * step
        gap = abs(far - near) // self.tick
        if gap > 1 and near + step * gap > 0:
            self._change(side, near + step * rng.randint(1, gap - 1), self._quantity(index))

    def _tighten(self) -> None:
        """New best levels inside the spread until it is at most _MAX_SPREAD_TICKS."""
        rng = self._rng
        while (spread := (self.best_ask[0] - self.best_bid[0]) // self.tick) > _MAX_SPREAD_TICKS:
            side = Side.BID if rng.random() < 0.5 else Side.ASK
            best = self.best_bid[0] if side is Side.BID else self.best_ask[0]
            price = best - self._away(side) * rng.randint(1, spread - 1)
            self._change(side, price, self._quantity(0))

    def _fill_holes(self, side: Side) -> None:
        """One new level in the widest gap among the top _FILL_DEPTH levels, if wider
        than two ticks: the top thickens again after a trade moved it."""
        top = [p for p, _ in self.levels(side, _FILL_DEPTH)]
        gaps = [(abs(b - a) // self.tick, i) for i, (a, b) in enumerate(itertools.pairwise(top))]
        if not gaps:
            return
        gap, index = max(gaps)
        if gap > 2:
            price = top[index] + self._away(side) * self._rng.randint(1, gap - 1)
            self._change(side, price, self._quantity(index + 1))

    def _refill(self, side: Side) -> None:
        levels = self._side(side)
        size = self._size[side]
        for _ in range(_REFILL_PER_CHURN):
            if len(levels) > size + 50:
                far = levels.prices[0] if side is Side.BID else levels.prices[-1]
                self._change(side, far, 0)
            elif len(levels) < size:
                far = levels.prices[0] if side is Side.BID else levels.prices[-1]
                gap = self._rng.randint(1, 1 + len(levels) // 40)
                price = far + self._away(side) * gap
                if price <= 0:
                    return
                self._change(side, price, self._quantity(len(levels)))
            else:
                return
