"""Order book delivery as plain calls (SPEC §12): a slow ``@depth`` client gets the diffs it
could not take merged into one, exactly, never a hole; a whole book absorbs the diffs after
it; ``@book`` is latest-wins; a book that breaks is dropped from what a client holds and
the client is told; the hub's books are whole or not served; checkpoints stop at the edge."""

from __future__ import annotations

import pytest

from tickcast.edge.bookroute import BookRoutes, not_whole
from tickcast.edge.heldbook import HeldDepth
from tickcast.edge.session import Limits, Session
from tickcast.edge.wire import Wire
from tickcast.hub.books import HeldBooks
from tickcast.messages.book import Book, BookStatus, Depth, Levels

from ..fakes import FakeTime, RecordingTransport

SERVED = frozenset({"BTCUSDT", "BTCUSDT@book", "BTCUSDT@depth"})


def book(update_id: int, seq: int, bids: Levels, asks: Levels, kind: str = "depth") -> Book:
    return Book("BTCUSDT", update_id, bids, asks, 1_700_000_000_000, seq, "sim", kind)  # type: ignore[arg-type]


def diff(first: int, last: int, seq: int, bids: Levels = (), asks: Levels = ()) -> Depth:
    return Depth("BTCUSDT", first, last, bids, asks, seq, "sim")


BASE = book(10, 1, (("100", "1"), ("99", "2")), (("101", "1"), ("102", "3")))


def make(streams: tuple[str, ...]) -> tuple[Session, RecordingTransport]:
    transport = RecordingTransport()
    clock = FakeTime()
    session = Session(1, transport, SERVED, limits=Limits(), clock=clock, schedule=clock.schedule)
    transport.on_pause = session.paused
    transport.on_resume = session.flush
    session.symbols.update(streams)
    return session, transport


def apply(state: dict[str, dict[str, str]], message: dict[str, object]) -> int:
    """A client's own book: a ``book`` replaces it, a ``depth`` applies; returns its id."""
    if message["type"] == "book":
        state["bids"] = {str(p): str(q) for p, q in message["bids"]}  # type: ignore[attr-defined]
        state["asks"] = {str(p): str(q) for p, q in message["asks"]}  # type: ignore[attr-defined]
    else:
        for side in ("bids", "asks"):
            for p, q in message[side]:  # type: ignore[attr-defined]
                if q == 0:
                    state[side].pop(str(p), None)
                else:
                    state[side][str(p)] = str(q)
    return int(str(message["update_id"]))


def test_a_paused_depth_client_gets_its_diffs_merged_into_one() -> None:
    """Three diffs while paused: one ``depth`` from the first's first id to the last's
    id, the later quantity winning per price, deletions kept; the same book results."""
    session, transport = make(("BTCUSDT@depth",))
    session.offer(Wire(BASE))
    transport.writable = False
    session.offer(Wire(diff(11, 12, 2, bids=(("100", "5"),))))
    session.offer(Wire(diff(13, 13, 3, bids=(("100", "0"),), asks=(("103", "1"),))))
    session.offer(Wire(diff(14, 16, 4, bids=(("98", "4"),), asks=(("101", "2"),))))
    transport.writable = True
    first, merged = transport.messages()
    assert first["type"] == "book"
    assert merged["type"] == "depth"
    assert (merged["first_update_id"], merged["update_id"], merged["seq"]) == (11, 16, 4)
    assert merged["bids"] == [[100, 0], [98, 4]]
    assert merged["asks"] == [[101, 2], [103, 1]]
    state: dict[str, dict[str, str]] = {"bids": {}, "asks": {}}
    apply(state, first)
    assert apply(state, merged) == 16
    assert state == {"bids": {"99": "2", "98": "4"}, "asks": {"101": "2", "102": "3", "103": "1"}}
    assert session.conflated == 0


def test_a_whole_book_not_yet_taken_absorbs_the_diffs_after_it() -> None:
    """Paused before its first book: the client gets one whole book at the last diff's id
    (it has no book for a diff to apply to), with the diffs applied."""
    session, transport = make(("BTCUSDT@depth",))
    transport.writable = False
    session.offer(Wire(BASE))
    session.offer(Wire(diff(11, 12, 2, bids=(("100", "0"),), asks=(("100.5", "7"),))))
    transport.writable = True
    (only,) = transport.messages()
    assert only["type"] == "book"
    assert (only["update_id"], only["seq"], only["stream"]) == (12, 2, "BTCUSDT@depth")
    assert only["bids"] == [[99, 2]]
    assert only["asks"] == [[100.5, 7], [101, 1], [102, 3]]


def test_a_fresh_book_replaces_what_a_paused_client_holds_of_a_book() -> None:
    """A resync's whole book supersedes the held diffs: the client gets the book alone."""
    session, transport = make(("BTCUSDT@depth",))
    session.offer(Wire(BASE))
    transport.writable = False
    session.offer(Wire(diff(11, 12, 2, bids=(("100", "5"),))))
    fresh = book(40, 3, (("97", "1"),), (("104", "1"),))
    session.offer(Wire(fresh))
    transport.writable = True
    assert transport.writes[-1] == fresh.encode()
    assert [m["type"] for m in transport.messages()] == ["book", "book"]


def test_a_paused_book_client_gets_the_latest_top_only() -> None:
    session, transport = make(("BTCUSDT@book",))
    transport.writable = False
    for n in range(5):
        session.offer(Wire(book(20 + n, 10 + n, (("100", "1"),), (("101", "1"),), kind="book")))
    transport.writable = True
    (only,) = transport.messages()
    assert (only["update_id"], only["stream"]) == (24, "BTCUSDT@book")
    assert session.conflated == 4


def test_a_broken_book_is_dropped_from_what_is_held_and_its_status_sent() -> None:
    """What is held of a book that broke is never sent: the client gets the status, and a
    tick held beside it still goes."""
    session, transport = make(("BTCUSDT@depth", "BTCUSDT@book"))
    session.offer(Wire(BASE))
    transport.writable = False
    session.offer(Wire(diff(11, 12, 2, bids=(("100", "5"),))))
    session.offer(Wire(book(12, 3, (("100", "5"),), (("101", "1"),), kind="book")))
    status = BookStatus("BTCUSDT", "broken", "gap", "diff from 20, expected 13", 4, "sim")
    session.drop_held(status.streams)
    session.offer(Wire(status))
    transport.writable = True
    got = transport.messages()
    assert [m["type"] for m in got] == ["book", "status"]
    assert got[1]["book"] == "broken"
    assert got[1]["streams"] == ["BTCUSDT@book", "BTCUSDT@depth"]


def test_a_held_diff_that_does_not_follow_is_refused() -> None:
    held = HeldDepth(Wire(BASE))
    with pytest.raises(ValueError, match="does not follow book 10"):
        held.add(diff(12, 13, 2))
    held = HeldDepth(Wire(diff(11, 12, 2)))
    with pytest.raises(ValueError, match="does not follow"):
        held.add(diff(14, 15, 3))


def test_held_books_are_whole_or_not_served() -> None:
    """The hub's books: a whole book then diffs that connect is served at their id; a
    diff that does not connect, or a status, stops it until the next whole book."""
    books = HeldBooks()
    assert books.depth("BTCUSDT") is None
    assert books.state("BTCUSDT") == "syncing"
    books.add(diff(11, 12, 2))  # before any whole book: nothing to apply it to
    assert books.depth("BTCUSDT") is None
    books.add(BASE)
    books.add(diff(11, 12, 2, bids=(("100", "0"), ("99.5", "1"))))
    books.add(book(12, 3, (("99.5", "1"),), (("101", "1"),), kind="book"))
    held = books.depth("BTCUSDT")
    assert held is not None
    assert (held.update_id, held.seq, held.kind) == (12, 2, "depth")
    assert held.bids == (("99.5", "1"), ("99", "2"))
    top = books.top("BTCUSDT")
    assert top is not None and top.update_id == 12
    books.add(diff(14, 15, 4))  # 13 is missing
    assert books.depth("BTCUSDT") is None and books.top("BTCUSDT") is None
    assert books.state("BTCUSDT") == "broken" and books.disconnected == 1
    books.add(book(30, 5, (("98", "1"),), (("99", "1"),)))
    assert books.state("BTCUSDT") == "synced"
    books.add(BookStatus("BTCUSDT", "broken", "crossed", "best bid >= best ask", 6, "sim"))
    assert books.depth("BTCUSDT") is None
    status = not_whole(books, "BTCUSDT@book")
    assert status is not None and (status["book"], status["reason"]) == ("broken", "crossed")
    assert not_whole(books, "BTCUSDT") is None


def test_a_checkpoint_at_the_id_clients_hold_stops_at_the_edge() -> None:
    """A whole book published again at the id the stream is at (for nodes that read the
    hub late) is not sent; one after a status, or at a new id, is."""
    routes = BookRoutes()
    assert routes.passes(BASE)
    assert routes.passes(diff(11, 12, 2))
    assert not routes.passes(book(12, 3, (("100", "1"),), (("101", "1"),)))
    assert routes.checkpoints == 1
    assert routes.passes(BookStatus("BTCUSDT", "broken", "gap", "", 4, "sim"))
    assert routes.passes(book(12, 5, (("100", "1"),), (("101", "1"),)))
