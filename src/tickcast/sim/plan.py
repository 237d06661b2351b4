"""Which subscribed streams carry data and which symbols the clocks advance: no I/O.

The exchange rebuilds its plan when a stream gains its first subscriber or loses its last,
and when its listings change: the streams of a symbol listed but not trading (``BREAK``,
``HALT``) carry nothing, as Binance's go quiet, until it trades again. A symbol that is not
listed at all still streams (see ``market``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from tickcast.sim.listings import Listings
from tickcast.sim.market import DEPTH_KINDS, StreamKind, StreamSpec, parse_stream

TRADE_KINDS: Final = (StreamKind.TRADE, StreamKind.AGG_TRADE)
# Streams with events on the books' 100 ms clock (bookTicker: a churn moved the top).
_BOOK_CLOCK_KINDS: Final = DEPTH_KINDS | {StreamKind.BOOK_TICKER}

Named = tuple[tuple[str, StreamSpec], ...]


@dataclass(frozen=True)
class Plan:
    """The streams that carry data and the symbols to step."""

    streams: Named
    symbols: tuple[str, ...]
    # Per lowercase symbol, its @trade and @aggTrade streams.
    trades: dict[str, Named]
    # Streams with events on the books' clock (see depth.DepthFeed.tick).
    depth: Named
    # The listings' version it was made from.
    version: int


def build_plan(names: Iterable[str], listings: Listings) -> Plan:
    """The plan for the subscribed stream ``names`` under ``listings``."""
    streams = []
    for name in names:
        spec = parse_stream(name)
        if spec is not None and (spec.symbol is None or listings.streams(spec.symbol)):
            streams.append((name, spec))
    symbols: dict[str, None] = {}
    if any(spec.kind is StreamKind.ALL_MINI_TICKERS for _, spec in streams):
        symbols.update(dict.fromkeys(listings.trading))
    trades: dict[str, list[tuple[str, StreamSpec]]] = {}
    for name, spec in streams:
        if spec.symbol is not None:
            symbols[spec.symbol] = None
            if spec.kind in TRADE_KINDS:
                trades.setdefault(spec.symbol, []).append((name, spec))
    paired = {symbol: tuple(pairs) for symbol, pairs in trades.items()}
    depth = tuple((n, spec) for n, spec in streams if spec.kind in _BOOK_CLOCK_KINDS)
    return Plan(tuple(streams), tuple(symbols), paired, depth, listings.version)
