"""MessageStore: latest, bounded history and exact resume."""

from __future__ import annotations

from tickcast.hub.store import MessageStore
from tickcast.messages.tick import Tick


def tick(symbol: str, seq: int) -> Tick:
    return Tick(symbol=symbol, seq=seq, timestamp_ms=seq, source="sim", last_price=str(seq))


def test_history_is_bounded_and_ordered() -> None:
    """History keeps the newest N ticks per symbol, oldest first."""
    store = MessageStore(history_size=3)
    for seq in range(1, 6):
        store.add(tick("A", seq))
    assert [t.seq for t in store.history("A", 10)] == [3, 4, 5]
    assert [t.seq for t in store.history("A", 2)] == [4, 5]
    latest = store.latest("A")
    assert latest is not None
    assert latest.seq == 5


def test_since_returns_missed_ticks_in_seq_order() -> None:
    """Resume gives every held tick after the id, across symbols, in seq order."""
    store = MessageStore(history_size=10)
    for seq, symbol in enumerate("ABABA", 1):
        store.add(tick(symbol, seq))
    missed = store.since(["A", "B"], 2)
    assert missed is not None
    assert [(t.symbol, t.seq) for t in missed] == [("A", 3), ("B", 4), ("A", 5)]
    only_b = store.since(["B"], 0)
    assert only_b is not None
    assert [t.seq for t in only_b] == [2, 4]


def test_since_reports_a_gap_once_ticks_were_evicted() -> None:
    """A resume from before the oldest held tick of a symbol is refused (None)."""
    store = MessageStore(history_size=2)
    for seq in range(1, 5):
        store.add(tick("A", seq))
    assert store.since(["A"], 1) is None
    assert store.since(["A"], 2) is not None


def test_stale_or_repeated_seq_is_not_recorded() -> None:
    """A seq at or below the last one is refused."""
    store = MessageStore(history_size=5)
    assert store.add(tick("A", 2))
    assert not store.add(tick("A", 2))
    assert not store.add(tick("A", 1))
