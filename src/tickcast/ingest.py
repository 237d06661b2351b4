"""Ingest: upstream events -> deduplicated, sequenced messages published to the hub.

Ticker updates merge into ticks; aggregate trades become trades and kline events candles
(SPEC §12), each checked for order (``StreamOrder``). Every kind is stamped from the one
``seq`` count. Pure logic with no I/O: the sources call ``apply`` for every parsed event.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

from tickcast.hub.base import Hub, Origin
from tickcast.messages.book import Book, BookKind, BookStatus, Depth, Levels
from tickcast.messages.kline import Kline
from tickcast.messages.message import Message
from tickcast.messages.tick import SourceLabel, Tick
from tickcast.messages.trade import Trade
from tickcast.upstream.books import BookChanged, BookEvent, BookSynced
from tickcast.upstream.localbook import BookView
from tickcast.upstream.normalize import KlineEvent, MarketEvent, TradeEvent, Update
from tickcast.upstream.tradegaps import FillRequest, TradeGaps

# A diff of a book (``DepthEvent``) is not published as it comes: ``upstream.books`` keeps
# the books, ``BookIngest`` publishes what they decide, and ``Ingest`` drops diffs.
IngestEvent = MarketEvent

_QUOTE: Final = ("bid", "ask")

_Key = TypeVar("_Key", bound=Hashable)


def advance(
    last: dict[_Key, tuple[int, int]], key: _Key, history: int, order: int
) -> Literal["new", "stale", "restart"]:
    """Record ``order`` as ``key``'s newest within ``history``: ``stale`` (and nothing
    recorded) when it is not above the newest already seen in that history, ``restart``
    when it starts another history (a fresh connection, which may number from the start
    again), ``new`` otherwise."""
    seen = last.get(key)
    if seen is not None and seen[0] == history and order <= seen[1]:
        return "stale"
    last[key] = (history, order)
    return "restart" if seen is not None and seen[0] != history else "new"


@dataclass(slots=True)
class _Partial:
    """Values of a symbol from one source, seen before that source's first last price
    (e.g. a bookTicker first, or the first live update after simulated data)."""

    source: SourceLabel
    timestamp_ms: int = 0
    values: dict[str, str] = field(default_factory=dict)


class Ingest:
    """Turns updates into ticks: drops duplicates, merges into the symbol's state, stamps
    a monotonically increasing ``seq`` and publishes to the hub.

    Two connections to the same stream (make-before-break rotation) deliver the same
    events; an update whose ``order`` is not above the last one seen for its (source,
    symbol, kind) in the same history is a duplicate and is dropped. An update of another
    history (a fresh connection, maybe to an exchange that restarted and numbers its
    updates from the start again) starts that key's dedupe over.

    A tick's ``source`` is true of every field it carries: when the source of a symbol
    changes (``auto`` switching between live and simulated data), its tick is rebuilt
    from the new source's values alone. Each field comes from its freshest update: once a
    source's bookTicker has set a symbol's bid/ask, that source's 24h ticker (a snapshot
    up to a second old) no longer does, and ``timestamp_ms`` never goes backwards.
    """

    def __init__(
        self, hub: Hub, symbols: Iterable[str], carried: Iterable[str] | None = None
    ) -> None:
        """``symbols``: those served; a set is kept as given, so a set its owner changes
        in place (``Served.symbol_set``: the exchange's listing) is followed. ``carried``:
        the symbols whose trades and candles are served (default: all)."""
        self._hub = hub
        self._symbols: AbstractSet[str] = (
            symbols if isinstance(symbols, set | frozenset) else frozenset(symbols)
        )
        self._carried = frozenset(self._symbols if carried is None else carried)
        self.order = StreamOrder()
        # Trades a connection did not deliver are fetched by whoever sets ``on_fill``
        # (the node); without it a gap is served as it came, and counted.
        self.gaps = TradeGaps()
        self.on_fill: Callable[[FillRequest, SourceLabel], None] | None = None
        # (source, symbol) -> the id of the last trade published.
        self._last_trade: dict[tuple[str, str], int] = {}
        # (source, symbol, kind) -> (history, order) of the newest update applied.
        self._last_order: dict[tuple[str, str, str], tuple[int, int]] = {}
        self._partial: dict[str, _Partial] = {}
        # symbol -> the source whose bookTicker owns the symbol's bid/ask.
        self._book_quotes: dict[str, SourceLabel] = {}
        self._seq = hub.last_seq()
        # The last tick this ingest published per symbol: a Redis hub's ``latest`` comes
        # back through the stream, a round trip late, and a burst must merge onto its own
        # newest state, not onto one a few updates old.
        self._published: dict[str, Tick] = {}
        self.counts: Counter[str] = Counter()

    @property
    def symbols(self) -> AbstractSet[str]:
        return self._symbols

    def apply(self, event: IngestEvent, source: SourceLabel) -> Message | None:
        """Apply one event; returns the published message, or None when it was dropped."""
        if type(event) is Update:
            return self._apply_update(event, source)
        if event.symbol not in self._carried:
            self.counts["ignored_symbol"] += 1
            return None
        message: Message
        if isinstance(event, TradeEvent):
            if not self.order.trade(event, source):
                return None
            ready, fill = self.gaps.offer(event, self._last_trade_id(event.symbol, source))
            if fill is not None:
                if self.on_fill is None:
                    ready = self.gaps.give_up(event.symbol)
                else:
                    self.on_fill(fill, source)
            return self._publish_trades(ready, source)
        if isinstance(event, KlineEvent):
            if not self.order.candle(event, source):
                return None
            message = self._candle(event, source)
            origin = Origin(f"kline_{event.interval}", event.history, kline_order(event))
        else:
            return None
        self._hub.publish(message, origin)
        self.counts["published"] += 1
        return message

    def trades_filled(
        self, request: FillRequest, trades: list[TradeEvent], source: SourceLabel
    ) -> Message | None:
        """The trades ``request`` fetched came: publish them, then the live ones held."""
        return self._publish_trades(self.gaps.filled(request, trades), source)

    def trades_unfilled(self, request: FillRequest, source: SourceLabel) -> Message | None:
        """``request`` could not be fetched: publish the live trades held behind it."""
        if request not in self.gaps.pending():
            return None
        return self._publish_trades(self.gaps.give_up(request.symbol), source)

    def _last_trade_id(self, symbol: str, source: SourceLabel) -> int | None:
        """The id of ``symbol``'s last trade served from ``source``: this ingest's, or the
        hub's (another node's, before this one took the lead)."""
        own = self._last_trade.get((source, symbol))
        held = self._hub.latest(f"{symbol}@trades")
        if isinstance(held, Trade) and held.source == source:
            return held.trade_id if own is None else max(own, held.trade_id)
        return own

    def _publish_trades(self, events: list[TradeEvent], source: SourceLabel) -> Message | None:
        message: Message | None = None
        for event in events:
            message = self._trade(event, source)
            self._hub.publish(message, Origin("aggTrade", event.history, event.trade_id))
            self._last_trade[(source, event.symbol)] = event.trade_id
            self.counts["published"] += 1
        return message

    def next_seq(self) -> int:
        """The next seq, for a message of any kind (one count: SPEC §12)."""
        return self._next_seq()

    def _next_seq(self) -> int:
        # The hub may also be fed by another node (Redis): never go backwards in seq.
        self._seq = max(self._seq, self._hub.last_seq()) + 1
        return self._seq

    def _trade(self, event: TradeEvent, source: SourceLabel) -> Trade:
        return Trade(
            symbol=event.symbol,
            trade_id=event.trade_id,
            price=event.price,
            qty=event.qty,
            side=event.side,
            timestamp_ms=event.trade_time_ms,
            seq=self._next_seq(),
            source=source,
        )

    def _candle(self, event: KlineEvent, source: SourceLabel) -> Kline:
        return Kline.of(event, closed=event.closed, seq=self._next_seq(), source=source)

    def _apply_update(self, update: Update, source: SourceLabel) -> Tick | None:
        if update.symbol not in self._symbols:
            self.counts["ignored_symbol"] += 1
            return None
        if self._is_duplicate(update, source):
            self.counts["duplicates"] += 1
            return None
        tick = self._merge(update, source)
        if tick is None:
            self.counts["held_partial"] += 1
            return None
        self._hub.publish(tick, Origin(update.kind, update.history, update.order))
        self._published[tick.symbol] = tick
        self.counts["published"] += 1
        return tick

    def forget_source(self, source: SourceLabel) -> None:
        """Drop dedupe state of ``source`` (its event ids restart when it comes back)."""
        for key in [k for k in self._last_order if k[0] == source]:
            del self._last_order[key]

    def _latest(self, symbol: str) -> Tick | None:
        """The newest state of ``symbol``: this ingest's own last tick, or the hub's when
        another node published after it (this node led before, and leads again)."""
        own, held = self._published.get(symbol), self._hub.latest(symbol)
        shared = held if isinstance(held, Tick) else None
        if own is None or (shared is not None and shared.seq > own.seq):
            return shared
        return own

    def _is_duplicate(self, update: Update, source: SourceLabel) -> bool:
        key = (source, update.symbol, update.kind)
        seen = advance(self._last_order, key, update.history, update.order)
        if seen == "restart":
            self.counts["dedupe_resets"] += 1
        return seen == "stale"

    def _fresh_values(self, update: Update, source: SourceLabel) -> dict[str, str]:
        """The update's values that are newer than what the symbol holds."""
        if update.kind == "bookTicker":
            self._book_quotes[update.symbol] = source
            return update.values
        if self._book_quotes.get(update.symbol) == source:
            return {k: v for k, v in update.values.items() if k not in _QUOTE}
        return update.values

    def _merge(self, update: Update, source: SourceLabel) -> Tick | None:
        values = self._fresh_values(update, source)
        timestamp_ms = update.event_time_ms
        previous = self._latest(update.symbol)
        if previous is not None and previous.source != source:
            previous = None  # start over from this source's own values
        if previous is None:
            partial = self._partial.get(update.symbol)
            if partial is None or partial.source != source:
                partial = self._partial[update.symbol] = _Partial(source)
            partial.values.update(values)
            partial.timestamp_ms = max(partial.timestamp_ms, timestamp_ms)
            if "last_price" not in partial.values:
                return None
            del self._partial[update.symbol]
            values, timestamp_ms = partial.values, partial.timestamp_ms
        self._next_seq()
        if previous is not None:
            # A bookTicker is stamped on arrival, a 24h ticker with the exchange's event
            # time: keep the newest so the tick's time never jumps back between the two.
            timestamp_ms = max(previous.timestamp_ms, timestamp_ms)
            return previous.evolve(
                seq=self._seq, timestamp_ms=timestamp_ms, source=source, **values
            )
        return Tick(
            symbol=update.symbol,
            seq=self._seq,
            timestamp_ms=timestamp_ms,
            source=source,
            **values,  # type: ignore[arg-type]
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def kline_order(event: KlineEvent) -> int:
    """A candle update's order within its stream and history, for the Redis hub's dedupe:
    twice its event time, plus one when it closes the candle, so that a closing update
    sent in the same millisecond as the last open one still counts as newer."""
    return event.event_time_ms * 2 + (1 if event.closed else 0)


@dataclass(slots=True)
class _CandleSeen:
    open_time: int
    closed: bool
    event_time_ms: int


class StreamOrder:
    """Which trades and candle updates may be published (SPEC §12): the tape's aggregate
    ids only go up, and a candle is updated only until it closes.

    Trades are ordered per source and symbol within one connection history, as ticker
    updates are (a rotation's overlap delivers the same trades twice; a fresh connection,
    maybe to a restarted exchange, starts over). Candles are named by their open time, a
    wall-clock time that no restart reuses, so a candle that closed is never updated
    again, whichever connection the late update comes on. Each refusal is counted by
    kind in ``counts``.
    """

    def __init__(self) -> None:
        self._trades: dict[tuple[str, str], tuple[int, int]] = {}
        self._candles: dict[tuple[str, str, str], _CandleSeen] = {}
        self.counts: Counter[str] = Counter()

    def trade(self, event: TradeEvent, source: SourceLabel) -> bool:
        """Whether ``event`` is new: its id above the last one seen in its history."""
        key = (source, event.symbol)
        if advance(self._trades, key, event.history, event.trade_id) == "stale":
            self.counts["stale_trade"] += 1
            return False
        return True

    def candle(self, event: KlineEvent, source: SourceLabel) -> bool:
        """Whether ``event`` may update its candle: a newer candle, or the current one,
        not yet closed, with an update no older than the last."""
        key = (source, event.symbol, event.interval)
        seen = self._candles.get(key)
        if seen is not None:
            if event.open_time < seen.open_time or (
                event.open_time == seen.open_time and seen.closed
            ):
                self.counts["late_candle"] += 1
                return False
            if event.open_time == seen.open_time and event.event_time_ms < seen.event_time_ms:
                self.counts["stale_candle"] += 1
                return False
        self._candles[key] = _CandleSeen(event.open_time, event.closed, event.event_time_ms)
        return True


def _changes(held: Book, view: BookView) -> tuple[Levels, Levels]:
    """The levels that differ between ``held`` and ``view`` (quantity 0: gone), per side:
    applied to ``held`` they give ``view``."""
    sides: list[Levels] = []
    for old, new in ((held.bids, view.bids), (held.asks, view.asks)):
        before, after = dict(old), dict(new)
        changed = [(p, q) for p, q in after.items() if before.get(p) != q]
        changed += [(p, "0") for p in before if p not in after]
        sides.append(tuple(changed))
    return sides[0], sides[1]


class BookIngest:
    """Order books -> messages (SPEC §12): what ``upstream.books.BookKeeper`` decides, as
    the hub's messages, stamped from the ingest's one seq.

    - A book that became whole is served fresh: a whole ``SYMBOL@depth`` book, unless the
      hub already holds this book whole from this ingest's source at an earlier id and
      clients were not told it broke since (a book carried across a fresh connection or
      a change of leader): then the one diff from it, so clients' books carry over too.
    - Each change is a ``depth`` diff; the ``SYMBOL@book`` top levels follow at most every
      ``interval`` seconds (``flush``, called by the node's timer; latest wins).
    - A book that broke is a ``BookStatus``: nothing is served from it until it is whole.
    - ``checkpoint`` publishes each whole book again when it moved on since, so a node
      that reads the hub late (a Redis stream's tail) starts from a whole book.
    """

    def __init__(
        self,
        hub: Hub,
        ingest: Ingest,
        view: Callable[[str, int | None], BookView],
        *,
        levels: int,
        interval: float,
    ) -> None:
        self._hub = hub
        self._ingest = ingest
        self._view = view
        self._levels = levels
        self._interval = interval
        # symbol -> (source, upstream history) of its diffs, set by the node.
        self.origin: dict[str, tuple[SourceLabel, int]] = {}
        # Symbols whose clients were told the book broke: they get a whole book next.
        self._broken: set[str] = set()
        # symbol -> the update id of the last depth message published (book or diff).
        self._published: dict[str, int] = {}
        self._checkpointed: dict[str, int] = {}
        # symbol -> when its top was last published; symbols whose top moved since.
        self._top_at: dict[str, float] = {}
        self._dirty: set[str] = set()
        self.counts: Counter[str] = Counter()

    def forget(self) -> None:
        """Forget what was published (this node no longer leads): a next term starts from
        what the hub holds then."""
        self._broken.clear()
        self._published.clear()
        self._checkpointed.clear()
        self._dirty.clear()

    def on_event(self, event: BookEvent, now: float) -> None:
        symbol = event.symbol
        if isinstance(event, BookChanged):
            changes = event.changes
            self._publish_diff(
                symbol, changes.first_update_id, changes.final_update_id, changes.bids,
                changes.asks,
            )  # fmt: skip
            self._dirty.add(symbol)
            self.flush(now, only=symbol)
        elif isinstance(event, BookSynced):
            self._synced(event.view)
            self._publish_top(symbol, now)
        else:
            self._broken.add(symbol)
            self._dirty.discard(symbol)
            self._published.pop(symbol, None)
            source = self._origin(symbol)[0]
            seq = self._ingest.next_seq()
            status = BookStatus(symbol, "broken", event.reason, event.detail, seq, source)
            self._publish(status, None)

    def _origin(self, symbol: str) -> tuple[SourceLabel, int]:
        """(source, upstream history) of ``symbol``'s diffs, as the node last saw them."""
        return self.origin.get(symbol, ("binance", 0))

    def _synced(self, view: BookView) -> None:
        symbol = view.symbol
        held = self._hub.books().depth(symbol)
        own = self._published.get(symbol)
        if (
            held is not None
            and symbol not in self._broken
            and held.source == self._origin(symbol)[0]
            and held.update_id < view.update_id
            and (own is None or own == held.update_id)
        ):
            bids, asks = _changes(held, view)
            self._publish_diff(symbol, held.update_id + 1, view.update_id, bids, asks, checked=True)
            self.counts["books_carried"] += 1
        else:
            self._publish_whole(view)
            self.counts["books_whole"] += 1
        self._broken.discard(symbol)
        self._published[symbol] = view.update_id

    def _publish_diff(
        self,
        symbol: str,
        first: int,
        last: int,
        bids: Levels,
        asks: Levels,
        *,
        checked: bool = False,
    ) -> None:
        """``checked``: check the diff as built (one computed between two books); a local
        book's changes were checked as they came, on every diff of every book."""
        source, history = self._origin(symbol)
        seq = self._ingest.next_seq()
        diff = Depth(symbol, first, last, bids, asks, seq, source, checked=checked)
        self._publish(diff, Origin("depth", history, last))
        self._published[symbol] = last

    def _book(self, view: BookView, kind: BookKind) -> Book:
        return Book(
            symbol=view.symbol,
            update_id=view.update_id,
            bids=view.bids,
            asks=view.asks,
            timestamp_ms=view.event_time_ms or _now_ms(),
            seq=self._ingest.next_seq(),
            source=self._origin(view.symbol)[0],
            kind=kind,
            checked=False,  # a local book's view: checked as it was built
        )

    def _publish_whole(self, view: BookView) -> None:
        history = self._origin(view.symbol)[1]
        self._publish(self._book(view, "depth"), Origin("depth_book", history, view.update_id))
        self._checkpointed[view.symbol] = view.update_id

    def flush(self, now: float, only: str | None = None) -> None:
        """Publish the top of each book that moved and whose interval is over."""
        for symbol in (only,) if only is not None else tuple(self._dirty):
            if symbol not in self._dirty or now - self._top_at.get(symbol, -1e9) < self._interval:
                continue
            self._publish_top(symbol, now)

    def _publish_top(self, symbol: str, now: float) -> None:
        self._dirty.discard(symbol)
        try:
            view = self._view(symbol, self._levels)
        except (KeyError, ValueError):
            return  # not whole (any more): nothing is served from it
        self._top_at[symbol] = now
        history = self._origin(symbol)[1]
        self._publish(self._book(view, "book"), Origin("book", history, view.update_id))

    def checkpoint(self, symbols: Iterable[str]) -> None:
        """Publish again each whole book of ``symbols`` that moved on since its last."""
        for symbol in symbols:
            own = self._published.get(symbol)
            if own is None or self._checkpointed.get(symbol) == own:
                continue
            try:
                view = self._view(symbol, None)
            except (KeyError, ValueError):
                continue
            self._publish_whole(view)
            self.counts["checkpoints"] += 1

    def _publish(self, message: Message, origin: Origin | None) -> None:
        self._hub.publish(message, origin)
        self._ingest.counts["published"] += 1
