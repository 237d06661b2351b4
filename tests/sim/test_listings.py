"""The simulated exchange's listings: generation by plain calls, then exchangeInfo, listing,
delisting and spoilt answers over loopback, in process and as ``tickcast sim-exchange``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from decimal import Decimal
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from tickcast.cli import main
from tickcast.messages.tick import DEFAULT_SYMBOLS
from tickcast.settings import Settings
from tickcast.sim.exchange import SimConfig, SimExchange
from tickcast.sim.listings import (
    MAX_SYMBOLS,
    QUOTE_USD,
    InfoMode,
    Listing,
    Listings,
    Status,
    derived_listing,
)
from tickcast.sim.market import Market
from tickcast.upstream.sources import SimSource

from ..support import sim_exchange
from .test_simulator import drain

NAME_RE = re.compile(r"[A-Z0-9]{2,20}")
UNIT = 10**8


@pytest.fixture(scope="module")
def listed() -> list[Listing]:
    listings = Listings.build(1, (), 2000)
    return [listing for symbol in listings.symbols if (listing := listings.get(symbol))]


# Pure: generation


def test_a_count_lists_that_many_with_the_defaults_first(listed: list[Listing]) -> None:
    """2,000 asked, 2,000 listed, BTCUSDT and the other nine defaults first."""
    assert len(listed) == 2000
    assert [x.symbol for x in listed[:10]] == list(DEFAULT_SYMBOLS)
    assert Listings.build(1, (), 3).symbols == ("btcusdt", "ethusdt", "bnbusdt")


def test_names_are_unique_and_shaped_like_binance_symbols(listed: list[Listing]) -> None:
    """Every name is [A-Z0-9]{2,20}, base (2-8 characters) plus quote, and none repeats."""
    assert len({x.symbol for x in listed}) == len(listed)
    for x in listed:
        assert NAME_RE.fullmatch(x.symbol), x
        assert x.symbol == x.base + x.quote and 2 <= len(x.base) <= 8, x
        assert x.base != x.quote and x.quote in QUOTE_USD, x


def test_quotes_are_mostly_usdt_then_the_others(listed: list[Listing]) -> None:
    """USDT quotes about 45 %, more than any other; every Binance quote asset appears."""
    quotes = Counter(x.quote for x in listed)
    assert 0.35 < quotes["USDT"] / len(listed) < 0.55, quotes
    assert quotes.most_common(1)[0][0] == "USDT"
    assert set(quotes) >= {"FDUSD", "USDC", "BTC", "ETH", "BNB", "TRY", "EUR"}, quotes
    # A base asset is listed against several quotes, as BTC and ETH are.
    bases = Counter(x.base for x in listed)
    assert sum(1 for n in bases.values() if n > 1) > 50


def test_a_few_are_not_trading_and_never_a_default(listed: list[Listing]) -> None:
    """About 1.5 % are BREAK: a few of 2,000, none of the ten defaults."""
    statuses = Counter(x.status for x in listed)
    assert 10 <= statuses[Status.BREAK] <= 60, statuses
    assert set(statuses) == {Status.TRADING, Status.BREAK}
    assert all(x.status is Status.TRADING for x in listed[:10])


def test_same_seed_same_listings_and_a_longer_list_extends_a_shorter() -> None:
    """Generation is deterministic by seed; another seed lists other symbols."""
    a, b = Listings.build(7, (), 500), Listings.build(7, (), 500)
    assert a.symbols == b.symbols
    assert [a.get(s) for s in a.symbols] == [b.get(s) for s in b.symbols]
    assert Listings.build(7, (), 1000).symbols[:500] == a.symbols
    other = Listings.build(8, (), 500).symbols
    assert other[:10] == a.symbols[:10] and other[10:] != a.symbols[10:]


def test_levels_span_the_range_with_ticks_and_lots_to_match(listed: list[Listing]) -> None:
    """Prices from 1e-8 to 1e5, each on its tick; ticks and lots are powers of ten, a tick
    at most 0.01 and never above the price, a lot at most one coin."""
    prices = [x.price for x in listed]
    assert min(prices) < UNIT // 10_000 and max(prices) > 1000 * UNIT
    powers = {10**k for k in range(11)}
    for x in listed:
        assert 1 <= x.price <= 10**5 * UNIT, x
        assert x.tick in powers and x.tick <= min(x.price, UNIT // 100), x
        assert x.lot in powers and x.lot <= UNIT, x
        assert x.price % x.tick == 0 and x.price // x.tick < 10**8, x


def test_a_base_is_priced_alike_against_each_quote(listed: list[Listing]) -> None:
    """ETHBTC is ETHUSDT over BTCUSDT, and so for every base listed against two quotes
    (where the tick leaves enough digits to tell)."""
    usd: dict[str, float] = {}
    checked = 0
    for x in listed:
        if x.price // x.tick < 1000:
            continue
        value = x.price / UNIT * QUOTE_USD[x.quote]
        if x.base in usd:
            assert value == pytest.approx(usd[x.base], rel=0.02), x
            checked += 1
        usd.setdefault(x.base, value)
    assert checked > 50


def test_named_symbols_come_first_then_generated_ones() -> None:
    """Named symbols are listed first (a name the generator does not make gets a level of
    its own from the seed), then generated ones up to the count, without repeats."""
    listings = Listings.build(3, ("PEPEUSDT", "ethusdt"), 4)
    assert listings.symbols == ("pepeusdt", "ethusdt", "btcusdt", "bnbusdt")
    assert listings.get("pepeusdt") == derived_listing(3, "PEPEUSDT")
    assert Listings.build(3, DEFAULT_SYMBOLS).symbols == tuple(s.lower() for s in DEFAULT_SYMBOLS)


def test_the_market_starts_each_symbol_at_its_listed_level(listed: list[Listing]) -> None:
    """A symbol's walk starts at its listing's price, on its tick and lot."""
    listings = Listings.build(1, (), 2000)
    market = Market(1, listings, 1.0)
    for x in listed[::97]:
        state = market.state(x.symbol.lower())
        assert (state.tick, state.lot, state.last) == (x.tick, x.lot, x.price), x
        market.step([x.symbol.lower()], 1_700_000_000_000)
        assert state.last % x.tick == 0 and state.last_qty % x.lot == 0


def test_listing_and_delisting_change_the_listings() -> None:
    """set_status lists a new symbol at the end or changes a listed one's status; only
    trading or unlisted symbols stream."""
    listings = Listings.build(1, (), 20)
    version = listings.version
    listing, new = listings.set_status("newusdt", Status.TRADING)
    assert new and listing.symbol == "NEWUSDT" and listing.quote == "USDT"
    assert listings.symbols[-1] == "newusdt" and "newusdt" in listings.trading
    _, new = listings.set_status("BTCUSDT", Status.BREAK)
    assert not new and "btcusdt" not in listings.trading and "btcusdt" in listings.symbols
    assert not listings.streams("btcusdt") and listings.streams("zzzusdt")
    assert listings.version == version + 2
    assert listings.counts()["BREAK"] >= 1


def info(listings: Listings) -> Any:
    return orjson.loads(listings.exchange_info(1_700_000_000_000, 6000))


def test_exchange_info_lists_every_symbol_with_its_status_and_filters() -> None:
    """Binance's shape: each symbol's status, assets and price and lot filters."""
    listings = Listings.build(1, (), 300)
    body = info(listings)
    assert body["serverTime"] == 1_700_000_000_000
    assert body["rateLimits"][0]["limit"] == 6000
    assert [s["symbol"] for s in body["symbols"]] == [s.upper() for s in listings.symbols]
    for item in body["symbols"]:
        listing = listings.get(item["symbol"])
        assert listing is not None
        assert item["status"] == listing.status.value
        assert item["baseAsset"] + item["quoteAsset"] == item["symbol"]
        price, lot = item["filters"]
        assert Decimal(price["tickSize"]) * UNIT == listing.tick
        assert Decimal(lot["stepSize"]) * UNIT == listing.lot
    listings.set_status("BTCUSDT", Status.BREAK)
    assert info(listings)["symbols"][0]["status"] == "BREAK"


def test_each_exchange_info_mode_answers_what_it_says() -> None:
    """not_json, truncated, empty, bad_name, non_ascii; with a count, that many answers."""
    listings = Listings.build(1, (), 50)
    normal = listings.exchange_info(5, 6000)
    listings.set_info_mode(InfoMode.NOT_JSON)
    for _ in range(2):
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(listings.exchange_info(5, 6000))
    listings.set_info_mode(InfoMode.TRUNCATED, 1)
    truncated = listings.exchange_info(5, 6000)
    assert normal.startswith(truncated) and len(truncated) == len(normal) // 2
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(truncated)
    assert listings.exchange_info(5, 6000) == normal  # the count is spent
    listings.set_info_mode(InfoMode.EMPTY, 1)
    assert info(listings)["symbols"] == []
    for mode, odd in ((InfoMode.BAD_NAME, "BTC-USDT"), (InfoMode.NON_ASCII, "币安人生USDT")):
        listings.set_info_mode(mode)
        names = [s["symbol"] for s in info(listings)["symbols"]]
        assert names == [*(s.upper() for s in listings.symbols), odd]
    listings.set_info_mode(InfoMode.NORMAL)
    assert listings.exchange_info(5, 6000) == normal


def test_counts_are_bounded() -> None:
    """SimConfig refuses a negative count or one over MAX_SYMBOLS; the setting agrees."""
    for bad in (-1, MAX_SYMBOLS + 1):
        with pytest.raises(ValueError, match="symbol_count"):
            SimConfig(symbol_count=bad)
    bounds = Settings.model_fields["sim_symbols"].metadata
    assert any(getattr(bound, "le", None) == MAX_SYMBOLS for bound in bounds)


def test_the_in_process_simulator_lists_sim_symbols(monkeypatch: pytest.MonkeyPatch) -> None:
    """TICKCAST_SIM_SYMBOLS=300 lists the served symbols first, then generated ones up to 300;
    unset, only the served ones."""
    monkeypatch.setenv("TICKCAST_SIM_SYMBOLS", "300")
    served = Settings(_env_file=None, source="sim", symbols=["PEPEUSDT", "BTCUSDT"])  # type: ignore[call-arg]
    symbols = SimSource(served, lambda event, label: None).exchange.listings.symbols
    assert len(symbols) == 300 and symbols[:3] == ("pepeusdt", "btcusdt", "ethusdt")
    monkeypatch.delenv("TICKCAST_SIM_SYMBOLS")
    served = Settings(_env_file=None, source="sim", symbols=["PEPEUSDT"])  # type: ignore[call-arg]
    assert SimSource(served, lambda event, label: None).exchange.listings.symbols == ("pepeusdt",)


# Over loopback: the in-process exchange

SimFactory = Callable[..., Awaitable[SimExchange]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> SimExchange:
            config = SimConfig(**{"rate": 20.0, **overrides})
            return await stack.enter_async_context(SimExchange(config))

        yield make


def http_call(method: str, url: str) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, exc.read(), dict(exc.headers)
        finally:
            exc.close()


async def call(port: int, method: str, path: str) -> tuple[int, bytes, dict[str, str]]:
    return await asyncio.to_thread(http_call, method, f"http://127.0.0.1:{port}{path}")


async def admin(sim: SimExchange, path: str) -> tuple[int, Any]:
    status, body, _ = await call(sim.port, "POST", path)
    return status, json.loads(body)


async def exchange_info(port: int) -> Any:
    status, body, _ = await call(port, "GET", "/api/v3/exchangeInfo")
    assert status == 200
    return json.loads(body)


def ws_connect(url: str) -> Any:
    return connect(url, ping_interval=None, open_timeout=5, close_timeout=2, max_queue=None)


async def test_exchange_info_lists_2000_symbols_quickly_at_weight_20(
    make_sim: SimFactory,
) -> None:
    """With 2,000 symbols exchangeInfo lists them all, a few not trading, answers within a
    fraction of a second and weighs Binance's 20."""
    sim = await make_sim(symbols=(), symbol_count=2000)
    for _ in range(3):
        started = time.perf_counter()
        status, body, headers = await call(sim.port, "GET", "/api/v3/exchangeInfo")
        elapsed = time.perf_counter() - started
        assert status == 200 and elapsed < 1.0, elapsed
    assert headers["X-MBX-USED-WEIGHT-1m"] == "60"
    symbols = json.loads(body)["symbols"]
    assert len(symbols) == 2000 and symbols[0]["symbol"] == "BTCUSDT"
    assert 10 <= sum(1 for s in symbols if s["status"] == "BREAK") <= 60
    counts = sim.stats()["symbols"]
    assert counts["TRADING"] + counts["BREAK"] == 2000 and counts["HALT"] == 0


async def test_a_listed_symbol_streams_and_a_delisted_one_goes_quiet(
    make_sim: SimFactory,
) -> None:
    """POST /_sim/listing: a new symbol is in the next exchangeInfo and streams; BREAK
    turns a symbol's streams quiet (still subscribed) and TRADING brings them back."""
    sim = await make_sim()
    assert await admin(sim, "/_sim/listing?symbol=NEWUSDT&status=TRADING") == (
        200,
        {"ok": True, "symbol": "NEWUSDT", "status": "TRADING", "listed": True},
    )
    listed = {s["symbol"]: s["status"] for s in (await exchange_info(sim.port))["symbols"]}
    assert listed["NEWUSDT"] == "TRADING" and len(listed) == 11
    streams = "newusdt@trade/btcusdt@ticker/btcusdt@depth@100ms"
    async with ws_connect(f"{sim.url}/stream?streams={streams}") as ws:
        seen = {m["stream"] for m in await drain(ws, 0.5)}
        assert seen == set(streams.split("/"))
        status, body = await admin(sim, "/_sim/listing?symbol=btcusdt&status=BREAK")
        assert (status, body["listed"], body["status"]) == (200, False, "BREAK")
        await drain(ws, 0.1)  # what was under way
        seen = {m["stream"] for m in await drain(ws, 0.5)}
        assert seen == {"newusdt@trade"}
        listed = {s["symbol"]: s["status"] for s in (await exchange_info(sim.port))["symbols"]}
        assert listed["BTCUSDT"] == "BREAK"
        await admin(sim, "/_sim/listing?symbol=BTCUSDT&status=TRADING")
        seen = {m["stream"] for m in await drain(ws, 0.5)}
        assert seen == set(streams.split("/"))


def modes_expected() -> list[tuple[str, Callable[[bytes], bool]]]:
    def not_json(body: bytes) -> bool:
        with contextlib.suppress(ValueError):
            json.loads(body)
            return False
        return True

    def names(body: bytes) -> list[str]:
        return [s["symbol"] for s in json.loads(body)["symbols"]]

    return [
        ("not_json", lambda b: not_json(b) and b.startswith(b"<html>")),
        ("truncated", lambda b: not_json(b) and b.startswith(b'{"timezone":"UTC"')),
        ("empty", lambda b: names(b) == []),
        ("bad_name", lambda b: names(b)[-1] == "BTC-USDT" and len(names(b)) == 11),
        ("non_ascii", lambda b: names(b)[-1] == "币安人生USDT" and len(names(b)) == 11),
        ("normal", lambda b: names(b) == list(DEFAULT_SYMBOLS)),
    ]


@pytest.mark.parametrize(("mode", "check"), modes_expected())
async def test_each_exchange_info_mode_over_http(
    make_sim: SimFactory, mode: str, check: Callable[[bytes], bool]
) -> None:
    """POST /_sim/exchange_info?mode=M&count=2: the next two answers are that mode's (status
    200, weight counted), the third is Binance's again."""
    sim = await make_sim()
    assert await admin(sim, f"/_sim/exchange_info?mode={mode}&count=2") == (
        200,
        {"ok": True, "mode": mode, "count": None if mode == "normal" else 2},
    )
    assert sim.stats()["exchange_info_mode"] == mode
    for _ in range(2):
        status, body, headers = await call(sim.port, "GET", "/api/v3/exchangeInfo")
        assert status == 200 and check(body), body[:200]
        assert int(headers["Content-Length"]) == len(body)
    names = [s["symbol"] for s in (await exchange_info(sim.port))["symbols"]]
    assert names == list(DEFAULT_SYMBOLS)


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("POST", "/_sim/listing?symbol=BTC-USDT&status=TRADING", 400, "bad or missing symbol"),
        ("POST", "/_sim/listing?symbol=BTCUSDT&status=GONE", 400, "TRADING|BREAK|HALT"),
        ("GET", "/_sim/listing?symbol=BTCUSDT&status=BREAK", 405, "use POST"),
        ("POST", "/_sim/exchange_info?mode=broken", 400, "not_json|truncated"),
        ("POST", "/_sim/exchange_info?mode=empty&count=0", 400, "count must be >= 1"),
        ("DELETE", "/_sim/exchange_info?mode=empty", 405, "use POST"),
    ],
)
async def test_admin_listing_and_mode_errors(
    make_sim: SimFactory, method: str, path: str, status: int, error: str
) -> None:
    """A bad symbol, status, mode or count is a 400 naming what was expected; a wrong
    method a 405; nothing changes."""
    sim = await make_sim()
    got, body, _ = await call(sim.port, method, path)
    assert got == status and error in json.loads(body)["error"]
    assert sim.stats()["exchange_info_mode"] == "normal"
    assert sim.stats()["symbols"] == {"TRADING": 10, "BREAK": 0, "HALT": 0}


# As its own process, the way the README runs it


async def test_sim_exchange_symbols_count_lists_that_many() -> None:
    """``tickcast sim-exchange --symbols 2000`` lists 2,000 symbols, BTCUSDT first."""
    with sim_exchange("--symbols", "2000", "--seed", "4") as port:
        async with asyncio.timeout(20):
            while True:
                with contextlib.suppress(OSError):
                    body = await exchange_info(port)
                    break
                await asyncio.sleep(0.1)
    symbols = body["symbols"]
    assert len(symbols) == 2000 and symbols[0]["symbol"] == "BTCUSDT"
    assert [s["symbol"] for s in symbols] == [
        s.upper() for s in Listings.build(4, (), 2000).symbols
    ]


def test_sim_exchange_refuses_a_zero_or_huge_count(capsys: pytest.CaptureFixture[str]) -> None:
    """``--symbols 0`` and a count over the limit exit 2 with a message, before listening."""
    for count in ("0", str(MAX_SYMBOLS + 1)):
        assert main(["sim-exchange", "--port", "0", "--symbols", count]) == 2
        assert "symbol" in capsys.readouterr().err
