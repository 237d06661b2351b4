"""``/prices`` and ``/symbols`` over many symbols (SPEC §12): built from the hub's ticks,
redone only for what changed since the last answer."""

from __future__ import annotations

from tickcast.hub.memory import MemoryHub
from tickcast.messages.message import Message
from tickcast.messages.tick import Tick
from tickcast.serve.prices import Prices

SYMBOLS = [f"S{i:04d}USDT" for i in range(2000)]


def tick(symbol: str, seq: int, price: str = "1.5") -> Tick:
    return Tick(symbol=symbol, seq=seq, timestamp_ms=1, source="sim", last_price=price)


class CountingHub(MemoryHub):
    def __init__(self) -> None:
        super().__init__(history_size=50)
        self.history_reads = 0

    def history(self, key: str, limit: int) -> list[Message]:
        self.history_reads += 1
        return super().history(key, limit)


def test_prices_are_joined_once_until_a_newer_tick() -> None:
    hub = CountingHub()
    listing = Prices(lambda: SYMBOLS, hub.latest, hub.history)
    assert listing.prices() is None
    for seq, symbol in enumerate(SYMBOLS, start=1):
        hub.publish(tick(symbol, seq))
    first = listing.prices()
    assert first is not None and first.count(b'"type":"tick"') == 2000
    assert listing.prices() is first  # nothing new: the same bytes, not built again
    hub.publish(tick(SYMBOLS[7], 5000, "2.25"))
    again = listing.prices()
    assert again is not first and b'"last_price":2.25' in again


def test_decimals_are_learned_once_then_from_each_new_tick_alone() -> None:
    hub = CountingHub()
    listing = Prices(lambda: SYMBOLS, hub.latest, hub.history)
    for seq, symbol in enumerate(SYMBOLS, start=1):
        hub.publish(tick(symbol, seq, "1.5"))
    assert listing.decimals()[SYMBOLS[0]] == 1
    assert hub.history_reads == 2000
    assert listing.decimals()[SYMBOLS[0]] == 1
    hub.publish(tick(SYMBOLS[0], 5000, "1.125"))
    assert listing.decimals()[SYMBOLS[0]] == 3
    hub.publish(tick(SYMBOLS[0], 5001, "1.5"))  # fewer decimals: the most shown stays
    assert listing.decimals()[SYMBOLS[0]] == 3
    assert hub.history_reads == 2000  # no symbol's history read again
