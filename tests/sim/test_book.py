"""The simulator's order book by plain calls: its shape, its changes and their diffs, its
top as the symbol's bid and ask, and the depth streams' events."""

from __future__ import annotations

import itertools
import random
from typing import Any

import orjson
import pytest

from tickcast.messages.tick import DEFAULT_SYMBOLS
from tickcast.sim.book import MAX_LEVELS, MIN_LEVELS, BookDiff, OrderBook, Side
from tickcast.sim.candles import CandleBook
from tickcast.sim.depth import DepthFeed, depth_update_payload, snapshot_payload
from tickcast.sim.faults import (
    DEFAULT_WINDOW,
    Fault,
    FaultKind,
    FaultRequest,
    effective_duration,
    parse_fault_query,
    parse_fault_schedule,
)
from tickcast.sim.market import UNIT, Market, StreamKind, StreamSpec, parse_stream
from tickcast.sim.rest import RestApi

T0 = 1_700_000_000_000


def new_book(seed: int = 3) -> OrderBook:
    return OrderBook(
        tick=UNIT // 100,
        lot=UNIT // 1000,
        typical_lots=10,
        bid=(100 * UNIT, 5 * UNIT // 1000),
        ask=(100 * UNIT + UNIT // 100, 7 * UNIT // 1000),
        update_id=1_000,
        rng=random.Random(seed),
    )


def as_dict(book: OrderBook, side: Side) -> dict[int, int]:
    return dict(book.levels(side))


def apply(levels: dict[int, int], changes: dict[int, int]) -> None:
    for price, qty in changes.items():
        if qty:
            levels[price] = qty
        else:
            levels.pop(price, None)


def test_a_new_book_is_deep_on_ticks_and_lots_around_its_top() -> None:
    """Hundreds of levels a side on the tick and lot, best first, the top as given."""
    book = new_book()
    assert book.best_bid == (100 * UNIT, 5 * UNIT // 1000)
    assert book.best_ask == (100 * UNIT + UNIT // 100, 7 * UNIT // 1000)
    for side in Side:
        levels = book.levels(side)
        assert MIN_LEVELS <= len(levels) <= MAX_LEVELS
        prices = [p for p, _ in levels]
        assert prices == sorted(prices, reverse=side is Side.BID)
        assert all(p % book.tick == 0 and q % book.lot == 0 and q > 0 for p, q in levels)
    assert book.levels(Side.BID, 5) == book.levels(Side.BID)[:5]


def test_the_same_seed_builds_and_churns_the_same_book() -> None:
    """Two books from one seed stay level for level equal through their churns."""
    a, b = new_book(9), new_book(9)
    for _ in range(50):
        a.churn()
        b.churn()
    assert a.levels(Side.BID) == b.levels(Side.BID) and a.update_id == b.update_id
    assert a.levels(Side.ASK) != new_book(10).levels(Side.ASK)


def test_churn_counts_each_change_and_keeps_the_spread_open_but_tight() -> None:
    """Every level change adds one to the update id; after each churn the spread is one
    or two ticks, even after a trade left it wide."""
    book = new_book()
    for i in range(500):
        if i % 50 == 0:
            bid = book.best_bid[0]
            book.set_top((bid, book.lot), (bid + 40 * book.tick, book.lot))
        before = book.update_id
        changes = book.churn()
        assert book.update_id == before + changes
        assert book.tick <= book.best_ask[0] - book.best_bid[0] <= 2 * book.tick


def test_churn_lands_near_the_top_more_than_deep() -> None:
    """Of the levels churn touches, most are among the 50 best of their side."""
    book = new_book()
    near = far = 0
    for _ in range(300):
        top = {side: {p for p, _ in book.levels(side, 50)} for side in Side}
        book.churn()
        diff = book.take_diff()
        assert diff is not None
        for side, changed in ((Side.BID, diff.bids), (Side.ASK, diff.asks)):
            for price in changed:
                if price in top[side]:
                    near += 1
                else:
                    far += 1
    assert near > 2 * far


def test_diffs_replayed_on_a_copy_rebuild_the_book() -> None:
    """Applying each diff in turn to a snapshot gives the book, and the ids chain:
    each diff's first id is the previous one's last + 1."""
    book = new_book()
    bids, asks = as_dict(book, Side.BID), as_dict(book, Side.ASK)
    last = book.update_id
    for i in range(200):
        if i % 3 == 0:
            bid = book.best_bid[0] - book.tick * (i % 7)
            book.set_top((bid, book.lot * (i + 1)), (bid + book.tick * 2, book.lot))
        book.churn()
        diff = book.take_diff()
        assert diff is not None and diff.first_id == last + 1
        last = diff.last_id
        apply(bids, diff.bids)
        apply(asks, diff.asks)
    assert last == book.update_id
    assert bids == as_dict(book, Side.BID) and asks == as_dict(book, Side.ASK)
    assert book.take_diff() is None


def test_set_top_removes_what_the_new_top_crosses() -> None:
    """A trade's new best bid above old asks takes them out; the top is exactly it."""
    book = new_book()
    asks = book.levels(Side.ASK, 4)
    new_bid = asks[2][0]
    changes = book.set_top((new_bid, book.lot), (new_bid + book.tick, book.lot))
    assert book.best_bid == (new_bid, book.lot)
    assert book.best_ask == (new_bid + book.tick, book.lot)
    assert all(p > new_bid for p, _ in book.levels(Side.ASK))
    diff = book.take_diff()
    assert diff is not None and diff.last_id - diff.first_id + 1 == changes
    assert diff.asks[asks[0][0]] == 0
    with pytest.raises(ValueError, match="below"):
        book.set_top((new_bid, book.lot), (new_bid, book.lot))


def test_merged_diffs_are_the_latest_quantity_of_each_level() -> None:
    """Merging keeps the later quantity and spans both id ranges; a hole is refused."""
    first = BookDiff(10, 12, {100: 5, 99: 1}, {101: 2})
    first.merge(BookDiff(13, 13, {100: 0}, {}))
    assert first == BookDiff(10, 13, {100: 0, 99: 1}, {101: 2})
    with pytest.raises(ValueError, match="does not follow"):
        first.merge(BookDiff(15, 16))


def test_market_book_is_the_ticker_bid_and_ask_after_trades_and_churns() -> None:
    """Once a symbol has a book, after every trade and churn its best levels are the
    symbol's bid and ask and its update id the symbol's (the @bookTicker ``u``)."""
    market = Market(1, DEFAULT_SYMBOLS, 10.0)
    market.step(["btcusdt"], T0)
    book = market.book("btcusdt")
    state = market.state("btcusdt")
    for i in range(300):
        if i % 2:
            market.step(["btcusdt"], T0 + i)
            assert state.last in (state.bid, state.ask)
        else:
            market.churn("btcusdt")
        assert (state.bid, state.bid_qty) == book.best_bid
        assert (state.ask, state.ask_qty) == book.best_ask
        assert state.update_id == book.update_id


def test_a_book_does_not_change_the_prices() -> None:
    """A symbol's trades are the same whether or not someone asked for its book."""
    plain, booked = Market(4, DEFAULT_SYMBOLS, 1.0), Market(4, DEFAULT_SYMBOLS, 1.0)
    booked.book("ethusdt")
    for i in range(50):
        plain.step(["ethusdt"], T0 + i)
        booked.step(["ethusdt"], T0 + i)
        assert plain.state("ethusdt").last == booked.state("ethusdt").last


def test_depth_stream_names() -> None:
    """Diff streams at 1000 ms (bare) or 100 ms, partial books of 5, 10 or 20 levels."""
    assert parse_stream("btcusdt@depth") == StreamSpec(StreamKind.DEPTH, "btcusdt", speed_ms=1000)
    assert parse_stream("btcusdt@depth@100ms") == StreamSpec(
        StreamKind.DEPTH, "btcusdt", speed_ms=100
    )
    assert parse_stream("btcusdt@depth@1000ms") == parse_stream("btcusdt@depth")
    assert parse_stream("btcusdt@depth10@100ms") == StreamSpec(
        StreamKind.PARTIAL_DEPTH, "btcusdt", speed_ms=100, levels=10
    )
    assert parse_stream("btcusdt@depth20") == StreamSpec(
        StreamKind.PARTIAL_DEPTH, "btcusdt", speed_ms=1000, levels=20
    )
    for name in ("btcusdt@depth7", "btcusdt@depth@500ms", "btcusdt@depth5@10ms"):
        assert parse_stream(name) is None


def test_depth_update_payload_is_binances() -> None:
    """``depthUpdate`` with Binance's keys, decimal strings, "0" for a removed level and
    each side best first."""
    diff = BookDiff(157, 160, {UNIT: 0, 2 * UNIT: 10 * UNIT}, {3 * UNIT: UNIT, 4 * UNIT: 0})
    assert depth_update_payload("BNBBTC", diff, T0, 1000) == {
        "e": "depthUpdate",
        "E": T0 * 1000,
        "s": "BNBBTC",
        "U": 157,
        "u": 160,
        "b": [["2.00000000", "10.00000000"], ["1.00000000", "0.00000000"]],
        "a": [["3.00000000", "1.00000000"], ["4.00000000", "0.00000000"]],
    }


def feed_ticks(feed: DepthFeed, names: list[str], ticks: int) -> list[tuple[str, Any]]:
    specs = [(name, spec) for name in names if (spec := parse_stream(name)) is not None]
    events = []
    for i in range(ticks):
        events += [(name, build(1)) for name, build in feed.tick(specs, T0 + 100 * i)]
    return events


def test_the_1000ms_diff_is_the_merge_of_the_100ms_ones() -> None:
    """Every tenth tick, the 1 s diff covers exactly the ten 100 ms diffs before it,
    with their latest quantities; partial books every tick or every tenth."""
    market = Market(1, DEFAULT_SYMBOLS, 1.0)
    names = ["btcusdt@depth@100ms", "btcusdt@depth", "btcusdt@depth5@100ms", "btcusdt@depth20"]
    events = feed_ticks(DepthFeed(market), names, 30)
    fast = [e for n, e in events if n == names[0]]
    slow = [e for n, e in events if n == names[1]]
    assert len(fast) == 30 and len(slow) == 3
    assert len([n for n, _ in events if n == names[2]]) == 30
    assert len([n for n, _ in events if n == names[3]]) == 3
    for k, merged in enumerate(slow):
        group = fast[10 * k : 10 * k + 10]
        assert merged["U"] == group[0]["U"] and merged["u"] == group[-1]["u"]
        bids: dict[str, str] = {}
        for diff in group:
            bids.update(dict(diff["b"]))
        assert dict(merged["b"]) == bids


def test_partial_book_is_the_top_of_the_true_book() -> None:
    """``@depth<N>`` carries the N best levels a side and the book's update id."""
    market = Market(1, DEFAULT_SYMBOLS, 1.0)
    ((_, event),) = feed_ticks(DepthFeed(market), ["ethusdt@depth10@100ms"], 1)
    assert event == snapshot_payload(market.book("ethusdt"), 10)
    assert isinstance(event, dict) and len(event["bids"]) == len(event["asks"]) == 10
    assert event["lastUpdateId"] == market.state("ethusdt").update_id


def test_a_skipped_diff_is_one_jump_on_both_cadences() -> None:
    """After ``skip_next`` the chosen symbol's 100 ms and 1000 ms streams each jump
    once; the other symbol's streams stay continuous."""
    market = Market(1, DEFAULT_SYMBOLS, 1.0)
    feed = DepthFeed(market)
    names = [f"{s}@depth{speed}" for s in ("btcusdt", "ethusdt") for speed in ("@100ms", "")]
    events = feed_ticks(feed, names, 12)
    assert feed.skip_next() == "btcusdt"
    events += feed_ticks(feed, names, 25)
    for name in names:
        diffs = [e for n, e in events if n == name]
        jumps = sum(1 for a, b in itertools.pairwise(diffs) if b["U"] != a["u"] + 1)
        assert jumps == (1 if name.startswith("btcusdt") else 0), name


# REST depth and the book faults, by plain calls


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def rest_api(limit: int = 6000) -> tuple[RestApi, Clock, Market]:
    market = Market(1, DEFAULT_SYMBOLS, 1.0)
    clock = Clock(T0 + 30_000)
    return RestApi(market, CandleBook(1), clock, limit), clock, market


def test_rest_depth_is_the_market_book_with_its_weight() -> None:
    """GET /api/v3/depth answers the symbol's book at its update id, weighed by limit."""
    rest, _, market = rest_api()
    answer = rest.answer("GET", "/api/v3/depth?symbol=ETHUSDT&limit=10", "a")
    assert answer.status == 200
    assert orjson.loads(answer.body) == snapshot_payload(market.book("ethusdt"), 10)
    assert dict(answer.headers)["X-MBX-USED-WEIGHT-1m"] == "5"
    rest.answer("GET", "/api/v3/depth?symbol=ETHUSDT&limit=1000", "a")
    assert rest.used_weight("a") == 55


def test_rest_refusal_windows_answer_429_or_503_until_they_end() -> None:
    """refuse(429) answers 429 with the window's Retry-After and, ignored, leads to 418;
    refuse(503) answers 503; end_refusals ends both."""
    rest, clock, _ = rest_api()
    rest.refuse(503, clock.now + 2_000)
    assert rest.answer("GET", "/api/v3/ping", "a").status == 503
    clock.now += 2_000
    assert rest.answer("GET", "/api/v3/ping", "a").status == 200
    rest.refuse(429, clock.now + 7_500)
    refused = rest.answer("GET", "/api/v3/depth?symbol=BTCUSDT", "a")
    assert refused.status == 429 and dict(refused.headers)["Retry-After"] == "8"
    rest.end_refusals()
    assert rest.answer("GET", "/api/v3/ping", "b").status == 200
    rest.refuse(429, clock.now + 60_000)
    statuses = [rest.answer("GET", "/api/v3/ping", "b").status for _ in range(7)]
    assert statuses[0] == 429 and statuses[-1] == 418
    with pytest.raises(ValueError, match="429 or 503"):
        rest.refuse(500, clock.now)


def test_book_faults_parse() -> None:
    """depth_gap, rest_429 and rest_down parse in a schedule and from the admin query,
    which may name the gap's symbol; the REST windows default to DEFAULT_WINDOW."""
    assert parse_fault_schedule("depth_gap@2,rest_429@3+5,rest_down@4") == (
        Fault(FaultKind.DEPTH_GAP, 2.0),
        Fault(FaultKind.REST_429, 3.0, 5.0),
        Fault(FaultKind.REST_DOWN, 4.0),
    )
    assert parse_fault_query("kind=depth_gap&symbol=ETHUSDT") == FaultRequest(
        FaultKind.DEPTH_GAP, symbol="ethusdt"
    )
    with pytest.raises(ValueError, match="not a symbol"):
        parse_fault_query("kind=depth_gap&symbol=eth/usdt")
    assert effective_duration(FaultKind.REST_DOWN, 0) == DEFAULT_WINDOW
    assert effective_duration(FaultKind.DEPTH_GAP, 0) == 0
