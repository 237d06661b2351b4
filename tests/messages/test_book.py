"""Book values and messages: strict checks that name the problem, SPEC §12's ``book`` and
``depth`` shapes with exact decimals, and diffs merged exactly for a slow client."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickcast.messages.book import (
    Book,
    BookSnapshot,
    Depth,
    DepthEvent,
    DepthMerger,
    Levels,
    check_levels,
    price_key,
)
from tickcast.messages.decimals import canonical_decimal


def event(**changes: Any) -> DepthEvent:
    values: dict[str, Any] = {
        "symbol": "BNBBTC", "first_update_id": 157, "final_update_id": 160,
        "bids": (("0.0024", "10"),), "asks": (("0.0026", "100"),),
        "event_time_ms": 1672515782136,
    }  # fmt: skip
    return DepthEvent(**{**values, **changes})


def book(**changes: Any) -> Book:
    values: dict[str, Any] = {
        "symbol": "BTCUSDT", "update_id": 987654,
        "bids": (("60500.4", "1.2"), ("60500", "3")), "asks": (("60500.6", "0.8"),),
        "timestamp_ms": 1678886400050, "seq": 1237, "source": "binance",
    }  # fmt: skip
    return Book(**{**values, **changes})


def depth(**changes: Any) -> Depth:
    values: dict[str, Any] = {
        "symbol": "BTCUSDT", "first_update_id": 987655, "update_id": 987660,
        "bids": (("60500.4", "0"),), "asks": (("60500.7", "2.5"),),
        "seq": 1238, "source": "binance",
    }  # fmt: skip
    return Depth(**{**values, **changes})


def test_a_depth_event_holds_binances_diff() -> None:
    """A diff keeps U, u, both sides and the event time as given."""
    diff = event()
    assert (diff.first_update_id, diff.final_update_id) == (157, 160)
    assert diff.bids == (("0.0024", "10"),) and diff.asks == (("0.0026", "100"),)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"first_update_id": 161}, "first update id 161 is after the last 160"),
        ({"bids": (("0.0024", "-1"),)}, "negative"),
        ({"asks": (("0.00260", "1"),)}, "not a canonical decimal"),
        ({"bids": (("0.0024", "1.50"),)}, "not a canonical decimal"),
        ({"bids": (("0", "1"),)}, "not positive"),
        ({"asks": (("-1", "1"),)}, "not positive"),
        ({"bids": (("1", "1"), ("1", "0"))}, "bid price 1 appears twice"),
        ({"asks": (("1", "1"), ("2", "1"), ("2", "3"))}, "ask price 2 appears twice"),
        ({"first_update_id": -1}, "negative"),
        ({"bids": (("1",),)}, "not a (price, qty) pair"),
    ],
)
def test_a_depth_event_refuses_what_is_no_diff(changes: dict[str, Any], named: str) -> None:
    """U > u, a negative or non-canonical decimal, a zero price and a price twice on one
    side are refused by name."""
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        event(**changes)


def test_a_diff_may_delete_and_the_same_price_may_be_on_both_sides() -> None:
    """Quantity 0 is a deletion in a diff; duplicates are per side, not across sides."""
    diff = event(bids=(("1", "0"),), asks=(("1", "0"),))
    assert diff.bids == (("1", "0"),)


def test_a_snapshot_refuses_zero_quantities_and_duplicates() -> None:
    """A snapshot is a whole book: a level of quantity 0 or a price twice is refused."""
    BookSnapshot("BNBBTC", 1027024, (("4", "431"),), (("4.000002", "12"),))
    with pytest.raises(ValueError, match="quantity 0"):
        BookSnapshot("BNBBTC", 1, (("4", "0"),), ())
    with pytest.raises(ValueError, match="appears twice"):
        BookSnapshot("BNBBTC", 1, (), (("5", "1"), ("5", "2")))
    with pytest.raises(ValueError, match="negative"):
        BookSnapshot("BNBBTC", -1, (), ())


def test_a_book_encodes_to_the_spec_shape() -> None:
    """The book message has SPEC §12's fields, in order, with decimals written verbatim,
    encoded once."""
    one = book()
    assert one.encode() == (
        b'{"type":"book","stream":"BTCUSDT@book","symbol":"BTCUSDT","update_id":987654,'
        b'"bids":[[60500.4,1.2],[60500,3]],"asks":[[60500.6,0.8]],'
        b'"timestamp_ms":1678886400050,"seq":1237,"source":"binance"}'
    )
    assert one.encode() is one.encode()
    assert one.key == "BTCUSDT@book"


def test_a_book_on_the_depth_stream_names_that_stream() -> None:
    """A book served on ``@depth`` says ``"stream":"SYMBOL@depth"`` and is keyed by it."""
    full = book(kind="depth")
    assert full.key == full.stream == "BTCUSDT@depth"
    assert orjson.loads(full.encode())["type"] == "book"
    assert Book.from_json(full.encode()).kind == "depth"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"bids": (("1", "1"), ("2", "1"))}, "bids are not in descending"),
        ({"asks": (("70000", "1"), ("69000", "1"))}, "asks are not in ascending"),
        ({"asks": (("60500.4", "1"),)}, "crossed"),
        ({"bids": (("60500", "0"),)}, "quantity 0"),
        ({"kind": "ticker"}, "neither book nor depth"),
    ],
)
def test_a_book_refuses_what_is_no_book(changes: dict[str, Any], named: str) -> None:
    """Levels out of order, a crossed book, an empty level or an unknown kind are refused."""
    with pytest.raises(ValueError, match=named):
        book(**changes)


def test_a_depth_diff_encodes_to_the_spec_shape() -> None:
    """The depth message has SPEC §12's fields, with deletions as quantity 0."""
    assert depth().encode() == (
        b'{"type":"depth","stream":"BTCUSDT@depth","symbol":"BTCUSDT",'
        b'"first_update_id":987655,"update_id":987660,"bids":[[60500.4,0]],'
        b'"asks":[[60500.7,2.5]],"seq":1238,"source":"binance"}'
    )
    assert depth().key == "BTCUSDT@depth"


def test_book_and_depth_round_trip_exactly() -> None:
    """Decoding gives back the same values and bytes, decimals read from the raw text."""
    for message in (book(), book(bids=(), asks=()), book(asks=()), depth(), depth(bids=())):
        data = message.encode()
        again = type(message).from_json(data)
        assert again == message and again.encode() == data


def test_decoding_refuses_other_messages_and_inexact_numbers() -> None:
    """A message of another type, an unknown source, or levels written other than as
    plain decimals (an exponent) are no book."""
    with pytest.raises(ValueError, match="not a book"):
        Book.from_json(depth().encode())
    with pytest.raises(ValueError, match="not a depth"):
        Depth.from_json(book().encode())
    with pytest.raises(ValueError, match="source"):
        Book.from_json(book().encode().replace(b'"binance"', b'"nasdaq"'))
    with pytest.raises(ValueError, match="plain decimal"):
        Depth.from_json(depth().encode().replace(b"2.5]", b"2.5e0]"))


def apply(side: dict[str, str], levels: Levels) -> None:
    for price, qty in levels:
        if qty == "0":
            side.pop(price, None)
        else:
            side[price] = qty


def test_merged_diffs_follow_on_and_keep_deletions() -> None:
    """The merge spans the first diff's first id to the last's id, the later quantity
    wins, a deletion stays a 0, and the last seq is carried."""
    merger = DepthMerger()
    assert merger.take() is None
    merger.add(depth(first_update_id=10, update_id=12, bids=(("5", "1"),), asks=(), seq=1))
    merger.add(depth(first_update_id=13, update_id=13, bids=(("5", "0"),), asks=(), seq=2))
    merger.add(
        depth(first_update_id=14, update_id=20, bids=(("4", "2"),), asks=(("6", "1"),), seq=3)
    )
    assert len(merger) == 3
    merged = merger.take()
    assert merged is not None
    assert (merged.first_update_id, merged.update_id, merged.seq) == (10, 20, 3)
    assert merged.bids == (("5", "0"), ("4", "2")) and merged.asks == (("6", "1"),)
    assert len(merger) == 0 and merger.take() is None


def test_the_merger_refuses_a_hole_or_another_symbol() -> None:
    """A diff that does not start right after the held ones, or of another symbol, is
    refused: a merged diff never hides a hole."""
    merger = DepthMerger()
    merger.add(depth(first_update_id=10, update_id=12))
    with pytest.raises(ValueError, match="does not follow update 12"):
        merger.add(depth(first_update_id=14, update_id=15))
    with pytest.raises(ValueError, match="ETHUSDT diff after BTCUSDT"):
        merger.add(depth(symbol="ETHUSDT", first_update_id=13, update_id=15))


def test_one_held_diff_is_taken_as_it_is() -> None:
    """A single held diff comes back unchanged, encoding included."""
    merger = DepthMerger()
    one = depth()
    merger.add(one)
    assert merger.take() is one


_PRICES = st.sampled_from(["1", "1.5", "2", "2.25", "3", "10", "10.5", "0.1"])
_QTYS = st.sampled_from(["0", "0", "1", "2.5", "0.001", "7"])
_SIDE = st.dictionaries(_PRICES, _QTYS, max_size=6).map(lambda d: tuple(d.items()))
_BOOK_SIDE = st.dictionaries(_PRICES, _QTYS.filter(lambda q: q != "0"), max_size=8)


@given(bids=_BOOK_SIDE, asks=_BOOK_SIDE, diffs=st.lists(st.tuples(_SIDE, _SIDE), max_size=8))
def test_a_merged_diff_applies_as_each_diff_in_turn(
    bids: dict[str, str], asks: dict[str, str], diffs: list[tuple[Levels, Levels]]
) -> None:
    """For any book and consecutive diffs, applying the merged diff gives the same book
    as applying each diff in turn."""
    one_by_one = (dict(bids), dict(asks))
    merged_book = (dict(bids), dict(asks))
    merger = DepthMerger()
    for i, (bid_levels, ask_levels) in enumerate(diffs):
        diff = depth(first_update_id=100 + i, update_id=100 + i, bids=bid_levels, asks=ask_levels)
        merger.add(diff)
        apply(one_by_one[0], diff.bids)
        apply(one_by_one[1], diff.asks)
    merged = merger.take()
    if merged is not None:
        assert (merged.first_update_id, merged.update_id) == (100, 99 + len(diffs))
        apply(merged_book[0], merged.bids)
        apply(merged_book[1], merged.asks)
        if len(diffs) > 1:  # merged levels come best first
            prices = [Decimal(p) for p, _ in merged.bids]
            assert prices == sorted(prices, reverse=True)
    assert merged_book == one_by_one


@given(st.lists(st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1e7"),
                            places=8, allow_nan=False), min_size=2, max_size=50))  # fmt: skip
def test_price_key_orders_prices_as_decimal_does(values: list[Decimal]) -> None:
    """The fast sort key of a held book orders prices exactly as their values."""
    prices = list({canonical_decimal(f"{v:f}") for v in values if v > 0})
    assert sorted(prices, key=price_key) == sorted(prices, key=Decimal)


@pytest.mark.parametrize(
    ("level", "says"),
    [
        (("0100", "1"), "not a canonical decimal"),
        (("100.50", "1"), "not a canonical decimal"),
        (("0", "1"), "not positive"),
        (("-1", "1"), "not positive"),
        (("1e2", "1"), "not a canonical decimal"),
        (("100", "-1"), "negative"),
        (("100", "1.0"), "not a canonical decimal"),
        (("100", "x"), "not a canonical decimal"),
        (("\u0661\u0660\u0660", "1"), "not a canonical decimal"),  # Arabic-Indic 100
    ],
)
def test_check_levels_names_what_is_wrong(level: tuple[str, str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        check_levels((level,), "bid", zero_ok=True)
