"""The simulator's depth streams and payloads, as Binance sends them: no I/O.

Every 100 ms (``DepthFeed.tick``, driven by the exchange) each symbol's book churns and
its changes since the last tick, trades' included, become one diff: the event of
``<symbol>@depth@100ms``. ``<symbol>@depth`` (and ``@depth@1000ms``) sends every tenth
tick the merge of the ten diffs before it, so its ``U`` too follows the previous ``u``.
The partial books ``<symbol>@depth<N>[@100ms|@1000ms]`` are the top N levels at the
moment they are sent. When a churn moves the best bid or ask, ``<symbol>@bookTicker``
says so at once, as Binance pushes every change of the top. A ``depth_gap`` fault drops
one symbol's next diff from every stream (the book still changed), so each of its diff
streams jumps once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Final

from tickcast.sim.book import BookDiff, OrderBook, Side
from tickcast.sim.market import (
    DEPTH_KINDS,
    Market,
    StreamKind,
    StreamSpec,
    book_ticker_payload,
    format_units,
)

TICK_SECONDS: Final = 0.1
_TICKS_PER_SECOND: Final = 10

Payload = dict[str, object]
# A stream name and what makes its payload (``scale`` 1000: microseconds).
Event = tuple[str, Callable[[int], object]]


def _rows(levels: Sequence[tuple[int, int]]) -> list[list[str]]:
    return [[format_units(price), format_units(qty)] for price, qty in levels]


def depth_update_payload(symbol: str, diff: BookDiff, event_time: int, scale: int = 1) -> Payload:
    """``<symbol>@depth[@100ms]``, event ``depthUpdate``: absolute quantities, "0"
    removes a level, each side best first; ``U``/``u`` the first and last update id.

    Binance's example::

        {"e": "depthUpdate", "E": 1672515782136, "s": "BNBBTC", "U": 157, "u": 160,
         "b": [["0.0024", "10"]], "a": [["0.0026", "100"]]}
    """
    return {
        "e": "depthUpdate",
        "E": event_time * scale,
        "s": symbol,
        "U": diff.first_id,
        "u": diff.last_id,
        "b": _rows(sorted(diff.bids.items(), reverse=True)),
        "a": _rows(sorted(diff.asks.items())),
    }


def snapshot_payload(book: OrderBook, limit: int | None = None) -> Payload:
    """``{"lastUpdateId", "bids", "asks"}``, the best ``limit`` levels a side (None: all),
    best first: the shape of ``GET /api/v3/depth`` and of ``<symbol>@depth<N>``."""
    return {
        "lastUpdateId": book.update_id,
        "bids": _rows(book.levels(Side.BID, limit)),
        "asks": _rows(book.levels(Side.ASK, limit)),
    }


def _constant(body: Payload) -> Callable[[int], object]:
    """A payload made now, for an event without a time field to scale."""

    def build(_scale: int) -> object:
        return body

    return build


def _copy(diff: BookDiff) -> BookDiff:
    return BookDiff(diff.first_id, diff.last_id, dict(diff.bids), dict(diff.asks))


class DepthFeed:
    """The 100 ms clock of every book and the events of the depth streams."""

    def __init__(self, market: Market) -> None:
        self._market = market
        self._ticks = 0
        # Per lowercase symbol, this second's diffs merged (the 1000 ms stream's next).
        self._second: dict[str, BookDiff] = {}
        self._gaps: set[str] = set()
        self._diff_symbols: tuple[str, ...] = ()

    def skip_next(self, symbol: str | None = None) -> str | None:
        """Drop the next diff of ``symbol`` (None: the first with a diff stream, else the
        first with a book) from every stream; the chosen symbol, None if none has a book."""
        if symbol is None:
            candidates = self._diff_symbols or self._market.book_symbols
            if not candidates:
                return None
            symbol = candidates[0]
        self._market.book(symbol)
        self._gaps.add(symbol)
        return symbol

    def tick(self, streams: Sequence[tuple[str, StreamSpec]], now_ms: int) -> list[Event]:
        """One 100 ms: churn every book, and the events due on ``streams`` (the depth
        streams subscribed, diff and partial, and the bookTicker streams)."""
        self._ticks += 1
        whole_second = self._ticks % _TICKS_PER_SECOND == 0
        by_symbol: dict[str, list[tuple[str, StreamSpec]]] = {}
        for name, spec in streams:
            assert spec.symbol is not None
            if spec.kind in DEPTH_KINDS:
                self._market.book(spec.symbol)
            by_symbol.setdefault(spec.symbol, []).append((name, spec))
        self._diff_symbols = tuple(
            symbol
            for symbol, named in by_symbol.items()
            if any(spec.kind is StreamKind.DEPTH for _, spec in named)
        )
        events: list[Event] = []
        for symbol in self._market.book_symbols:
            book = self._market.book(symbol)
            top = book.best_bid, book.best_ask
            self._market.churn(symbol)
            moved = top != (book.best_bid, book.best_ask)
            diff = self._next_diff(symbol)
            second = self._second.pop(symbol, None) if whole_second else None
            for name, spec in by_symbol.get(symbol, ()):
                if spec.kind is StreamKind.BOOK_TICKER:
                    if moved:
                        ticker = book_ticker_payload(self._market.state(symbol))
                        events.append((name, _constant(ticker)))
                    continue
                event = self._event(symbol, spec, diff, second, whole_second, now_ms)
                if event is not None:
                    events.append((name, event))
        return events

    def _next_diff(self, symbol: str) -> BookDiff | None:
        diff = self._market.book(symbol).take_diff()
        if diff is None:
            return None
        if symbol in self._gaps:
            # Skipped everywhere: the second's diffs before it cannot be sent either
            # without a hole inside one event, so the 1000 ms stream jumps too.
            self._gaps.discard(symbol)
            self._second.pop(symbol, None)
            return None
        held = self._second.get(symbol)
        if held is None:
            self._second[symbol] = _copy(diff)
        else:
            held.merge(diff)
        return diff

    def _event(
        self,
        symbol: str,
        spec: StreamSpec,
        diff: BookDiff | None,
        second: BookDiff | None,
        whole_second: bool,
        now_ms: int,
    ) -> Callable[[int], object] | None:
        upper = symbol.upper()
        if spec.kind is StreamKind.DEPTH:
            sent = diff if spec.speed_ms == 100 else second
            return None if sent is None else partial(depth_update_payload, upper, sent, now_ms)
        if spec.speed_ms == 100 or whole_second:
            return _constant(snapshot_payload(self._market.book(symbol), spec.levels))
        return None
