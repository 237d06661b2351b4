"""The local order book: Binance's documented procedure (with the 2025-11-12 gap rule),
each rule by a plain call, and random books fed with random buffering that always end
equal to the true book and never serve a wrong one."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickcast.messages.book import BookSnapshot, Depth, DepthEvent, DepthMerger, Levels
from tickcast.upstream.localbook import (
    Applied,
    BookState,
    BookView,
    Buffered,
    Crossed,
    Decision,
    Gap,
    Ignored,
    LocalBook,
    NeedSnapshot,
    Shallow,
    Synced,
    wants_snapshot,
)

SYMBOL = "BNBBTC"
BIDS: Levels = (("10", "1"), ("9.5", "2"))
ASKS: Levels = (("11", "1"), ("12", "2"))


def diff(first: int, last: int, bids: Levels = (), asks: Levels = (), t: int = 0) -> DepthEvent:
    return DepthEvent(SYMBOL, first, last, bids, asks, t)


def snapshot(last_id: int, bids: Levels = BIDS, asks: Levels = ASKS) -> BookSnapshot:
    return BookSnapshot(SYMBOL, last_id, bids, asks)


def synced(last_id: int = 100) -> LocalBook:
    """A book synced from ``snapshot(last_id)`` and a diff it covers."""
    book = LocalBook(SYMBOL)
    book.on_diff(diff(last_id - 1, last_id))
    assert isinstance(book.on_snapshot(snapshot(last_id)), Synced)
    return book


def test_the_first_diff_asks_for_a_snapshot_and_the_next_are_buffered() -> None:
    """Step 1-2: the first diff is held and asks for a snapshot; the ones after are held."""
    book = LocalBook(SYMBOL)
    assert book.on_diff(diff(101, 103)) == NeedSnapshot("first_diff")
    assert book.on_diff(diff(104, 104)) == Buffered(2)
    assert book.state is BookState.WAITING_SNAPSHOT and book.update_id is None
    with pytest.raises(ValueError, match="waiting_snapshot, not whole"):
        book.view()


def test_a_snapshot_before_any_diff_is_not_used() -> None:
    """Without a buffered diff nothing says the snapshot joins the stream: it is ignored."""
    book = LocalBook(SYMBOL)
    assert book.on_snapshot(snapshot(100)) == Ignored("no_diff_yet")
    assert book.state is BookState.WAITING_SNAPSHOT


def test_diffs_before_and_after_the_snapshot_make_one_book() -> None:
    """Buffered diffs after the snapshot are applied on it; live diffs then apply in turn."""
    book = LocalBook(SYMBOL)
    book.on_diff(diff(99, 100, bids=(("10", "5"),), t=1))
    book.on_diff(diff(101, 102, bids=(("9.5", "0"),), asks=(("11", "3"),), t=2))
    decision = book.on_snapshot(snapshot(100))
    assert decision == Synced(BookView(SYMBOL, 102, (("10", "1"),), (("11", "3"), ("12", "2")), 2))
    after = book.on_diff(diff(103, 105, bids=(("9", "4"),), t=3))
    assert after == Applied(diff(103, 105, bids=(("9", "4"),), t=3))
    assert book.view().bids == (("10", "1"), ("9", "4")) and book.update_id == 105


def test_a_snapshot_older_than_the_buffer_is_fetched_again() -> None:
    """Step 4: lastUpdateId + 1 < the first buffered U leaves updates in neither: refetch;
    the buffer is kept for the next snapshot."""
    book = LocalBook(SYMBOL)
    book.on_diff(diff(105, 107))
    decision = book.on_snapshot(snapshot(103))
    assert decision == NeedSnapshot("snapshot_too_old") and wants_snapshot(decision)
    assert book.state is BookState.WAITING_SNAPSHOT and book.buffered == 1
    assert isinstance(book.on_snapshot(snapshot(104)), Synced)
    assert book.update_id == 107


def test_a_diff_starting_right_after_the_snapshot_is_the_first_applied() -> None:
    """U == lastUpdateId + 1 connects (U <= id + 1 <= u), though the documented
    "lastUpdateId within [U;u]" would refuse it: no refetch for it."""
    book = LocalBook(SYMBOL)
    book.on_diff(diff(101, 101, asks=(("11", "0"),)))
    assert isinstance(book.on_snapshot(snapshot(100)), Synced)
    assert book.view().asks == (("12", "2"),)


def test_buffered_diffs_the_snapshot_covers_are_dropped() -> None:
    """Step 5: buffered diffs with u <= lastUpdateId are not applied: the snapshot has them."""
    book = LocalBook(SYMBOL)
    book.on_diff(diff(90, 95, bids=(("5", "1"),)))
    book.on_diff(diff(96, 100, bids=(("10", "0"),)))
    book.on_diff(diff(101, 103, bids=(("8", "1"),)))
    decision = book.on_snapshot(snapshot(100))
    assert isinstance(decision, Synced)
    assert decision.book.bids == (("10", "1"), ("9.5", "2"), ("8", "1"))


def test_the_first_applied_diff_may_straddle_the_snapshot() -> None:
    """Step 5: a diff with U <= lastUpdateId < u is applied whole (quantities are absolute)."""
    book = LocalBook(SYMBOL)
    book.on_diff(diff(95, 105, bids=(("10", "7"),)))
    decision = book.on_snapshot(snapshot(100))
    assert isinstance(decision, Synced) and decision.book.update_id == 105
    assert decision.book.bids[0] == ("10", "7")


def test_a_snapshot_newer_than_every_buffered_diff() -> None:
    """Every buffered diff dropped: the book is the snapshot, and the live diffs it covers
    are stale until the one holding lastUpdateId + 1."""
    book = LocalBook(SYMBOL)
    book.on_diff(diff(95, 99))
    assert isinstance(book.on_snapshot(snapshot(110)), Synced)
    assert book.on_diff(diff(100, 108)) == Ignored("stale")
    assert book.on_diff(diff(109, 110)) == Ignored("stale")  # u == id: nothing new
    assert isinstance(book.on_diff(diff(109, 112)), Applied) and book.update_id == 112


def test_the_gap_rule_is_u_above_id_plus_one() -> None:
    """The 2025-11-12 rule: U == id + 1 is the normal next diff; U > id + 1 is a gap that
    discards the book, which is then resynced from a new snapshot."""
    book = synced(100)
    assert isinstance(book.on_diff(diff(101, 101)), Applied)
    decision = book.on_diff(diff(103, 104))
    assert decision == Gap(expected=102, got=103) and wants_snapshot(decision)
    assert book.state is BookState.BROKEN and book.update_id is None
    with pytest.raises(ValueError, match="broken, not whole"):
        book.view(20)
    assert book.buffered == 1  # the diff that showed the gap starts the new buffer
    assert book.on_diff(diff(105, 106)) == Buffered(2)
    resynced = book.on_snapshot(snapshot(104))
    assert isinstance(resynced, Synced) and resynced.book.update_id == 106
    assert book.update_id == 106 and book.view(1).bids == BIDS[:1]


def test_stale_diffs_and_late_snapshots_change_nothing() -> None:
    """u <= id is ignored, and so is a snapshot that comes when the book is whole."""
    book = synced(100)
    assert book.on_diff(diff(95, 100, bids=(("10", "0"),))) == Ignored("stale")
    assert book.on_snapshot(snapshot(200)) == Ignored("already_synced")
    assert book.view().bids == BIDS and book.update_id == 100


def test_quantity_zero_deletes_and_only_real_changes_are_served() -> None:
    """Quantity 0 removes a level; removing a level never held is fine; the changes carry
    only levels whose quantity changed, from the book's previous id + 1."""
    book = synced(100)
    decision = book.on_diff(
        diff(99, 104, bids=(("10", "0"), ("3", "0"), ("9.5", "2")), asks=(("12", "2.5"),))
    )
    assert decision == Applied(diff(101, 104, bids=(("10", "0"),), asks=(("12", "2.5"),)))
    assert book.view().bids == (("9.5", "2"),)


def test_levels_beyond_the_snapshot_are_learned_when_they_change() -> None:
    """A snapshot holds the best levels only; one outside it joins the book once a diff
    names it."""
    book = synced(100)
    book.on_diff(diff(101, 101, bids=(("1", "50"),), asks=(("900", "1"),)))
    assert book.view().bids[-1] == ("1", "50") and book.view().asks[-1] == ("900", "1")
    assert book.depth() == (3, 3)


def test_a_rotation_carries_the_book_without_a_snapshot() -> None:
    """A new connection's diffs that overlap or follow the book continue it; repeats are
    stale; a first diff past id + 1 is a gap."""
    book = synced(100)
    book.on_diff(diff(101, 110))
    assert book.on_diff(diff(105, 110)) == Ignored("stale")  # the old connection's repeat
    overlapped = book.on_diff(diff(108, 112, bids=(("10", "4"),)))
    assert overlapped == Applied(diff(111, 112, bids=(("10", "4"),)))
    assert book.on_diff(diff(114, 115)) == Gap(expected=113, got=114)


def test_a_crossed_book_is_broken_and_not_served() -> None:
    """A diff that leaves the best bid at or above the best ask means a wrong book: it is
    discarded and resynced like a gap."""
    book = synced(100)
    decision = book.on_diff(diff(101, 101, bids=(("11.5", "1"),)))
    assert decision == Crossed(best_bid="11.5", best_ask="11") and wants_snapshot(decision)
    assert book.state is BookState.BROKEN and book.update_id is None
    assert book.buffered == 1


def test_a_crossed_snapshot_is_not_served() -> None:
    """A snapshot whose bid meets its ask never becomes the book."""
    book = LocalBook(SYMBOL)
    book.on_diff(diff(99, 100))
    crossed = snapshot(100, bids=(("11", "1"),))
    assert book.on_snapshot(crossed) == Crossed(best_bid="11", best_ask="11")
    assert book.state is BookState.WAITING_SNAPSHOT


def test_the_buffer_is_bounded() -> None:
    """Past its bound the buffer starts over from the newest diff and asks for a snapshot."""
    book = LocalBook(SYMBOL, max_buffered=3)
    for first in (1, 2, 3):
        book.on_diff(diff(first, first))
    assert book.on_diff(diff(4, 4)) == NeedSnapshot("buffer_full")
    assert book.buffered == 1
    assert book.on_snapshot(snapshot(2)) == NeedSnapshot("snapshot_too_old")
    assert isinstance(book.on_snapshot(snapshot(3)), Synced)


def test_a_hole_in_the_buffer_restarts_it() -> None:
    """Buffered diffs that a later one does not follow are useless: the buffer restarts
    from that diff; a repeat of a held diff is stale."""
    book = LocalBook(SYMBOL)
    book.on_diff(diff(10, 12))
    assert book.on_diff(diff(11, 12)) == Ignored("stale")
    assert book.on_diff(diff(14, 15)) == NeedSnapshot("buffer_gap")
    assert book.buffered == 1
    assert book.on_snapshot(snapshot(12)) == NeedSnapshot("snapshot_too_old")


def test_a_gap_resyncs_its_own_symbol_only() -> None:
    """Each symbol has its own book: a gap on one leaves another whole."""
    btc, eth = synced(100), synced(500)
    assert isinstance(btc.on_diff(diff(105, 106)), Gap)
    assert eth.state is BookState.SYNCED and eth.view().update_id == 500


def test_a_value_of_another_symbol_is_refused() -> None:
    """A diff or snapshot of another symbol is a driver's mistake, refused by name."""
    book = LocalBook(SYMBOL)
    with pytest.raises(ValueError, match="ETHBTC value given to the BNBBTC book"):
        book.on_diff(DepthEvent("ETHBTC", 1, 1, (), ()))
    with pytest.raises(ValueError, match="ETHBTC"):
        book.on_snapshot(BookSnapshot("ETHBTC", 1, (), ()))


def test_reset_forgets_the_book() -> None:
    """After ``reset`` (a connection whose ids need not continue), the next diff starts over."""
    book = synced(100)
    book.reset()
    assert book.state is BookState.BROKEN and book.buffered == 0
    assert book.on_diff(diff(5, 6)) == NeedSnapshot("first_diff")


def test_top_levels_are_best_first_in_numeric_order() -> None:
    """Bids highest first and asks lowest first by value, not by text ("9.5" < "10")."""
    book = LocalBook(SYMBOL)
    book.on_diff(diff(1, 1))
    bids = (("9.5", "1"), ("10", "1"), ("100", "1"), ("0.5", "1"))
    asks = (("1000", "1"), ("200", "1"), ("1000.5", "1"))
    book.on_snapshot(snapshot(1, bids=bids, asks=asks))
    top = book.view(2)
    assert top.bids == (("100", "1"), ("10", "1"))
    assert top.asks == (("200", "1"), ("1000", "1"))
    assert book.view(0).bids == () and len(book.view(99).asks) == 3


# A random true book on a grid that never crosses: bids 0.1-50, asks 50.1-100.
_BID = st.integers(1, 500).map(lambda i: str(Decimal(i) / 10))
_ASK = st.integers(501, 1000).map(lambda i: str(Decimal(i) / 10))
_QTY = st.sampled_from(["1", "0.5", "2.25", "10", "0.001"])
_CHANGE = st.sampled_from(["0", "0", "1", "0.5", "3", "0.001"])
_STEP = st.tuples(
    st.integers(1, 4),  # updates in the diff
    st.dictionaries(_BID, _CHANGE, max_size=4),
    st.dictionaries(_ASK, _CHANGE, max_size=4),
)

Sides = tuple[dict[str, str], dict[str, str]]


def _apply(sides: Sides, event: DepthEvent) -> Sides:
    bids, asks = dict(sides[0]), dict(sides[1])
    for side, levels in ((bids, event.bids), (asks, event.asks)):
        for price, qty in levels:
            if qty == "0":
                side.pop(price, None)
            else:
                side[price] = qty
    return bids, asks


def _history(data: st.DataObject) -> tuple[list[DepthEvent], dict[int, Sides], list[int]]:
    """Diffs of a true book, its state after each update id, and the ids in order."""
    start: Sides = (
        data.draw(st.dictionaries(_BID, _QTY, max_size=12)),
        data.draw(st.dictionaries(_ASK, _QTY, max_size=12)),
    )
    update_id, states, ids, events = 1000, {1000: start}, [1000], []
    for width, bids, asks in data.draw(st.lists(_STEP, min_size=1, max_size=20)):
        event = DepthEvent(
            SYMBOL, update_id + 1, update_id + width, tuple(bids.items()), tuple(asks.items())
        )
        states[event.final_update_id] = _apply(states[update_id], event)
        update_id = event.final_update_id
        ids.append(update_id)
        events.append(event)
    return events, states, ids


def _snapshot_of(states: dict[int, Sides], update_id: int) -> BookSnapshot:
    bids, asks = states[update_id]
    return BookSnapshot(SYMBOL, update_id, tuple(bids.items()), tuple(asks.items()))


class _Observer:
    """Checks every decision against the truth, and keeps a client's book from the
    ``Synced`` and ``Applied`` decisions, as an ``@depth`` client would."""

    def __init__(self, book: LocalBook, states: dict[int, Sides], slow: list[bool]) -> None:
        self.book, self.states = book, states
        self.client: Sides | None = None
        self.client_id = 0
        self.decisions: list[Decision] = []
        # A slow ``@depth`` client: takes the held diffs merged, when ``slow`` says so.
        self.slow = iter(slow)
        self.slow_book: dict[int, Sides] = {}
        self.merger = DepthMerger()

    def see(self, decision: Decision) -> None:
        self.decisions.append(decision)
        if isinstance(decision, Synced):
            self.client = (dict(decision.book.bids), dict(decision.book.asks))
            self.client_id = decision.book.update_id
        elif isinstance(decision, Applied):
            assert self.client is not None
            assert decision.changes.first_update_id == self.client_id + 1
            self.client = _apply(self.client, decision.changes)
            self.client_id = decision.changes.final_update_id
            self._slow_client(decision.changes)
        elif isinstance(decision, Gap | Crossed):
            self.client = None
        if self.book.state is BookState.SYNCED:
            view = self.book.view()
            assert (dict(view.bids), dict(view.asks)) == self.states[view.update_id]
            assert self.client == self.states[view.update_id]
            assert [Decimal(p) for p, _ in view.bids] == sorted(
                (Decimal(p) for p, _ in view.bids), reverse=True
            )

    def _slow_client(self, changes: DepthEvent) -> None:
        c = changes
        self.merger.add(
            Depth(SYMBOL, c.first_update_id, c.final_update_id, c.bids, c.asks, 1, "sim")
        )
        if next(self.slow, True):
            return  # still busy: the diff is held
        merged = self.merger.take()
        assert merged is not None
        base = self.slow_book.get(merged.first_update_id - 1)
        if base is None:  # the client joined at the ``Synced`` book
            base = self.states[merged.first_update_id - 1]
        event = DepthEvent(
            SYMBOL, merged.first_update_id, merged.update_id, merged.bids, merged.asks
        )
        self.slow_book[merged.update_id] = _apply(base, event)
        assert self.slow_book[merged.update_id] == self.states[merged.update_id]


def _deliveries(data: st.DataObject, events: list[DepthEvent], start: int) -> list[DepthEvent]:
    """The connection's diffs from ``start`` on, some repeated (a rotation's overlap)."""
    out: list[DepthEvent] = []
    for i in range(start, len(events)):
        out.append(events[i])
        if i > start and data.draw(st.integers(0, 4)) == 0:
            out.append(events[data.draw(st.integers(start, i - 1))])
    return out


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_random_book_fed_with_random_buffering_ends_equal_to_the_truth(
    data: st.DataObject,
) -> None:
    """Any true book, snapshot taken at any point the stream reaches, arriving after any
    number of diffs, with repeats: the local book, a client following its decisions and a
    slow client taking them merged always equal the true book at their update id, and
    the book ends equal to the final one."""
    events, states, ids = _history(data)
    start = data.draw(st.integers(0, len(events) - 1), label="first diff seen")
    snap_id = ids[data.draw(st.integers(start, len(events)), label="snapshot after")]
    deliveries = _deliveries(data, events, start)
    arrives = data.draw(st.integers(1, len(deliveries)), label="snapshot arrives after")
    book = LocalBook(SYMBOL)
    seen = _Observer(book, states, data.draw(st.lists(st.booleans()), label="slow client"))
    for i, event in enumerate(deliveries):
        seen.see(book.on_diff(event))
        if i + 1 == arrives:
            if start > 0 and data.draw(st.booleans(), label="an older snapshot first"):
                old = book.on_snapshot(_snapshot_of(states, ids[start - 1]))
                assert old == NeedSnapshot("snapshot_too_old")
            seen.see(book.on_snapshot(_snapshot_of(states, snap_id)))
    assert book.state is BookState.SYNCED
    final = book.view()
    assert final.update_id == ids[-1] and seen.client_id == ids[-1]
    assert (dict(final.bids), dict(final.asks)) == states[ids[-1]]
    assert not any(isinstance(d, Gap | Crossed) for d in seen.decisions)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_dropped_diff_is_a_gap_and_never_a_wrong_book(data: st.DataObject) -> None:
    """With one diff lost that the snapshot does not cover, the book reports it (a gap, or
    a buffer that restarts), is never served wrong meanwhile, and a fresh snapshot makes
    it equal to the truth again."""
    events, states, ids = _history(data)
    if len(events) < 3:
        return
    start = data.draw(st.integers(0, len(events) - 3), label="first diff seen")
    dropped = data.draw(st.integers(start + 1, len(events) - 2), label="dropped")
    snap_id = ids[data.draw(st.integers(start, len(events)), label="snapshot after")]
    deliveries = [e for i, e in enumerate(events) if i >= start and i != dropped]
    arrives = data.draw(st.integers(1, len(deliveries)), label="snapshot arrives after")
    book = LocalBook(SYMBOL)
    seen = _Observer(book, states, [])
    for i, event in enumerate(deliveries):
        seen.see(book.on_diff(event))
        if i + 1 == arrives:
            seen.see(book.on_snapshot(_snapshot_of(states, snap_id)))
    if events[dropped].final_update_id > snap_id:
        assert any(isinstance(d, Gap) or d == NeedSnapshot("buffer_gap") for d in seen.decisions)
        assert book.state is not BookState.SYNCED
    seen.see(book.on_snapshot(_snapshot_of(states, ids[-1])))
    assert book.state is BookState.SYNCED
    assert (dict(book.view().bids), dict(book.view().asks)) == states[ids[-1]]


def deep(first: int, count: int, step: int) -> Levels:
    return tuple((str(first + i * step), "1") for i in range(count))


def test_a_side_past_a_shallow_snapshot_is_not_served_until_known() -> None:
    """A snapshot as long as its limit goes on beyond its last level, unseen: a level a diff
    adds beyond it is held but not served (the ones around it that never changed are not
    known), and the side's known levels end at the snapshot's last."""
    book = LocalBook("BNBBTC", min_known=3)
    book.on_diff(diff(100, 101))
    bids, asks = deep(1000, 5, -1), deep(1001, 5, 1)
    snap = BookSnapshot("BNBBTC", 100, bids, asks, bids_complete=False, asks_complete=True)
    assert isinstance(book.on_snapshot(snap), Synced)
    assert book.view().bids == bids
    book.on_diff(diff(102, 102, bids=(("990", "4"),), asks=(("1010", "4"),)))
    view = book.view()
    assert view.bids == bids  # 990 is beyond the snapshot's last bid, 996: held, not served
    assert view.asks[-1] == ("1010", "4")  # the asks came whole: every level is known
    assert book.bounded() == (True, False)


def test_a_side_whose_known_levels_run_short_resyncs() -> None:
    """The price moved towards a shallow snapshot's end: fewer known levels than the
    minimum is a ``Shallow`` decision; the book is discarded and asks for a snapshot."""
    book = LocalBook("BNBBTC", min_known=3)
    book.on_diff(diff(100, 101))
    bids, asks = deep(1000, 5, -1), deep(1001, 5, 1)
    snap = BookSnapshot("BNBBTC", 100, bids, asks, bids_complete=False, asks_complete=False)
    book.on_snapshot(snap)
    decision = book.on_diff(diff(102, 102, bids=(("1000", "0"), ("999", "0"))))
    assert isinstance(decision, Applied)  # three known bids left: 998, 997, 996
    decision = book.on_diff(diff(103, 103, bids=(("998", "0"), ("985", "2"))))
    assert decision == Shallow("bids", 2)
    assert book.state is BookState.BROKEN
    with pytest.raises(ValueError, match="not whole"):
        book.view()
