"""The simulator's candles and REST (pure calls): candles are the true aggregation of its
trades, the generated history joins them without a seam, and REST answers with Binance's
shapes, weights, headers and refusals."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from tickcast.sim.candles import CandleBook, CandleSeries, open_time_of
from tickcast.sim.market import KLINE_INTERVALS_MS, UNIT, Market
from tickcast.sim.rest import RestApi

MINUTE = 60_000
T0 = 1_700_000_040_000  # a minute boundary


def series(held: int = 100, backfill: int = 0) -> CandleSeries:
    made = CandleSeries(MINUTE, held, backfill, random.Random(7))
    made.set_steps(UNIT // 100, UNIT // 1000)
    return made


def test_trades_make_their_candle() -> None:
    """Open is the first trade, close the last, high/low the extremes, volumes the sums;
    only the taker buys count as taker buy volume."""
    s = series()
    for offset, price, qty, buyer_maker in [
        (1_000, 100 * UNIT, 2 * UNIT, False),
        (20_000, 103 * UNIT, UNIT, True),
        (40_000, 98 * UNIT, UNIT, False),
        (59_999, 101 * UNIT, UNIT, True),
    ]:
        s.add_trade(T0 + offset, price, qty, buyer_maker)
    (candle,) = s.candles(10)
    assert (candle.open_time, candle.close_time) == (T0, T0 + MINUTE - 1)
    assert (candle.open, candle.high, candle.low, candle.close) == (
        100 * UNIT, 103 * UNIT, 98 * UNIT, 101 * UNIT,
    )  # fmt: skip
    assert candle.volume == 5 * UNIT and candle.trades == 4
    assert candle.quote_volume == (200 + 103 + 98 + 101) * UNIT
    assert candle.taker_buy_volume == 3 * UNIT
    assert candle.taker_buy_quote == (200 + 98) * UNIT


def test_a_quiet_interval_is_a_flat_candle_and_a_new_one_opens_at_its_first_trade() -> None:
    """Minutes with no trade are flat at the last close with zero volume; the next
    candle's open is its own first trade, not the last close."""
    s = series()
    s.add_trade(T0 + 5, 100 * UNIT, UNIT, False)
    s.add_trade(T0 + 3 * MINUTE + 5, 90 * UNIT, UNIT, False)
    got = s.candles(10)
    assert [c.open_time for c in got] == [T0 + i * MINUTE for i in range(4)]
    for flat in got[1:3]:
        assert (flat.open, flat.high, flat.low, flat.close) == (100 * UNIT,) * 4
        assert flat.volume == 0 and flat.trades == 0
    assert got[3].open == 90 * UNIT and got[3].trades == 1


def test_advancing_closes_the_open_candle_without_a_trade() -> None:
    """Time passing alone closes the candle and returns it, then the flat ones after."""
    s = series()
    s.add_trade(T0 + 5, 100 * UNIT, UNIT, False)
    assert s.advance_to(T0 + MINUTE - 1) == []
    closed = s.advance_to(T0 + 2 * MINUTE + 1)
    assert [c.open_time for c in closed] == [T0, T0 + MINUTE]
    assert s.current is not None and s.current.open_time == T0 + 2 * MINUTE


def test_a_pause_longer_than_what_is_held_makes_no_more_candles_than_that() -> None:
    """A day with no trade at 1m makes at most ``held`` flat candles, not 1,440."""
    s = series(held=50)
    s.add_trade(T0, 100 * UNIT, UNIT, False)
    s.advance_to(T0 + 86_400_000)
    assert len(s.candles(1000)) <= 51


def test_the_generated_history_joins_the_first_live_candle() -> None:
    """1,000 generated candles, contiguous, each a valid candle, the newest closing where
    the first live one opens."""
    s = series(held=100, backfill=1000)
    s.add_trade(T0 + 7, 123_45 * UNIT // 100, UNIT, False)
    got = s.candles(1000, end_ms=T0)
    assert len(got) == 1000
    generated, live = got[:-1], got[-1]
    assert [c.open_time for c in got] == [T0 - (999 - i) * MINUTE for i in range(1000)]
    assert generated[-1].close == live.open == 123_45 * UNIT // 100
    for older, newer in zip(generated, generated[1:], strict=False):
        assert older.close == newer.open
    for c in generated:
        assert c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
        assert c.volume > 0 and c.trades > 0
        assert c.open % (UNIT // 100) == 0


def test_the_selection_follows_binance() -> None:
    """startTime selects forwards, endTime alone the last ``limit`` up to it, neither the
    newest ``limit`` with the open candle last."""
    s = series(backfill=10)
    s.add_trade(T0, 100 * UNIT, UNIT, False)
    s.add_trade(T0 + 5 * MINUTE, 100 * UNIT, UNIT, False)
    newest = s.candles(3)
    assert [c.open_time for c in newest] == [T0 + 3 * MINUTE, T0 + 4 * MINUTE, T0 + 5 * MINUTE]
    assert newest[-1] is s.current
    forwards = s.candles(2, start_ms=T0 - 2 * MINUTE)
    assert [c.open_time for c in forwards] == [T0 - 2 * MINUTE, T0 - MINUTE]
    up_to = s.candles(2, end_ms=T0 + MINUTE)
    assert [c.open_time for c in up_to] == [T0, T0 + MINUTE]


def test_weeks_start_on_monday() -> None:
    """A 1w candle opens on Monday 00:00 UTC (2023-11-13 was a Monday)."""
    monday = 1_699_833_600_000
    assert open_time_of(monday + 3 * 86_400_000, KLINE_INTERVALS_MS["1w"]) == monday


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def api(limit: int = 6000) -> tuple[RestApi, Clock, CandleBook]:
    market = Market(1, ["BTCUSDT", "ETHUSDT"], 1.0)
    clock = Clock(T0 + 30_000)
    book = CandleBook(1, held=100, backfill=1000)
    return RestApi(market, book, clock, limit), clock, book


def body(answer: Any) -> Any:
    return orjson.loads(answer.body)


def header(answer: Any, name: str) -> str | None:
    return dict(answer.headers).get(name)


def test_ping_time_and_exchange_info_have_binances_shapes() -> None:
    """ping is {}, time the server's clock, exchangeInfo each symbol with its tick size."""
    rest, clock, _ = api()
    assert body(rest.answer("GET", "/api/v3/ping", "a")) == {}
    assert body(rest.answer("GET", "/api/v3/time", "a")) == {"serverTime": clock.now}
    info = body(rest.answer("GET", "/api/v3/exchangeInfo", "a"))
    assert info["rateLimits"][0]["limit"] == 6000
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert (btc["status"], btc["baseAsset"], btc["quoteAsset"]) == ("TRADING", "BTC", "USDT")
    price_filter = next(f for f in btc["filters"] if f["filterType"] == "PRICE_FILTER")
    assert price_filter["tickSize"] == "0.01000000"


def test_klines_of_a_fresh_simulator_reach_back_a_thousand_candles() -> None:
    """A symbol nobody asked for before gets 1,000 candles, the last its open one, as
    Binance's 12-field rows."""
    rest, clock, _ = api()
    answer = rest.answer("GET", "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000", "a")
    assert answer.status == 200
    rows = body(answer)
    assert len(rows) == 1000
    assert rows[-1][0] == open_time_of(clock.now, MINUTE)
    assert all(len(row) == 12 and isinstance(row[1], str) for row in rows)
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert rows[-2][4] == rows[-1][1]  # no seam: history closes where live opens


def test_every_answer_counts_its_weight_and_the_budget_ends_in_429_then_418() -> None:
    """X-MBX-USED-WEIGHT-1m on every answer; over the budget 429 with Retry-After to the
    next minute; ignoring it gets 418; a new minute starts a new budget."""
    rest, clock, _ = api(limit=10)
    first = rest.answer("GET", "/api/v3/klines?symbol=BTCUSDT&interval=1m", "a")
    assert header(first, "X-MBX-USED-WEIGHT-1m") == "2"
    for _ in range(4):
        rest.answer("GET", "/api/v3/klines?symbol=BTCUSDT&interval=1m", "a")
    assert rest.used_weight("a") == 10
    refused = rest.answer("GET", "/api/v3/ping", "a")
    assert refused.status == 429
    assert header(refused, "Retry-After") == "30"
    assert body(refused)["code"] == -1003
    assert rest.answer("GET", "/api/v3/ping", "b").status == 200  # per address
    statuses = [rest.answer("GET", "/api/v3/ping", "a").status for _ in range(6)]
    assert statuses[-1] == 418
    clock.now += 60_000
    assert rest.answer("GET", "/api/v3/ping", "a").status == 418  # banned for two minutes
    clock.now += 120_000
    assert rest.answer("GET", "/api/v3/ping", "a").status == 200


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [
        ("/api/v3/klines?interval=1m", 400, -1102),
        ("/api/v3/klines?symbol=BTCUSDT", 400, -1102),
        ("/api/v3/klines?symbol=BTCUSDT&interval=2m", 400, -1120),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1M", 400, -1120),
        ("/api/v3/klines?symbol=NOPEUSDT&interval=1m", 400, -1121),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1001", 400, -1130),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=0", 400, -1130),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=-5", 400, -1100),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=1e9", 400, -1100),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=5&endTime=4", 400, -1128),
        ("/api/v3/depthless", 404, -1000),
    ],
)
def test_bad_requests_get_binances_errors(target: str, status: int, code: int) -> None:
    """Missing, unknown and malformed parameters are refused with Binance's codes."""
    rest, _, _ = api()
    answer = rest.answer("GET", target, "a")
    assert (answer.status, body(answer)["code"]) == (status, code)
    assert isinstance(body(answer)["msg"], str)


def test_a_write_method_is_refused() -> None:
    """Market data is read-only: POST gets 405."""
    rest, _, _ = api()
    assert rest.answer("POST", "/api/v3/klines?symbol=BTCUSDT&interval=1m", "a").status == 405
