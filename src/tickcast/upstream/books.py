"""Order books kept from the diff streams and REST snapshots: the I/O driver.

``BookKeeper`` holds one ``LocalBook`` per symbol. The source hands it every diff
(``on_depth``, synchronous); a book that asks for a snapshot (its first diff, a gap, a
crossed book) is queued in the ``SnapshotPacer``, and ``run`` fetches the snapshots in
turn, within the REST weight budget and every ``Retry-After``, retrying failures with a
backoff: a book is resynced until it is whole, never given up on. What a caller serves
comes out as values through ``on_event``: ``BookSynced`` (a whole book: serve it fresh),
``BookChanged`` (a diff of a whole book) and ``BookBroken`` (the book is no longer whole:
serve nothing from it until the next ``BookSynced``).

A gap resyncs its symbol only. A rotation's replacement connection continues the old
book (its diffs either connect or reveal a gap). A fresh connection's ids need not
continue the old ones (the exchange may have restarted, ids starting over below the
book's), so a book is carried across one only when the new connection's first diff
continues it exactly (``U <= id + 1 <= u``); otherwise it starts over with a snapshot.
The same rule lets a book start from one held elsewhere (``seed``: a new leader's, from
the hub) rather than from the exchange's REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from tickcast.messages.book import BookSnapshot, DepthEvent
from tickcast.upstream.localbook import (
    MIN_KNOWN,
    Applied,
    BookState,
    BookView,
    Crossed,
    Decision,
    Gap,
    LocalBook,
    NeedSnapshot,
    Shallow,
    Synced,
    wants_snapshot,
)
from tickcast.upstream.pacing import ErrorTally, RetryPacer
from tickcast.upstream.rest import MAX_DEPTH_LIMIT, RestError, RestErrorKind, depth_weight
from tickcast.upstream.snapshotpace import SnapshotPacer

log = logging.getLogger(__name__)

# Snapshot requests in flight at once: enough that a slow answer does not hold the queue
# up, few enough that the pacer's count stays close to the server's.
MAX_CONCURRENT_SNAPSHOTS: Final = 2

BrokenReason = Literal["gap", "crossed", "shallow", "connection_restarted"]


@dataclass(frozen=True, slots=True)
class BookSynced:
    """``symbol``'s book became whole: serve ``view`` (the full held depth) fresh."""

    symbol: str
    view: BookView


@dataclass(frozen=True, slots=True)
class BookChanged:
    """``symbol``'s whole book moved on by ``changes`` (from the previous update id + 1)."""

    symbol: str
    changes: DepthEvent


@dataclass(frozen=True, slots=True)
class BookBroken:
    """``symbol``'s book is no longer whole (``detail`` says what broke it): nothing may
    be served from it until it is synced again."""

    symbol: str
    reason: BrokenReason
    detail: str


BookEvent = BookSynced | BookChanged | BookBroken


class SnapshotClient(Protocol):
    """What the keeper needs of the REST client (``RestClient`` is one)."""

    @property
    def used_weight(self) -> int | None: ...

    async def depth(self, base_url: str, symbol: str, *, limit: int) -> BookSnapshot: ...


@dataclass(slots=True)
class _Symbol:
    """One symbol's book and its counters."""

    book: LocalBook
    history: int = 0
    resyncs: int = 0
    snapshots: int = 0
    # Books carried across a fresh connection, or started from a seed, with no snapshot.
    carried: int = 0
    # What the next connection's first diff may continue (the book as it was).
    carry: BookSnapshot | None = None
    last_error: str | None = None
    decisions: Counter[str] = field(default_factory=Counter)


class BookKeeper:
    """Keeps ``symbols``' order books; ``run`` fetches their snapshots (cancel it to stop).

    ``client`` fetches from ``base_url()``, asked again at each request (a follower may
    learn the leader's REST only later); snapshots are of ``limit`` levels a side.
    """

    def __init__(
        self,
        client: SnapshotClient,
        base_url: Callable[[], str],
        symbols: Iterable[str],
        *,
        limit: int = MAX_DEPTH_LIMIT,
        on_event: Callable[[BookEvent], None],
        pacer: SnapshotPacer | None = None,
        retry: RetryPacer | None = None,
        concurrency: int = MAX_CONCURRENT_SNAPSHOTS,
        seed: Callable[[str], BookSnapshot | None] | None = None,
        min_known: int = MIN_KNOWN,
    ) -> None:
        """``seed(symbol)``: a whole book held elsewhere that a book not yet whole may
        start from, when the stream's first diff continues it."""
        self._seed = seed
        self._weight = depth_weight(limit)
        self._client = client
        self._base_url = base_url
        self._limit = limit
        self._on_event = on_event
        self._pacer = pacer or SnapshotPacer()
        self._retry = retry or RetryPacer()
        self._tally = ErrorTally()
        self._concurrency = max(1, concurrency)
        self._books = {s: _Symbol(LocalBook(s, min_known=min_known)) for s in symbols}
        self._wake = asyncio.Event()
        self.counts: Counter[str] = Counter()

    @property
    def symbols(self) -> list[str]:
        return list(self._books)

    def on_depth(self, event: DepthEvent) -> None:
        """One diff from the stream, in the order it came."""
        entry = self._books.get(event.symbol)
        if entry is None:
            self.counts["unknown_symbol"] += 1
            return
        if event.history != entry.history:
            if entry.history != 0:
                # A fresh connection: its ids continue the book's only if the exchange
                # is the same run. Its first diff says so (``_carry_over``).
                self._hold_over(entry)
            entry.history = event.history
        if entry.book.state is not BookState.SYNCED and not entry.book.buffered:
            if entry.carry is None and self._seed is not None:
                entry.carry = self._seed(event.symbol)
            if entry.carry is not None and self._carry_over(event, entry):
                return
        was_whole = entry.book.state is BookState.SYNCED
        self._decided(event.symbol, entry, entry.book.on_diff(event), was_whole)

    def _hold_over(self, entry: _Symbol) -> None:
        """Keep the book, if whole, for the next connection's first diff to continue."""
        book = entry.book
        if book.state is BookState.SYNCED:
            view = book.view()
            bids_bounded, asks_bounded = book.bounded()
            entry.carry = BookSnapshot(
                view.symbol, view.update_id, view.bids, view.asks, not bids_bounded,
                not asks_bounded,
            )  # fmt: skip
        book.reset()
        self._pacer.drop(book.symbol)

    def _carry_over(self, event: DepthEvent, entry: _Symbol) -> bool:
        """Start the book from ``entry.carry`` when ``event`` (the first diff) continues it
        exactly; else forget the carry (and say the book broke if clients had it)."""
        carry, entry.carry = entry.carry, None
        assert carry is not None
        symbol = event.symbol
        if event.first_update_id <= carry.last_update_id + 1 <= event.final_update_id:
            entry.book.on_diff(event)
            decision = entry.book.on_snapshot(carry)
            if isinstance(decision, Synced):
                entry.carried += 1
                entry.decisions["Carried"] += 1
                self._emit(BookSynced(symbol, decision.book))
                return True
            entry.book.reset()
        # Clients hold the carried book (this keeper's, or the hub's): it is gone.
        entry.resyncs += 1
        ids = f"{event.first_update_id}..{event.final_update_id}"
        detail = f"first diff {ids} does not continue the book at {carry.last_update_id}"
        self._emit(BookBroken(symbol, "connection_restarted", detail))
        return False

    def connection_restarted(self, symbols: Iterable[str]) -> None:
        """A fresh connection (no rotation) carries ``symbols`` now: their books start over
        from its first diff and a new snapshot."""
        for symbol in symbols:
            entry = self._books.get(symbol)
            if entry is not None:
                self._restart(symbol, entry)
                entry.history = 0

    def forget(self) -> None:
        """Forget every book, telling no one (this node stopped serving them): the next
        diffs start them over, from the seed when it connects."""
        for symbol, entry in self._books.items():
            entry.book.reset()
            entry.carry = None
            entry.history = 0
            self._pacer.drop(symbol)

    def view(self, symbol: str, n: int | None = None) -> BookView:
        """``symbol``'s best ``n`` levels per side (all when None); ``ValueError`` while
        the book is not whole, ``KeyError`` for a symbol not kept."""
        return self._books[symbol].book.view(n)

    def state(self, symbol: str) -> BookState:
        return self._books[symbol].book.state

    async def run(self) -> None:
        """Fetch the snapshots the books ask for, until cancelled."""
        async with asyncio.TaskGroup() as group:
            for index in range(self._concurrency):
                group.create_task(self._worker(), name=f"book-snapshots-{index}")

    def retry_now(self) -> None:
        """Where the REST is has just changed: retry at once, the backoff started over
        (the weight budget and a Retry-After still hold)."""
        self._retry.succeeded()
        self._wake.set()

    def status(self) -> dict[str, object]:
        """Per symbol: state, update id, resyncs, snapshots, last error; and totals."""
        books = {
            symbol: {
                "state": entry.book.state.value,
                "update_id": entry.book.update_id,
                "resyncs": entry.resyncs,
                "snapshots": entry.snapshots,
                "carried": entry.carried,
                "last_error": entry.last_error,
            }
            for symbol, entry in self._books.items()
        }
        return {
            "books": books,
            "synced": sum(1 for e in self._books.values() if e.book.state is BookState.SYNCED),
            "snapshots": sum(e.snapshots for e in self._books.values()),
            "resyncs": sum(e.resyncs for e in self._books.values()),
            "carried": sum(e.carried for e in self._books.values()),
            "queued": len(self._pacer.queued),
            "in_flight": len(self._pacer.in_flight),
            "used_weight": self._client.used_weight,
            "refusals": self._pacer.refusals,
            "errors": dict(self._tally.counts),
            "last_error": self._tally.last_error,
            "counts": dict(self.counts),
        }

    def _restart(self, symbol: str, entry: _Symbol) -> None:
        if entry.book.state is BookState.SYNCED:
            entry.resyncs += 1
            self._emit(BookBroken(symbol, "connection_restarted", "a fresh upstream connection"))
        entry.book.reset()
        self._pacer.drop(symbol)  # its first diff on the new connection asks again

    def _decided(self, symbol: str, entry: _Symbol, decision: Decision, was_whole: bool) -> None:
        entry.decisions[type(decision).__name__] += 1
        if isinstance(decision, Applied):
            self._emit(BookChanged(symbol, decision.changes))
        elif isinstance(decision, Synced):
            self._emit(BookSynced(symbol, decision.book))
        elif isinstance(decision, Gap | Crossed | Shallow) and was_whole:
            entry.resyncs += 1
            if isinstance(decision, Gap):
                detail = f"diff from {decision.got}, expected {decision.expected}"
                self._emit(BookBroken(symbol, "gap", detail))
            elif isinstance(decision, Shallow):
                detail = f"{decision.known} {decision.side} known past the snapshot's depth"
                self._emit(BookBroken(symbol, "shallow", detail))
            else:
                detail = f"best bid {decision.best_bid} >= best ask {decision.best_ask}"
                self._emit(BookBroken(symbol, "crossed", detail))
            log.warning("%s book resyncs: %s", symbol, detail)
        if wants_snapshot(decision) and self._pacer.ask(symbol):
            self._wake.set()

    def _emit(self, event: BookEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            # One caller's bug must not stop the books: counted, logged once.
            self.counts["sink_error"] += 1
            if self.counts["sink_error"] == 1:
                log.exception("a book event was not taken (sink_error)")

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self._pacer.wait_time(loop.time(), self._weight)
            if wait is None or wait > 0:
                # Woken early by a new symbol or a retry_now; otherwise when the wait ends.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            symbol = self._pacer.take(loop.time(), self._weight)
            if symbol is not None:
                await self._fetch(symbol)

    async def _fetch(self, symbol: str) -> None:
        loop = asyncio.get_running_loop()
        base_url = self._base_url()
        try:
            snapshot = await self._client.depth(base_url, symbol, limit=self._limit)
        except RestError as error:
            self._failed(symbol, base_url, error.kind.value, error)
            return
        except Exception as error:
            # A bug of ours must not end every book's resync: retried like a failure.
            self._failed(symbol, base_url, "internal", error)
            return
        self._pacer.answered(symbol, loop.time(), self._client.used_weight)
        self._retry.succeeded()
        failures = self._tally.succeeded()
        if failures:
            log.info("book snapshots: %s answers again after %d failures", base_url, failures)
        self._snapshot(symbol, snapshot)

    def _snapshot(self, symbol: str, snapshot: BookSnapshot) -> None:
        entry = self._books[symbol]
        entry.snapshots += 1
        entry.last_error = None
        was_whole = entry.book.state is BookState.SYNCED
        decision = entry.book.on_snapshot(snapshot)
        if isinstance(decision, NeedSnapshot):
            self.counts[f"snapshot_{decision.reason}"] += 1
        self._decided(symbol, entry, decision, was_whole)

    def _failed(self, symbol: str, base_url: str, kind: str, error: Exception) -> None:
        now = asyncio.get_running_loop().time()
        self._pacer.failed(symbol, now, self._client.used_weight)
        self._books[symbol].last_error = f"{kind}: {error}"
        refused = isinstance(error, RestError) and error.kind in (
            RestErrorKind.HTTP_429,
            RestErrorKind.HTTP_418,
        )
        if isinstance(error, RestError) and refused:
            self._pacer.refused(now, error.retry_after)
            delay = self._pacer.resume_at() - now
        else:
            delay = self._retry.failed(error.retry_after if isinstance(error, RestError) else None)
            self._pacer.hold(now + delay)
        if self._tally.failed(kind, f"{symbol}: {error}"):
            log.warning(
                "book snapshot: GET %s/api/v3/depth?symbol=%s&limit=%d failed (%s); retrying "
                "in %.1fs (further %s failures are counted, not logged)",
                base_url,
                symbol,
                self._limit,
                error,
                delay,
                kind,
                exc_info=not isinstance(error, RestError),
            )
