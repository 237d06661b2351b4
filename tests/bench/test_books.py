"""``tickcast bench --streams book|depth``: the book scanner and its final check by plain
calls (a wrong book is caught), then one short real run of each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tickcast.bench.bookscan import AnswerIndex, BookCounts, BookLedger, BookScanner, needed_ids
from tickcast.bench.config import BenchConfig
from tickcast.bench.histogram import UNITS_PER_MS
from tickcast.edge.wire import ws_text_frame
from tickcast.messages.book import Book, BookStatus, Depth, Levels

T0 = 1_700_000_000_000
BIDS: Levels = (("60500.4", "1.2"), ("60500.3", "0.5"), ("60499", "3"))
ASKS: Levels = (("60500.6", "0.8"), ("60500.7", "2.25"))


def book(update_id: int, bids: Levels = BIDS, asks: Levels = ASKS, kind: str = "book") -> Book:
    return Book("BTCUSDT", update_id, bids, asks, T0, update_id + 7, "sim", kind)  # type: ignore[arg-type]


def diff(first: int, last: int, bids: Levels = (), asks: Levels = ()) -> Depth:
    return Depth("BTCUSDT", first, last, bids, asks, last + 7, "sim")


def frames(*messages: Book | Depth | BookStatus) -> bytes:
    return b"".join(ws_text_frame(message.encode()) for message in messages)


def scanned(depth: bool, data: bytes) -> tuple[BookScanner, BookLedger]:
    scanner = BookScanner(depth)
    scanner.set_window(T0, T0 + 1000)
    ledger = scanner.new_ledger()
    scanner.feed(ledger, data, (T0 + 30) * UNITS_PER_MS)
    return scanner, ledger


def check(ledger: BookLedger, answer: Book) -> BookCounts:
    counts = BookCounts()
    counts.add(ledger, [b"BTCUSDT"], AnswerIndex({b"BTCUSDT": {answer.update_id: answer.encode()}}))
    return counts


def test_the_last_book_is_kept_and_equals_the_servers() -> None:
    """@book: of three books the client keeps the last; the server's answer at its update
    id with the same levels is equal; the window's books give latency samples."""
    scanner, ledger = scanned(False, frames(book(10), book(11), book(12)))
    assert ledger.update_ids[b"BTCUSDT"] == 12 and ledger.deliveries == 3
    assert scanner.histogram.percentile_ms(0.5) == 30.0
    assert needed_ids([ledger]) == {"BTCUSDT": [12]}
    counts = check(ledger, book(12, kind="depth"))
    assert (counts.compared, counts.equal, counts.mismatched) == (1, 1, 0)


def test_a_book_with_one_quantity_different_is_a_mismatch() -> None:
    """@book: the server holds 0.5 at 60500.3 but the client got 0.6: counted as a
    mismatch (and a client with it), never as equal."""
    wrong = (("60500.4", "1.2"), ("60500.3", "0.6"), ("60499", "3"))
    _, ledger = scanned(False, frames(book(12, bids=wrong)))
    counts = check(ledger, book(12, kind="depth"))
    assert (counts.equal, counts.mismatched, counts.clients_mismatched) == (0, 1, 1)


def test_a_missing_level_or_another_update_id_is_caught() -> None:
    """A book short of one ask is different; a client at an update id the server was
    not asked about is not compared (counted apart), not taken as equal."""
    _, ledger = scanned(False, frames(book(12, asks=ASKS[:1])))
    assert check(ledger, book(12)).mismatched == 1
    assert check(ledger, book(13)).not_answered == 1


def test_an_older_book_after_a_newer_one_is_counted_and_not_kept() -> None:
    _, ledger = scanned(False, frames(book(12), book(11)))
    assert ledger.backwards == 1 and ledger.update_ids[b"BTCUSDT"] == 12


def test_depth_diffs_build_the_servers_book() -> None:
    """@depth: the first book, then diffs that change, add and remove levels (quantity
    0) give the book the server holds at the last diff's update id."""
    stream = frames(
        book(100, kind="depth"),
        diff(101, 103, bids=(("60500.3", "0"), ("60500.5", "4"))),
        diff(104, 104, asks=(("60500.6", "1"),)),
    )
    _, ledger = scanned(True, stream)
    expected = book(104, bids=(("60500.5", "4"), ("60500.4", "1.2"), ("60499", "3")),
                    asks=(("60500.6", "1"), ("60500.7", "2.25")), kind="depth")  # fmt: skip
    assert ledger.update_ids[b"BTCUSDT"] == 104 and ledger.id_gaps == 0
    assert check(ledger, expected).equal == 1
    assert check(ledger, book(104, kind="depth")).mismatched == 1


def test_a_diff_that_skips_ids_is_a_gap_and_drops_the_book() -> None:
    """A diff from 105 after update 103 is a gap: the client's book cannot be right any
    more, so it holds none (counted) until a fresh book; a later diff is an orphan."""
    stream = frames(book(100, kind="depth"), diff(101, 103), diff(105, 106), diff(107, 107))
    _, ledger = scanned(True, stream)
    assert (ledger.id_gaps, ledger.orphans) == (1, 1)
    counts = check(ledger, book(107, kind="depth"))
    assert (counts.gaps, counts.no_book, counts.compared) == (1, 1, 0)


def test_a_status_drops_the_book_and_a_fresh_one_follows() -> None:
    status = BookStatus("BTCUSDT", "broken", "gap", "diff from 9, expected 5", 1, "sim")
    stream = frames(book(100, kind="depth"), status, book(200, kind="depth"), diff(201, 201))
    _, ledger = scanned(True, stream)
    assert ledger.statuses == 1 and ledger.update_ids[b"BTCUSDT"] == 201


def test_split_at_every_byte_builds_the_same_book() -> None:
    """Messages cut into two reads at any offset give the same book: an unfinished
    message waits for the next read."""
    stream = frames(book(100, kind="depth"), diff(101, 102, asks=(("60500.9", "1"),)))
    for cut in range(len(stream) + 1):
        scanner = BookScanner(True)
        ledger = scanner.new_ledger()
        scanner.feed(ledger, stream[:cut], 0)
        scanner.feed(ledger, stream[cut:], 0)
        assert ledger.messages == 2 and ledger.update_ids[b"BTCUSDT"] == 102, cut
        held = ledger.book_at(b"BTCUSDT")
        assert held is not None and held[2][b"60500.9"] == b"1", cut


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"streams": "book", "rate": 5.0}, "--rate"),
        ({"streams": "depth", "transport": "sse"}, "WebSocket only"),
        ({"streams": "book", "redis": True}, "one memory-hub process"),
        ({"streams": "depth", "stall": 2, "clients": 10}, "--stall"),
    ],
)
def test_book_options_are_checked(overrides: dict[str, object], problem: str) -> None:
    config = BenchConfig(**overrides)  # type: ignore[arg-type]
    assert any(problem in text for text in config.problems()), config.problems()


# Eight clients for two seconds: a check of correctness that loads nothing, so it runs
# beside other tests rather than in the chain of those that load the machine.
@pytest.mark.slow
@pytest.mark.parametrize("streams", ["book", "depth"])
def test_a_short_real_book_run(tmp_path: Path, streams: str) -> None:
    """``tickcast bench --streams book|depth`` end to end against tickcast and raw: every
    client's book equals the server's at the same update id, with no gap."""
    out = tmp_path / "bench.json"
    command = [
        sys.executable, "-m", "tickcast.cli", "bench", "--streams", streams,
        "--clients", "8", "--symbols", "2", "--rate", "10", "--duration", "2",
        "--warmup", "1", "--compare", "raw", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = json.loads(out.read_text())["runs"]
    assert set(runs) == {"tickcast", "raw"}
    for name, run in runs.items():
        books = run["books"]
        assert books["clients"] == 8, name
        assert books["compared"] == 16 and books["equal"] == 16, (name, books)
        assert books["mismatched"] == 0 and books["gaps"] == 0, (name, books)
        assert run["deliveries"]["total"] > 8 * 2 * 10, name
    assert "books equal the server's" in done.stdout
