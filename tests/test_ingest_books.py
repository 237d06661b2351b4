"""What the ingest publishes of a book (SPEC §12), as plain calls: a whole book when it
becomes whole, a diff per change, the top at most every interval, a status when it
breaks, the one diff that carries clients across when the hub holds the book already,
and checkpoints only of books that moved."""

from __future__ import annotations

from tickcast.ingest import BookIngest, Ingest
from tickcast.messages.book import Book, BookStatus, Depth, DepthEvent, Levels
from tickcast.upstream.books import BookBroken, BookChanged, BookSynced
from tickcast.upstream.localbook import BookView

from .test_ingest_streams import RecordingHub


class Views:
    """The keeper's side: the book each symbol is at, as ``BookKeeper.view`` answers."""

    def __init__(self) -> None:
        self.books: dict[str, BookView] = {}

    def __call__(self, symbol: str, n: int | None) -> BookView:
        view = self.books[symbol]
        top = (lambda side: side[:n]) if n is not None else (lambda side: side)
        return BookView(symbol, view.update_id, top(view.bids), top(view.asks), 1)


def view(update_id: int, bids: Levels, asks: Levels = (("101", "1"),)) -> BookView:
    return BookView("BTCUSDT", update_id, bids, asks, 1_700_000_000_000)


def make() -> tuple[BookIngest, RecordingHub, Views]:
    hub = RecordingHub()
    views = Views()
    feed = BookIngest(hub, Ingest(hub, ["BTCUSDT"]), views, levels=1, interval=0.1)
    feed.origin["BTCUSDT"] = ("sim", 7)
    return feed, hub, views


def sync(feed: BookIngest, views: Views, at: BookView, now: float = 0.0) -> None:
    views.books["BTCUSDT"] = at
    feed.on_event(BookSynced("BTCUSDT", at), now)


def change(feed: BookIngest, views: Views, first: int, at: BookView, now: float) -> None:
    views.books["BTCUSDT"] = at
    event = DepthEvent("BTCUSDT", first, at.update_id, at.bids[:1], (), history=7)
    feed.on_event(BookChanged("BTCUSDT", event), now)


def published(hub: RecordingHub) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for message, _ in hub.origins:
        if isinstance(message, Book):
            out.append((f"{message.kind}-book", message.update_id))
        elif isinstance(message, Depth):
            out.append(("diff", (message.first_update_id, message.update_id)))
        elif isinstance(message, BookStatus):
            out.append(("status", message.reason))
    hub.origins.clear()
    return out


def test_a_book_is_served_whole_then_as_diffs_with_its_top_at_most_every_interval() -> None:
    feed, hub, views = make()
    sync(feed, views, view(10, (("100", "1"), ("99", "1"))))
    assert published(hub) == [("depth-book", 10), ("book-book", 10)]
    change(feed, views, 11, view(12, (("100", "2"), ("99", "1"))), now=0.05)
    assert published(hub) == [("diff", (11, 12))]  # the top waits for its interval
    change(feed, views, 13, view(13, (("100", "3"), ("99", "1"))), now=0.12)
    assert published(hub) == [("diff", (13, 13)), ("book-book", 13)]
    top = hub.latest("BTCUSDT@book")
    assert isinstance(top, Book) and top.bids == (("100", "3"),)  # one level: ``levels``
    change(feed, views, 14, view(14, (("100", "4"), ("99", "1"))), now=0.15)
    feed.flush(0.2)
    assert published(hub) == [("diff", (14, 14))]
    feed.flush(0.23)
    assert published(hub) == [("book-book", 14)]
    seqs = [m.seq for m in (hub.latest("BTCUSDT@depth"), hub.latest("BTCUSDT@book")) if m]
    assert len(set(seqs)) == 2  # one seq per message, from the ingest's one count


def test_a_broken_book_is_a_status_and_its_next_sync_a_whole_book() -> None:
    feed, hub, views = make()
    sync(feed, views, view(10, (("100", "1"),)))
    published(hub)
    feed.on_event(BookBroken("BTCUSDT", "gap", "diff from 20, expected 11"), 0.5)
    assert published(hub) == [("status", "gap")]
    assert hub.latest("BTCUSDT@depth") is None
    sync(feed, views, view(30, (("98", "1"),)), now=1.0)
    assert published(hub) == [("depth-book", 30), ("book-book", 30)]


def test_a_book_the_hub_holds_whole_is_carried_across_by_one_diff() -> None:
    """A resync that clients were never told of (a fresh connection continuing the book,
    a new leader): the levels that changed since the hub's book, as one diff."""
    feed, hub, views = make()
    sync(feed, views, view(10, (("100", "1"), ("99", "1"))))
    published(hub)
    sync(feed, views, view(15, (("100", "2"), ("98", "1"))), now=0.5)
    assert published(hub) == [("diff", (11, 15)), ("book-book", 15)]
    held = hub.latest("BTCUSDT@depth")
    assert isinstance(held, Book)
    assert (held.update_id, held.bids) == (15, (("100", "2"), ("98", "1")))


def test_another_sources_book_is_replaced_whole() -> None:
    feed, hub, views = make()
    sync(feed, views, view(10, (("100", "1"),)))
    published(hub)
    feed.origin["BTCUSDT"] = ("binance", 8)
    sync(feed, views, view(50, (("100", "1"),)), now=0.5)
    assert published(hub) == [("depth-book", 50), ("book-book", 50)]


def test_checkpoints_publish_only_books_that_moved() -> None:
    feed, hub, views = make()
    sync(feed, views, view(10, (("100", "1"),)))
    published(hub)
    feed.checkpoint(["BTCUSDT", "ETHUSDT"])
    assert published(hub) == []  # still at the whole book it published
    change(feed, views, 11, view(11, (("100", "2"),)), now=0.5)
    published(hub)
    feed.checkpoint(["BTCUSDT"])
    feed.checkpoint(["BTCUSDT"])
    assert published(hub) == [("depth-book", 11)]
