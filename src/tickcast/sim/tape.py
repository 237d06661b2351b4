"""The simulated exchange's recent aggregate trades, per symbol: what its REST
``GET /api/v3/aggTrades`` answers (in Binance's shape), so a client can fetch the trades
its connection did not deliver. No I/O."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from tickcast.sim.market import SymbolState, format_units

# Trades kept per symbol: minutes of trades at the simulator's rates.
HELD: Final = 20_000


@dataclass(frozen=True, slots=True)
class _Trade:
    agg_id: int
    price: int
    qty: int
    trade_id: int
    time_ms: int
    buyer_maker: bool

    def row(self) -> dict[str, object]:
        return {
            "a": self.agg_id,
            "p": format_units(self.price),
            "q": format_units(self.qty),
            "f": self.trade_id,
            "l": self.trade_id,
            "T": self.time_ms,
            "m": self.buyer_maker,
            "M": True,
        }


class TradeTape:
    """The last ``held`` aggregate trades of each symbol, oldest first."""

    def __init__(self, held: int = HELD) -> None:
        self._held = held
        self._tapes: dict[str, deque[_Trade]] = {}

    def record(self, stepped: Iterable[SymbolState], time_ms: int) -> None:
        """Keep the trade each of ``stepped`` just made (its last price and quantity)."""
        for s in stepped:
            tape = self._tapes.get(s.symbol)
            if tape is None:
                tape = self._tapes[s.symbol] = deque(maxlen=self._held)
            tape.append(_Trade(s.agg_id, s.last, s.last_qty, s.trade_id, time_ms, s.buyer_maker))

    def rows(self, symbol: str, from_id: int | None, limit: int) -> list[dict[str, object]]:
        """Up to ``limit`` trades from the id ``from_id`` on (the newest ``limit`` when it
        is None), as Binance's rows. Ids older than what is held start at the oldest held."""
        tape = self._tapes.get(symbol)
        if not tape:
            return []
        if from_id is None:
            chosen = list(tape)[-limit:]
        else:
            start = max(0, from_id - tape[0].agg_id)
            chosen = [tape[i] for i in range(start, min(len(tape), start + limit))]
        return [t.row() for t in chosen]
