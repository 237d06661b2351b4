"""MessageStore against a reference model that keeps everything (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from tickcast.hub.store import MessageStore
from tickcast.messages.tick import Tick

SYMBOLS = ["A", "B", "C"]


def tick(symbol: str, seq: int) -> Tick:
    return Tick(symbol=symbol, seq=seq, timestamp_ms=seq, source="sim", last_price=str(seq))


@dataclass
class Model:
    """Every accepted tick, forever: the obvious answer to each question."""

    size: int
    ticks: list[Tick] = field(default_factory=list)

    def add(self, t: Tick) -> bool:
        if t.seq <= (self.ticks[-1].seq if self.ticks else 0):  # seqs start at 1
            return False
        self.ticks.append(t)
        return True

    def of(self, symbol: str) -> list[Tick]:
        return [t for t in self.ticks if t.symbol == symbol]

    def history(self, symbol: str, limit: int) -> list[int]:
        held = self.of(symbol)[-self.size :]
        return [t.seq for t in held[-limit:]] if limit > 0 else []

    def since(self, symbols: list[str], after: int) -> list[int] | None:
        for symbol in symbols:
            evicted = self.of(symbol)[: -self.size]
            if any(t.seq > after for t in evicted):
                return None
        return sorted(t.seq for t in self.ticks if t.symbol in symbols and t.seq > after)


operations = st.lists(
    st.tuples(st.sampled_from(SYMBOLS), st.integers(min_value=-2, max_value=3)),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=6),
    steps=operations,
    queries=st.lists(
        st.tuples(
            st.lists(st.sampled_from(SYMBOLS), unique=True, max_size=3),
            st.integers(min_value=-1, max_value=120),
            st.integers(min_value=-1, max_value=10),
        ),
        max_size=10,
    ),
)
def test_store_answers_as_the_reference_model(
    size: int, steps: list[tuple[str, int]], queries: list[tuple[list[str], int, int]]
) -> None:
    """Adds (seqs advancing, repeating or going back), latest, history and since agree
    with a model that keeps every tick."""
    store, model = MessageStore(size), Model(size)
    seq = 0
    for symbol, step in steps:
        seq = max(0, seq + step)
        t = tick(symbol, seq)
        assert store.add(t) == model.add(t)
    assert store.last_seq() == (model.ticks[-1].seq if model.ticks else 0)
    for symbol in SYMBOLS:
        latest = store.latest(symbol)
        expected = model.of(symbol)
        assert (latest.seq if latest else None) == (expected[-1].seq if expected else None)
    for symbols, after, limit in queries:
        for symbol in symbols:
            assert [t.seq for t in store.history(symbol, limit)] == model.history(symbol, limit)
        found = store.since(symbols, after)
        assert (None if found is None else [t.seq for t in found]) == model.since(symbols, after)
