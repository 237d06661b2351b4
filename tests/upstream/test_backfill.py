"""Candle history over real sockets: from a sim-exchange process (paging, 429s obeyed),
and from hostile servers written here (not JSON, never answering, refusing, failing then
recovering), which cost retries and one log line per kind, never the backfill."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from tickcast.messages.kline import Kline
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.backfill import KlineBackfill
from tickcast.upstream.pacing import RetryPacer
from tickcast.upstream.rest import RestClient, RestKline, parse_klines

from ..support import eventually, free_port, sim_exchange

Delivered = dict[tuple[str, str], list[Kline]]


def fast() -> RetryPacer:
    """Retries within a test's patience: 50 ms growing to 200 ms."""
    return RetryPacer(initial=0.05, maximum=0.2)


@contextlib.asynccontextmanager
async def backfill(
    client: RestClient, history: int, pacer: RetryPacer | None = None
) -> AsyncIterator[tuple[KlineBackfill, Delivered]]:
    """A running backfill and what it delivered, by (symbol, interval)."""
    delivered: Delivered = {}

    def on_candles(symbol: str, interval: str, candles: list[Kline]) -> None:
        delivered[(symbol, interval)] = candles

    filler = KlineBackfill(client, history, on_candles, pacer=pacer or fast())
    task = asyncio.create_task(filler.run())
    try:
        yield filler, delivered
    finally:
        await cancel_and_wait(task)
        assert task.cancelled()


async def sim_rows(base: str, symbol: str, interval: str, limit: int, end: int) -> list[RestKline]:
    """The simulator's own answer, read with plain httpx."""
    params: dict[str, str | int] = {
        "symbol": symbol,
        "interval": interval,
        "limit": limit,
        "endTime": end,
    }
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{base}/api/v3/klines", params=params)
    assert answer.status_code == 200
    return parse_klines(symbol, interval, answer.json(), limit=limit, end_ms=end)


async def answering(base: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        async with httpx.AsyncClient() as http:
            return (await http.get(f"{base}/api/v3/ping")).status_code == 200
    return False


def same(candles: list[Kline], rows: list[RestKline]) -> bool:
    fields = ("open_time", "close_time", "open", "high", "low", "close", "volume", "trades")
    return [tuple(getattr(c, f) for f in fields) for c in candles] == [
        tuple(getattr(r, f) for f in fields) for r in rows
    ]


async def test_history_from_a_sim_exchange_matches_its_own_answer_across_pages() -> None:
    """A history over 1000 candles is fetched in pages backwards from the first streamed
    candle: exactly the simulator's own candles before it, oldest first, contiguous,
    closed and labelled; and it stops at the oldest candle the exchange has."""
    with sim_exchange("--symbols", "BTCUSDT,ETHUSDT", "--rate", "5") as port:
        base = f"http://127.0.0.1:{port}"
        await eventually(lambda: answering(base), timeout=20)
        async with RestClient() as client:
            # A series starts at its first request, after the thousand generated candles;
            # a few live seconds later it holds more than a thousand.
            for symbol in ("BTCUSDT", "ETHUSDT"):
                await client.klines(base, symbol, "1s", limit=1)
            await asyncio.sleep(3)
            (newest,) = await client.klines(base, "BTCUSDT", "1s", limit=1)
            before = newest.open_time
            newer = await sim_rows(base, "BTCUSDT", "1s", 1000, before - 1)
            older = await sim_rows(base, "BTCUSDT", "1s", 1000, newer[0].open_time - 1)
            held = len(older) + len(newer)
            assert held > 1001
            # All but the oldest: a second page that ends before the exchange's oldest.
            async with backfill(client, held - 1) as (filler, delivered):
                filler.request("BTCUSDT", "1s", "sim", base, before)
                filler.request("BTCUSDT", "1s", "sim", base, before)  # idempotent
                filler.request("ETHUSDT", "1s", "sim", base, before)
                await eventually(lambda: len(delivered) == 2, timeout=20)
                status = filler.status()
            async with backfill(client, 5000) as (whole, everything):
                whole.request("BTCUSDT", "1s", "sim", base, before)
                await eventually(lambda: len(everything) == 1, timeout=20)
    got = delivered[("BTCUSDT", "1s")]
    assert len(got) == held - 1 and same(got, older[1:] + newer)
    assert got[-1].open_time == before - 1000
    assert all(b.open_time - a.open_time == 1000 for a, b in zip(got, got[1:], strict=False))
    assert all(k.closed and k.seq == 0 and k.source == "sim" for k in got)
    assert len(delivered[("ETHUSDT", "1s")]) == held - 1
    assert status["pending"] == [] and status["filled"] == 2 and status["errors"] == {}
    assert isinstance(status["used_weight"], int) and status["used_weight"] > 0
    # Everything before the first streamed candle: the generated thousand and some live.
    assert same(everything[("BTCUSDT", "1s")], older + newer)


async def test_a_429_is_obeyed_and_the_backfill_completes_after() -> None:
    """Over the simulator's weight budget the backfill gets 429s with Retry-After, waits
    them out (no 418: it never asks while told to wait) and fills every series."""
    args = ("--symbols", "BTCUSDT,ETHUSDT,SOLUSDT", "--rest-weight-limit", "4")
    with sim_exchange(*args, "--rest-weight-window", "2") as port:
        base = f"http://127.0.0.1:{port}"
        await eventually(lambda: answering(base), timeout=20)
        async with RestClient() as client:
            (newest,) = await client.klines(base, "BTCUSDT", "1m", limit=1)
            async with backfill(client, 1500) as (filler, delivered):
                for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
                    filler.request(symbol, "1m", "sim", base, newest.open_time)
                await eventually(lambda: len(delivered) == 3, timeout=30)
                status = filler.status()
    errors = status["errors"]
    assert isinstance(errors, dict) and errors.get("http_429", 0) >= 1
    assert "http_418" not in errors
    assert status["pending"] == [] and status["filled"] == 3
    # The thousand generated before each series' first request (one fewer for a series
    # first asked for in the next minute).
    assert all(999 <= len(candles) <= 1000 for candles in delivered.values())


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tiny_server(handler: Handler) -> AsyncIterator[str]:
    """A real HTTP server on a free loopback port; yields its base URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> None:
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass


async def reply(writer: asyncio.StreamWriter, status: str, body: bytes) -> None:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    writer.write(head.encode() + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def not_json(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await reply(writer, "200 OK", b"<html>maintenance</html>")


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    with contextlib.suppress(ConnectionError):
        await reader.read()  # never answers; the client gives up first
    writer.close()


@contextlib.asynccontextmanager
async def refusing() -> AsyncIterator[str]:
    yield f"http://127.0.0.1:{free_port()}"  # nothing listens there


@contextlib.asynccontextmanager
async def hostile(kind: str) -> AsyncIterator[str]:
    if kind == "connect":
        async with refusing() as base:
            yield base
        return
    async with tiny_server(not_json if kind == "not_json" else silent) as base:
        yield base


@pytest.mark.parametrize("kind", ["not_json", "timeout", "connect"])
async def test_a_hostile_server_is_retried_and_logged_once(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Answers that are not JSON, no answer within the timeout, a refused connection:
    retried with backoff, logged once (with the URL), counted, shown pending; the
    backfill keeps running."""
    caplog.set_level(logging.INFO, logger="tickcast.upstream.backfill")
    async with (
        hostile(kind) as base,
        RestClient(timeout=0.2) as client,
        backfill(client, 10) as (filler, delivered),
    ):
        filler.request("BTCUSDT", "1m", "binance", base, 1_700_000_040_000)

        def failures() -> int:
            errors = filler.status()["errors"]
            assert isinstance(errors, dict)
            return int(errors.get(kind, 0))

        await eventually(lambda: failures() >= 3, timeout=10)
        status = filler.status()
    assert status["pending"] == ["BTCUSDT@kline_1m"] and status["filled"] == 0
    assert status["errors"] == {kind: failures()} and status["last_error"]
    assert delivered == {}
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and base in warnings[0].getMessage()


async def test_retries_back_off_between_attempts() -> None:
    """A server that is down is not hammered: attempts are spaced by the growing backoff."""
    attempts: list[float] = []

    async def down(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempts.append(asyncio.get_running_loop().time())
        await read_request(reader)
        await reply(writer, "503 Service Unavailable", b"down")

    pacer = RetryPacer(initial=0.05, maximum=0.4)
    async with (
        tiny_server(down) as base,
        RestClient(timeout=1) as client,
        backfill(client, 10, pacer) as (filler, _),
    ):
        filler.request("BTCUSDT", "1m", "binance", base, 1_700_000_040_000)
        await eventually(lambda: len(attempts) >= 6, timeout=10)
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.02 and max(gaps[:5]) >= 0.1
    assert gaps[4] >= 0.2  # the fifth wait's ceiling is the cap: at least half of it


async def test_a_recovered_server_fills_the_series_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two 503s, then an answer: one warning, one info line, the series filled."""
    caplog.set_level(logging.INFO, logger="tickcast.upstream.backfill")
    calls = 0

    async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        await read_request(reader)
        if calls <= 2:
            await reply(writer, "503 Service Unavailable", b"busy")
        else:
            await reply(writer, "200 OK", b"[]")

    async with (
        tiny_server(flaky) as base,
        RestClient(timeout=1) as client,
        backfill(client, 10) as (filler, delivered),
    ):
        filler.request("BTCUSDT", "1m", "binance", base, 1_700_000_040_000)
        await eventually(lambda: delivered, timeout=10)
        status = filler.status()
    assert delivered == {("BTCUSDT", "1m"): []}
    assert status["filled"] == 1 and status["errors"] == {"http_5xx": 2}
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.INFO]


async def test_a_cancelled_series_stops_and_can_be_requested_again() -> None:
    """cancel() stops retrying a series and forgets it; reset() forgets every one."""
    async with (
        refusing() as base,
        RestClient(timeout=0.2) as client,
        backfill(client, 10) as (filler, _),
    ):
        filler.request("BTCUSDT", "1m", "binance", base, 1_700_000_040_000)
        filler.request("ETHUSDT", "1m", "binance", base, 1_700_000_040_000)
        filler.cancel("BTCUSDT", "1m")
        assert filler.status()["pending"] == ["ETHUSDT@kline_1m"]
        filler.request("BTCUSDT", "1m", "binance", base, 1_700_000_040_000)
        assert filler.status()["pending"] == ["BTCUSDT@kline_1m", "ETHUSDT@kline_1m"]
        filler.reset()
        assert filler.status()["pending"] == []
        await asyncio.sleep(0.3)
        assert filler.status()["pending"] == []


async def test_a_new_rest_is_tried_at_once_when_it_becomes_known() -> None:
    """A series failing against one REST, backing off for a minute, is filled at once when
    its REST changes and ``retry_now`` is called (a follower learning the leader's)."""
    where: list[str] = []
    slow = RetryPacer(initial=60.0, maximum=60.0)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reply(writer, "200 OK", b"[]")

    async with (
        refusing() as dead,
        tiny_server(answer) as live,
        RestClient(timeout=0.5) as client,
        backfill(client, 10, slow) as (filler, delivered),
    ):
        where.append(dead)
        filler.request("BTCUSDT", "1m", "sim", lambda: where[-1], 1_700_000_040_000)
        await eventually(lambda: filler.status()["errors"], timeout=5)
        where.append(live)
        filler.retry_now()
        await eventually(lambda: delivered, timeout=3)
    assert delivered == {("BTCUSDT", "1m"): []}
