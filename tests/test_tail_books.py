"""tickcast tail's order books (SPEC §12): the local book kept from a `@depth` stream (a
0-quantity delete, a hole in the diffs), the server saying a book is not whole, the book
lines for pipes and the ladder for the terminal. Pure calls; the CLI as a process:
test_tail_cli.py."""

from __future__ import annotations

import io
from decimal import Decimal

from rich.console import Console, RenderableType

from tickcast.tail.localbook import BookFeed, BookState, Gap, LocalBook, book_checksum
from tickcast.tail.protocol import decode_message

T0 = 1_796_664_761_174  # 2026-12-07T17:32:41.174Z

Side = list[tuple[str, str]]


def levels_json(levels: Side) -> str:
    return "[" + ",".join(f"[{p},{q}]" for p, q in levels) + "]"


def book(update_id: int = 100, bids: Side | None = None, asks: Side | None = None,
         stream: str = "BTCUSDT@book", seq: int = 1) -> dict[str, object]:  # fmt: skip
    bids = [("60500.4", "1.2"), ("60500.3", "0.5")] if bids is None else bids
    asks = [("60500.6", "0.8"), ("60500.7", "2")] if asks is None else asks
    raw = (
        f'{{"type":"book","stream":"{stream}","symbol":"BTCUSDT","update_id":{update_id},'
        f'"bids":{levels_json(bids)},"asks":{levels_json(asks)},"timestamp_ms":{T0},'
        f'"seq":{seq},"source":"sim"}}'
    )
    message = decode_message(raw)
    assert message is not None
    return message


def diff(first: int, last: int, bids: Side | None = None, asks: Side | None = None,
         seq: int = 2) -> dict[str, object]:  # fmt: skip
    raw = (
        f'{{"type":"depth","stream":"BTCUSDT@depth","symbol":"BTCUSDT",'
        f'"first_update_id":{first},"update_id":{last},"bids":{levels_json(bids or [])},'
        f'"asks":{levels_json(asks or [])},"seq":{seq},"source":"sim"}}'
    )
    message = decode_message(raw)
    assert message is not None
    return message


def status(state: str = "broken", reason: str = "gap", detail: str = "diff from 812, "
           "expected 790") -> dict[str, object]:  # fmt: skip
    return {
        "type": "status", "symbol": "BTCUSDT", "streams": ["BTCUSDT@book", "BTCUSDT@depth"],
        "book": state, "reason": reason, "detail": detail,
    }  # fmt: skip


def dec(text: str) -> Decimal:
    return Decimal(text)


def text_of(renderable: RenderableType, width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


# ---------------------------------------------------------------------- the local book


def test_a_diff_changes_adds_and_deletes_levels_exactly() -> None:
    """A diff that follows the book sets absolute quantities, adds new levels in their
    place, removes a level whose quantity is 0, and moves the book to its update id."""
    local = LocalBook()
    assert local.replace(book(100, stream="BTCUSDT@depth"))
    changed = diff(
        101, 105, bids=[("60500.4", "0"), ("60500.35", "0.1")], asks=[("60500.7", "2.50")]
    )
    assert local.apply(changed) is True
    assert local.update_id == 105
    assert local.bids() == [(dec("60500.35"), dec("0.1")), (dec("60500.3"), dec("0.5"))]
    assert local.asks() == [(dec("60500.6"), dec("0.8")), (dec("60500.7"), dec("2.5"))]
    assert local.apply(diff(106, 106, bids=[("1", "0")])) is True  # deleting nothing held
    assert local.sizes == (2, 2)


def test_a_diff_that_does_not_follow_drops_the_book_until_a_whole_one() -> None:
    """A diff whose first id is not the book's update id + 1 is a hole: the book is
    dropped (nothing of it is shown), later diffs change nothing, and the next whole book
    makes it whole again."""
    local = LocalBook()
    local.replace(book(100, stream="BTCUSDT@depth"))
    gap = local.apply(diff(103, 104, bids=[("60500.4", "9")]))
    assert gap == Gap(first_update_id=103, expected=101)
    assert gap.text == "diff from 103, expected 101"
    assert local.state is BookState.GAP
    assert (local.bids(), local.asks(), local.update_id) == ([], [], None)
    assert local.apply(diff(105, 106, bids=[("60500.4", "9")])) is False
    assert local.bids() == []
    assert local.replace(book(200, stream="BTCUSDT@depth"))
    assert (local.state, local.update_id) == (BookState.WHOLE, 200)


def test_an_old_or_repeated_diff_is_a_gap_too() -> None:
    """Only the next id follows: a diff the book already holds is no continuation."""
    local = LocalBook()
    local.replace(book(100, stream="BTCUSDT@depth"))
    assert local.apply(diff(101, 102)) is True
    assert isinstance(local.apply(diff(101, 102)), Gap)


def test_malformed_books_and_diffs_change_nothing() -> None:
    """A side that is no list of number pairs, a 0 quantity in a whole book, or ids that
    run backwards leave the book as it was."""
    local = LocalBook()
    local.replace(book(100))
    assert not local.replace({**book(101), "bids": [["x", 1]]})
    assert not local.replace(book(101, bids=[("60500.4", "0")]))
    assert local.apply(diff(102, 101)) is False
    assert local.update_id == 100 and local.state is BookState.WHOLE


def test_the_checksum_names_the_levels_not_their_digits() -> None:
    """The same levels give the same checksum however their numbers were written; one
    quantity more or less gives another."""
    first = book_checksum([(dec("60500.40"), dec("1.20"))], [(dec("60500.6"), dec("1E+1"))])
    same = book_checksum([(dec("60500.4"), dec("1.2"))], [(dec("60500.6"), dec("10"))])
    other = book_checksum([(dec("60500.4"), dec("1.3"))], [(dec("60500.6"), dec("10"))])
    assert first == same != other
    assert len(first) == 8 and int(first, 16) >= 0


# ---------------------------------------------------------------------- the server's word


def test_a_status_drops_the_books_and_a_whole_book_restores_them() -> None:
    """A book status empties both streams' books and is said once; the next whole book of
    a stream makes it whole again, and says so."""
    feed = BookFeed(["BTCUSDT@book", "BTCUSDT@depth"])
    feed.add(book(100))
    feed.add(book(100, stream="BTCUSDT@depth"))
    fed = feed.add(status())
    assert fed.note == "BTCUSDT book broken (gap: diff from 812, expected 790)"
    for followed in feed.books.values():
        assert not followed.whole and followed.said is not None
        assert followed.said.short == "broken (gap)"
    assert feed.add(diff(101, 101)).changed is None  # no book to apply it to
    back = feed.add(book(300, stream="BTCUSDT@depth"))
    assert back.note == "BTCUSDT@depth: whole again at update 300"
    assert feed.books["BTCUSDT@depth"].whole and not feed.books["BTCUSDT@book"].whole


def test_a_repeated_whole_book_is_no_new_update() -> None:
    """A reconnect's snapshot at the update id already shown changes nothing."""
    feed = BookFeed()
    assert feed.add(book(100)).changed is not None
    assert feed.add(book(100, seq=9)).changed is None
    assert feed.add(book(101)).changed is not None
