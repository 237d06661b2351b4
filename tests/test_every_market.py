"""``TICKCAST_SYMBOLS=*`` on a real server (SPEC §12 "Every market"): every symbol the
simulated exchange lists as trading is served; a new listing and a delisting reach a
running server with no reconnect upstream; an exchange whose listing cannot be read at
start leaves the named symbols served, and its listing is taken once it can be."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from tickcast.messages.tick import DEFAULT_SYMBOLS

from .support import ServerProcess, eventually, running_server, sim_exchange, wait_until

EVERY_MARKET = {
    "TICKCAST_SYMBOLS": "*",
    "TICKCAST_SIM_SYMBOLS": "300",
    "TICKCAST_SIM_RATE": "2",
    "TICKCAST_LISTING_REFRESH_S": "1",
    "TICKCAST_STREAM_KINDS": "trades",
    "TICKCAST_STREAM_SYMBOLS": "BTCUSDT,ETHUSDT",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("every-market")
    with running_server(folder, ["--source", "sim"], EVERY_MARKET) as s:
        yield s


def served(server: ServerProcess) -> list[str]:
    symbols = server.get("/symbols").json()["symbols"]
    assert isinstance(symbols, list)
    return symbols


def upstream_detail(server: ServerProcess) -> dict[str, object]:
    upstream = server.status()["upstream"]
    assert isinstance(upstream, dict)
    detail = upstream["detail"]
    assert isinstance(detail, dict)
    return detail


def sim_admin(server: ServerProcess, path: str) -> None:
    """An admin call to the simulated exchange the server runs in its own process."""
    found = re.search(r":(\d+)", str(upstream_detail(server)["exchange"]))
    assert found is not None
    answer = httpx.post(f"http://127.0.0.1:{found.group(1)}{path}", timeout=5)
    assert answer.status_code == 200, answer.text


def test_every_trading_symbol_is_served_with_its_prices(server: ServerProcess) -> None:
    """The 300 listed, less the few not trading, are served, on one upstream connection,
    each with its price; the defaults come first."""
    wait_until(lambda: len(served(server)) > 250)
    symbols = served(server)
    assert len(symbols) < 300 and symbols[:2] == ["BTCUSDT", "ETHUSDT"]
    wait_until(lambda: len(server.get("/prices").json()) >= len(symbols) - 5)
    listing = server.status()["listing"]
    assert isinstance(listing, dict)
    assert listing["served"] == len(symbols) and listing["listed"] == len(symbols)
    assert upstream_detail(server)["shards"] == 1
    streams = server.get("/streams").json()
    assert "BTCUSDT@trades" in streams["streams"] and "XRPUSDT@trades" not in streams["streams"]


async def test_a_listing_and_a_delisting_reach_a_running_server(server: ServerProcess) -> None:
    """A symbol listed at run time is served and streams; one delisted leaves /symbols and
    its subscribers get one ``delisted`` error naming it. No upstream reconnect."""
    wait_until(lambda: len(served(server)) > 250)
    reconnects = upstream_detail(server)["reconnects"]
    url = server.ws_base + "/ws?streams=ETHUSDT@ticker,ETHUSDT@trades,BTCUSDT&status=1"
    async with websockets.connect(url) as ws:
        sim_admin(server, "/_sim/listing?symbol=NEWXUSDT&status=TRADING")
        sim_admin(server, "/_sim/listing?symbol=ETHUSDT&status=BREAK")
        error: dict[str, object] = {}

        async def delisted() -> bool:
            message = orjson.loads(await ws.recv())
            if message.get("type") == "error":
                error.update(message)
            return bool(error)

        await eventually(delisted, timeout=15)
    assert error["code"] == "delisted" and error["symbol"] == "ETHUSDT"
    assert error["streams"] == ["ETHUSDT@ticker", "ETHUSDT@trades"]
    symbols = served(server)
    assert "ETHUSDT" not in symbols and "NEWXUSDT" in symbols
    assert server.get("/price", params={"symbol": "ETHUSDT"}).status_code == 404
    wait_until(lambda: server.get("/price", params={"symbol": "NEWXUSDT"}).status_code == 200)
    assert upstream_detail(server)["reconnects"] == reconnects
    sim_admin(server, "/_sim/listing?symbol=ETHUSDT&status=TRADING")
    wait_until(lambda: "ETHUSDT" in served(server))


def test_an_unreadable_listing_at_start_serves_the_named_symbols(tmp_path: Path) -> None:
    """exchangeInfo answering garbage at start: the server serves the ten defaults, says
    why in its log and /status, and takes the listing once it reads well."""
    with sim_exchange("--symbols", "120", "--rate", "2") as port:
        rest = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(rest))
        spoil = httpx.post(f"{rest}/_sim/exchange_info?mode=not_json&count=3", timeout=5)
        assert spoil.status_code == 200
        env = {
            "TICKCAST_SYMBOLS": "*",
            "TICKCAST_SOURCE": "binance",
            "TICKCAST_BINANCE_URL": f"ws://127.0.0.1:{port}",
            "TICKCAST_BINANCE_REST_URL": rest,
            "TICKCAST_STREAM_KINDS": "",
        }
        with running_server(tmp_path, [], env) as server:
            assert served(server) == list(DEFAULT_SYMBOLS)
            wait_until(lambda: len(served(server)) > 100, timeout=40)
            listing = server.status()["listing"]
            assert isinstance(listing, dict)
            assert listing["failures"] == {"not_json": 3} and listing["last_error"] is None
            assert "could not be read" in server.log()


def _answers(base: str) -> bool:
    try:
        return httpx.get(base + "/api/v3/ping", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
