"""Trades and candles (SPEC §12) end to end: real servers, the simulated exchange as the
upstream, real WebSocket, SSE and REST over loopback. Candles are checked against the
exchange's own (its REST klines, and the trades it streamed), never against tickcast's."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from .redis_support import LinkProxy
from .support import (
    ServerProcess,
    eventually,
    free_port,
    running_server,
    sim_exchange,
    wait_ready_async,
)

pytestmark = pytest.mark.slow

STREAMS_ENV = {
    "TICKCAST_SIM_RATE": "8",
    "TICKCAST_KLINE_INTERVALS": "1s,1m",
    "TICKCAST_STREAM_SYMBOLS": "BTCUSDT,ETHUSDT",
    # Room for a subscribe naming 500 streams; a limit below the 16 streams served.
    "TICKCAST_MAX_MESSAGE_BYTES": "65536",
    "TICKCAST_MAX_SUBSCRIPTIONS": "12",
}
CANDLE_FIELDS = ("open", "high", "low", "close", "volume", "quote_volume", "trades")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("streams")
    with running_server(tmp, ["--source", "sim"], STREAMS_ENV) as process:
        yield process


def exchange_rest(server: ServerProcess) -> str:
    """The HTTP base of the simulated exchange the server runs (its /status says where)."""
    upstream = server.status()["upstream"]
    assert isinstance(upstream, dict)
    detail = upstream["detail"]
    assert isinstance(detail, dict)
    return str(detail["exchange"]).replace("ws://", "http://")


def exchange_klines(base: str, interval: str, limit: int = 1000) -> dict[int, list[object]]:
    rows = httpx.get(
        f"{base}/api/v3/klines",
        params={"symbol": "BTCUSDT", "interval": interval, "limit": limit},
        timeout=5,
    ).json()
    return {int(row[0]): row for row in rows}


def as_exchange_row(candle: dict[str, object]) -> tuple[object, ...]:
    """A kline message's values in the order and types of an exchange REST row."""
    return tuple(candle[name] for name in CANDLE_FIELDS)


def row_values(row: list[object]) -> tuple[object, ...]:
    # [open_time, open, high, low, close, volume, close_time, quote_volume, trades, ...]
    o, h, lo, c, v = (float(str(x)) for x in row[1:6])
    return (o, h, lo, c, v, float(str(row[7])), int(str(row[8])))


@contextlib.asynccontextmanager
async def collecting(url: str, into: list[dict[str, object]]) -> AsyncIterator[None]:
    """Read every message of ``url`` into ``into`` while the block runs."""

    async def read(ws: websockets.ClientConnection) -> None:
        async for frame in ws:
            into.append(orjson.loads(frame))

    async with websockets.connect(url) as ws:
        reader = asyncio.create_task(read(ws))
        try:
            yield
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await reader


async def test_candles_equal_the_exchanges_own_and_the_trades_it_streamed(
    server: ServerProcess,
) -> None:
    """Every closed candle /klines serves equals the exchange's REST kline of the same open
    time, field by field, and each second's candle is the aggregation of the trades the
    trade stream delivered in it; the history reaches 1,000 candles back without a seam."""
    messages: list[dict[str, object]] = []
    url = server.ws_base + "/ws?streams=BTCUSDT@trades"
    async with collecting(url, messages):
        await asyncio.sleep(4.5)
    trades = [m for m in messages if m["type"] == "trade"]
    assert len(trades) >= 10
    ids = [int(str(t["trade_id"])) for t in trades]
    assert ids == sorted(set(ids)), "a trade repeated or out of order"
    await asyncio.sleep(1.2)  # the last second of trades closes its candle
    base = exchange_rest(server)
    truth = exchange_klines(base, "1s")
    ours = server.get("/klines/BTCUSDT", params={"interval": "1s", "limit": 1000}).json()
    closed = [c for c in ours if c["closed"]]
    assert len(closed) >= 5
    for candle in closed:
        row = truth.get(int(candle["open_time"]))
        assert row is not None, f"the exchange has no candle at {candle['open_time']}"
        assert as_exchange_row(candle) == row_values(row), candle
    # Whole seconds inside the window the client watched: the trades make the candle.
    by_second: dict[int, list[dict[str, object]]] = defaultdict(list)
    for trade in trades:
        by_second[int(str(trade["timestamp_ms"])) // 1000 * 1000].append(trade)
    watched = sorted(by_second)[1:-1]
    checked = 0
    for second in watched:
        candle = next((c for c in closed if c["open_time"] == second), None)
        if candle is None:
            continue
        in_it = by_second[second]
        prices = [float(str(t["price"])) for t in in_it]
        assert candle["open"] == prices[0] and candle["close"] == prices[-1]
        assert candle["high"] == max(prices) and candle["low"] == min(prices)
        assert candle["trades"] == len(in_it)
        volume = sum(float(str(t["qty"])) for t in in_it)
        assert abs(float(str(candle["volume"])) - volume) < 1e-9
        checked += 1
    assert checked >= 2
    minutes = server.get("/klines/BTCUSDT", params={"interval": "1m", "limit": 1000}).json()
    times = [int(c["open_time"]) for c in minutes]
    assert len(times) == 1000
    assert all(b - a == 60_000 for a, b in zip(times, times[1:], strict=False)), "a seam"
    truth_minutes = exchange_klines(base, "1m")
    for candle in minutes[:-1]:
        row = truth_minutes.get(int(candle["open_time"]))
        if row is not None:  # the exchange's answer reaches back 1000 candles from now
            assert as_exchange_row(candle) == row_values(row)


async def test_a_subscribe_snapshots_the_open_candle_and_trades_follow(
    server: ServerProcess,
) -> None:
    """A streams op is acked under ``streams``, the open candle comes first (a trade
    stream has no snapshot), then live trades and candle updates, each naming its stream."""
    messages: list[dict[str, object]] = []
    # A server just started may not have had its first candle yet: no snapshot to send.
    await eventually(lambda: server.get("/klines/ETHUSDT", params={"interval": "1s"}).json())
    async with websockets.connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws:
        request = {"op": "subscribe", "streams": ["ethusdt@trades", "ETHUSDT@kline_1s"], "id": 3}
        await ws.send(orjson.dumps(request).decode())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sum(m["type"] == "trade" for m in messages) < 3:
            messages.append(orjson.loads(await asyncio.wait_for(ws.recv(), 5)))
    ack = next(m for m in messages if m["type"] == "ack")
    assert ack == {
        "type": "ack",
        "id": 3,
        "op": "subscribe",
        "streams": ["ETHUSDT@trades", "ETHUSDT@kline_1s"],
    }
    # (A BTCUSDT tick held for the client before the op may still come after the ack.)
    after = [m for m in messages[messages.index(ack) + 1 :] if m["type"] != "tick"]
    assert after[0]["type"] == "kline" and after[0]["stream"] == "ETHUSDT@kline_1s"
    streams = {m.get("stream") for m in after if m["type"] in ("trade", "kline")}
    assert streams <= {"ETHUSDT@trades", "ETHUSDT@kline_1s"}
    # Live messages after the snapshot (which is the stream's latest, older) go up in seq.
    seqs = [int(str(m["seq"])) for m in after[1:] if "seq" in m]
    assert seqs == sorted(seqs)


async def test_unknown_and_too_many_streams_are_refused_as_symbols_are(
    server: ServerProcess,
) -> None:
    """A stream not served gets ``unknown_stream`` (and a bare symbol ``unknown_symbol``);
    an unknown name among 500 is reported and the rest served; /sse refuses a request
    that serves nothing with 404 ``unknown_stream``."""
    async with websockets.connect(server.ws_base + "/ws?status=1&streams=ETHUSDT@trades") as ws:
        names = ["BTCUSDT@trades", "SOLUSDT@trades", "BTCUSDT@kline_5m", "NOPE", "x@@y"]
        await ws.send(orjson.dumps({"op": "subscribe", "streams": names, "id": 1}).decode())
        got = await replies(ws, 1, 3)
        errors = {m["code"]: m for m in got if m["type"] == "error"}
        assert errors["unknown_stream"]["streams"] == ["SOLUSDT@trades", "BTCUSDT@kline_5m", "x@@y"]
        assert errors["unknown_symbol"]["symbols"] == ["NOPE"]
        ack = next(m for m in got if m["type"] == "ack")
        assert ack["streams"] == ["BTCUSDT@trades"]
        many = [f"S{i:03d}X@trades" for i in range(499)] + ["ETHUSDT@kline_1s"]
        await ws.send(orjson.dumps({"op": "subscribe", "streams": many, "id": 2}).decode())
        got = await replies(ws, 2, 1)
        assert [m["code"] for m in got] == ["unknown_stream"]
        everything = ["*", "BTCUSDT@kline_1s", "ETHUSDT@kline_1m", "BTCUSDT@kline_1m"]
        await ws.send(orjson.dumps({"op": "subscribe", "streams": everything, "id": 3}).decode())
        (refused,) = await replies(ws, 3, 1)
        assert refused["code"] == "too_many_subscriptions"
        listed = {"op": "list", "id": 4}
        await ws.send(orjson.dumps(listed).decode())
        (ack,) = await replies(ws, 4, 1)
        assert ack["streams"] == ["BTCUSDT@trades", "ETHUSDT@kline_1s", "ETHUSDT@trades"]
    response = server.get("/sse", params={"streams": "SOLUSDT@trades"})
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_stream"
    assert server.get("/trades/SOLUSDT").json()["error"] == "unknown_stream"
    assert server.get("/klines/BTCUSDT", params={"interval": "5m"}).status_code == 404
    assert server.get("/klines/BTCUSDT", params={"interval": "7m"}).status_code == 422


async def replies(
    ws: websockets.ClientConnection, op_id: int, count: int
) -> list[dict[str, object]]:
    """The next ``count`` messages answering the op ``op_id`` (market data skipped)."""
    out: list[dict[str, object]] = []
    while len(out) < count:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        if message.get("id") == op_id:
            out.append(message)
    return out


async def test_sse_resume_replays_exactly_the_trades_missed(server: ServerProcess) -> None:
    """An SSE client of a trade stream that reconnects with its last id gets every trade
    it missed, in order, then live ones: trade ids continue with no gap and no repeat."""
    async with httpx.AsyncClient(base_url=server.base, timeout=10) as http:
        first = await read_trade_events(http, {"streams": "BTCUSDT@trades"}, {}, 4)
        await asyncio.sleep(2.0)  # trades go on meanwhile
        last_id = first[-1][0]
        second = await read_trade_events(
            http, {"streams": "BTCUSDT@trades"}, {"Last-Event-ID": last_id}, 8
        )
    ids = [trade_id for _, trade_id in first + second]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "a trade missing or repeated"


async def read_trade_events(
    http: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str], count: int
) -> list[tuple[str, int]]:
    """The (event id, trade id) of the first ``count`` trade events of an SSE stream."""
    out: list[tuple[str, int]] = []
    event_id = ""
    async with http.stream("GET", "/sse", params=params, headers=headers) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: ") and '"type":"trade"' in line:
                out.append((event_id, int(orjson.loads(line[6:])["trade_id"])))
                if len(out) == count:
                    break
    return out


@pytest.fixture
def exchange_port() -> Iterator[int]:
    with sim_exchange("--rate", "6") as port:
        yield port


async def test_live_candles_are_served_while_the_rest_history_cannot_be_had(
    tmp_path: Path, exchange_port: int
) -> None:
    """With the upstream REST unreachable, candles still stream live and /klines serves
    them; /status names the series whose history is pending and the error's kind."""
    dead = f"http://127.0.0.1:{free_port()}"
    args = ["--source", "binance", "--binance-url", f"ws://127.0.0.1:{exchange_port}"]
    env = {"TICKCAST_BINANCE_REST_URL": dead, "TICKCAST_KLINE_INTERVALS": "1s"}
    with running_server(tmp_path, args, env) as server:

        def pending() -> list[object]:
            klines = server.status()["klines"]
            assert isinstance(klines, dict)
            backfill = klines["backfill"]
            assert isinstance(backfill, dict)
            errors = backfill["errors"]
            assert isinstance(errors, dict)
            return backfill["pending"] if errors.get("connect") else []  # type: ignore[no-any-return]

        await eventually(pending, timeout=10)
        assert "BTCUSDT@kline_1s" in pending()
        messages: list[dict[str, object]] = []
        async with collecting(server.ws_base + "/ws?streams=BTCUSDT@kline_1s", messages):
            await eventually(lambda: any(m.get("closed") for m in messages), timeout=5)
        candles = server.get("/klines/BTCUSDT", params={"interval": "1s"}).json()
        assert candles and all(c["seq"] > 0 for c in candles), "only live candles"
        assert "failed" in server.log() or "unreachable" in server.log() or dead in server.log()


async def test_trades_missed_while_the_upstream_reconnects_are_fetched_in_their_place(
    tmp_path: Path, exchange_port: int
) -> None:
    """The upstream link goes dead, then is reset, while the exchange trades on: the trades
    the connection never sent come from the exchange's aggTrades REST, in their place, so
    a client's trade ids go on one apart, with none missing and none repeated."""
    sim = f"127.0.0.1:{exchange_port}"
    proxy = LinkProxy(exchange_port)
    await proxy.start()
    args = ["--source", "binance", "--binance-url", f"ws://127.0.0.1:{proxy.port}"]
    env = {"TICKCAST_BINANCE_REST_URL": f"http://{sim}", "TICKCAST_STREAM_SYMBOLS": "BTCUSDT"}
    server = ServerProcess(args, env, tmp_path / "server.log")
    try:
        await wait_ready_async(server)
        messages: list[dict[str, object]] = []
        market: list[dict[str, object]] = []
        # A subscriber of the exchange's own keeps its market trading while the
        # server's link is down.
        direct = f"ws://{sim}/stream?streams=btcusdt@aggTrade"
        async with (
            collecting(direct, market),
            collecting(server.ws_base + "/ws?streams=BTCUSDT@trades", messages),
        ):
            await eventually(lambda: len(messages) >= 5)
            proxy.blackholed = True
            await asyncio.sleep(1.5)
            proxy.reset_all()
            proxy.blackholed = False
            before = len(messages)
            await eventually(lambda: len(messages) > before + 15, timeout=15)
        ids = [int(str(m["trade_id"])) for m in messages if m["type"] == "trade"]
        assert ids == list(range(ids[0], ids[0] + len(ids))), "a trade missing or repeated"
        fill = server.status()["trade_fill"]
        assert isinstance(fill, dict)
        assert fill.get("trades_lost", 0) == 0
        assert int(str(fill["fills"])) >= 1 and int(str(fill["filled"])) >= 1, fill
    finally:
        server.stop()
        await proxy.stop()
