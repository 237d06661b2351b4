"""The raw broadcaster's order books (``python -m tickcast.bench.rawbook --streams
book|depth``): the reference ``raw`` server of ``tickcast bench --streams book|depth``,
the same messages as tickcast's, with nothing around them.

It holds each symbol's book as Binance documents for a local book, in its simplest form:
the simulator's ``<symbol>@depth@100ms`` diffs are buffered until a REST snapshot
(``GET /api/v3/depth?limit=5000``) is applied, then applied one by one. Each diff goes
out at once, framed once and written to every subscriber: on ``@book`` as the top
``levels`` of the book (tickcast's ``book`` message), on ``@depth`` as tickcast's
``depth`` message, after the whole book for a new subscriber. ``GET /book/{symbol}
?limit=N`` answers the held book, as tickcast's does. No interval, no conflation, no
resync: the simulator's diffs follow one another, and a diff that does not is fatal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import uvloop

from tickcast.bench.raw import RawClient, RawServer, listen
from tickcast.bench.rawhttp import http_get
from tickcast.bench.upstream import combined_url, wanted_streams
from tickcast.edge.wire import ws_text_frame
from tickcast.messages.book import Book, Depth, Levels, apply_levels
from tickcast.messages.decimals import canonical_decimal

SNAPSHOT_LIMIT = 5000


def _levels(rows: Sequence[Sequence[str]]) -> Levels:
    return tuple((canonical_decimal(p), canonical_decimal(q)) for p, q in rows)


class RawBook:
    """One symbol's book: quantity by price per side, at ``update_id``."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.update_id = -1
        self.event_ms = 0
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.pending: list[dict[str, Any]] = []
        self.buffered = asyncio.Event()  # a first diff waits for the snapshot
        self._whole: tuple[int, Book] | None = None

    def load(self, snapshot: dict[str, Any]) -> None:
        """Start from a REST snapshot, then apply the buffered diffs it does not cover."""
        self.update_id = int(snapshot["lastUpdateId"])
        self.bids = dict(_levels(snapshot["bids"]))
        self.asks = dict(_levels(snapshot["asks"]))
        pending, self.pending = self.pending, []
        for event in pending:
            if int(event["u"]) > self.update_id:
                self.apply(event, first=int(event["U"]) <= self.update_id + 1)

    def apply(self, event: dict[str, Any], first: bool = False) -> tuple[Levels, Levels]:
        """Apply one diff; its levels (canonical). ``first``: the diff a snapshot falls in."""
        if not first and int(event["U"]) != self.update_id + 1:
            raise RuntimeError(f"{self.symbol}: diff from {event['U']} after {self.update_id}")
        bids, asks = _levels(event["b"]), _levels(event["a"])
        apply_levels(self.bids, bids)
        apply_levels(self.asks, asks)
        self.update_id = int(event["u"])
        self.event_ms = int(event["E"])
        return bids, asks

    def book(self, limit: int | None, kind: str, seq: int) -> Book:
        """The best ``limit`` levels a side (None: all), as a ``book`` message."""
        if limit is None:
            bids = sorted(self.bids.items(), key=lambda lv: float(lv[0]), reverse=True)
            asks = sorted(self.asks.items(), key=lambda lv: float(lv[0]))
        else:
            bids = heapq.nlargest(limit, self.bids.items(), key=lambda lv: float(lv[0]))
            asks = heapq.nsmallest(limit, self.asks.items(), key=lambda lv: float(lv[0]))
        return Book(
            self.symbol, self.update_id, tuple(bids), tuple(asks), self.event_ms, seq, "sim",
            "depth" if kind == "depth" else "book",
        )  # fmt: skip

    def whole(self, seq: int) -> Book:
        """The whole book as the first message of ``@depth``, built once per update id."""
        if self._whole is None or self._whole[0] != self.update_id:
            self._whole = (self.update_id, self.book(None, "depth", seq))
        return self._whole[1]


class RawBookServer(RawServer):
    """``RawServer`` relaying books: ``kind`` ``book`` (the top ``levels``) or ``depth``."""

    def __init__(
        self, symbols: Sequence[str], slow_timeout: float, kind: str, levels: int = 20
    ) -> None:
        super().__init__(symbols, slow_timeout)
        self.kind = kind
        self.levels = levels
        self.books = {symbol: RawBook(symbol) for symbol in self.served}
        self.synced = False

    def wanted(self, query: str) -> frozenset[str]:
        return wanted_streams(query, self.served, self.kind)

    def on_frame(self, frame: bytes | str) -> None:
        message = orjson.loads(frame)
        event = message.get("data") if isinstance(message, dict) else None
        if not isinstance(event, dict) or event.get("e") != "depthUpdate":
            return
        book = self.books.get(str(event["s"]))
        if book is None:
            return
        if not self.synced:
            book.pending.append(event)
            book.buffered.set()
            return
        bids, asks = book.apply(event)
        seq = next(self._numbers)
        if self.kind == "depth":
            out = Depth(book.symbol, int(event["U"]), book.update_id, bids, asks, seq, "sim")
            encoded = out.encode()
        else:
            encoded = book.book(self.levels, "book", seq).encode()
        self.latest[book.symbol] = encoded
        wire = ws_text_frame(encoded)
        for write in tuple(self.subscribers[book.symbol].values()):
            write(wire)

    def add(self, client: RawClient, symbols: frozenset[str]) -> None:
        super().add(client, symbols)
        if self.kind == "depth" and client.transport is not None:
            for symbol in symbols:
                whole = self.books[symbol].whole(next(self._numbers))
                client.transport.write(ws_text_frame(whole.encode()))

    def other(self, path: str, query: str) -> tuple[int, bytes] | None:
        if not path.startswith("/book/"):
            return None
        book = self.books.get(path[len("/book/") :].upper())
        if book is None or not self.synced:
            return 503, b'{"error":"book_syncing"}'
        limit = int(parse_qs(query).get("limit", ["100"])[0])
        return 200, book.book(limit, "depth", next(self._numbers)).encode()

    async def sync(self, upstream: str) -> None:
        """Take each book's snapshot once its first diffs are buffered, then serve."""
        where = urlsplit(upstream)
        host, port = where.hostname or "127.0.0.1", where.port or 80
        for book in self.books.values():
            await book.buffered.wait()
            target = f"/api/v3/depth?symbol={book.symbol}&limit={SNAPSHOT_LIMIT}"
            status, body = await http_get(host, port, target)
            if status != 200:
                raise RuntimeError(f"snapshot of {book.symbol}: HTTP {status}")
            book.load(orjson.loads(body))
        self.synced = True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickcast.bench.rawbook")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="exchange base URL, ws://host:port")
    parser.add_argument("--symbols", required=True, help="comma separated")
    parser.add_argument("--slow-timeout", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--streams", choices=("book", "depth"), default="book")
    parser.add_argument("--levels", type=int, default=20, help="@book levels a side (20)")
    args = parser.parse_args(argv)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    server = RawBookServer(symbols, args.slow_timeout, args.streams, args.levels)
    url = combined_url(args.upstream, symbols, "depth@100ms")
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(listen(server, args.host, args.port, url, server.sync(args.upstream)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
