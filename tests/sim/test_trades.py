"""The simulator's trade clock and bursts: pure pacing by plain calls, then over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tickcast.sim.exchange import DEFAULT_SYMBOLS, SimConfig, SimExchange
from tickcast.sim.market import Market, agg_trade_payload
from tickcast.sim.trades import MAX_LAG, MIN_WAKE, BurstRequest, TradePace, parse_burst_query

BTC_TICK = Decimal("0.01")


def test_a_steady_pace_sends_what_is_due_and_never_twice() -> None:
    """At 100/s: one trade per 10 ms; a late wake-up sends every trade due since."""
    pace = TradePace(100.0, start=10.0)
    assert pace.due(10.005) == 0
    assert pace.due(10.0101) == 1
    assert pace.due(10.0101) == 0
    assert pace.due(10.055) == 4
    assert pace.sent == 5 and not pace.done


def test_a_steady_pace_far_behind_starts_again_instead_of_a_lump() -> None:
    """More than MAX_LAG of trades due (a suspended host) restarts the clock from now."""
    pace = TradePace(100.0, start=0.0)
    assert pace.due(MAX_LAG * 3) == 0
    assert pace.due(MAX_LAG * 3 + 0.0201) == 2


def test_a_burst_sends_exactly_its_count_over_its_seconds() -> None:
    """2,000 over 1 s: about 20 per 10 ms, all 2,000 once the second is over, then done."""
    pace = BurstRequest("btcusdt", 2000, 1.0).pace(start=0.0)
    assert pace.due(0.0101) == 20
    sent = 20 + sum(pace.due(t / 1000) for t in range(20, 1000, 7))
    assert sent < 2000 and not pace.done
    assert pace.due(1.0) == 2000 - sent
    assert pace.done and pace.due(5.0) == 0


def test_wake_ups_are_at_most_every_min_wake() -> None:
    """A fast pace wakes every MIN_WAKE (several trades per wake), a slow one per trade."""
    assert TradePace(2000.0, 0.0).wake_at(0.0) == pytest.approx(MIN_WAKE)
    assert TradePace(10.0, 0.0).wake_at(0.0) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("count=10", "symbol"),
        ("symbol=BTC/USDT&count=10", "symbol"),
        ("symbol=btcusdt", "count"),
        ("symbol=btcusdt&count=-1", "count"),
        ("symbol=btcusdt&count=0", "count"),
        ("symbol=btcusdt&count=10&seconds=soon", "seconds"),
        ("symbol=btcusdt&count=10&seconds=0", "seconds"),
    ],
)
def test_burst_query_errors_name_the_parameter(query: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_burst_query(query)


def test_burst_query_lowercases_the_symbol_and_defaults_to_one_second() -> None:
    assert parse_burst_query("symbol=BTCUSDT&count=2000") == BurstRequest("btcusdt", 2000, 1.0)


def test_trades_of_one_millisecond_share_its_time_and_ids_follow_on() -> None:
    """Market.trade: each trade one aggregate id above the last, its price on the tick
    size; trades in the same millisecond share its time (no drift ahead of the clock),
    and the ticker's event time is left alone."""
    market = Market(1, DEFAULT_SYMBOLS, 100.0)
    market.step(["btcusdt"], 1_000)
    trades = [agg_trade_payload(*market.trade("btcusdt", 2_000)) for _ in range(50)]
    ids = [t["a"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + 50))
    assert {t["T"] for t in trades} == {2_000}
    assert all(Decimal(str(t["p"])) % BTC_TICK == 0 for t in trades)
    assert market.event_time == 1_000
    state, when = market.trade("btcusdt", 1_500)  # the clock went back: time does not
    assert when == 2_000 and state.agg_id == ids[-1] + 1


# Over loopback


@pytest.fixture
async def paced() -> AsyncIterator[SimExchange]:
    async with SimExchange(SimConfig(rate=1.0, trade_rate=50.0)) as exchange:
        yield exchange


def ws_connect(url: str) -> Any:
    return connect(url, ping_interval=None, open_timeout=5, close_timeout=2, max_queue=None)


async def collect(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                message = orjson.loads(await ws.recv())
                out.append(message.get("data", message))
    return out


def post(sim: SimExchange, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{sim.port}{path}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=3) as answer:
            return answer.status, orjson.loads(answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, orjson.loads(exc.read())


async def test_trades_come_at_the_trade_rate_and_tickers_at_theirs(paced: SimExchange) -> None:
    """--trade-rate 50 with --rate 1: about 50 aggTrades a second, ids consecutive, while
    the ticker still comes once a second and reports the last trade's price."""
    streams = "btcusdt@aggTrade/btcusdt@ticker"
    async with ws_connect(f"{paced.url}/stream?streams={streams}") as ws:
        events = await collect(ws, 2.05)
    trades = [e for e in events if e["e"] == "aggTrade"]
    tickers = [e for e in events if e["e"] == "24hrTicker"]
    assert 80 <= len(trades) <= 110, len(trades)
    assert 1 <= len(tickers) <= 3, len(tickers)
    ids = [t["a"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert all(b["T"] >= a["T"] for a, b in itertools.pairwise(trades))
    last_before = [t for t in trades if t["T"] <= tickers[-1]["E"]][-1]
    assert tickers[-1]["c"] == last_before["p"]


async def test_a_burst_adds_its_trades_within_its_seconds(paced: SimExchange) -> None:
    """POST /_sim/burst?symbol=BTCUSDT&count=500&seconds=0.5: 500 trades more than the
    steady 50/s, within about half a second, every id once and in order, each time at
    most the wall clock (no trade dated ahead of when it was sent)."""
    async with ws_connect(f"{paced.url}/ws/btcusdt@aggTrade") as ws:
        await collect(ws, 0.3)
        started = time.time()
        status, body = await asyncio.to_thread(
            post, paced, "/_sim/burst?symbol=BTCUSDT&count=500&seconds=0.5"
        )
        trades = await collect(ws, 1.5)
        received_by = time.time()
    assert status == 200 and body == {"ok": True, "symbol": "BTCUSDT", "count": 500,
                                      "seconds": 0.5}  # fmt: skip
    ids = [t["a"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert 500 + 50 <= len(trades) <= 500 + 100, len(trades)
    in_burst = [t for t in trades if t["T"] <= (started + 0.8) * 1000]
    assert len(in_burst) >= 500
    assert max(t["T"] for t in trades) <= received_by * 1000
    assert "trade_burst" in paced.stats()["faults"]


async def test_burst_admin_errors(paced: SimExchange) -> None:
    """A bad burst is a 400 naming the parameter; GET is 405."""
    status, body = await asyncio.to_thread(post, paced, "/_sim/burst?symbol=btcusdt&count=x")
    assert status == 400 and "count" in body["error"]
    request = urllib.request.Request(f"http://127.0.0.1:{paced.port}/_sim/burst", method="GET")
    with pytest.raises(urllib.error.HTTPError) as caught:
        await asyncio.to_thread(urllib.request.urlopen, request, timeout=3)
    with caught.value:
        assert caught.value.code == 405


def test_trade_rate_is_validated() -> None:
    with pytest.raises(ValueError, match="trade_rate"):
        SimConfig(trade_rate=0.0)
