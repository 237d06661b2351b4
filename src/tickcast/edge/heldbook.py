"""What a slow ``SYMBOL@depth`` client is owed, held as one message (SPEC §12).

Diffs are never dropped: the ones a client could not take are merged (``DepthMerger``,
exact: quantities are absolute), and a whole book it has not taken yet absorbs the diffs
after it. Either way the client gets one message that leaves its book where the stream's
is, built for it alone when it can take it (the fast path's shared bytes are for clients
that keep up).
"""

from __future__ import annotations

from tickcast.edge.wire import Wire, WireFormat, encode_market
from tickcast.messages.book import Book, Depth, DepthMerger, apply_levels, sorted_levels


class HeldDepth(Wire):
    """A held ``Book`` of ``SYMBOL@depth`` and/or the diffs after it; ``message`` is the
    newest held (its seq orders it among the client's other held messages)."""

    __slots__ = ("_base", "_merger")

    def __init__(self, first: Wire) -> None:
        super().__init__(first.message)
        self._base: Book | None = None
        self._merger = DepthMerger()
        if type(first.message) is Book:
            self._base = first.message
        elif type(first.message) is Depth:
            self._merger.add(first.message)
        else:
            raise TypeError(f"not a depth stream message: {first.message!r}")

    def add(self, diff: Depth) -> None:
        """Hold ``diff`` after what is held; ``ValueError`` when it does not follow it."""
        base = self._base
        if not self._merger and base is not None and diff.first_update_id != base.update_id + 1:
            raise ValueError(
                f"diff from {diff.first_update_id} does not follow book {base.update_id}"
            )
        self._merger.add(diff)
        self.message = diff
        self._cache.clear()

    def get(self, fmt: WireFormat) -> bytes:
        data = self._cache.get(fmt)
        if data is None:
            data = self._cache[fmt] = encode_market(fmt, self.merged())
        return data

    def merged(self) -> Book | Depth:
        """The one message the client gets for all that is held."""
        merged = self._merger.take()
        if merged is not None:
            self._merger.add(merged)  # keep holding it: more may come before it is sent
        base = self._base
        if base is None:
            assert merged is not None, "a held depth holds something"
            return merged
        if merged is None:
            return base
        return _applied(base, merged)


def _applied(book: Book, diff: Depth) -> Book:
    """``book`` with ``diff`` applied: the whole book at the diff's update id."""
    bids, asks = dict(book.bids), dict(book.asks)
    apply_levels(bids, diff.bids)
    apply_levels(asks, diff.asks)
    return Book(
        symbol=book.symbol,
        update_id=diff.update_id,
        bids=sorted_levels(bids, descending=True),
        asks=sorted_levels(asks, descending=False),
        timestamp_ms=book.timestamp_ms,
        seq=diff.seq,
        source=diff.source,
        kind="depth",
        checked=False,
    )
