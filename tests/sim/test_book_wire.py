"""The simulator's books over loopback: a client following Binance's local order book
procedure ends equal to the true book; the streams, REST weights and book faults as a
client sees them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from decimal import Decimal
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tickcast.sim.exchange import SimConfig, SimExchange

SimFactory = Callable[..., Awaitable[SimExchange]]
Levels = dict[Decimal, Decimal]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> SimExchange:
            config = SimConfig(**{"rate": 2.0, **overrides})
            return await stack.enter_async_context(SimExchange(config))

        yield make


def http_call(method: str, url: str) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, dict(response.headers), orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, dict(exc.headers), orjson.loads(exc.read())
        finally:
            exc.close()


async def call(sim: SimExchange, path: str, method: str = "GET") -> tuple[int, dict[str, str], Any]:
    return await asyncio.to_thread(http_call, method, f"http://127.0.0.1:{sim.port}{path}")


async def collect(ws: ClientConnection, into: list[Any]) -> None:
    async for raw in ws:
        into.append(orjson.loads(raw))


@contextlib.asynccontextmanager
async def streaming(sim: SimExchange, *streams: str) -> AsyncIterator[list[Any]]:
    """Every message of a combined connection to ``streams``, collected as it comes."""
    messages: list[Any] = []
    url = f"{sim.url}/stream?streams={'/'.join(streams)}"
    async with connect(url, ping_interval=None, max_queue=None) as ws:
        task = asyncio.create_task(collect(ws, messages))
        try:
            yield messages
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.02)


def of(messages: list[Any], stream: str) -> list[Any]:
    return [m["data"] for m in messages if m.get("stream") == stream]


def levels(rows: list[list[str]]) -> Levels:
    return {Decimal(p): Decimal(q) for p, q in rows}


def apply(book: Levels, rows: list[list[str]]) -> None:
    for price, qty in levels(rows).items():
        if qty:
            book[price] = qty
        else:
            book.pop(price, None)


class LocalBook:
    """Binance's documented procedure: the buffered diffs after a REST snapshot, those
    with ``u <= lastUpdateId`` dropped, each next ``U`` checked against the last id."""

    def __init__(self, snapshot: Any) -> None:
        self.bids, self.asks = levels(snapshot["bids"]), levels(snapshot["asks"])
        self.update_id: int = snapshot["lastUpdateId"]
        self.first = True

    def apply(self, diff: Any) -> bool:
        """Apply one diff; False if it was covered by the snapshot."""
        if diff["u"] <= self.update_id:
            return False
        if self.first:
            assert diff["U"] <= self.update_id + 1 <= diff["u"]
            self.first = False
        else:
            assert diff["U"] == self.update_id + 1, "a gap in the diff stream"
        apply(self.bids, diff["b"])
        apply(self.asks, diff["a"])
        self.update_id = diff["u"]
        return True


async def test_a_local_book_kept_by_binances_procedure_equals_the_true_book(
    make_sim: SimFactory,
) -> None:
    """For three symbols over 3 s of diffs: snapshot, buffered @depth@100ms diffs applied
    by the documented procedure; wherever the local id meets a /_sim/book id, the two
    books are equal level for level."""
    sim = await make_sim()
    symbols = ("btcusdt", "ethusdt", "xrpusdt")
    truths: dict[str, list[Any]] = {s: [] for s in symbols}
    async with streaming(sim, *(f"{s}@depth@100ms" for s in symbols)) as messages:
        await until(lambda: all(of(messages, f"{s}@depth@100ms") for s in symbols))
        snapshots = {}
        for s in symbols:
            status, _, snapshots[s] = await call(
                sim, f"/api/v3/depth?symbol={s.upper()}&limit=5000"
            )
            assert status == 200
            assert snapshots[s]["lastUpdateId"] >= of(messages, f"{s}@depth@100ms")[0]["U"]
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            for s in symbols:
                truths[s].append((await call(sim, f"/_sim/book?symbol={s}"))[2])
            await asyncio.sleep(0.05)
    for s in symbols:
        local = LocalBook(snapshots[s])
        wanted = {t["lastUpdateId"]: t for t in truths[s]}
        matched = 0
        for diff in of(messages, f"{s}@depth@100ms"):
            if local.apply(diff) and local.update_id in wanted:
                truth = wanted[local.update_id]
                assert local.bids == levels(truth["bids"]) and local.asks == levels(truth["asks"])
                matched += 1
        assert local.update_id > snapshots[s]["lastUpdateId"]
        assert matched >= 5, s


async def test_the_1000ms_stream_is_the_merge_of_the_100ms_one(make_sim: SimFactory) -> None:
    """Each @depth diff after the first covers a run of @depth@100ms diffs exactly, with
    their latest quantities, and its U follows the previous u."""
    sim = await make_sim()
    async with streaming(sim, "ethusdt@depth@100ms", "ethusdt@depth") as messages:
        await until(lambda: len(of(messages, "ethusdt@depth")) >= 3)
    fast, slow = of(messages, "ethusdt@depth@100ms"), of(messages, "ethusdt@depth")
    assert all(d["e"] == "depthUpdate" and d["s"] == "ETHUSDT" for d in fast + slow)
    for a, b in itertools.pairwise(slow):
        assert b["U"] == a["u"] + 1
    for merged in slow[1:]:
        run = [d for d in fast if merged["U"] <= d["U"] and d["u"] <= merged["u"]]
        assert run[0]["U"] == merged["U"] and run[-1]["u"] == merged["u"]
        bids: dict[str, str] = {}
        asks: dict[str, str] = {}
        for d in run:
            bids.update(dict(d["b"]))
            asks.update(dict(d["a"]))
        assert dict(merged["b"]) == bids and dict(merged["a"]) == asks


async def test_partial_books_are_the_top_of_the_true_book(make_sim: SimFactory) -> None:
    """@depth5@100ms and @depth20 carry the best 5 and 20 levels of the true book at
    their lastUpdateId."""
    sim = await make_sim(rate=0.2)  # few trades: most calls fall where a push left the book
    truths: list[Any] = []
    async with streaming(sim, "bnbusdt@depth5@100ms", "bnbusdt@depth20") as messages:
        deadline = time.monotonic() + 3.2
        while time.monotonic() < deadline:
            truths.append((await call(sim, "/_sim/book?symbol=bnbusdt"))[2])
            await asyncio.sleep(0.03)
    by_id = {t["lastUpdateId"]: t for t in truths}
    for stream, n in (("bnbusdt@depth5@100ms", 5), ("bnbusdt@depth20", 20)):
        books = of(messages, stream)
        assert books and all(set(b) == {"lastUpdateId", "bids", "asks"} for b in books)
        matched = [b for b in books if b["lastUpdateId"] in by_id]
        assert matched, stream
        for book in matched:
            truth = by_id[book["lastUpdateId"]]
            assert book["bids"] == truth["bids"][:n] and book["asks"] == truth["asks"][:n]


async def test_the_books_top_is_the_book_ticker(make_sim: SimFactory) -> None:
    """After each diff, the local book's best bid and ask are those of the latest
    @bookTicker event at or before that update id (trades and churn alike push it)."""
    sim = await make_sim(rate=10.0)
    async with streaming(sim, "solusdt@depth@100ms", "solusdt@bookTicker") as messages:
        await until(lambda: bool(of(messages, "solusdt@depth@100ms")))
        _, _, snapshot = await call(sim, "/api/v3/depth?symbol=SOLUSDT&limit=1000")
        await asyncio.sleep(2.0)
    local = LocalBook(snapshot)
    tickers = of(messages, "solusdt@bookTicker")
    checked = 0
    for diff in of(messages, "solusdt@depth@100ms"):
        if not local.apply(diff):
            continue
        seen = [t for t in tickers if t["u"] <= local.update_id]
        if not seen or seen[-1]["u"] <= snapshot["lastUpdateId"]:
            continue
        ticker = seen[-1]
        best_bid, best_ask = max(local.bids), min(local.asks)
        assert (best_bid, local.bids[best_bid]) == (Decimal(ticker["b"]), Decimal(ticker["B"]))
        assert (best_ask, local.asks[best_ask]) == (Decimal(ticker["a"]), Decimal(ticker["A"]))
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    ("limit", "weight", "rows"),
    [(None, 5, 100), ("5", 5, 5), ("100", 5, 100), ("101", 25, 101), ("500", 25, 300),
     ("1000", 50, 300), ("5000", 250, 300), ("9000", 250, 300)],
)  # fmt: skip
async def test_depth_rest_weights_by_limit(
    make_sim: SimFactory, limit: str | None, weight: int, rows: int
) -> None:
    """GET /api/v3/depth costs 5/25/50/250 by limit, answers at most ``limit`` levels
    a side (the whole book when smaller, 5000 at most) and its lastUpdateId."""
    sim = await make_sim()
    query = "symbol=BTCUSDT" + ("" if limit is None else f"&limit={limit}")
    status, headers, body = await call(sim, f"/api/v3/depth?{query}")
    assert status == 200
    assert headers["X-MBX-USED-WEIGHT-1m"] == str(weight)
    assert set(body) == {"lastUpdateId", "bids", "asks"}
    assert min(len(body["bids"]), len(body["asks"])) >= min(rows, 300)
    assert max(len(body["bids"]), len(body["asks"])) <= (int(limit or 100) if rows < 300 else 5000)
    bids = [Decimal(p) for p, _ in body["bids"]]
    assert bids == sorted(bids, reverse=True) and max(bids) < Decimal(body["asks"][0][0])


async def test_depth_rest_refusals_and_429_over_budget(make_sim: SimFactory) -> None:
    """Bad symbols and limits are Binance's errors; past the weight budget a 429 with
    Retry-After and the used weight."""
    sim = await make_sim(rest_weight_limit=600, rest_weight_window=5.0)
    status, _, body = await call(sim, "/api/v3/depth?symbol=NOPEUSDT")
    assert (status, body["code"]) == (400, -1121)
    status, _, body = await call(sim, "/api/v3/depth?symbol=BTCUSDT&limit=0")
    assert (status, body["code"]) == (400, -1130)
    assert (await call(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000"))[0] == 200
    assert (await call(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000"))[0] == 200
    status, headers, body = await call(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
    assert (status, body["code"]) == (429, -1003)
    assert 1 <= int(headers["Retry-After"]) <= 5
    assert int(headers["X-MBX-USED-WEIGHT-1m"]) > 350


async def test_depth_gap_makes_one_jump_for_the_chosen_symbol(make_sim: SimFactory) -> None:
    """POST /_sim/fault?kind=depth_gap&symbol=ETHUSDT: the ETHUSDT diff stream's U jumps
    exactly once on every connection, BTCUSDT's never."""
    sim = await make_sim()
    streams = ("btcusdt@depth@100ms", "ethusdt@depth@100ms")
    async with streaming(sim, *streams) as one, streaming(sim, *streams) as two:
        await until(lambda: len(of(one, streams[1])) >= 3 and len(of(two, streams[1])) >= 3)
        status, _, body = await call(sim, "/_sim/fault?kind=depth_gap&symbol=ETHUSDT", "POST")
        assert (status, body["symbol"]) == (200, "ETHUSDT")
        count = len(of(one, streams[1]))
        await until(lambda: len(of(one, streams[1])) >= count + 5)
        await asyncio.sleep(0.2)
    for messages in (one, two):
        for stream, jumps in ((streams[0], 0), (streams[1], 1)):
            diffs = of(messages, stream)
            gaps = [
                b["U"] - a["u"] - 1 for a, b in itertools.pairwise(diffs) if b["U"] != a["u"] + 1
            ]
            assert len(gaps) == jumps and all(g > 0 for g in gaps), stream


async def test_rest_429_and_rest_down_windows(make_sim: SimFactory) -> None:
    """rest_429 answers every REST call 429 with Retry-After for its window; rest_down
    answers 503; DELETE /_sim/fault ends both at once; admin calls are unaffected."""
    sim = await make_sim()
    assert (await call(sim, "/_sim/fault?kind=rest_429&duration=30", "POST"))[0] == 200
    status, headers, body = await call(sim, "/api/v3/depth?symbol=BTCUSDT")
    assert (status, body["code"]) == (429, -1003)
    assert 29 <= int(headers["Retry-After"]) <= 30
    assert (await call(sim, "/_sim/book?symbol=btcusdt"))[0] == 200
    assert (await call(sim, "/_sim/fault", "DELETE"))[0] == 200
    assert (await call(sim, "/api/v3/depth?symbol=BTCUSDT"))[0] == 200
    assert (await call(sim, "/_sim/fault?kind=rest_down&duration=0.3", "POST"))[0] == 200
    assert (await call(sim, "/api/v3/ping"))[0] == 503
    await asyncio.sleep(0.35)
    assert (await call(sim, "/api/v3/ping"))[0] == 200
    assert sim.stats()["faults"] == ["rest_429", "rest_down"]


async def test_sim_book_answers_the_whole_book_and_refuses_bad_calls(
    make_sim: SimFactory,
) -> None:
    """GET /_sim/book?symbol= is the whole book at no REST weight; a bad symbol is 400,
    another method 405."""
    sim = await make_sim()
    status, headers, body = await call(sim, "/_sim/book?symbol=BTCUSDT")
    assert status == 200 and "X-MBX-USED-WEIGHT-1m" not in headers
    assert body["symbol"] == "BTCUSDT" and len(body["bids"]) >= 300
    assert isinstance(body["lastUpdateId"], int)
    assert (await call(sim, "/_sim/book?symbol=b/x"))[0] == 400
    assert (await call(sim, "/_sim/book"))[0] == 400
    assert (await call(sim, "/_sim/book?symbol=btcusdt", "POST"))[0] == 405
