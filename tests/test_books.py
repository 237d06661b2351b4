"""Order books end to end (SPEC §12): a real ``tickcast serve`` against a real simulated
exchange, its books checked against the exchange's true book (``/_sim/book``), never
against tickcast's own idea of it, through depth gaps, dropped connections, a
``serverShutdown`` rotation and a REST that is down."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tickcast.messages.book import Book, Depth, Levels
from tickcast.messages.decimals import canonical_decimal

from .rawclient import RawWebSocket
from .support import ServerProcess, eventually, running_server, sim_exchange

pytestmark = pytest.mark.slow

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
SIM_ARGS = ("--symbols", ",".join(SYMBOLS), "--rate", "2", "--rest-weight-window", "1000000")


def server_env(port: int, **extra: str) -> dict[str, str]:
    return {
        "TICKCAST_SYMBOLS": ",".join(SYMBOLS),
        "TICKCAST_STREAM_KINDS": "book",
        "TICKCAST_BINANCE_URL": f"ws://127.0.0.1:{port}",
        "TICKCAST_BINANCE_REST_URL": f"http://127.0.0.1:{port}",
        "TICKCAST_BACKOFF_INITIAL": "0.05",
        "TICKCAST_BACKOFF_MAX": "0.5",
        **extra,
    }


@contextlib.contextmanager
def serving(tmp_path: Path, **extra: str) -> Iterator[tuple[ServerProcess, str]]:
    """A simulated exchange and a server whose upstream it is; yields the server and the
    exchange's base URL."""
    with (
        sim_exchange(*SIM_ARGS, log=tmp_path / "sim.log") as port,
        running_server(tmp_path, ["--source", "binance"], server_env(port, **extra)) as server,
    ):
        yield server, f"http://127.0.0.1:{port}"


def canonical(rows: list[list[str]]) -> Levels:
    return tuple((canonical_decimal(p), canonical_decimal(q)) for p, q in rows)


async def served_book(http: httpx.AsyncClient, base: str, symbol: str) -> Book | None:
    answer = await http.get(f"{base}/book/{symbol}?limit=5000")
    return Book.from_json(answer.content) if answer.status_code == 200 else None


async def compare_at_truth(
    http: httpx.AsyncClient, server: str, exchange: str, symbol: str, levels: int | None = None
) -> bool | None:
    """Take the true book now, then poll the server's until it reaches the same update id:
    True when they are equal there (an unequal book fails the test), None when the server
    went past that id without answering it (a resync, or a slow poll). ``levels``: compare
    the best that many a side only (a book started from a shallower snapshot knows the
    levels beyond it only once they change)."""
    truth = (await http.get(f"{exchange}/_sim/book?symbol={symbol}")).json()
    target = int(truth["lastUpdateId"])
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        book = await served_book(http, server, symbol)
        if book is not None and book.update_id == target:
            bids, asks = canonical(truth["bids"]), canonical(truth["asks"])
            assert book.bids[:levels] == bids[:levels], f"{symbol} bids at {target}"
            assert book.asks[:levels] == asks[:levels], f"{symbol} asks at {target}"
            return True
        if book is not None and book.update_id > target:
            return None
        await asyncio.sleep(0.01)
    return None


async def sim_stats(http: httpx.AsyncClient, exchange: str) -> dict[str, Any]:
    stats = (await http.get(f"{exchange}/_sim/stats")).json()
    assert isinstance(stats, dict)
    return stats


def books_status(server: ServerProcess) -> dict[str, Any]:
    books = server.status()["books"]
    assert isinstance(books, dict)
    return books


async def all_synced(server: ServerProcess) -> bool:
    return bool(books_status(server)["synced"] == len(SYMBOLS))


async def test_books_equal_the_true_books_through_gaps_drops_and_a_rotation(
    tmp_path: Path,
) -> None:
    """depth_gap on ETHUSDT every few seconds, a dropped connection, a close 1001 and a
    serverShutdown rotation: at 20+ moments every symbol's /book equals the exchange's
    true book at the same update id, level for level. The rotation costs no snapshot;
    the symbols without a gap are resynced only when a fresh connection's diffs did not
    continue their books (at most once per dropped connection)."""
    with serving(tmp_path) as (server, exchange):
        async with httpx.AsyncClient(timeout=5) as http:
            await eventually(lambda: all_synced(server), timeout=20)
            faults = [
                "depth_gap&symbol=ETHUSDT",
                "drop",
                "depth_gap&symbol=ETHUSDT",
                "shutdown&duration=1",
                "depth_gap&symbol=ETHUSDT",
                "close1001",
                "depth_gap&symbol=ETHUSDT",
            ]
            moments = 0
            rotation_snapshots: dict[str, int] | None = None
            for round_ in range(48):
                if moments >= 20 and not faults:
                    break
                if round_ % 4 == 0 and faults:
                    kind = faults.pop(0)
                    if kind.startswith("shutdown"):
                        before_rotation = (await sim_stats(http, exchange))["depth_snapshots"]
                    answer = await http.post(f"{exchange}/_sim/fault?kind={kind}")
                    assert answer.status_code == 200, answer.text
                    if kind.startswith("shutdown"):
                        await asyncio.sleep(2.5)  # the close comes 1 s after the event
                        after = (await sim_stats(http, exchange))["depth_snapshots"]
                        rotation_snapshots = {s: after[s] - before_rotation[s] for s in SYMBOLS}
                    await asyncio.sleep(0.3)
                results = [await compare_at_truth(http, server.base, exchange, s) for s in SYMBOLS]
                moments += all(results)
                await asyncio.sleep(0.2)
            assert moments >= 20, f"only {moments} moments compared on every symbol"
            stats = await sim_stats(http, exchange)
            await eventually(lambda: all_synced(server), timeout=10)
            books = books_status(server)
    assert rotation_snapshots == dict.fromkeys(SYMBOLS, 0), "a rotation took snapshots"
    snapshots = stats["depth_snapshots"]
    closes = stats["closes"]
    # The drop (a reset), the close 1001, and the rotation's old connection (1000).
    assert stats["resets"] >= 1 and "1001" in closes and stats["connections_total"] >= 4, stats
    print("depth snapshots", snapshots, "carried", books["keeper"]["carried"])
    # ETHUSDT: its first snapshot and one per gap (a gap may also fall in a reconnect).
    assert snapshots["ETHUSDT"] >= 4, snapshots
    for symbol in ("BTCUSDT", "SOLUSDT"):
        assert 1 <= snapshots[symbol] <= 3, snapshots  # the first; one per fresh connection
    keeper = books["keeper"]
    assert keeper["errors"].get("http_418") is None
    assert books["disconnected"] == 0


@contextlib.asynccontextmanager
async def depth_client(url: str) -> AsyncIterator[dict[str, Any]]:
    """A client of ``BTCUSDT@depth`` that keeps its own book from the first ``book``
    then the diffs, checking each diff follows the last message: ``state`` holds it."""
    state: dict[str, Any] = {
        "bids": {},
        "asks": {},
        "update_id": None,
        "gaps": 0,
        "merged": 0,
        "spans": [],
    }

    def apply(message: bytes) -> None:
        head = orjson.loads(message)
        if head["type"] == "book":
            book = Book.from_json(message)
            state["bids"], state["asks"] = dict(book.bids), dict(book.asks)
            state["update_id"] = book.update_id
        elif head["type"] == "depth":
            diff = Depth.from_json(message)
            if state["update_id"] is None or diff.first_update_id != state["update_id"] + 1:
                state["gaps"] += 1
            # A diff spanning several of the exchange's 100 ms steps: a merged one.
            state["spans"].append(diff.update_id - diff.first_update_id + 1)
            state["merged"] = sum(span > 3 * min(state["spans"]) for span in state["spans"])
            for side, levels in (("bids", diff.bids), ("asks", diff.asks)):
                for price, qty in levels:
                    if qty == "0":
                        state[side].pop(price, None)
                    else:
                        state[side][price] = qty
            state["update_id"] = diff.update_id

    state["apply"] = apply
    yield state


async def test_a_slow_depth_client_builds_the_same_book(tmp_path: Path) -> None:
    """A client that reads BTCUSDT@depth over a slow link (a 4 KB receive buffer, read a
    little at a time) falls behind and gets diffs merged, never a hole; once it catches
    up, its own book equals /book at the same update id, level for level."""
    env = {"TICKCAST_CLIENT_SNDBUF": "4096", "TICKCAST_SLOW_CLIENT_TIMEOUT": "30"}
    with serving(tmp_path, **env) as (server, _exchange):
        async with httpx.AsyncClient(timeout=5) as http:
            await eventually(lambda: all_synced(server), timeout=20)
            ws = await RawWebSocket.connect(
                server.ws_base + "/ws?streams=BTCUSDT@depth", rcvbuf=4096
            )
            try:
                async with depth_client("") as state:
                    # Slow: a message every 150 ms while diffs come every 100 ms.
                    slow_until = time.monotonic() + 4.0
                    while time.monotonic() < slow_until:
                        frame = await ws.next_frame(timeout=5)
                        assert frame is not None
                        state["apply"](frame.data)
                        await asyncio.sleep(0.15)
                    # Caught up: read at full speed until it holds the server's id.
                    matched = 0
                    deadline = time.monotonic() + 10
                    while matched < 3 and time.monotonic() < deadline:
                        served = await served_book(http, server.base, "BTCUSDT")
                        assert served is not None
                        while state["update_id"] is None or state["update_id"] < served.update_id:
                            frame = await ws.next_frame(timeout=5)
                            assert frame is not None
                            state["apply"](frame.data)
                        if state["update_id"] == served.update_id:
                            assert tuple(sorted(state["bids"].items())) == tuple(
                                sorted(served.bids)
                            )
                            assert tuple(sorted(state["asks"].items())) == tuple(
                                sorted(served.asks)
                            )
                            matched += 1
                    assert matched >= 3
                    assert state["gaps"] == 0
                    assert state["merged"] >= 1, "the slow client never fell behind"
            finally:
                ws.close()


def whole_again(got: list[dict[str, Any]]) -> bool:
    """A ``status`` came, then a whole book of the depth stream, then a diff."""
    kinds = [(m["type"], m.get("stream")) for m in got]
    told = next((i for i, (kind, _) in enumerate(kinds) if kind == "status"), None)
    if told is None or ("book", "BTCUSDT@depth") not in kinds[told:]:
        return False
    fresh = kinds.index(("book", "BTCUSDT@depth"), told)
    return any(kind == "depth" for kind, _ in kinds[fresh:])


async def test_a_broken_book_is_not_served_and_its_clients_are_told(tmp_path: Path) -> None:
    """A gap on BTCUSDT while the exchange's REST is down: /book answers 503 naming the
    state, the book's stream clients get a ``status`` (and no book or diff of it) until
    a fresh whole ``book`` comes once the REST answers again; ETHUSDT is served all along."""
    with serving(tmp_path) as (server, exchange):
        async with httpx.AsyncClient(timeout=5) as http:
            await eventually(lambda: all_synced(server), timeout=20)
            url = server.ws_base + "/ws?streams=BTCUSDT@book,BTCUSDT@depth"
            ws = await RawWebSocket.connect(url)
            try:
                got: list[dict[str, Any]] = []

                async def read_for(seconds: float, until: Any = None) -> None:
                    """Read for ``seconds``, then on until ``until(got)`` holds (at most
                    20 s more): the resync waits for the REST, however long that takes
                    on a busy machine, and the client hears nothing meanwhile."""
                    deadline = time.monotonic() + seconds
                    longest = deadline + 20
                    while time.monotonic() < deadline or (
                        until is not None and not until(got) and time.monotonic() < longest
                    ):
                        frame = await ws.next_frame(timeout=max(0.1, longest - time.monotonic()))
                        assert frame is not None
                        got.append(orjson.loads(frame.data))

                await read_for(0.5)
                assert {m["type"] for m in got} == {"book", "depth"}
                await http.post(f"{exchange}/_sim/fault?kind=rest_down&duration=2")
                await http.post(f"{exchange}/_sim/fault?kind=depth_gap&symbol=BTCUSDT")

                async def unserved() -> bool:
                    return (await http.get(f"{server.base}/book/BTCUSDT")).status_code == 503

                await eventually(unserved, timeout=5)
                answer = await http.get(f"{server.base}/book/BTCUSDT")
                assert answer.json()["state"] == "broken"
                assert answer.json()["error"] == "book_broken"
                assert (await http.get(f"{server.base}/book/ETHUSDT")).status_code == 200
                await read_for(4.0, until=whole_again)
            finally:
                ws.close()
            await eventually(lambda: all_synced(server), timeout=10)
            metrics = server.get("/metrics").text
    assert 'tickcast_books{state="synced"} 3.0' in metrics
    assert re.search(r"^tickcast_book_resyncs_total [1-9]", metrics, re.M), metrics
    statuses = [i for i, m in enumerate(got) if m["type"] == "status"]
    assert len(statuses) == 1, [m["type"] for m in got]
    status = got[statuses[0]]
    assert (status["symbol"], status["book"], status["reason"]) == ("BTCUSDT", "broken", "gap")
    after = got[statuses[0] + 1 :]
    # Then nothing until whole again: first a whole book of the depth stream.
    fresh = next(i for i, m in enumerate(after) if m["stream"] == "BTCUSDT@depth")
    assert after[fresh]["type"] == "book"
    assert all(m["type"] == "book" for m in after[:fresh])  # a top may come first
    assert any(m["type"] == "depth" for m in after[fresh:])


# 200 books' diffs are 2,000 a second for the server and the simulator: run alone, the
# time to sync them measures them and not the other tests.
@pytest.mark.solo
async def test_two_hundred_books_start_within_the_weight_budget(tmp_path: Path) -> None:
    """200 symbols' books start together: snapshots of 100 levels (weight 5, the deepest
    whose weight lets all start in a minute's budget), never a 429 nor a 418; every book
    synced within 30 s (the time is printed), its best 20 levels the true book's."""
    symbols = [f"S{i:03d}USDT" for i in range(200)]
    sim_args = ("--symbols", ",".join(symbols), "--rate", "1")
    with sim_exchange(*sim_args, log=tmp_path / "sim.log") as port:
        env = {
            **server_env(port),
            "TICKCAST_SYMBOLS": ",".join(symbols),
            "TICKCAST_MAX_SUBSCRIPTIONS": "500",
        }
        started = time.monotonic()
        ready = f"/price?symbol={symbols[0]}"
        with running_server(tmp_path, ["--source", "binance"], env, ready=ready) as server:

            def count_synced() -> int:
                return int(books_status(server)["synced"])

            await eventually(lambda: count_synced() == len(symbols), timeout=40, interval=0.2)
            took = time.monotonic() - started
            books = books_status(server)
            async with httpx.AsyncClient(timeout=5) as http:
                stats = await sim_stats(http, f"http://127.0.0.1:{port}")
                exchange = stats["url"].replace("ws://", "http://")
                # 100-level snapshots: the best 20 levels a side are known exactly.
                matched = [
                    await compare_at_truth(http, server.base, exchange, s, levels=20)
                    for s in symbols[::20]
                ]
                assert any(matched), matched
    print(f"200 books synced {took:.1f} s after the server started")
    keeper = books["keeper"]
    assert "http_429" not in keeper["errors"] and "http_418" not in keeper["errors"], keeper
    # One snapshot each to start; a book whose price moved past its 100 levels resyncs
    # (``shallow``) rather than serve levels it never saw: a few more.
    assert sorted(stats["depth_snapshots"]) == sorted(symbols)
    assert keeper["snapshots"] == sum(stats["depth_snapshots"].values())
    assert took < 30
