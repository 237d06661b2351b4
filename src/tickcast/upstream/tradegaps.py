"""Trades an upstream connection did not deliver, and the live ones held while they are
fetched: the tape loses no trade across a reconnect or a leader failover (SPEC §12).

Binance numbers each symbol's aggregate trades one apart (``a``), so a trade whose id is
more than one above the last one served says exactly which are missing: those a dropped
connection never sent, or that executed while a new leader took over. They are fetched
from the REST (``GET /api/v3/aggTrades?fromId=``) while the live trades that follow are
held back, then served in order: the missing ones, then the held ones. A gap too long to
fetch, a fetch that fails, or a hold that grows too long is given up on: the held trades
go out and the loss is counted (a client sees the ids jump), never a stall.

Pure, no I/O: the ingest feeds it, and the node runs the fetch it asks for.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Final

from tickcast.upstream.normalize import TradeEvent

# The most missing trades fetched for one gap (ten requests at Binance's weight 4 each);
# a longer gap (an upstream down for long) is counted lost rather than replayed.
MAX_FILL: Final = 10_000
# Live trades held while a fill is fetched; past this the fill is given up on.
MAX_HELD: Final = 50_000


@dataclass(frozen=True, slots=True)
class FillRequest:
    """Fetch ``symbol``'s trades ``first_id`` to ``last_id`` (inclusive)."""

    symbol: str
    first_id: int
    last_id: int

    @property
    def count(self) -> int:
        return self.last_id - self.first_id + 1


@dataclass(slots=True)
class _Hold:
    request: FillRequest
    held: list[TradeEvent] = field(default_factory=list)


class TradeGaps:
    """Per symbol: serve a trade at once, or hold it behind a fill of the trades missing
    before it. ``counts``: fills asked, filled trades, trades given up on, by name."""

    def __init__(self, max_fill: int = MAX_FILL, max_held: int = MAX_HELD) -> None:
        self._max_fill = max_fill
        self._max_held = max_held
        self._holds: dict[str, _Hold] = {}
        self.counts: Counter[str] = Counter()

    def offer(
        self, event: TradeEvent, last_id: int | None
    ) -> tuple[list[TradeEvent], FillRequest | None]:
        """What to serve now for a new live trade (``last_id``: the id of the last trade
        served of its symbol, None when there is none), and the fill to start, if any."""
        hold = self._holds.get(event.symbol)
        if hold is not None:
            hold.held.append(event)
            if len(hold.held) > self._max_held:
                return self.give_up(event.symbol), None
            return [], None
        if last_id is None or event.trade_id <= last_id + 1:
            return [event], None
        request = FillRequest(event.symbol, last_id + 1, event.trade_id - 1)
        if request.count > self._max_fill:
            self.counts["trades_lost"] += request.count
            return [event], None
        self._holds[event.symbol] = _Hold(request, [event])
        self.counts["fills"] += 1
        return [], request

    def filled(self, request: FillRequest, trades: list[TradeEvent]) -> list[TradeEvent]:
        """The fill of ``request`` came: what to serve, in order: the fetched trades that
        are missing (what the exchange did not have yet counts lost), then those held."""
        hold = self._holds.get(request.symbol)
        if hold is None or hold.request != request:
            return []  # given up on meanwhile
        del self._holds[request.symbol]
        missing = [t for t in trades if request.first_id <= t.trade_id <= request.last_id]
        history = hold.held[0].history
        missing = [_in_history(t, history) for t in missing]
        self.counts["filled"] += len(missing)
        self.counts["trades_lost"] += request.count - len(missing)
        return [*missing, *hold.held]

    def give_up(self, symbol: str) -> list[TradeEvent]:
        """Stop waiting for ``symbol``'s fill (it failed, or took too long): its held
        trades, to serve now; the trades it was to fetch count lost."""
        hold = self._holds.pop(symbol, None)
        if hold is None:
            return []
        self.counts["trades_lost"] += hold.request.count
        self.counts["fills_given_up"] += 1
        return hold.held

    def holding(self, symbol: str) -> bool:
        return symbol in self._holds

    def pending(self) -> list[FillRequest]:
        return [hold.request for hold in self._holds.values()]


def _in_history(trade: TradeEvent, history: int) -> TradeEvent:
    """A fetched trade as one of the live connection's (its order checks and dedupe)."""
    return replace(trade, history=history)
