"""Order books kept by ``BookKeeper`` from a real sim-exchange process over loopback: each
equals the exchange's true book at the same update id; a gap resyncs its symbol only;
snapshots wait out a 429's Retry-After and retry an exchange that is down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tickcast.messages.book import DepthEvent, Levels
from tickcast.messages.decimals import canonical_decimal
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.binance import BinanceClient, ClientOptions
from tickcast.upstream.books import BookBroken, BookChanged, BookEvent, BookKeeper, BookSynced
from tickcast.upstream.localbook import BookState
from tickcast.upstream.normalize import MarketEvent
from tickcast.upstream.pacing import RetryPacer
from tickcast.upstream.rest import RestClient

from ..support import eventually, sim_exchange

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
# A window no test outlives: the sim's used weight then counts every request of a test.
SIM_ARGS = ("--symbols", ",".join(SYMBOLS), "--rate", "2", "--rest-weight-window", "1000000")


@dataclass
class Kept:
    """A keeper fed by a real client, and what it told its caller."""

    keeper: BookKeeper
    http: httpx.AsyncClient
    events: list[BookEvent] = field(default_factory=list)
    # Every whole book it served, by symbol and update id.
    views: dict[str, dict[int, tuple[Levels, Levels]]] = field(default_factory=dict)

    def synced(self) -> bool:
        return all(self.keeper.state(s) is BookState.SYNCED for s in SYMBOLS)

    def books(self) -> dict[str, Any]:
        status = self.keeper.status()["books"]
        assert isinstance(status, dict)
        return status


async def wait_ready(http: httpx.AsyncClient) -> None:
    async def up() -> bool:
        with contextlib.suppress(httpx.TransportError):
            return (await http.get("/_sim/stats")).status_code == 200
        return False

    await eventually(up, timeout=15)


@contextlib.asynccontextmanager
async def keeping(port: int, *, before: str | None = None) -> AsyncIterator[Kept]:
    """A BinanceClient on the three symbols' @depth@100ms feeding a BookKeeper; ``before``
    is a fault POSTed once the exchange answers, before either starts."""
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as http, RestClient(timeout=5) as rest:
        await wait_ready(http)
        if before is not None:
            assert (await http.post(f"/_sim/fault?{before}")).status_code == 200
        kept: Kept

        def record(event: BookEvent) -> None:
            kept.events.append(event)
            if isinstance(event, BookSynced | BookChanged):
                view = kept.keeper.view(event.symbol)
                kept.views.setdefault(event.symbol, {})[view.update_id] = (view.bids, view.asks)

        keeper = BookKeeper(
            rest,
            lambda: base,
            SYMBOLS,
            on_event=record,
            retry=RetryPacer(initial=0.2, maximum=1.0),
        )
        kept = Kept(keeper, http)

        def sink(event: MarketEvent) -> None:
            if isinstance(event, DepthEvent):
                keeper.on_depth(event)

        client = BinanceClient(
            f"ws://127.0.0.1:{port}",
            [f"{s.lower()}@depth@100ms" for s in SYMBOLS],
            sink,
            options=ClientOptions(backoff_initial=0.1, backoff_max=0.5),
        )
        tasks = [asyncio.create_task(client.run()), asyncio.create_task(keeper.run())]
        try:
            yield kept
        finally:
            await cancel_and_wait(*tasks)
        assert client.errors == {}


def canonical(rows: list[list[str]]) -> Levels:
    return tuple((canonical_decimal(p), canonical_decimal(q)) for p, q in rows)


async def matches_with_truth(kept: Kept, seconds: float = 3.0) -> dict[str, int]:
    """Poll the true books for ``seconds``; wherever a true book's update id is one the
    keeper served, the two must be equal level for level. Returns the matches."""
    truths: dict[str, list[Any]] = {s: [] for s in SYMBOLS}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        for symbol in SYMBOLS:
            truths[symbol].append((await kept.http.get(f"/_sim/book?symbol={symbol}")).json())
        await asyncio.sleep(0.03)
    await asyncio.sleep(0.3)  # the diffs that reach those ids are on their way
    matched = dict.fromkeys(SYMBOLS, 0)
    for symbol, polled in truths.items():
        served = kept.views.get(symbol, {})
        for truth in polled:
            view = served.get(truth["lastUpdateId"])
            if view is not None:
                assert view == (canonical(truth["bids"]), canonical(truth["asks"])), symbol
                matched[symbol] += 1
    return matched


async def sim_used_weight(kept: Kept) -> int:
    """The weight the sim counted for this address (a ping adds 1)."""
    answer = await kept.http.get("/api/v3/ping")
    return int(answer.headers["X-MBX-USED-WEIGHT-1m"]) - 1


async def test_every_book_equals_the_true_book_at_the_same_update_id() -> None:
    """Three symbols synced from one snapshot each (weight 250 each, as the sim counts
    it); wherever a true book's id is one the keeper served, they are equal."""
    with sim_exchange(*SIM_ARGS) as port:
        async with keeping(port) as kept:
            await eventually(kept.synced, timeout=20)
            matched = await matches_with_truth(kept)
            assert all(n >= 3 for n in matched.values()), matched
            books = kept.books()
            assert {s: (b["snapshots"], b["resyncs"]) for s, b in books.items()} == dict.fromkeys(
                SYMBOLS, (1, 0)
            )
            assert await sim_used_weight(kept) == 3 * 250
    assert {type(e) for e in kept.events} == {BookSynced, BookChanged}


async def test_a_gap_on_one_symbol_resyncs_that_symbol_only() -> None:
    """depth_gap on ETHUSDT: ETHUSDT is broken once and resynced from a second snapshot;
    BTCUSDT and SOLUSDT never; the sim counts four snapshots' weight; all equal the truth."""
    with sim_exchange(*SIM_ARGS) as port:
        async with keeping(port) as kept:
            await eventually(kept.synced, timeout=20)
            answer = await kept.http.post("/_sim/fault?kind=depth_gap&symbol=ETHUSDT")
            assert answer.json()["symbol"] == "ETHUSDT"
            await eventually(lambda: kept.books()["ETHUSDT"]["snapshots"] == 2, timeout=15)
            await eventually(kept.synced, timeout=10)
            matched = await matches_with_truth(kept, seconds=2.0)
            assert all(n >= 2 for n in matched.values()), matched
            books = kept.books()
            assert {s: (b["snapshots"], b["resyncs"]) for s, b in books.items()} == {
                "BTCUSDT": (1, 0),
                "ETHUSDT": (2, 1),
                "SOLUSDT": (1, 0),
            }
            assert await sim_used_weight(kept) == 4 * 250
    broken = [e for e in kept.events if isinstance(e, BookBroken)]
    assert [(e.symbol, e.reason) for e in broken] == [("ETHUSDT", "gap")]
    eth = [e for e in kept.events if e.symbol == "ETHUSDT"]
    after = eth[eth.index(broken[0]) + 1 :]
    assert isinstance(after[0], BookSynced)  # nothing served between broken and synced


async def test_snapshots_wait_out_a_429s_retry_after_and_are_never_banned() -> None:
    """Every REST call is answered 429 (Retry-After 2) for the first 2 s: the keeper asks
    at most once per worker, waits, then syncs every book; no 418."""
    with sim_exchange(*SIM_ARGS) as port:
        async with keeping(port, before="kind=rest_429&duration=2") as kept:
            await eventually(kept.synced, timeout=20)
            status = kept.keeper.status()
            errors = status["errors"]
            assert isinstance(errors, dict)
            assert 1 <= errors.get("http_429", 0) <= 2, errors
            assert "http_418" not in errors
            assert status["snapshots"] == 3
            assert all(n >= 1 for n in (await matches_with_truth(kept, 1.5)).values())


async def test_snapshots_are_retried_while_the_exchanges_rest_is_down() -> None:
    """REST answers 503 for 2 s: the snapshots are retried with a backoff and every book
    syncs after, each from one good snapshot."""
    with sim_exchange(*SIM_ARGS) as port:
        async with keeping(port, before="kind=rest_down&duration=2") as kept:
            await eventually(kept.synced, timeout=20)
            status = kept.keeper.status()
            errors = status["errors"]
            assert isinstance(errors, dict) and errors.get("http_5xx", 0) >= 1, errors
            assert status["snapshots"] == 3 and status["queued"] == 0
            assert all(b["last_error"] is None for b in kept.books().values())
