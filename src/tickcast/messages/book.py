"""Order books (``SYMBOL@book``, ``SYMBOL@depth``, from Binance's ``@depth@100ms`` and a
REST snapshot): the upstream values a local book is built from, and the two messages
clients get.

Upstream: a ``DepthEvent`` is one diff of the stream (Binance's ``depthUpdate``, update ids
``U`` to ``u``), a ``BookSnapshot`` one reply of ``GET /api/v3/depth``. To clients: a
``Book`` is a whole book (or its top levels) at one update id; a ``Depth`` is a diff that
applies to the book a client got from ``SYMBOL@depth`` (SPEC §12). A slow ``@depth`` client
gets the diffs it could not take merged into one by ``DepthMerger``: the same result, never
a hole.

Prices and quantities are canonical decimal strings (see ``decimals``), compared as numbers
only to order them; a quantity is absolute and 0 removes the level.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import InitVar, dataclass, field
from decimal import Decimal
from itertools import pairwise
from typing import Final, Literal

import orjson

from tickcast.messages.decimals import canonical_decimal, fragment, raw_numbers
from tickcast.messages.stream import book_streams
from tickcast.messages.tick import SourceLabel

# One price level: (price, quantity), both canonical decimal strings.
Level = tuple[str, str]
Levels = tuple[Level, ...]
BookKind = Literal["book", "depth"]
# Why a book is not served: ``broken`` (it was whole, then a gap, a crossed book or a new
# upstream connection discarded it), ``syncing`` (not whole yet: waiting for a snapshot).
BookStateName = Literal["syncing", "broken"]

_SOURCES: Final = ("binance", "sim", "replay")
_NUMBER: Final = rb"(-?[0-9]+(?:\.[0-9]+)?)"
_PAIR: Final = re.compile(rb"\[" + _NUMBER + rb"," + _NUMBER + rb"\]")


# A positive canonical decimal: no sign, no leading zero in its integer part, no trailing
# zero in its fraction (``canonical_decimal``'s output for a positive number).
_POSITIVE: Final = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?")


def check_levels(levels: Levels, side: str, *, zero_ok: bool) -> None:
    """Raise ``ValueError`` naming what makes ``levels`` no side of a book or diff: a price
    or quantity that is not a canonical decimal, a price that is not positive, a negative
    quantity (or a zero one, unless ``zero_ok``: a diff's deletion), or a price twice.

    On every diff of every book: one pattern match per number, not a rewrite of it."""
    seen: set[str] = set()
    positive = _POSITIVE.fullmatch
    for level in levels:
        if not isinstance(level, tuple) or len(level) != 2:
            raise ValueError(f"{side} level {level!r} is not a (price, qty) pair")
        price, qty = level
        if not isinstance(price, str) or not isinstance(qty, str):
            raise ValueError(f"{side} level {level!r} is not a pair of decimal strings")
        if positive(price) is None or price == "0":
            _refuse(side, "price", price)
        if positive(qty) is None:
            if qty.startswith("-") and canonical_decimal(qty) == qty:
                raise ValueError(f"{side} qty {qty} at {price} is negative")
            raise ValueError(f"{side} qty {qty!r} is not a canonical decimal")
        if qty == "0" and not zero_ok:
            raise ValueError(f"{side} level {price} has quantity 0 in a whole book")
        if price in seen:
            raise ValueError(f"{side} price {price} appears twice")
        seen.add(price)


def _refuse(side: str, name: str, value: str) -> None:
    """Say why ``value`` is no price: not a canonical decimal, or not positive."""
    try:
        canonical = canonical_decimal(value)
    except ValueError:
        canonical = None
    if canonical != value:
        raise ValueError(f"{side} {name} {value!r} is not a canonical decimal")
    raise ValueError(f"{side} {name} {value} is not positive")


def _check_ids(first: int, last: int) -> None:
    if first < 0 or last < 0:
        raise ValueError(f"update ids {first}..{last} are negative")
    if first > last:
        raise ValueError(f"first update id {first} is after the last {last}")


def _check_sorted(bids: Levels, asks: Levels) -> None:
    """A whole book: bids strictly descending, asks strictly ascending, not crossed."""
    bid_prices = [Decimal(p) for p, _ in bids]
    ask_prices = [Decimal(p) for p, _ in asks]
    if any(a <= b for a, b in pairwise(bid_prices)):
        raise ValueError("bids are not in descending price order")
    if any(a >= b for a, b in pairwise(ask_prices)):
        raise ValueError("asks are not in ascending price order")
    if bid_prices and ask_prices and bid_prices[0] >= ask_prices[0]:
        raise ValueError(f"book is crossed: best bid {bids[0][0]} >= best ask {asks[0][0]}")


@dataclass(frozen=True, slots=True)
class DepthEvent:
    """One diff of Binance's diff depth stream: the absolute quantities, as of update
    ``final_update_id`` (``u``), of the levels that changed from ``first_update_id``
    (``U``) on. Payload (``<symbol>@depth@100ms``)::

        {"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,
         "b":[["0.0024","10"]],"a":[["0.0026","100"]]}

    ``history`` names the run of the exchange the ids belong to, as ``Update.history`` in
    ``upstream.normalize``: ids are comparable only within one history.
    """

    symbol: str
    first_update_id: int
    final_update_id: int
    bids: Levels
    asks: Levels
    event_time_ms: int = 0
    history: int = 0
    # False for a copy of a checked diff (another ``history``) or one built of checked
    # levels (a local book's changes): every diff of every book passes here.
    checked: InitVar[bool] = True

    def __post_init__(self, checked: bool) -> None:
        if not checked:
            return
        _check_ids(self.first_update_id, self.final_update_id)
        check_levels(self.bids, "bid", zero_ok=True)
        check_levels(self.asks, "ask", zero_ok=True)


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """A REST depth snapshot (``GET /api/v3/depth``): the book's best levels per side as of
    update ``last_update_id``, at most 5000 per side. Payload::

        {"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],
         "asks":[["4.00000200","12.00000000"]]}

    A side is ``complete`` when it holds every level the book has on that side (it came
    with fewer levels than were asked for); otherwise the book goes on beyond its last
    level, unseen, and a local book knows that range only where diffs change it.
    """

    symbol: str
    last_update_id: int
    bids: Levels
    asks: Levels
    bids_complete: bool = True
    asks_complete: bool = True

    def __post_init__(self) -> None:
        _check_ids(self.last_update_id, self.last_update_id)
        check_levels(self.bids, "bid", zero_ok=False)
        check_levels(self.asks, "ask", zero_ok=False)


def _levels_json(levels: Levels) -> list[list[object]]:
    return [[fragment(price), fragment(qty)] for price, qty in levels]


def _raw_levels(data: bytes, name: str, count: int) -> Levels:
    """The ``name`` side's levels as written in ``data``: never through a float."""
    head = b'"%s":[' % name.encode()
    start = data.find(head)
    if start < 0:
        raise ValueError(f"no {name} in the message")
    start += len(head)
    # tickcast's own encoding is compact: a side is ``[]`` or ``[[p,q],...,[p,q]]``.
    end = start if data[start : start + 1] == b"]" else data.find(b"]]", start) + 1
    pairs = tuple((p.decode(), q.decode()) for p, q in _PAIR.findall(data, start, end))
    if len(pairs) != count:
        raise ValueError(f"{name} levels are not plain decimal pairs")
    return pairs


def _source(obj: dict[str, object], kind: str) -> SourceLabel:
    source = obj.get("source")
    if source == "binance" or source == "sim" or source == "replay":
        return source
    raise ValueError(f"unknown {kind} source {source!r}")


def _book_kind(stream: str) -> BookKind:
    kind = stream.partition("@")[2]
    if kind == "book":
        return "book"
    if kind == "depth":
        return "depth"
    raise ValueError(f"stream {stream!r} is no book stream")


def _sides(obj: dict[str, object], data: bytes) -> tuple[Levels, Levels]:
    bids, asks = obj.get("bids"), obj.get("asks")
    if not isinstance(bids, list) or not isinstance(asks, list):
        raise ValueError("bids and asks are not lists")
    return _raw_levels(data, "bids", len(bids)), _raw_levels(data, "asks", len(asks))


@dataclass(slots=True)
class Book:
    """A whole book at ``update_id``, or its top levels per side: bids best (highest)
    first, asks best (lowest) first. ``kind`` is the stream it is served on: ``book`` (the
    top levels, latest wins) or ``depth`` (the full held depth, followed by ``Depth``
    diffs)."""

    symbol: str
    update_id: int
    bids: Levels
    asks: Levels
    timestamp_ms: int
    seq: int
    source: SourceLabel
    kind: BookKind = "book"
    _encoded: bytes | None = field(default=None, repr=False, compare=False)
    # False for a book built from one already checked (a held book, a local book's view):
    # checking 5,000 levels a side again costs tens of milliseconds of the event loop.
    checked: InitVar[bool] = True

    def __post_init__(self, checked: bool) -> None:
        if not checked:
            return
        _check_ids(self.update_id, self.update_id)
        check_levels(self.bids, "bid", zero_ok=False)
        check_levels(self.asks, "ask", zero_ok=False)
        _check_sorted(self.bids, self.asks)
        if self.kind not in ("book", "depth"):
            raise ValueError(f"kind {self.kind!r} is neither book nor depth")

    @property
    def key(self) -> str:
        """The stream the hub and the edge key it by: its name."""
        return self.stream

    @property
    def stream(self) -> str:
        return f"{self.symbol}@{self.kind}"

    def encode(self) -> bytes:
        """The book's JSON message, built once and shared by every subscriber."""
        if self._encoded is None:
            self._encoded = orjson.dumps(
                {
                    "type": "book",
                    "stream": self.stream,
                    "symbol": self.symbol,
                    "update_id": self.update_id,
                    "bids": _levels_json(self.bids),
                    "asks": _levels_json(self.asks),
                    "timestamp_ms": self.timestamp_ms,
                    "seq": self.seq,
                    "source": self.source,
                }
            )
        return self._encoded

    @classmethod
    def from_json(cls, data: bytes) -> Book:
        """Rebuild a book from its own encoding; decimals come from the raw JSON text."""
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("type") != "book":
            raise ValueError("not a book message")
        kind = _book_kind(str(obj["stream"]))
        bids, asks = _sides(obj, data)
        return cls(
            symbol=str(obj["symbol"]),
            update_id=int(obj["update_id"]),
            bids=bids,
            asks=asks,
            timestamp_ms=int(obj["timestamp_ms"]),
            seq=int(obj["seq"]),
            source=_source(obj, "book"),
            kind=kind,
            _encoded=bytes(data),
        )


@dataclass(slots=True)
class Depth:
    """A diff of ``SYMBOL@depth``: the levels that changed after the previous message's
    ``update_id`` (so ``first_update_id`` is that plus one) up to ``update_id``; quantity
    0 removes a level."""

    symbol: str
    first_update_id: int
    update_id: int
    bids: Levels
    asks: Levels
    seq: int
    source: SourceLabel
    _encoded: bytes | None = field(default=None, repr=False, compare=False)
    # False for a diff built of a checked one's levels (the ingest's, a merge).
    checked: InitVar[bool] = True

    def __post_init__(self, checked: bool) -> None:
        if not checked:
            return
        _check_ids(self.first_update_id, self.update_id)
        check_levels(self.bids, "bid", zero_ok=True)
        check_levels(self.asks, "ask", zero_ok=True)

    @property
    def key(self) -> str:
        """The stream the hub and the edge key it by: its name."""
        return self.stream

    @property
    def stream(self) -> str:
        return f"{self.symbol}@depth"

    def encode(self) -> bytes:
        """The diff's JSON message, built once and shared by every subscriber."""
        if self._encoded is None:
            self._encoded = orjson.dumps(
                {
                    "type": "depth",
                    "stream": self.stream,
                    "symbol": self.symbol,
                    "first_update_id": self.first_update_id,
                    "update_id": self.update_id,
                    "bids": _levels_json(self.bids),
                    "asks": _levels_json(self.asks),
                    "seq": self.seq,
                    "source": self.source,
                }
            )
        return self._encoded

    @classmethod
    def from_json(cls, data: bytes) -> Depth:
        """Rebuild a diff from its own encoding; decimals come from the raw JSON text."""
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("type") != "depth":
            raise ValueError("not a depth message")
        raw = raw_numbers(data)
        if "first_update_id" not in raw or "update_id" not in raw:
            raise ValueError("a depth message without its update ids")
        bids, asks = _sides(obj, data)
        return cls(
            symbol=str(obj["symbol"]),
            first_update_id=int(obj["first_update_id"]),
            update_id=int(obj["update_id"]),
            bids=bids,
            asks=asks,
            seq=int(obj["seq"]),
            source=_source(obj, "depth"),
            _encoded=bytes(data),
        )


@dataclass(slots=True)
class BookStatus:
    """``symbol``'s book is no longer whole (``state``, ``reason`` and ``detail`` say why):
    nothing is served from it until the next whole ``Book`` of ``SYMBOL@depth``. Clients of
    both its streams get it as a ``status`` message (SPEC §12)::

        {"type":"status","symbol":"BTCUSDT","streams":["BTCUSDT@book","BTCUSDT@depth"],
         "book":"broken","reason":"gap","detail":"diff from 812, expected 790",
         "seq":1240,"source":"binance"}

    Its hub key is its own (``SYMBOL@book-status``): the latest state of a book is then
    held beside its levels, and a node that reads the hub late knows it as well.
    """

    symbol: str
    state: BookStateName
    reason: str
    detail: str
    seq: int
    source: SourceLabel
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.state not in ("syncing", "broken"):
            raise ValueError(f"book state {self.state!r} is neither syncing nor broken")

    @property
    def key(self) -> str:
        return status_key(self.symbol)

    @property
    def streams(self) -> tuple[str, str]:
        """The streams whose clients are told: the book's two."""
        return book_streams(self.symbol)

    def encode(self) -> bytes:
        if self._encoded is None:
            self._encoded = orjson.dumps(
                {
                    "type": "status",
                    "symbol": self.symbol,
                    "streams": list(self.streams),
                    "book": self.state,
                    "reason": self.reason,
                    "detail": self.detail,
                    "seq": self.seq,
                    "source": self.source,
                }
            )
        return self._encoded

    @classmethod
    def from_json(cls, data: bytes) -> BookStatus:
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("type") != "status" or "book" not in obj:
            raise ValueError("not a book status message")
        state = obj["book"]
        if state != "syncing" and state != "broken":
            raise ValueError(f"book state {state!r} is neither syncing nor broken")
        return cls(
            symbol=str(obj["symbol"]),
            state=state,
            reason=str(obj["reason"]),
            detail=str(obj["detail"]),
            seq=int(obj["seq"]),
            source=_source(obj, "book status"),
            _encoded=bytes(data),
        )


def status_key(symbol: str) -> str:
    """The hub key of ``symbol``'s book state (``BookStatus``)."""
    return f"{symbol}@book-status"


class DepthMerger:
    """The ``Depth`` diffs a slow client has not taken yet, held as one.

    Quantities are absolute, so merging is exact: for each price the later quantity wins,
    and a 0 stays in as the deletion it is (the client may hold that level). The merged
    diff runs from the first diff's ``first_update_id`` to the last one's ``update_id``
    and carries the last one's ``seq``: applied to the client's book it gives the same
    book as applying each diff in turn.
    """

    __slots__ = ("_asks", "_bids", "_count", "_first", "_last")

    def __init__(self) -> None:
        self._bids: dict[str, str] = {}
        self._asks: dict[str, str] = {}
        self._first: Depth | None = None
        self._last: Depth | None = None
        self._count = 0

    def __len__(self) -> int:
        """How many diffs are held."""
        return self._count

    def add(self, diff: Depth) -> None:
        """Hold ``diff`` after those held; ``ValueError`` unless it continues them (same
        symbol, its ``first_update_id`` right after the held ``update_id``)."""
        last = self._last
        if last is not None:
            if diff.symbol != last.symbol:
                raise ValueError(f"a {diff.symbol} diff after {last.symbol} diffs")
            if diff.first_update_id != last.update_id + 1:
                raise ValueError(
                    f"diff from {diff.first_update_id} does not follow update {last.update_id}"
                )
        if self._first is None:
            self._first = diff
        self._last = diff
        self._count += 1
        self._bids.update(diff.bids)
        self._asks.update(diff.asks)

    def take(self) -> Depth | None:
        """The held diffs as one (None when none are held), and hold nothing."""
        first, last = self._first, self._last
        if first is None or last is None:
            return None
        if self._count == 1:
            merged = last
        else:
            merged = Depth(
                symbol=last.symbol,
                first_update_id=first.first_update_id,
                update_id=last.update_id,
                bids=sorted_levels(self._bids, descending=True),
                asks=sorted_levels(self._asks, descending=False),
                seq=last.seq,
                source=last.source,
                checked=False,  # the levels of checked diffs
            )
        self._clear()
        return merged

    def _clear(self) -> None:
        self._bids = {}
        self._asks = {}
        self._first = self._last = None
        self._count = 0


def apply_levels(side: dict[str, str], changes: Iterable[Level]) -> None:
    """Apply a diff's levels to one side of a book (price -> quantity): a quantity is
    absolute, 0 removes the level (one never held is fine: Binance says so)."""
    for price, qty in changes:
        if qty == "0":
            side.pop(price, None)
        else:
            side[price] = qty


def sorted_levels(side: dict[str, str], *, descending: bool) -> Levels:
    """A side's levels best first: bids by price descending, asks ascending."""
    prices = sorted(side, key=price_key, reverse=descending)
    return tuple((price, side[price]) for price in prices)


def price_key(price: str) -> tuple[int, str, str]:
    """An exact sort key of a positive canonical decimal (no sign, no leading zero in its
    integer part, no trailing zero in its fraction): the integer part by length then by
    digits, then the fraction by digits. Several times faster than ``Decimal``."""
    whole, _, fraction = price.partition(".")
    return len(whole), whole, fraction
