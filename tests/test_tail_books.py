"""tickcast tail's order books (SPEC §12): the local book kept from a `@depth` stream (a
0-quantity delete, a hole in the diffs), the server saying a book is not whole, the book
lines for pipes and the ladder for the terminal. Pure calls; the CLI as a process:
test_tail_cli.py."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
from rich.console import Console, RenderableType

from tickcast.cli import DEFAULT_LADDER_LEVELS, build_parser
from tickcast.tail.formatting import PriceDecimals
from tickcast.tail.ladder import DEFAULT_LEVELS, LadderBoard, book_line, bps_text
from tickcast.tail.lines import LineView, TickLines
from tickcast.tail.localbook import BookFeed, BookState, Gap, LocalBook, book_checksum
from tickcast.tail.protocol import decode_message
from tickcast.tail.table import TailState
from tickcast.tail.view import OutputFormat

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


# ---------------------------------------------------------------------- lines


def test_book_lines_have_fixed_fields_and_exact_digits() -> None:
    """time, stream, best bid and its qty, best ask and its qty, spread and its bps, id;
    a @depth line adds the whole book's size and checksum; a diff has no time."""
    feed = BookFeed()
    followed = feed.add(book(100, bids=[("0.30000000000000004", "1e-8")],
                             asks=[("0.30000000000000006", "3")])).changed  # fmt: skip
    assert followed is not None
    assert book_line(followed, T0) == (
        "2026-12-07T17:32:41.174Z BTCUSDT@book bid 0.30000000000000004 0.00000001 "
        "ask 0.30000000000000006 3 spread 0.00000000000000002 0.00000000000067bps id=100"
    )
    feed.add(book(100, stream="BTCUSDT@depth"))
    depth = feed.add(diff(101, 102, asks=[("60500.6", "0")])).changed
    assert depth is not None
    crc = book_checksum(depth.book.bids(), depth.book.asks())
    assert book_line(depth, None, 2) == (
        "- BTCUSDT@depth bid 60500.40 1.2 ask 60500.70 2 spread 0.30 0.050bps id=102 "
        f"levels=2/1 crc={crc}"
    )


def test_bps_keep_two_significant_digits_below_one() -> None:
    """One tick of a 60,000 price is 0.0017 bps, not 0.00; wider spreads get 2 decimals."""
    assert bps_text(dec("60004.10"), dec("60004.11")) == "0.0017"
    assert bps_text(dec("100"), dec("100.5")) == "49.88"


def test_lines_skip_a_book_with_a_hole_and_say_why_on_stderr() -> None:
    """In a pipe: one line per whole book update; a diff that does not follow prints no
    line, and stderr says so once; the server's status goes to stderr too."""
    out, err = io.StringIO(), io.StringIO()
    view = LineView(OutputFormat.PLAIN, "http://h:1", out, err)
    view.apply(book(100, stream="BTCUSDT@depth"))
    view.apply(diff(101, 101, bids=[("60500.4", "3")]))
    view.apply(diff(105, 106))
    view.apply(diff(107, 107))
    view.apply(status("syncing", "starting", "waiting for a whole book"))
    view.apply(book(200, stream="BTCUSDT@depth"))
    ids = [line.split(" id=")[1].split()[0] for line in out.getvalue().splitlines()]
    assert ids == ["100", "101", "200"]
    assert err.getvalue().splitlines()[1:] == [
        "tickcast tail: BTCUSDT@depth: a diff is missing (diff from 105, expected 102); "
        "waiting for a whole book",
        "tickcast tail: BTCUSDT book syncing (starting: waiting for a whole book)",
        "tickcast tail: BTCUSDT@depth: whole again at update 200",
    ]


def test_json_lines_are_the_book_messages_as_received() -> None:
    """--format json prints each book and diff that keeps the book whole, digits as sent."""
    lines = TickLines(OutputFormat.JSON)
    (whole,) = lines.lines(book(100, bids=[("60500.40", "1.20")], stream="BTCUSDT@depth"))
    assert '"bids":[[60500.40,1.20]]' in whole
    (changed,) = lines.lines(diff(101, 101, asks=[("60500.6", "0")]))
    assert json.loads(changed)["type"] == "depth"
    assert lines.lines(diff(109, 110)) == []
    assert lines.take_notes()[0].startswith("BTCUSDT@depth: a diff is missing")


# ---------------------------------------------------------------------- the ladder


def ladder_rows(board: LadderBoard, stream: str, width: int = 100) -> list[list[str]]:
    table = board.ladder(board.books[stream], width)
    columns = [[cell.plain for cell in column.cells] for column in table.columns]  # type: ignore[union-attr]
    return [list(row) for row in zip(*columns, strict=True)]


def test_the_ladder_has_asks_above_the_spread_and_bids_below() -> None:
    """Asks from the highest shown down to the best, the spread (absolute and in bps),
    then bids from the best down, N levels per side, each with the running total."""
    asks = [(f"6050{i}.5", "1") for i in range(5)]
    bids = [(f"6049{9 - i}.5", "2") for i in range(5)]
    board = LadderBoard(PriceDecimals(), ["BTCUSDT@book"], levels=3)
    board.add(book(100, bids=bids, asks=asks))
    rows = ladder_rows(board, "BTCUSDT@book")
    assert [row[:3] for row in rows] == [
        ["ask", "60,502.50", "1"],
        ["ask", "60,501.50", "1"],
        ["ask", "60,500.50", "1"],
        ["spread", "1.00", "0.17 bps"],
        ["bid", "60,499.50", "2"],
        ["bid", "60,498.50", "2"],
        ["bid", "60,497.50", "2"],
    ]
    assert [row[3] for row in rows] == ["3", "2", "1", "", "2", "4", "6"]


def test_the_ladder_says_the_update_id_and_age() -> None:
    """The title names the stream, its update id and how old the book is; a @depth diff,
    which carries no time, is aged from when it arrived."""
    board = LadderBoard(PriceDecimals(), ["BTCUSDT@book", "BTCUSDT@depth"])
    board.add(book(100))
    board.add(book(100, stream="BTCUSDT@depth"))
    board.add(diff(101, 104), received_ms=T0 + 5_000)
    shown = text_of(board.render(100, now_ms=T0 + 6_000))
    assert "BTCUSDT@book  update 100  6.0s old" in shown
    assert "BTCUSDT@depth  update 104  1.0s old" in shown
    assert "whole book: 2 bids, 2 asks" in shown


@pytest.mark.parametrize(
    ("messages", "said"),
    [
        ([], "waiting for the book…"),
        ([status("syncing", "starting", "waiting for a whole book")],
         "book syncing: waiting for a whole book"),
        ([book(100), status()], "book broken (gap): diff from 812, expected 790"),
    ],
)  # fmt: skip
def test_a_ladder_not_whole_says_why_and_shows_no_levels(
    messages: list[dict[str, object]], said: str
) -> None:
    """Before its first book, while syncing or broken: no price is shown, only why."""
    board = LadderBoard(PriceDecimals(), ["BTCUSDT@book"])
    for message in messages:
        board.add(message)
    assert ladder_rows(board, "BTCUSDT@book") == []
    assert said in text_of(board.render(100))


def test_a_depth_ladder_with_a_hole_shows_the_gap_not_the_book() -> None:
    """A diff that does not follow leaves the @depth ladder empty, saying which one."""
    board = LadderBoard(PriceDecimals(), ["BTCUSDT@depth"])
    board.add(book(100, stream="BTCUSDT@depth"))
    board.add(diff(102, 103))
    assert ladder_rows(board, "BTCUSDT@depth") == []
    shown = " ".join(text_of(board.render(100)).split())
    assert "gap: diff from 102, expected 101; waiting for a whole book" in shown


def test_the_screen_shows_a_ladder_for_a_book_asked_for() -> None:
    """`tail BTCUSDT@book` draws the state line and the ladder, no tick table; the
    book's source says the data is simulated."""
    state = TailState(["BTCUSDT@book"], levels=2)
    assert "waiting for the book" in text_of(state.screen(100))
    state.apply(book(100))
    shown = text_of(state.screen(100, now_ms=T0))
    assert "60,500.60" in shown and "60,500.40" in shown and "spread" in shown
    assert "SIMULATED DATA" in shown
    assert "Change" not in shown
    assert state.ignored_count == 0


def test_levels_is_a_tail_option_defaulting_to_the_ladders_default() -> None:
    """`--levels N` sets the ladder's levels per side; its default is the ladder's own,
    and a count below 1 is refused."""
    parser = build_parser()
    assert parser.parse_args(["tail", "--levels", "25", "BTCUSDT@book"]).levels == 25
    assert parser.parse_args(["tail"]).levels == DEFAULT_LADDER_LEVELS == DEFAULT_LEVELS
    with pytest.raises(SystemExit):
        parser.parse_args(["tail", "--levels", "0"])
