"""Following order books in the raw bytes a client receives (``--streams book|depth``),
cheaply enough for thousands of clients in one process, and checking them at the end.

Every message of a book stream is one JSON object with arrays but no nested object (SPEC
§12): ``{"type":"book",...}``, ``{"type":"depth",...}`` or ``{"type":"status",...}``, so
``[^}]*`` keeps a match inside one message and a regex finds each whole message in a
chunk, skipping the WebSocket framing between them (as ``scan`` does for ticks).

- ``@book`` (latest wins): a client keeps only the raw bytes of its last book per symbol;
  nothing is parsed until the end. Per message: its update id (it must never go
  backwards) and, for the window's books, the latency from ``timestamp_ms``.
- ``@depth``: a client builds its own book from the first ``book`` (the whole held
  depth), then applies each ``depth`` diff whose ``first_update_id`` follows its book's
  ``update_id``; one that does not is a gap, and the book is dropped until a fresh one.
  Every client gets the same bytes for a diff, so a diff is parsed once per process
  (``_DiffCache``) and each client only updates two dicts. A ``status`` message (the
  server's book is not whole) drops the client's book too: a fresh ``book`` follows.

At the end the load generator stops reading (``freeze``) and each client's book is
compared with the server's own answer (``GET /book/{symbol}``) at the client's update
id: prices and quantities as the decimal text both were written in, never as floats.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from tickcast.bench.histogram import FINE, UNITS_PER_MS, bucket_of
from tickcast.bench.scan import Ledger, Scanner

# ``@book``: a whole book (group 1), its symbol, update id and time; or a whole status
# message (group 5) and its symbol. Greedy ``[^}]*`` runs to the message's end and
# backtracks the few bytes to ``"timestamp_ms"``.
BOOK_PATTERN = re.compile(
    rb'(\{"type":"book","stream":"([A-Z0-9]+)@book","symbol":"[A-Z0-9]+","update_id":(\d+),'
    rb'[^}]*"timestamp_ms":(\d+),[^}]*\})'
    rb'|(\{"type":"status","symbol":"([A-Z0-9]+)"[^}]*\})'
)
# ``@depth``: a diff (group 1), its symbol, first and last update id; or a whole book
# (group 5, the first one or a fresh one) or a status message (group 6; 7 its symbol).
DEPTH_PATTERN = re.compile(
    rb'(\{"type":"depth","stream":"([A-Z0-9]+)@depth","symbol":"[A-Z0-9]+",'
    rb'"first_update_id":(\d+),"update_id":(\d+),[^}]*\})'
    rb'|(\{"type":"book",[^}]*\})'
    rb'|(\{"type":"status","symbol":"([A-Z0-9]+)"[^}]*\})'
)
_BOOK_HEAD = re.compile(
    rb'"stream":"([A-Z0-9]+)@(?:book|depth)","symbol":"[A-Z0-9]+","update_id":(\d+),'
)
_PAIR = re.compile(rb"\[([0-9.eE+-]+),([0-9.eE+-]+)\]")
_ASKS = b'"asks":['
# The longest message kept across reads: a whole book of thousands of levels a side.
MAX_PENDING = 4 << 20
_ZERO = b"0"

Side = dict[bytes, bytes]
Book = tuple[bytes, int, Side, Side]  # symbol, update id, bids, asks
_Parsed = tuple[Side, tuple[bytes, ...], Side, tuple[bytes, ...]]


def split_levels(message: bytes) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """A book or diff message's bids and asks as (price, qty) decimal texts."""
    at = message.find(_ASKS)
    if at < 0:
        raise ValueError("a book message without asks")
    return _PAIR.findall(message, 0, at), _PAIR.findall(message, at)


def book_sides(message: bytes) -> Book:
    """A ``book`` message (or a ``GET /book`` answer): its symbol, update id, bids, asks."""
    head = _BOOK_HEAD.search(message)
    if head is None:
        raise ValueError("not a book message")
    bids, asks = split_levels(message)
    return head.group(1), int(head.group(2)), dict(bids), dict(asks)


class _DiffCache:
    """Parsed diffs by their bytes: every client gets the same bytes for a diff, so each
    is parsed once per process. Bounded: emptied when full (a later diff is parsed again)."""

    __slots__ = ("entries", "limit")

    def __init__(self, limit: int = 4096) -> None:
        self.entries: dict[bytes, _Parsed] = {}
        self.limit = limit

    def get(self, message: bytes) -> _Parsed:
        """The levels ``message`` sets, and the prices it removes, per side."""
        parsed = self.entries.get(message)
        if parsed is None:
            bids, asks = split_levels(message)
            parsed = (
                {p: q for p, q in bids if q != _ZERO},
                tuple(p for p, q in bids if q == _ZERO),
                {p: q for p, q in asks if q != _ZERO},
                tuple(p for p, q in asks if q == _ZERO),
            )
            if len(self.entries) >= self.limit:
                self.entries.clear()
            self.entries[message] = parsed
        return parsed


class BookLedger(Ledger):
    """What one client of the book streams received: ``scan.Ledger``'s counts (so
    ``scan.Tally`` adds up deliveries, messages and bytes; its ``symbols`` stays empty:
    a book stream has no per-event count to gap against) and per symbol its book: the
    last raw ``@book`` message, or the ``@depth`` book built from diffs."""

    __slots__ = ("backwards", "id_gaps", "last", "orphans", "sides", "statuses", "update_ids")

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[bytes, bytes] = {}  # @book: symbol -> its last message
        self.sides: dict[bytes, tuple[Side, Side] | None] = {}  # @depth; None: dropped
        self.update_ids: dict[bytes, int] = {}
        self.backwards = 0  # @book: a book older than the one before it
        self.id_gaps = 0  # @depth: a diff that does not follow the book's update id
        self.orphans = 0  # @depth: a diff with no book to apply it to
        self.statuses = 0  # book-not-whole messages

    def book_at(self, symbol: bytes) -> tuple[int, Side, Side] | None:
        """The client's book of ``symbol`` now: (update id, bids, asks); None if it has none."""
        raw = self.last.get(symbol)
        if raw is not None:
            _, update_id, bids, asks = book_sides(raw)
            return update_id, bids, asks
        sides = self.sides.get(symbol)
        if sides is None:
            return None
        return self.update_ids[symbol], sides[0], sides[1]

    def held_symbols(self) -> list[bytes]:
        return [s for s in self.update_ids if self.last.get(s) or self.sides.get(s)]


class BookScanner(Scanner):
    """Scans chunks of ``@book`` (``depth`` False) or ``@depth`` messages for a group of
    connections: one window and latency histogram (``scan.Scanner``'s), a ``BookLedger``
    each. ``@book`` books count in the window by their ``timestamp_ms`` (and give a
    latency); ``@depth`` messages, which carry no time, by when they arrived."""

    def __init__(self, depth: bool) -> None:
        super().__init__()
        self.depth = depth
        self.cache = _DiffCache()
        self.answers: dict[bytes, dict[int, bytes]] = {}

    def new_ledger(self) -> BookLedger:
        return BookLedger()

    def set_answers(self, answers: Mapping[str, Mapping[int, bytes]]) -> None:
        """The server's ``GET /book`` answers per symbol, by update id."""
        self.answers = {s.encode(): dict(by_id) for s, by_id in answers.items()}

    def feed(self, ledger: Ledger, data: bytes, now_units: int, wire_bytes: int = -1) -> int:
        """Account every complete message in ``ledger.tail + data`` received at
        ``now_units`` (wall clock, 0.1 ms units); returns the window's deliveries.
        ``wire_bytes``: what ``data`` took on the wire, when it was inflated from that."""
        assert isinstance(ledger, BookLedger), "a book scanner's ledgers are its own"
        ledger.received_bytes += len(data) if wire_bytes < 0 else wire_bytes
        if ledger.tail:
            data = ledger.tail + data
        if self.depth:
            found, in_window = self._depth(ledger, data, now_units)
        else:
            found, in_window = self._books(ledger, data, now_units)
        ledger.messages += found
        ledger.deliveries += in_window
        self.deliveries += in_window
        return in_window

    def _books(self, ledger: BookLedger, data: bytes, now_units: int) -> tuple[int, int]:
        found = BOOK_PATTERN.findall(data)
        ledger.tail = _pending(data, found[-1][0] or found[-1][4]) if found else _pending(data)
        start, end = self.window_start_ms, self.window_end_ms
        counts = self.histogram.counts
        top = self.histogram.max_units
        last, ids = ledger.last, ledger.update_ids
        in_window = 0
        for message, symbol, id_text, stamp_text, status, status_symbol in found:
            if status:
                ledger.statuses += 1
                last.pop(status_symbol, None)
                continue
            update_id = int(id_text)
            if update_id < ids.get(symbol, -1):
                ledger.backwards += 1
                continue
            ids[symbol] = update_id
            last[symbol] = message
            stamp = int(stamp_text)
            if start <= stamp < end:
                in_window += 1
                units = now_units - stamp * UNITS_PER_MS
                if units < 0:
                    units = 0
                elif units > top:
                    top = units
                counts[units if units < FINE else bucket_of(units)] += 1
        self.histogram.max_units = top
        return len(found), in_window

    def _depth(self, ledger: BookLedger, data: bytes, now_units: int) -> tuple[int, int]:
        found = DEPTH_PATTERN.findall(data)
        if not found:
            ledger.tail = _pending(data)
            return 0, 0
        final = found[-1]
        ledger.tail = _pending(data, final[0] or final[4] or final[5])
        sides, ids, cache = ledger.sides, ledger.update_ids, self.cache
        for diff, symbol, first, last, book, _status, status_symbol in found:
            if diff:
                held = sides.get(symbol)
                if held is None:
                    ledger.orphans += 1
                elif int(first) != ids[symbol] + 1:
                    ledger.id_gaps += 1
                    sides[symbol] = None  # nothing right can follow until a fresh book
                else:
                    bid_sets, bid_dels, ask_sets, ask_dels = cache.get(diff)
                    bids, asks = held
                    bids.update(bid_sets)
                    for price in bid_dels:
                        bids.pop(price, None)
                    asks.update(ask_sets)
                    for price in ask_dels:
                        asks.pop(price, None)
                    ids[symbol] = int(last)
            elif book:
                book_symbol, update_id, bids, asks = book_sides(book)
                sides[book_symbol] = (bids, asks)
                ids[book_symbol] = update_id
            else:
                ledger.statuses += 1
                sides[status_symbol] = None
        # A diff has no time of its own: the window counts what arrived in it.
        start, end = self.window_start_ms * UNITS_PER_MS, self.window_end_ms * UNITS_PER_MS
        return len(found), len(found) if start <= now_units < end else 0


def _pending(data: bytes, last: bytes = b"") -> bytes:
    """What follows the last whole message (``last``, whose text is at its rightmost
    occurrence: a later copy would itself be the last match): from the ``{`` that opens
    an unfinished one (a message has no nested object, so no ``{`` inside it), kept for
    the next read; nothing when none has begun."""
    end = data.rfind(last) + len(last) if last else 0
    start = data.rfind(b"{", end)
    if start < 0:
        return b""
    if len(data) - start > MAX_PENDING:
        raise ValueError(f"a message longer than {MAX_PENDING} bytes")
    return data[start:]


Verdict = Literal["equal", "different", "not answered", "no book"]


class AnswerIndex:
    """The server's ``GET /book`` answers per symbol and update id, each parsed once
    however many clients are compared with it."""

    def __init__(self, answers: Mapping[bytes, Mapping[int, bytes]]) -> None:
        self.answers = answers
        self._parsed: dict[tuple[bytes, int], tuple[Side, Side] | None] = {}

    def check(self, ledger: BookLedger, symbol: bytes) -> Verdict:
        """How ``ledger``'s book of ``symbol`` compares with the server's at the same
        update id: prices and quantities as the decimal texts both were written in."""
        held = ledger.book_at(symbol)
        if held is None:
            return "no book"
        update_id, bids, asks = held
        key = (symbol, update_id)
        if key not in self._parsed:
            body = self.answers.get(symbol, {}).get(update_id)
            if body is None:
                return "not answered"
            answered_symbol, answered_id, server_bids, server_asks = book_sides(body)
            same = answered_symbol == symbol and answered_id == update_id
            self._parsed[key] = (server_bids, server_asks) if same else None
        server = self._parsed[key]
        return "equal" if server is not None and (bids, asks) == server else "different"


@dataclass
class BookCounts:
    """The book checks over many clients: how many books were compared with the server's
    at the same update id and how many differed, and what went wrong on the way."""

    clients: int = 0
    compared: int = 0
    equal: int = 0
    mismatched: int = 0
    clients_mismatched: int = 0
    no_book: int = 0  # a client holding no book of a symbol at the end
    not_answered: int = 0  # no server answer at the client's update id
    gaps: int = 0
    clients_with_gaps: int = 0
    orphans: int = 0
    backwards: int = 0
    statuses: int = 0

    def add(self, ledger: BookLedger, symbols: Sequence[bytes], answers: AnswerIndex) -> None:
        """Count ``ledger``'s troubles, and compare its book of each of ``symbols`` with
        the server's answer at its update id."""
        self.clients += 1
        self.gaps += ledger.id_gaps
        self.clients_with_gaps += ledger.id_gaps > 0
        self.orphans += ledger.orphans
        self.backwards += ledger.backwards
        self.statuses += ledger.statuses
        wrong = 0
        for symbol in symbols:
            verdict = answers.check(ledger, symbol)
            if verdict == "no book":
                self.no_book += 1
            elif verdict == "not answered":
                self.not_answered += 1
            else:
                self.compared += 1
                self.equal += verdict == "equal"
                wrong += verdict == "different"
        self.mismatched += wrong
        self.clients_mismatched += wrong > 0

    def merge(self, other: BookCounts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return {name: int(value) for name, value in asdict(self).items()}


def needed_ids(ledgers: Iterable[BookLedger]) -> dict[str, list[int]]:
    """Per symbol, the update ids the clients' books are at: what the server is asked."""
    out: dict[str, set[int]] = {}
    for ledger in ledgers:
        for symbol in ledger.held_symbols():
            out.setdefault(symbol.decode(), set()).add(ledger.update_ids[symbol])
    return {symbol: sorted(ids) for symbol, ids in out.items()}


def book_report(
    ledgers: Iterable[Ledger], answers: Mapping[bytes, Mapping[int, bytes]]
) -> dict[str, int]:
    """Every client's book of each symbol the server was asked about, compared with the
    server's answer at the client's update id (``BookCounts``)."""
    counts = BookCounts()
    index = AnswerIndex(answers)
    symbols = sorted(answers)
    for ledger in ledgers:
        if isinstance(ledger, BookLedger):
            counts.add(ledger, symbols, index)
    return counts.as_dict()
