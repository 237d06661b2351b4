"""Which symbols the exchange lists as trading (``GET /api/v3/exchangeInfo``), for
``TICKCAST_SYMBOLS=*`` (SPEC §12 "Every market"). Pure: an answer in, a listing out.

An answer (Binance's docs, trimmed)::

    {"timezone":"UTC","serverTime":1565246363776,"rateLimits":[...],
     "symbols":[{"symbol":"ETHBTC","status":"TRADING","baseAsset":"ETH",
                 "quoteAsset":"BTC",...}, ...]}

A symbol is served when its status is ``TRADING`` and its quote asset one of those asked
for (all when none are). Names that are no ``[A-Z0-9]{2,20}`` are skipped and counted:
Binance lists a few symbols with non-ASCII letters, which no stream name of tickcast's
can carry (and written into a client's JSON unchecked they could break it). An answer that
is no listing at all (not an object, no symbol list, not one trading symbol) raises
``ValueError``: the caller keeps the last good listing rather than serve nothing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

_NAME: Final = re.compile(r"[A-Z0-9]{2,20}")


@dataclass(frozen=True, slots=True)
class Listing:
    """The trading symbols of one exchangeInfo answer, in its order, and what was left
    out by reason (``bad_name``, ``not_trading``, ``other_quote``)."""

    symbols: tuple[str, ...]
    skipped: Counter[str] = field(default_factory=Counter)


def parse_exchange_info(body: object, quote_assets: Iterable[str] = ()) -> Listing:
    """The listing in ``body`` (exchangeInfo's answer, parsed JSON), narrowed to
    ``quote_assets`` when any are given; ``ValueError`` when it holds no listing."""
    quotes = frozenset(q.upper() for q in quote_assets)
    if not isinstance(body, dict):
        raise ValueError(f"exchangeInfo is not an object: {type(body).__name__}")
    rows = body.get("symbols")
    if not isinstance(rows, list):
        raise ValueError("exchangeInfo has no list of symbols")
    served: dict[str, None] = {}
    skipped: Counter[str] = Counter()
    for row in rows:
        name = row.get("symbol") if isinstance(row, dict) else None
        if not isinstance(name, str) or not name.isascii() or _NAME.fullmatch(name) is None:
            skipped["bad_name"] += 1
            continue
        assert isinstance(row, dict)
        if row.get("status") != "TRADING":
            skipped["not_trading"] += 1
        elif quotes and str(row.get("quoteAsset", "")).upper() not in quotes:
            skipped["other_quote"] += 1
        elif name in served:
            skipped["duplicate"] += 1
        else:
            served[name] = None
    if not served:
        of = f" quoted in {','.join(sorted(quotes))}" if quotes else ""
        raise ValueError(f"exchangeInfo lists no trading symbol{of} ({len(rows)} listed)")
    return Listing(tuple(served), skipped)
