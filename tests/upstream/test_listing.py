"""The exchange's listing (``GET /api/v3/exchangeInfo``) for ``TICKCAST_SYMBOLS=*``: plain
calls on every rule, then the REST client against a real simulated exchange answering
well and badly (not JSON, truncated, no symbols, a bad name, non-ASCII text)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from tickcast.sim.config import SimConfig
from tickcast.sim.exchange import SimExchange
from tickcast.upstream.listing import parse_exchange_info
from tickcast.upstream.rest import RestClient, RestError, RestErrorKind


def row(symbol: object, status: str = "TRADING", quote: str = "USDT") -> dict[str, object]:
    return {"symbol": symbol, "status": status, "baseAsset": "X", "quoteAsset": quote}


def test_trading_symbols_in_order_and_the_rest_counted() -> None:
    body = {
        "symbols": [
            row("BTCUSDT"),
            row("ETHBTC", quote="BTC"),
            row("LUNAUSDT", status="BREAK"),
            row("BTC-USDT"),
            row("币安人生USDT"),
            row(7),
            "not a row",
            row("BTCUSDT"),
        ]
    }
    listing = parse_exchange_info(body)
    assert listing.symbols == ("BTCUSDT", "ETHBTC")
    assert listing.skipped == {"not_trading": 1, "bad_name": 4, "duplicate": 1}


def test_quote_assets_narrow_the_listing() -> None:
    body = {"symbols": [row("BTCUSDT"), row("ETHBTC", quote="BTC"), row("BTCFDUSD", quote="FDUSD")]}
    listing = parse_exchange_info(body, ["usdt", "FDUSD"])
    assert listing.symbols == ("BTCUSDT", "BTCFDUSD")
    assert listing.skipped == {"other_quote": 1}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([], "not an object"),
        ({"symbols": None}, "no list of symbols"),
        ({"symbols": []}, "no trading symbol"),
        ({"symbols": [row("BTCUSDT", status="HALT")]}, "no trading symbol"),
        ({"symbols": [row("BTC/USDT")]}, "no trading symbol"),
    ],
)
def test_an_answer_with_no_listing_is_refused(body: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_exchange_info(body)


def test_a_quote_that_lists_nothing_says_so() -> None:
    with pytest.raises(ValueError, match="quoted in EUR"):
        parse_exchange_info({"symbols": [row("BTCUSDT")]}, ["EUR"])


async def spoil(base: str, mode: str) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.post(f"{base}/_sim/exchange_info?mode={mode}")
        assert answer.status_code == 200, answer.text


@contextlib.asynccontextmanager
async def exchange(count: int) -> AsyncIterator[tuple[SimExchange, str]]:
    async with SimExchange(SimConfig(symbols=(), symbol_count=count)) as sim:
        yield sim, f"http://127.0.0.1:{sim.port}"


async def test_the_rest_client_reads_the_simulated_exchanges_listing() -> None:
    async with exchange(300) as (_sim, base), RestClient(timeout=5) as rest:
        listing = await rest.exchange_info(base)
        async with httpx.AsyncClient(timeout=5) as http:
            info = (await http.get(f"{base}/api/v3/exchangeInfo")).json()["symbols"]
        trading = [r["symbol"] for r in info if r["status"] == "TRADING"]
        assert listing.symbols == tuple(trading)
        assert 0 < listing.skipped["not_trading"] < 300 * 0.1
        usdt = await rest.exchange_info(base, ["USDT"])
        assert usdt.symbols and all(s.endswith("USDT") for s in usdt.symbols)


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        ("not_json", RestErrorKind.NOT_JSON),
        ("truncated", RestErrorKind.NOT_JSON),
        ("empty", RestErrorKind.BAD_ANSWER),
    ],
)
async def test_a_bad_listing_is_an_error_naming_its_kind(mode: str, kind: RestErrorKind) -> None:
    async with exchange(50) as (_sim, base), RestClient(timeout=5) as rest:
        await spoil(base, mode)
        with pytest.raises(RestError) as raised:
            await rest.exchange_info(base)
        assert raised.value.kind is kind


@pytest.mark.parametrize("mode", ["bad_name", "non_ascii"])
async def test_a_name_no_stream_can_carry_is_skipped_and_counted(mode: str) -> None:
    async with exchange(50) as (_sim, base), RestClient(timeout=5) as rest:
        good = await rest.exchange_info(base)
        await spoil(base, mode)
        listing = await rest.exchange_info(base)
        assert listing.symbols == good.symbols
        assert listing.skipped["bad_name"] == good.skipped["bad_name"] + 1
