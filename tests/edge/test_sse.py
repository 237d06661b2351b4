"""``/sse`` against a real ``tickcast serve`` process with simulated data, over loopback."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from tickcast.settings import DEFAULT_SYMBOLS

from ..support import (
    CHROMIUM,
    TICKERS_ONLY,
    ServerProcess,
    chromium,
    eventually,
    newest_seq,
    require_program,
    running_server,
)
from .rawsse import RawSse

SIM = ["--source", "sim"]
Event = dict[str, str]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"TICKCAST_SIM_RATE": "10", "TICKCAST_SSE_HEARTBEAT": "1", **TICKERS_ONLY}
    with running_server(tmp_path_factory.mktemp("sse"), SIM, env) as s:
        yield s


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Two symbols at 50 ticks/s each, and a 16 KiB buffer limit per client: a resume of
    a few seconds is several times the limit."""
    env = {
        "TICKCAST_SIM_RATE": "50",
        "TICKCAST_HISTORY_SIZE": "2000",
        "TICKCAST_CLIENT_BUFFER_BYTES": "16384",
        "TICKCAST_CLIENT_SNDBUF": "8192",
        **TICKERS_ONLY,
    }
    args = [*SIM, "--symbols", "BTCUSDT,ETHUSDT"]
    with running_server(tmp_path_factory.mktemp("sse-tight"), args, env) as s:
        yield s


@pytest.fixture(scope="module")
def short_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Tickers alone: the tests count a symbol's ticks by seqs (every 10th is BTCUSDT's).
    env = {"TICKCAST_SIM_RATE": "10", "TICKCAST_HISTORY_SIZE": "5", **TICKERS_ONLY}
    with running_server(tmp_path_factory.mktemp("sse-short"), SIM, env) as s:
        yield s


class EventReader:
    """Server-Sent Events parsed from a streaming response, one at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> Event | None:
        """The next event (a comment counts as one); None when the stream ends."""
        event: Event = {}
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.01, deadline - time.monotonic())
            try:
                line = await asyncio.wait_for(anext(self._lines), left)
            except StopAsyncIteration:
                return None
            if line == "":
                if event:
                    return event
                continue
            name, _, value = line.partition(":")
            name = name or "comment"
            event[name] = event.get(name, "") + value.removeprefix(" ")

    async def ticks_for(self, seconds: float) -> list[Event]:
        """Every tick event in the next ``seconds``."""
        out: list[Event] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = await self.next(left)
            except TimeoutError:
                break
            assert event is not None, "stream ended"
            if is_tick(event):
                out.append(event)
        return out

    async def close(self) -> None:
        await self._lines.aclose()  # type: ignore[attr-defined]


@asynccontextmanager
async def stream(
    server: ServerProcess, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[EventReader]:
    async with (
        httpx.AsyncClient(base_url=server.base, timeout=10) as client,
        client.stream("GET", path, headers=headers) as response,
    ):
        assert response.status_code == 200, response.status_code
        reader = EventReader(response)
        try:
            yield reader
        finally:
            await reader.close()


def is_tick(event: Event) -> bool:
    """A tick is an unnamed event (``message``) whose data says ``"type":"tick"``."""
    return "event" not in event and "data" in event and '"type":"tick"' in event["data"]


def tick_of(event: Event) -> dict[str, object]:
    assert "event" not in event, "a tick is an unnamed event"
    data = orjson.loads(event["data"])
    assert isinstance(data, dict)
    assert data["type"] == "tick"
    assert event["id"] == str(data["seq"]), "id: is the tick's seq"
    return data


def seqs_of(events: list[Event], symbol: str) -> list[int]:
    return [int(e["id"]) for e in events if tick_of(e)["symbol"] == symbol]


def history_seqs(server: ServerProcess, symbol: str) -> list[int]:
    return [int(t["seq"]) for t in server.get(f"/history/{symbol}?limit=1000").json()]


async def test_a_stream_starts_with_retry_then_the_snapshot(server: ServerProcess) -> None:
    """``retry: 2000``, an unnamed tick event per symbol with ``id: <seq>``, then live."""
    async with stream(server, "/sse?symbols=BTCUSDT,ETHUSDT") as events:
        assert events.response.headers["content-type"].startswith("text/event-stream")
        assert events.response.headers["cache-control"] == "no-cache"
        assert await events.next() == {"retry": "2000"}
        snapshot = [await events.next(), await events.next()]
        live = await events.ticks_for(1.0)
    assert all(e is not None and is_tick(e) for e in snapshot)
    first = [tick_of(e) for e in snapshot if e is not None]
    assert sorted(str(t["symbol"]) for t in first) == ["BTCUSDT", "ETHUSDT"]
    assert [t["seq"] for t in first] == sorted(t["seq"] for t in first)  # type: ignore[type-var]
    ids = [int(e["id"]) for e in live]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert ids[0] > max(int(t["seq"]) for t in first)  # type: ignore[call-overload]
    assert {tick_of(e)["symbol"] for e in live} == {"BTCUSDT", "ETHUSDT"}


async def test_the_default_stream_carries_every_default_symbol(server: ServerProcess) -> None:
    """``/sse`` with no parameters gets a snapshot of all the default symbols."""
    async with stream(server, "/sse") as events:
        assert await events.next() == {"retry": "2000"}
        snapshot = [await events.next() for _ in DEFAULT_SYMBOLS]
    symbols = sorted(str(tick_of(e)["symbol"]) for e in snapshot if e is not None)
    assert symbols == sorted(DEFAULT_SYMBOLS)


@pytest.mark.parametrize("how", ["header", "query"])
async def test_a_resumed_stream_misses_nothing_and_repeats_nothing(
    server: ServerProcess, how: str
) -> None:
    """A resume by last id delivers every missed tick once, in order: /history matches."""
    path = "/sse?symbols=BTCUSDT,ETHUSDT"
    async with stream(server, path) as events:
        assert await events.next() == {"retry": "2000"}
        before = await events.ticks_for(0.5)
    last_id = before[-1]["id"]
    # A second missed while away: 10 symbols at 10 ticks/s.
    await eventually(lambda: newest_seq(server) > int(last_id) + 100)
    if how == "header":
        resumed = stream(server, path, headers={"Last-Event-ID": last_id})
    else:
        resumed = stream(server, f"{path}&last_event_id={last_id}")
    async with resumed as events:
        assert await events.next() == {"retry": "2000"}
        after = await events.ticks_for(1.0)
    assert int(after[0]["id"]) > int(last_id)
    ids = [int(e["id"]) for e in before + after]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "in order, no duplicates"
    for symbol in ("BTCUSDT", "ETHUSDT"):
        got = seqs_of(before, symbol) + seqs_of(after, symbol)
        reference = [s for s in history_seqs(server, symbol) if got[0] <= s <= got[-1]]
        assert got == reference, f"{symbol}: gap or duplicate across the reconnect"


# The client reads at 100 KB/s and must keep up with live ticks after the backlog: starved
# of CPU it falls behind, and a slow reader is conflated by design. Run alone.
@pytest.mark.solo
async def test_a_resume_larger_than_the_buffer_limit_is_paced_not_closed(
    tight: ServerProcess,
) -> None:
    """A resume several times the client's buffer limit, read at about 100 KB/s, arrives
    whole: every missed tick in order, then live ticks with no gap and no duplicate; the
    server does not close the client for the backlog it chose to send."""
    path = "/sse?symbols=BTCUSDT,ETHUSDT"
    async with stream(tight, path) as events:
        assert await events.next() == {"retry": "2000"}
        before = await events.ticks_for(0.3)
    last_id = before[-1]["id"]
    # About 300 ticks missed (3 s of two symbols at 50/s), 100 KB: six times the limit.
    await eventually(lambda: newest_seq(tight) > int(last_id) + 300)
    newest = max(int(t["seq"]) for t in tight.get("/prices").json())
    raw = await RawSse.get(
        tight.base + path, headers=[f"Last-Event-ID: {last_id}".encode()], rcvbuf=8192
    )
    got: list[Event] = []
    try:
        assert raw.status == 200
        deadline = time.monotonic() + 12
        # Through the backlog and into live ticks: two seconds past the reconnect's newest.
        while not got or int(got[-1]["id"]) < newest + 200:
            assert time.monotonic() < deadline, f"too slow: {len(got)} ticks"
            event = await raw.next_event(timeout=5, rate=100_000)
            assert event is not None, f"stream ended after {len(got)} ticks"
            assert event.get("event") != "reset"
            if is_tick(event):
                got.append(event)
    finally:
        raw.close()
    assert raw.received > 5 * 16384
    ids = [int(e["id"]) for e in got]
    assert ids[0] > int(last_id)
    assert ids == sorted(set(ids)), "in order, no duplicates"
    for symbol in ("BTCUSDT", "ETHUSDT"):
        seqs = seqs_of(got, symbol)
        reference = [s for s in history_seqs(tight, symbol) if int(last_id) < s <= ids[-1]]
        assert seqs == reference, f"{symbol}: gap or duplicate across the resume"
    closes = tight.status()["edge"]["closes"]  # type: ignore[index]
    assert closes == {}, closes


async def test_a_resume_from_before_the_history_gets_a_reset(
    short_history: ServerProcess,
) -> None:
    """A resume older than the history gets ``event: reset`` with a snapshot, then live."""
    path = "/sse?symbols=BTCUSDT,ETHUSDT"
    async with stream(short_history, path) as events:
        assert await events.next() == {"retry": "2000"}
        before = await events.ticks_for(0.3)

    def history_moved_past_the_id() -> bool:
        # Each symbol ticks every 10 seqs (10 symbols, one step each): an oldest held tick
        # 30 past the id means ticks the client missed are gone, not just the one it had.
        oldest = [history_seqs(short_history, s)[0] for s in ("BTCUSDT", "ETHUSDT")]
        return min(oldest) > int(before[-1]["id"]) + 30

    await eventually(history_moved_past_the_id)
    async with stream(short_history, path, headers={"Last-Event-ID": before[-1]["id"]}) as events:
        assert await events.next() == {"retry": "2000"}
        reset = await events.next()
        live = await events.ticks_for(0.5)
    assert reset is not None
    assert reset["event"] == "reset", reset
    body = orjson.loads(reset["data"])
    assert body["type"] == "reset"
    assert int(reset["id"]) == body["last_seq"]
    assert sorted(t["symbol"] for t in body["ticks"]) == ["BTCUSDT", "ETHUSDT"]
    assert all(t["seq"] <= body["last_seq"] for t in body["ticks"])
    assert live and all(int(e["id"]) > body["last_seq"] for e in live)


async def test_an_id_from_the_future_gets_a_reset(server: ServerProcess) -> None:
    """A Last-Event-ID the server never issued (e.g. before a restart) resets the client."""
    async with stream(server, "/sse?symbols=BTCUSDT", {"Last-Event-ID": "999999999"}) as events:
        assert await events.next() == {"retry": "2000"}
        reset = await events.next()
    assert reset is not None and reset["event"] == "reset"


async def test_a_garbage_last_event_id_gets_a_reset(server: ServerProcess) -> None:
    """A Last-Event-ID the server never issued (not a number) gets a reset (SPEC §6)."""
    async with stream(server, "/sse?symbols=BTCUSDT", {"Last-Event-ID": "abc"}) as events:
        assert await events.next() == {"retry": "2000"}
        first = await events.next()
        live = await events.ticks_for(0.5)
    assert first is not None and first["event"] == "reset"
    assert live


@pytest.mark.parametrize(
    ("query", "header"),
    [
        ("&last_event_id=%C2%B2", None),
        ("&last_event_id=" + "9" * 5000, None),
        ("&last_event_id=%D9%A3", None),
        ("", b"Last-Event-ID: \xb2"),
        ("", b"Last-Event-ID: \xc2\xb2"),
        ("", b"Last-Event-ID: " + b"9" * 5000),
    ],
    ids=["superscript-query", "5000-nines-query", "arabic-digit", "b2-byte", "utf8-b2", "nines"],
)
async def test_an_impossible_last_event_id_is_a_reset_never_a_500(
    server: ServerProcess, query: str, header: bytes | None
) -> None:
    """Ids no server issues (non-ASCII digits, thousands of digits, raw bytes) get 200 and
    a reset with a snapshot, never a 500; the server logs no traceback for them."""
    raw = await RawSse.get(
        f"{server.base}/sse?symbols=BTCUSDT{query}", headers=[header] if header else []
    )
    try:
        assert raw.status == 200
        assert await raw.next_event() == {"retry": "2000"}
        reset = await raw.next_event()
    finally:
        raw.close()
    assert reset is not None and reset["event"] == "reset"
    assert [t["symbol"] for t in orjson.loads(reset["data"])["ticks"]] == ["BTCUSDT"]
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("value", ["1e12", "60001", "-1", "nan", "inf"])
async def test_throttle_ms_out_of_bounds_is_refused(server: ServerProcess, value: str) -> None:
    """``throttle_ms`` must be 0 to 60000: anything else is a 422 naming the parameter,
    not a session pinned for decades."""
    async with (
        httpx.AsyncClient(base_url=server.base, timeout=5) as client,
        client.stream("GET", f"/sse?symbols=BTCUSDT&throttle_ms={value}") as response,
    ):
        assert response.status_code == 422  # before reading: a stream would never end
        body = orjson.loads(await response.aread())
    assert body["error"] == "invalid_request"
    assert "throttle_ms" in body["message"]


async def test_the_longest_throttle_is_accepted(server: ServerProcess) -> None:
    """``throttle_ms=60000`` is within bounds: the stream opens with the snapshot."""
    async with stream(server, "/sse?symbols=BTCUSDT&throttle_ms=60000") as events:
        assert await events.next() == {"retry": "2000"}
        first = await events.next()
    assert first is not None and is_tick(first)


async def test_the_stream_sends_heartbeat_comments(server: ServerProcess) -> None:
    """With TICKCAST_SSE_HEARTBEAT=1 a comment line arrives about every second."""
    comments = 0
    async with stream(server, "/sse?symbols=BTCUSDT") as events:
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline and comments < 2:
            event = await events.next()
            assert event is not None
            comments += "comment" in event
    assert comments >= 2


async def test_a_stream_of_no_served_symbol_is_a_404_json_error(server: ServerProcess) -> None:
    """``/sse?symbols=`` naming no symbol served here answers 404 with a JSON error body."""
    async with httpx.AsyncClient(base_url=server.base, timeout=5) as client:
        response = await client.get("/sse?symbols=NOPEUSDT,fooUSDT")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == "unknown_symbol"
    assert "NOPEUSDT" in response.json()["message"]
    assert "FOOUSDT" in response.json()["message"]


async def test_unknown_symbols_are_an_error_event_and_the_served_ones_stream(
    server: ServerProcess,
) -> None:
    """``/sse?symbols=FOOUSDT,BTCUSDT`` streams BTCUSDT and reports FOOUSDT in a named
    ``event: error`` carrying the same JSON as the ``/ws`` error for the same request."""
    async with connect(server.ws_base + "/ws?symbols=FOOUSDT,BTCUSDT") as ws:
        ws_error = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
    async with stream(server, "/sse?symbols=FOOUSDT,BTCUSDT") as events:
        assert await events.next() == {"retry": "2000"}
        error = await events.next()
        snapshot = await events.next()
        live = await events.ticks_for(1.0)
    assert error is not None and error["event"] == "error"
    assert "id" not in error, "an error is no resume point"
    body = orjson.loads(error["data"])
    assert body == ws_error
    assert body["code"] == "unknown_symbol"
    assert body["symbols"] == ["FOOUSDT"]
    assert snapshot is not None and tick_of(snapshot)["symbol"] == "BTCUSDT"
    assert live and {tick_of(e)["symbol"] for e in live} == {"BTCUSDT"}


async def test_a_throttled_stream_counts_the_snapshot_as_the_last_send(
    server: ServerProcess,
) -> None:
    """With ``throttle_ms=60000`` the snapshot (or the ``reset`` of a resume that cannot be
    served) is the symbol's send of the window: no live tick of it follows within the next
    seconds (10 ticks/s arrive upstream)."""
    path = "/sse?symbols=BTCUSDT&throttle_ms=60000"
    async with (
        stream(server, path) as events,
        stream(server, path, {"Last-Event-ID": "1"}) as resumed,
    ):
        assert await events.next() == {"retry": "2000"}
        assert await resumed.next() == {"retry": "2000"}
        snapshot = await events.next()
        reset = await resumed.next()
        later, after_reset = await asyncio.gather(events.ticks_for(1.5), resumed.ticks_for(1.5))
    assert snapshot is not None and is_tick(snapshot)
    assert reset is not None and reset["event"] == "reset"
    assert later == []
    assert after_reset == []


async def test_a_closed_stream_is_forgotten(server: ServerProcess) -> None:
    """When an SSE client goes away its session and subscriptions are dropped."""
    async with stream(server, "/sse?symbols=BTCUSDT,ETHUSDT,SOLUSDT") as events:
        await events.next()
        edge = server.status()["edge"]
        assert isinstance(edge, dict)
        assert edge["clients"]["sse"] >= 1
    deadline = time.monotonic() + 5
    while server.status()["edge"]["clients"]["sse"] != 0:  # type: ignore[index]
        assert time.monotonic() < deadline, "SSE session not detached"
        await asyncio.sleep(0.05)


async def test_sigterm_ends_open_streams_and_exits_within_5s(tmp_path: Path) -> None:
    """On SIGTERM an open event stream ends cleanly and the process exits in under 5 s."""
    with running_server(tmp_path, SIM, {"TICKCAST_SIM_RATE": "10"}) as server:
        async with stream(server, "/sse?symbols=BTCUSDT") as events:
            await events.next()

            async def until_end() -> None:
                while await events.next(timeout=8) is not None:
                    pass

            ended = asyncio.create_task(until_end())
            took = await asyncio.to_thread(server.stop)
            await ended
    assert took < 5.0


@pytest.mark.e2e
def test_the_sse_dashboard_with_a_stale_saved_symbol_shows_the_served_rows(
    server: ServerProcess,
) -> None:
    """The dashboard on SSE, whose saved list names a symbol no longer served, shows the
    served symbols' rows with live prices and stays connected."""
    require_program(CHROMIUM, "chromium", "browser")
    from playwright.sync_api import Browser, expect

    saved = orjson.dumps({"symbols": ["FOOUSDT", "BTCUSDT", "ETHUSDT"]}).decode()
    with chromium() as instance:
        context = cast(Browser, instance).new_context()
        context.add_init_script(f"localStorage.setItem('tickcast.dashboard.v1', '{saved}')")
        page = context.new_page()
        page.goto(server.base + "/?transport=sse")
        for symbol in ("BTCUSDT", "ETHUSDT"):
            price = page.locator(f'tr[data-symbol="{symbol}"] td.price')
            expect(price).to_have_text(re.compile(r"\d"), timeout=15_000)
        page.wait_for_function(
            "() => Number(document.querySelector('#tick-count').textContent) > 20",
            timeout=10_000,
        )
        stats = page.evaluate("window.tickcast.stats()")
        context.close()
    assert stats["conn"] == "connected"
    assert stats["reconnects"] == 0
