"""The REST API, health, status and metrics of a real ``tickcast serve`` process."""

from __future__ import annotations

import platform
import re
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from tickcast.settings import DEFAULT_SYMBOLS

from .support import ServerProcess, free_port, running_server

SIM = ["--source", "sim"]
# Binary floating-point noise: a long run of 0s or 9s followed by a stray digit.
FLOAT_NOISE = re.compile(rb"\d\.\d*(?:0{6,}[1-9]|9{6,}\d)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("rest"), SIM, {"TICKCAST_SIM_RATE": "10"}) as s:
        yield s


def test_price_defaults_to_btcusdt_with_the_seed_fields(server: ServerProcess) -> None:
    """``/price`` is the latest BTCUSDT tick, led by the seed server's four fields."""
    response = server.get("/price")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body)[:5] == ["type", "symbol", "last_price", "change_percent", "timestamp_ms"]
    assert body["symbol"] == "BTCUSDT"
    assert isinstance(body["last_price"], int | float) and body["last_price"] > 0
    assert isinstance(body["change_percent"], int | float)
    assert isinstance(body["timestamp_ms"], int)
    assert body["source"] == "sim"
    assert server.get("/price?symbol=ethusdt").json()["symbol"] == "ETHUSDT"


def test_an_unknown_symbol_is_a_404_json_error(server: ServerProcess) -> None:
    """``/price?symbol=FOO`` and ``/prices/FOO`` answer 404 with a JSON error."""
    for path in ("/price?symbol=FOO", "/prices/FOO", "/history/FOO"):
        response = server.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "unknown_symbol"
        assert "FOO" in response.json()["message"]


def test_prices_lists_every_symbol_and_prices_symbol_one(server: ServerProcess) -> None:
    """``/prices`` holds the latest tick of each served symbol; ``/prices/{symbol}`` one."""
    ticks = server.get("/prices").json()
    assert [t["symbol"] for t in ticks] == list(DEFAULT_SYMBOLS)
    one = server.get("/prices/solusdt").json()
    assert one["symbol"] == "SOLUSDT"
    assert one["seq"] >= next(t["seq"] for t in ticks if t["symbol"] == "SOLUSDT")


def test_symbols_lists_what_is_served_with_its_price_decimals(server: ServerProcess) -> None:
    """``/symbols`` names the symbols served, in configuration order, and the decimals of
    each one's prices: those of the simulated exchange's tick sizes."""
    tick_sizes = {
        "BTCUSDT": 2, "ETHUSDT": 2, "BNBUSDT": 2, "SOLUSDT": 2, "XRPUSDT": 4,
        "ADAUSDT": 4, "DOGEUSDT": 5, "TRXUSDT": 5, "LTCUSDT": 2, "LINKUSDT": 3,
    }  # fmt: skip
    deadline = time.monotonic() + 10
    while (body := server.get("/symbols").json())["price_decimals"] != tick_sizes:
        assert time.monotonic() < deadline, f"price decimals never learned: {body}"
        time.sleep(0.1)
    assert body["symbols"] == list(DEFAULT_SYMBOLS)


def test_history_returns_recent_ticks_oldest_first(server: ServerProcess) -> None:
    """``/history/{symbol}?limit=5`` is five ticks of that symbol in increasing seq."""
    deadline = time.monotonic() + 10
    while len(ticks := server.get("/history/BTCUSDT?limit=5").json()) < 5:
        assert time.monotonic() < deadline, "no five ticks of history"
        time.sleep(0.1)
    assert len(ticks) == 5
    assert {t["symbol"] for t in ticks} == {"BTCUSDT"}
    seqs = [t["seq"] for t in ticks]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert seqs[-1] <= server.get("/price").json()["seq"]
    assert len(server.get("/history/BTCUSDT").json()) >= 5


def test_history_rejects_a_limit_below_one(server: ServerProcess) -> None:
    """A limit of 0 or a non-number is a 422, not a server error; a huge one is capped."""
    assert server.get("/history/BTCUSDT?limit=0").status_code == 422
    assert server.get("/history/BTCUSDT?limit=abc").status_code == 422
    assert server.get("/history/BTCUSDT?limit=1000000").status_code == 200


def test_health_and_readiness(server: ServerProcess) -> None:
    """``/healthz`` answers while alive; ``/readyz`` is 200 once data flows."""
    assert server.get("/healthz").status_code == 200
    ready = server.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True


def test_status_describes_upstream_source_and_clients(server: ServerProcess) -> None:
    """``/status`` reports upstream, the simulated source, the hub and the edge's clients."""
    body = server.status()
    assert body["source"] == "sim"
    assert body["simulated"] is True
    upstream = body["upstream"]
    assert isinstance(upstream, dict)
    assert upstream["state"] == "connected"
    assert isinstance(body["node_id"], str)
    assert isinstance(body["hub"], dict) and body["hub"]["connected"] is True
    edge = body["edge"]
    assert isinstance(edge, dict)
    assert set(edge["clients"]) == {"ws", "sse", "total"}
    assert isinstance(edge["subscriptions"], int)
    assert isinstance(edge["closes"], dict)


def test_metrics_say_which_source_is_served_and_by_which_build(server: ServerProcess) -> None:
    """``/metrics`` marks the source served now (sim here) and gives the version and the
    Python of the serving process, so an alert can catch simulated prices served."""
    text = server.get("/metrics").text
    assert 'tickcast_source{source="sim"} 1.0' in text
    assert 'tickcast_source{source="binance"} 0.0' in text
    assert 'tickcast_source{source="replay"} 0.0' in text
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    info = re.search(
        r'^tickcast_build_info\{python="([^"]+)",version="([^"]+)"\} 1\.0$', text, re.M
    )
    assert info is not None, text
    assert info.group(2) == project["project"]["version"]
    assert info.group(1) == platform.python_version()  # the same interpreter runs the server


async def test_metrics_expose_the_named_series(server: ServerProcess) -> None:
    """``/metrics`` has every named series and counts real deliveries."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws:
        for _ in range(3):
            await ws.recv()
        text = server.get("/metrics").text
    for name in (
        "tickcast_ticks_in_total",
        "tickcast_deliveries_total",
        "tickcast_clients",
        "tickcast_conflated_updates_total",
        "tickcast_client_closes_total",
        "tickcast_upstream_reconnects_total",
        "tickcast_fanout_seconds_bucket",
    ):
        assert re.search(rf"^(?:# TYPE )?{name}[{{ ]", text, re.M), name
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert float(samples["tickcast_ticks_in_total"]) > 0
    assert float(samples["tickcast_deliveries_total"]) >= 3
    assert float(samples['tickcast_clients{transport="ws"}']) >= 1
    assert float(samples['tickcast_fanout_seconds_bucket{le="+Inf"}']) > 0


def test_docs_are_served(server: ServerProcess) -> None:
    """``/docs`` (Swagger UI) and the OpenAPI schema it reads are served."""
    docs = server.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    schema = server.get("/openapi.json").json()
    assert {"/price", "/prices", "/history/{symbol}", "/sse"} <= set(schema["paths"])


def test_numbers_are_exact_decimals(server: ServerProcess) -> None:
    """Prices are written as the exchange's decimals: no binary float noise anywhere."""
    for path in ("/price", "/prices", "/history/ETHUSDT?limit=50"):
        raw = server.get(path).content
        assert not FLOAT_NOISE.search(raw), raw
        assert orjson.loads(raw)


def test_rest_allows_cross_origin_reads(server: ServerProcess) -> None:
    """REST answers carry CORS headers (``*`` by default)."""
    response = server.get("/price", headers={"Origin": "https://elsewhere.example"})
    assert response.headers["access-control-allow-origin"] == "*"


def test_static_files_come_from_their_folder_only(server: ServerProcess) -> None:
    """The dashboard is served; paths that climb out of the static folder are not."""
    assert server.get("/").status_code == 200
    assert server.get("/app.js").status_code == 200
    for path in ("/../settings.py", "/%2e%2e/settings.py", "/static/../api.py", "/api.py"):
        assert server.get(path).status_code == 404, path


def test_no_data_yet_is_a_503_json_error(tmp_path: Path) -> None:
    """Before any data, price reads answer 503 JSON; alive (healthz) but not ready."""
    env = {"TICKCAST_BINANCE_URL": f"ws://127.0.0.1:{free_port()}"}
    with running_server(tmp_path, ["--source", "binance"], env, ready="/healthz") as server:
        for path in ("/price", "/prices", "/prices/ETHUSDT"):
            response = server.get(path)
            assert response.status_code == 503, path
            assert response.json()["error"] == "no_data"
        assert server.get("/price?symbol=FOO").status_code == 404
        assert server.get("/history/BTCUSDT?limit=5").json() == []
        assert server.get("/healthz").status_code == 200
        assert server.get("/readyz").status_code == 503
        status = server.status()
        assert status["simulated"] is False
        assert status["upstream"]["state"] in ("connecting", "reconnecting")  # type: ignore[index]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "not_found"),
        ("GET", "/docs/assets/%2e%2e/core.py", 404, "not_found"),
        ("POST", "/price", 405, "method_not_allowed"),
        ("DELETE", "/sse", 405, "method_not_allowed"),
    ],
)
def test_unknown_paths_and_methods_use_the_common_error_body(
    server: ServerProcess, method: str, path: str, status: int, code: str
) -> None:
    """A path or method the API does not have answers {"error","message"} with a named
    code, like every other error, not FastAPI's {"detail"}."""
    response = httpx.request(method, server.base + path, timeout=5)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    if status == 405:
        assert "GET" in response.headers["allow"]


def test_a_plain_get_of_ws_is_426_upgrade_required(server: ServerProcess) -> None:
    """``GET /ws`` without an Upgrade answers 426 with ``Upgrade: websocket`` and the
    common error body saying how to connect."""
    response = server.get("/ws?symbols=BTCUSDT")
    assert response.status_code == 426
    assert response.headers["upgrade"].lower() == "websocket"
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "upgrade_required"
    assert "WebSocket" in body["message"]
