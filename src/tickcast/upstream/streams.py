"""Which Binance streams tickcast subscribes, and how they are spread over connections.

Pure functions, no I/O. Binance names streams in lowercase (an uppercase symbol opens a
connection that stays silent) but keeps the interval's case: ``kline_1m`` is a minute,
``kline_1M`` a month.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final, Literal

from tickcast.settings import Settings

# Binance's limit of streams on one connection.
MAX_STREAMS_PER_CONNECTION: Final = 1024

Method = Literal["SUBSCRIBE", "UNSUBSCRIBE"]


def stream_names(
    symbols: Sequence[str],
    book: bool,
    *,
    carried: Sequence[str] = (),
    trades: bool = False,
    intervals: Sequence[str] = (),
    depth: bool = False,
) -> list[str]:
    """Binance stream names for ``symbols``: ``@ticker`` (plus ``@bookTicker`` with
    ``book``) for each, then for each of ``carried``: ``@aggTrade`` with ``trades``,
    ``@kline_<interval>`` for each of ``intervals`` and ``@depth@100ms`` with ``depth``
    (the diffs an order book is kept from)."""
    kinds = ("ticker", "bookTicker") if book else ("ticker",)
    names = [f"{symbol.lower()}@{kind}" for symbol in symbols for kind in kinds]
    extra = (["aggTrade"] if trades else []) + [f"kline_{i}" for i in intervals]
    extra += ["depth@100ms"] if depth else []
    names += [f"{symbol.lower()}@{kind}" for symbol in carried for kind in extra]
    return names


def settings_streams(settings: Settings, symbols: Sequence[str] | None = None) -> list[str]:
    """The streams ``settings`` ask for: every served symbol's ticker, and the trades,
    candles and book diffs of the carried symbols. ``symbols``: those served now (with
    ``*``, the exchange's listing); default the named ones."""
    served = settings.named_symbols if symbols is None else tuple(symbols)
    listed = set(served)
    return stream_names(
        served,
        settings.book,
        carried=[s for s in settings.carried_symbols if s in listed],
        trades=settings.carries_trades,
        intervals=settings.carried_intervals,
        depth=settings.carries_books,
    )


def shard(streams: Sequence[str], size: int = MAX_STREAMS_PER_CONNECTION) -> list[list[str]]:
    """Split ``streams`` into connections of at most ``size`` streams each."""
    size = min(size, MAX_STREAMS_PER_CONNECTION)
    return [list(streams[i : i + size]) for i in range(0, len(streams), size)]


def assign(
    shards: Sequence[Sequence[str]], streams: Sequence[str], size: int = MAX_STREAMS_PER_CONNECTION
) -> list[list[str]]:
    """Spread ``streams`` over the connections that hold ``shards`` now, moving nothing
    that stays: each shard keeps those of its streams still wanted, in its order; the new
    ones fill the first shards with room, in the order given, then new shards of at most
    ``size`` each. A stream named twice counts once.

    Moving a kept stream to another connection would mean an UNSUBSCRIBE on one and a
    SUBSCRIBE on the other, with a moment between them when it is on neither.

    >>> assign([["a", "b"], ["c"]], ["c", "b", "d", "e"], size=2)
    [['b', 'd'], ['c', 'e']]
    """
    size = min(size, MAX_STREAMS_PER_CONNECTION)
    wanted = dict.fromkeys(streams)
    seen: set[str] = set()
    parts: list[list[str]] = []
    for part in shards:
        kept = [s for s in dict.fromkeys(part) if s in wanted and s not in seen]
        seen.update(kept)
        parts.append(kept)
    added = [s for s in wanted if s not in seen]
    taken = 0
    for part in parts:
        room = max(0, size - len(part))
        part += added[taken : taken + room]
        taken += room
    return parts + shard(added[taken:], size)


def next_request(
    streams: Sequence[str], sent: Collection[str], batch: int
) -> tuple[Method, list[str]] | None:
    """The next control message that brings a connection subscribed to ``sent`` (in the
    order they were sent; a dict or a set, for the lookups) to ``streams``: an UNSUBSCRIBE
    of up to ``batch`` streams no longer wanted, else a SUBSCRIBE of up to ``batch``
    wanted ones not yet sent, else None (nothing to change).

    Unsubscribing first keeps a connection under its 1024 streams while one shard's
    streams are swapped for others.
    """
    wanted = set(streams)
    gone = [s for s in sent if s not in wanted][:batch]
    if gone:
        return "UNSUBSCRIBE", gone
    new = [s for s in streams if s not in sent][:batch]
    return ("SUBSCRIBE", new) if new else None


def combined_url(base: str) -> str:
    """The bare combined-stream endpoint (``/stream``) under ``base``; streams are added by
    SUBSCRIBE, which keeps the URL short for 1024 streams."""
    base = base.rstrip("/")
    for suffix in ("/stream", "/ws"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base + "/stream"
