"""BookKeeper with a recording fake REST client: what it queues, fetches and tells its
caller, by diffs handed to it in plain calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tickcast.messages.book import BookSnapshot, DepthEvent
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.books import BookBroken, BookChanged, BookEvent, BookKeeper, BookSynced
from tickcast.upstream.localbook import BookState
from tickcast.upstream.pacing import RetryPacer
from tickcast.upstream.rest import RestError, RestErrorKind

from ..support import eventually


class FakeRest:
    """Answers each depth request with the next scripted snapshot or error; records them."""

    def __init__(self) -> None:
        self.answers: dict[str, list[BookSnapshot | RestError]] = {}
        self.asked: list[str] = []
        self.used_weight: int | None = None

    async def depth(self, base_url: str, symbol: str, *, limit: int) -> BookSnapshot:
        self.asked.append(symbol)
        answer = self.answers[symbol].pop(0)
        if isinstance(answer, RestError):
            raise answer
        self.used_weight = 250 * len(self.asked)
        return answer


def diff(symbol: str, first: int, last: int, bid: str = "1", history: int = 7) -> DepthEvent:
    return DepthEvent(symbol, first, last, (("100", bid),), (("101", "1"),), history=history)


def snapshot(symbol: str, last_id: int) -> BookSnapshot:
    return BookSnapshot(symbol, last_id, (("100", "5"), ("99", "1")), (("101", "2"),))


class Setup:
    def __init__(self) -> None:
        self.rest = FakeRest()
        self.events: list[BookEvent] = []
        self.keeper = BookKeeper(
            self.rest,
            lambda: "http://exchange",
            ["AUSDT", "BUSDT"],
            on_event=self.events.append,
            retry=RetryPacer(initial=0.05, maximum=0.1),
        )


@pytest.fixture
async def kept() -> AsyncIterator[Setup]:
    setup = Setup()
    task = asyncio.create_task(setup.keeper.run())
    try:
        yield setup
    finally:
        await cancel_and_wait(task)


async def synced(setup: Setup, symbol: str, last_id: int) -> None:
    setup.rest.answers.setdefault(symbol, []).append(snapshot(symbol, last_id))
    setup.keeper.on_depth(diff(symbol, last_id, last_id + 1))
    await eventually(lambda: setup.keeper.state(symbol) is BookState.SYNCED, timeout=2)


async def test_the_first_diff_fetches_a_snapshot_and_the_book_is_served(kept: Setup) -> None:
    """A first diff asks for a snapshot; once it came the book is served whole, then each
    diff as a change from the previous id + 1."""
    await synced(kept, "AUSDT", 10)
    kept.keeper.on_depth(diff("AUSDT", 12, 13, bid="3"))
    assert kept.rest.asked == ["AUSDT"]
    first, second = kept.events
    assert isinstance(first, BookSynced) and first.view.update_id == 11
    assert first.view.bids == (("100", "1"), ("99", "1"))
    assert isinstance(second, BookChanged) and second.changes.first_update_id == 12
    assert kept.keeper.view("AUSDT", 1).bids == (("100", "3"),)
    status = kept.keeper.status()
    assert status["snapshots"] == 1 and status["used_weight"] == 250
    assert kept.keeper.state("BUSDT") is BookState.WAITING_SNAPSHOT


async def test_a_gap_breaks_and_resyncs_its_symbol_only(kept: Setup) -> None:
    """A diff that skips ids: that book is broken (told once), a snapshot fetched for it
    alone, and it is served again; the other book is untouched."""
    await synced(kept, "AUSDT", 10)
    await synced(kept, "BUSDT", 20)
    kept.rest.answers["AUSDT"] = [snapshot("AUSDT", 30)]
    kept.keeper.on_depth(diff("AUSDT", 25, 31))
    assert kept.events[-1] == BookBroken("AUSDT", "gap", "diff from 25, expected 12")
    with pytest.raises(ValueError):
        kept.keeper.view("AUSDT")
    await eventually(lambda: kept.keeper.state("AUSDT") is BookState.SYNCED, timeout=2)
    assert kept.rest.asked == ["AUSDT", "BUSDT", "AUSDT"]
    books = kept.keeper.status()["books"]
    assert isinstance(books, dict)
    assert (books["AUSDT"]["resyncs"], books["BUSDT"]["resyncs"]) == (1, 0)


async def test_a_diff_of_another_history_starts_the_book_over(kept: Setup) -> None:
    """A fresh connection (another history) whose ids start below the book's: the book is
    not left to ignore them as stale, it is broken and resynced from them."""
    await synced(kept, "AUSDT", 1000)
    kept.rest.answers["AUSDT"] = [snapshot("AUSDT", 5)]
    kept.keeper.on_depth(diff("AUSDT", 5, 6, history=8))
    assert kept.events[-1] == BookBroken(
        "AUSDT", "connection_restarted", "first diff 5..6 does not continue the book at 1001"
    )
    await eventually(lambda: kept.keeper.state("AUSDT") is BookState.SYNCED, timeout=2)
    assert kept.keeper.view("AUSDT").update_id == 6


async def test_a_fresh_connection_that_continues_the_book_carries_it_over(kept: Setup) -> None:
    """A fresh connection whose first diff continues the book (U <= id + 1 <= u): the
    book goes on with no snapshot and no break; clients get it whole again at once."""
    await synced(kept, "AUSDT", 10)  # whole at 11
    before = len(kept.events)
    kept.keeper.on_depth(diff("AUSDT", 11, 14, bid="7", history=8))
    assert kept.keeper.state("AUSDT") is BookState.SYNCED
    assert kept.keeper.view("AUSDT").update_id == 14
    assert kept.keeper.view("AUSDT", 1).bids == (("100", "7"),)
    (event,) = kept.events[before:]
    assert isinstance(event, BookSynced) and event.view.update_id == 14
    assert kept.rest.asked == ["AUSDT"]
    books = kept.keeper.status()["books"]
    assert isinstance(books, dict) and books["AUSDT"]["carried"] == 1


@pytest.mark.parametrize(("first", "last"), [(13, 14), (8, 11), (2, 3)])
async def test_a_fresh_connection_that_does_not_continue_resyncs(
    kept: Setup, first: int, last: int
) -> None:
    """Its first diff skips ids, or is no newer than the book (maybe an exchange that
    restarted, counting again): broken, told, and resynced from a snapshot."""
    await synced(kept, "AUSDT", 10)  # whole at 11
    kept.rest.answers["AUSDT"] = [snapshot("AUSDT", last)]
    kept.keeper.on_depth(diff("AUSDT", first, last, history=8))
    broken = kept.events[-1]
    assert isinstance(broken, BookBroken) and broken.reason == "connection_restarted"
    await eventually(lambda: kept.rest.asked == ["AUSDT", "AUSDT"], timeout=2)


async def test_a_seed_that_the_first_diff_continues_starts_the_book_without_rest() -> None:
    """A new leader's book starts from the hub's (``seed``) when the stream continues it,
    and from a snapshot when it does not."""
    rest = FakeRest()
    events: list[BookEvent] = []
    held = {"AUSDT": snapshot("AUSDT", 40), "BUSDT": snapshot("BUSDT", 40)}
    keeper = BookKeeper(
        rest,
        lambda: "http://exchange",
        ["AUSDT", "BUSDT"],
        on_event=events.append,
        seed=held.get,
    )
    keeper.on_depth(diff("AUSDT", 39, 42))
    keeper.on_depth(diff("BUSDT", 45, 46))
    assert keeper.state("AUSDT") is BookState.SYNCED
    assert keeper.view("AUSDT").update_id == 42
    assert isinstance(events[0], BookSynced)
    assert keeper.state("BUSDT") is BookState.WAITING_SNAPSHOT
    assert isinstance(events[1], BookBroken) and events[1].symbol == "BUSDT"


async def test_connection_restarted_resets_the_named_books(kept: Setup) -> None:
    """connection_restarted(["AUSDT"]): that book starts over from the next diff; the
    other stays served."""
    await synced(kept, "AUSDT", 10)
    await synced(kept, "BUSDT", 20)
    kept.keeper.connection_restarted(["AUSDT", "NOPE"])
    assert kept.keeper.state("AUSDT") is BookState.BROKEN
    assert kept.keeper.state("BUSDT") is BookState.SYNCED
    kept.rest.answers["AUSDT"] = [snapshot("AUSDT", 3)]
    kept.keeper.on_depth(diff("AUSDT", 3, 4))
    await eventually(lambda: kept.keeper.state("AUSDT") is BookState.SYNCED, timeout=2)


async def test_a_429_stops_requests_for_its_retry_after_then_they_go_on(kept: Setup) -> None:
    """A 429 with Retry-After 0.3: the snapshot is asked again only after it, the error
    named in the status and the symbol's last error until it is answered."""
    kept.rest.answers["AUSDT"] = [
        RestError(RestErrorKind.HTTP_429, "HTTP 429", 0.3),
        snapshot("AUSDT", 10),
    ]
    loop = asyncio.get_running_loop()
    started = loop.time()
    kept.keeper.on_depth(diff("AUSDT", 10, 11))
    await eventually(lambda: bool(kept.keeper.status()["refusals"]), timeout=2)
    books = kept.keeper.status()["books"]
    assert isinstance(books, dict) and books["AUSDT"]["last_error"].startswith("http_429")
    await eventually(lambda: kept.keeper.state("AUSDT") is BookState.SYNCED, timeout=2)
    assert loop.time() - started >= 0.3
    assert kept.keeper.status()["errors"] == {"http_429": 1}


async def test_a_failed_snapshot_is_retried_with_a_backoff(kept: Setup) -> None:
    """A 503 and a bad answer: retried until a good snapshot comes."""
    kept.rest.answers["AUSDT"] = [
        RestError(RestErrorKind.HTTP_5XX, "HTTP 503"),
        RestError(RestErrorKind.BAD_ANSWER, "lastUpdateId is not an update id"),
        snapshot("AUSDT", 10),
    ]
    kept.keeper.on_depth(diff("AUSDT", 10, 11))
    await eventually(lambda: kept.keeper.state("AUSDT") is BookState.SYNCED, timeout=3)
    assert kept.keeper.status()["errors"] == {"http_5xx": 1, "bad_answer": 1}


def test_a_diff_of_a_symbol_not_kept_is_counted() -> None:
    """A diff of a symbol not kept is counted and dropped; a kept one is queued once; a
    restart of a waiting book tells nothing and leaves the queue."""
    events: list[BookEvent] = []
    keeper = BookKeeper(FakeRest(), lambda: "http://x", ["AUSDT"], on_event=events.append)
    keeper.on_depth(diff("ZUSDT", 1, 2))
    keeper.on_depth(diff("AUSDT", 1, 2))
    keeper.on_depth(diff("AUSDT", 3, 4))
    status = keeper.status()
    assert status["counts"] == {"unknown_symbol": 1}
    assert status["queued"] == 1
    keeper.connection_restarted(["AUSDT"])
    assert keeper.status()["queued"] == 0 and events == []


async def test_a_caller_that_raises_is_counted_and_the_book_goes_on() -> None:
    """on_event raising: counted as sink_error, the book still synced and kept."""
    rest = FakeRest()
    rest.answers["AUSDT"] = [snapshot("AUSDT", 10)]

    def broken(_event: BookEvent) -> None:
        raise RuntimeError("caller bug")

    keeper = BookKeeper(rest, lambda: "http://x", ["AUSDT"], on_event=broken)
    task = asyncio.create_task(keeper.run())
    try:
        keeper.on_depth(diff("AUSDT", 10, 11))
        await eventually(lambda: keeper.state("AUSDT") is BookState.SYNCED, timeout=2)
        keeper.on_depth(diff("AUSDT", 12, 12))
    finally:
        await cancel_and_wait(task)
    assert keeper.status()["counts"] == {"sink_error": 2}
    assert keeper.view("AUSDT").update_id == 12


async def test_a_rotation_carries_the_book_across_without_a_snapshot(kept: Setup) -> None:
    """The replacement connection (same history) repeats what the old one sent and goes
    on: the repeats are ignored, its diffs continue the book, no second snapshot."""
    await synced(kept, "AUSDT", 10)
    for first, last in ((12, 13), (14, 15)):  # the old connection
        kept.keeper.on_depth(diff("AUSDT", first, last))
    for first, last in ((14, 15), (16, 17), (18, 19)):  # the new one, overlapping
        kept.keeper.on_depth(diff("AUSDT", first, last))
    assert kept.keeper.view("AUSDT").update_id == 19
    assert kept.rest.asked == ["AUSDT"]
    assert not any(isinstance(e, BookBroken) for e in kept.events)
    changes = [e.changes for e in kept.events if isinstance(e, BookChanged)]
    assert [(c.first_update_id, c.final_update_id) for c in changes] == [
        (12, 13),
        (14, 15),
        (16, 17),
        (18, 19),
    ]
