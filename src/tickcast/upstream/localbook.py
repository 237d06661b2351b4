"""One symbol's local order book, kept by Binance's documented procedure: never wrong.

Binance's "How to manage a local order book correctly" (spot ``web-socket-streams.md``,
with the correction of 2025-11-12)::

    1. Open a WebSocket connection to <symbol>@depth.
    2. Buffer the events received from the stream. Note the U of the first event.
    3. Get a depth snapshot from /api/v3/depth?symbol=...&limit=5000.
    4. If the lastUpdateId from the snapshot is strictly less than the U from step 2,
       go back to step 3.
    5. In the buffered events, discard any event where u is <= lastUpdateId of the
       snapshot. The first buffered event should now have lastUpdateId within its
       [U;u] range.
    6. Set your local order book to the snapshot. Its update ID is lastUpdateId.
    7. Apply the update procedure below to all buffered events, and then to all
       subsequent events received.
    - If the event last update ID (u) is less than the update ID of your local order
      book, ignore the event.
    - If the event first update ID (U) is greater than the update ID of your local
      order book + 1, you have missed some events. Discard your local order book and
      restart the process from the beginning.
    - [...] If the quantity is 0, remove the price level from the order book.
    - Set the order book update ID to the last update ID (u) in the processed event.

The one rule this module keeps for steps 4, 5 and the update procedure alike: an event
applies to a book at update id ``id`` exactly when ``U <= id + 1 <= u``; it is stale when
``u <= id``, and it reveals a gap when ``U > id + 1``. That is the corrected gap rule
(before 2025-11-12 the text said ``U > id``, which calls the normal next event, whose ``U``
is ``id + 1``, a gap). Steps 4 and 5 say "``lastUpdateId`` within ``[U;u]``", i.e.
``U <= lastUpdateId``, which refuses the one event that starts exactly where the snapshot
ends (``U == lastUpdateId + 1``), the event the corrected update procedure itself accepts,
and which Binance's older text ("U <= lastUpdateId+1 AND u >= lastUpdateId+1") and both
cryptofeed and ccxt accept. So a snapshot is too old only when ``lastUpdateId + 1 < U``
of the first buffered event: then updates ``lastUpdateId + 1 .. U - 1`` are in neither.
Everything else the two readings decide alike, since step 5 leaves only events with
``u > lastUpdateId``.

A gap discards this symbol's book only (cryptofeed resets every symbol of the feed, ccxt
throws the book away and makes its caller start over); the event that revealed it starts
the new buffer. After a connection rotation the book goes on without a snapshot: the new
connection's first event either connects (``U <= id + 1 <= u``) or is a gap.

Pure, no I/O: events and snapshots go in, decisions come out as values; the driver fetches
the snapshots it is asked for and serves what ``Applied`` and ``Synced`` carry.
"""

from __future__ import annotations

import enum
from bisect import bisect_left, insort
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from tickcast.messages.book import BookSnapshot, DepthEvent, Levels

# Diffs held while a snapshot is awaited: at 10 per second (``@100ms``), 100 s of them,
# more than a REST snapshot paced behind others (24 per minute at limit 5000) should take.
MAX_BUFFERED: Final = 1_000
# Levels a side must know exactly to be served (a ``SYMBOL@book``'s 20): past the depth of
# a snapshot that did not hold the whole side, fewer mean a resync.
MIN_KNOWN: Final = 20


class BookState(enum.Enum):
    """Where a local book is: ``WAITING_SNAPSHOT`` (never whole yet: diffs are buffered
    until a snapshot connects to them), ``SYNCED`` (whole: served), ``BROKEN`` (was whole,
    then a gap or a crossed book discarded it: buffered and resynced as when waiting, but
    reported as broken, not as still starting)."""

    WAITING_SNAPSHOT = "waiting_snapshot"
    SYNCED = "synced"
    BROKEN = "broken"


@dataclass(frozen=True, slots=True)
class BookView:
    """A whole book at ``update_id``: bids best (highest) first, asks best (lowest) first;
    ``event_time_ms`` is the exchange time of the latest diff it includes (0 if none)."""

    symbol: str
    update_id: int
    bids: Levels
    asks: Levels
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class NeedSnapshot:
    """Fetch a snapshot: the first diff came (``first_diff``), the snapshot that came is
    older than the buffer (``snapshot_too_old``), or the buffer restarted
    (``buffer_full``, ``buffer_gap``). One already on its way may still serve: it is
    judged when it comes."""

    reason: Literal["first_diff", "snapshot_too_old", "buffer_full", "buffer_gap"]


@dataclass(frozen=True, slots=True)
class Buffered:
    """The diff is held until a snapshot connects to it; ``count`` diffs are held."""

    count: int


@dataclass(frozen=True, slots=True)
class Applied:
    """The diff moved the book on: ``changes`` holds the levels whose quantity changed
    (0: removed), from the book's previous update id + 1 to its new one, as a ``depth``
    diff to serve."""

    changes: DepthEvent


@dataclass(frozen=True, slots=True)
class Synced:
    """The book became whole at ``book.update_id``: serve it as a fresh ``book``."""

    book: BookView


@dataclass(frozen=True, slots=True)
class Gap:
    """A diff started at ``got`` when ``expected`` was the next update id: events were
    missed. The book is discarded (this symbol only) and must resync: fetch a snapshot."""

    expected: int
    got: int


@dataclass(frozen=True, slots=True)
class Crossed:
    """The book's best bid is not below its best ask: it is wrong, so it is discarded and
    must resync like a gap: fetch a snapshot."""

    best_bid: str
    best_ask: str


@dataclass(frozen=True, slots=True)
class Shallow:
    """Too few levels of one side are known exactly (``known``, below the book's minimum):
    the price moved beyond the snapshot's depth. The book is discarded and must resync
    like a gap: fetch a snapshot."""

    side: Literal["bids", "asks"]
    known: int


@dataclass(frozen=True, slots=True)
class Ignored:
    """Nothing changed: the diff is older than the book (``stale``), or the snapshot is
    not needed (``already_synced``) or cannot be judged before a diff (``no_diff_yet``)."""

    reason: Literal["stale", "already_synced", "no_diff_yet"]


Decision = NeedSnapshot | Buffered | Applied | Synced | Gap | Crossed | Shallow | Ignored


def wants_snapshot(decision: Decision) -> bool:
    """Whether the driver should fetch a snapshot after ``decision``."""
    return isinstance(decision, NeedSnapshot | Gap | Crossed | Shallow)


class _Side:
    """One side's levels: price -> quantity keyed by canonical strings, plus the prices in
    numeric order (``Decimal`` only as the sort key) so the top levels are a slice.

    ``bound``: the worst price known exactly (the last level of a snapshot that may go on
    beyond it); levels beyond it are held (learned as diffs change them) but not served,
    for the ones between them that never changed are unknown. None: the side is whole.
    """

    __slots__ = ("_descending", "_order", "bound", "qty")

    def __init__(self, descending: bool, levels: Levels = (), complete: bool = True) -> None:
        self._descending = descending
        self.qty: dict[str, str] = dict(levels)
        # Sorted once, not level by level: a 5000-level snapshot loads in a few ms.
        self._order = sorted((Decimal(price), price) for price in self.qty)  # ascending
        self.bound: Decimal | None = None
        if not complete and levels:
            self.bound = Decimal(levels[-1][0])

    def set(self, price: str, qty: str) -> bool:
        """Set one level (0 removes it); whether anything changed."""
        old = self.qty.get(price)
        if qty == "0":
            if old is None:
                return False  # removing a level never held is fine (Binance says so)
            del self.qty[price]
            key = (Decimal(price), price)
            del self._order[bisect_left(self._order, key)]
            return True
        if old == qty:
            return False
        if old is None:
            insort(self._order, (Decimal(price), price))
        self.qty[price] = qty
        return True

    def best(self) -> tuple[Decimal, str] | None:
        if not self._order:
            return None
        return self._order[-1 if self._descending else 0]

    def known(self) -> int:
        """How many levels are known exactly: all, or those up to ``bound``."""
        order, bound = self._order, self.bound
        if bound is None:
            return len(order)
        if self._descending:
            return len(order) - bisect_left(order, (bound,))
        return bisect_left(order, (bound, "~"))  # "~" sorts after every digit string

    def top(self, n: int | None) -> Levels:
        """The best ``n`` known levels (all when None), best first."""
        order = self._order
        known = self.known()
        n = known if n is None else min(n, known)
        chosen = (order[: -n - 1 : -1] if n > 0 else []) if self._descending else order[:n]
        qty = self.qty
        return tuple((price, qty[price]) for _, price in chosen)

    def __len__(self) -> int:
        return len(self.qty)


class LocalBook:
    """One symbol's order book, synced from its diff stream and REST snapshots."""

    def __init__(
        self, symbol: str, max_buffered: int = MAX_BUFFERED, min_known: int = MIN_KNOWN
    ) -> None:
        self.symbol = symbol
        self._max_buffered = max_buffered
        self._min_known = min_known
        self._state = BookState.WAITING_SNAPSHOT
        self._buffer: list[DepthEvent] = []
        self._bids = _Side(descending=True)
        self._asks = _Side(descending=False)
        self._update_id = 0
        self._event_time_ms = 0

    @property
    def state(self) -> BookState:
        return self._state

    @property
    def update_id(self) -> int | None:
        """The id of the last update in the book; None while it is not whole."""
        return self._update_id if self._state is BookState.SYNCED else None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def on_diff(self, event: DepthEvent) -> Decision:
        """One diff of the stream, in the order it came."""
        self._check_symbol(event.symbol)
        if self._state is not BookState.SYNCED:
            return self._buffer_diff(event)
        decision = self._apply(event)
        if isinstance(decision, Gap | Crossed | Shallow):
            self._discard(BookState.BROKEN, [event])
        return decision

    def on_snapshot(self, snapshot: BookSnapshot) -> Decision:
        """A snapshot came: set the book to it and apply the buffered diffs after it."""
        self._check_symbol(snapshot.symbol)
        if self._state is BookState.SYNCED:
            return Ignored("already_synced")
        if not self._buffer:
            # Step 2 comes first: without a buffered diff nothing says whether the
            # snapshot joins the stream.
            return Ignored("no_diff_yet")
        last_id = snapshot.last_update_id
        if last_id + 1 < self._buffer[0].first_update_id:
            return NeedSnapshot("snapshot_too_old")
        pending = [e for e in self._buffer if e.final_update_id > last_id]
        self._set_snapshot(snapshot)
        crossed = self._crossed()
        if crossed is not None:
            self._discard(self._state_after_loss(), pending)
            return crossed
        for event in pending:
            decision = self._apply(event)
            if isinstance(decision, Gap | Crossed | Shallow):
                # The buffer is kept contiguous, so neither should happen; if one does,
                # the snapshot is dropped and the diffs from this one on wait for another.
                self._discard(self._state_after_loss(), pending[pending.index(event) :])
                return decision
        self._state = BookState.SYNCED
        self._buffer = []
        return Synced(self.view())

    def reset(self) -> None:
        """Forget the book and the buffer: the next diff starts over (for a connection
        whose update ids need not continue the old one's, as after an exchange restart)."""
        self._discard(self._state_after_loss(), [])

    def view(self, n: int | None = None) -> BookView:
        """The book's best ``n`` levels per side (all when None); ``ValueError`` when it is
        not whole, so a broken book is never served."""
        if self._state is not BookState.SYNCED:
            raise ValueError(f"{self.symbol} book is {self._state.value}, not whole")
        return BookView(
            self.symbol,
            self._update_id,
            self._bids.top(n),
            self._asks.top(n),
            self._event_time_ms,
        )

    def depth(self) -> tuple[int, int]:
        """How many levels each side holds: (bids, asks)."""
        return len(self._bids), len(self._asks)

    def _buffer_diff(self, event: DepthEvent) -> Decision:
        buffer = self._buffer
        if not buffer:
            buffer.append(event)
            return NeedSnapshot("first_diff")
        last = buffer[-1].final_update_id
        if event.final_update_id <= last:
            return Ignored("stale")  # a rotation's overlap: already held
        if event.first_update_id > last + 1:
            # The held diffs cannot be joined to anything after this one: only a
            # snapshot from here on can.
            self._buffer = [event]
            return NeedSnapshot("buffer_gap")
        if len(buffer) >= self._max_buffered:
            self._buffer = [event]
            return NeedSnapshot("buffer_full")
        buffer.append(event)
        return Buffered(len(buffer))

    def _apply(self, event: DepthEvent) -> Decision:
        book_id = self._update_id
        if event.final_update_id <= book_id:
            return Ignored("stale")
        if event.first_update_id > book_id + 1:  # the corrected rule: not ``U > id``
            return Gap(expected=book_id + 1, got=event.first_update_id)
        bids = tuple(level for level in event.bids if self._bids.set(*level))
        asks = tuple(level for level in event.asks if self._asks.set(*level))
        self._update_id = event.final_update_id
        self._event_time_ms = max(self._event_time_ms, event.event_time_ms)
        crossed = self._crossed()
        if crossed is not None:
            return crossed
        shallow = self._shallow()
        if shallow is not None:
            return shallow
        changes = DepthEvent(
            self.symbol,
            book_id + 1,
            event.final_update_id,
            bids,
            asks,
            event.event_time_ms,
            checked=False,  # levels of a checked diff
        )
        return Applied(changes)

    def _shallow(self) -> Shallow | None:
        """A side whose exactly known levels (a snapshot that went on beyond its last, and
        the price moved towards that end) are fewer than ``min_known``: what would be served
        next is a level that never changed since, unseen. It must resync like a gap."""
        if self._bids.bound is not None and self._bids.known() < self._min_known:
            return Shallow("bids", self._bids.known())
        if self._asks.bound is not None and self._asks.known() < self._min_known:
            return Shallow("asks", self._asks.known())
        return None

    def bounded(self) -> tuple[bool, bool]:
        """Whether each side (bids, asks) goes on beyond what is known of it."""
        return self._bids.bound is not None, self._asks.bound is not None

    def _crossed(self) -> Crossed | None:
        bid, ask = self._bids.best(), self._asks.best()
        if bid is not None and ask is not None and bid[0] >= ask[0]:
            return Crossed(best_bid=bid[1], best_ask=ask[1])
        return None

    def _set_snapshot(self, snapshot: BookSnapshot) -> None:
        self._bids = _Side(True, snapshot.bids, snapshot.bids_complete)
        self._asks = _Side(False, snapshot.asks, snapshot.asks_complete)
        self._update_id = snapshot.last_update_id
        # The snapshot has no time of its own: that of the latest diff it covers.
        covered = [e.event_time_ms for e in self._buffer if e.final_update_id <= self._update_id]
        self._event_time_ms = max(covered, default=0)

    def _state_after_loss(self) -> BookState:
        if self._state is BookState.WAITING_SNAPSHOT:
            return BookState.WAITING_SNAPSHOT
        return BookState.BROKEN

    def _discard(self, state: BookState, buffer: list[DepthEvent]) -> None:
        self._state = state
        self._buffer = buffer
        self._bids = _Side(descending=True)
        self._asks = _Side(descending=False)
        self._update_id = 0
        self._event_time_ms = 0

    def _check_symbol(self, symbol: str) -> None:
        if symbol != self.symbol:
            raise ValueError(f"a {symbol} value given to the {self.symbol} book")
