"""``/prices`` and ``/symbols`` for thousands of symbols (SPEC §12 "Every market").

Both answer about every symbol, and a market screen may ask often: each keeps what it
built and redoes only what changed since. ``/prices`` is the ticks' own encodings joined,
rebuilt only when a newer tick came; a symbol's price decimals are learned from its held
history once, then from each newer tick alone (the most decimals its prices have shown).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tickcast.messages.message import Message, ticks_of
from tickcast.messages.tick import Tick, price_decimals

# Ticks of a symbol whose prices tell its decimals (``/symbols``).
DECIMALS_SAMPLE = 50


class Prices:
    """The bodies of ``/prices`` and ``/symbols``' decimals for ``symbols()`` (the served
    ones, which ``*`` changes at run time), from a hub's ``latest`` and ``history`` (read
    at each call: they are local memory)."""

    def __init__(
        self,
        symbols: Callable[[], Sequence[str]],
        latest: Callable[[str], Message | None],
        history: Callable[[str, int], list[Message]],
    ) -> None:
        self._symbols = symbols
        self._latest = latest
        self._history = history
        self._prices: tuple[tuple[int, ...], bytes] | None = None
        # symbol -> (the seq of the latest tick it was learned at, its decimals)
        self._decimals: dict[str, tuple[int, int | None]] = {}

    def ticks(self) -> list[Tick]:
        """Every symbol's latest tick held, in the served order."""
        out = []
        for symbol in self._symbols():
            tick = self._latest(symbol)
            if isinstance(tick, Tick):
                out.append(tick)
        return out

    def prices(self) -> bytes | None:
        """``/prices``' JSON array; None while no tick is held."""
        ticks = self.ticks()
        if not ticks:
            return None
        seqs = tuple(t.seq for t in ticks)
        cached = self._prices
        if cached is None or cached[0] != seqs:
            body = b"[" + b",".join(t.encode() for t in ticks) + b"]"
            cached = self._prices = (seqs, body)
        return cached[1]

    def decimals(self) -> dict[str, int]:
        """Each symbol's price decimals, as far as its prices show them."""
        out: dict[str, int] = {}
        for symbol in self._symbols():
            tick = self._latest(symbol)
            seq = tick.seq if isinstance(tick, Tick) else 0
            known = self._decimals.get(symbol)
            if known is None:
                sample = ticks_of(self._history(symbol, DECIMALS_SAMPLE))
                known = self._decimals[symbol] = (seq, price_decimals(sample))
            elif known[0] != seq and isinstance(tick, Tick):
                # Only the newest tick is new: the most decimals shown grows by it alone.
                places = [p for p in (known[1], price_decimals([tick])) if p is not None]
                known = self._decimals[symbol] = (seq, max(places, default=None))
            if known[1] is not None:
                out[symbol] = known[1]
        return out
