"""``*``: the listing watch against the simulated exchange over loopback: the first read,
a refresh that sees a new listing and a delisting, bad answers that keep what is served,
an unreachable exchange retried with backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from tickcast.sim.exchange import SimConfig, SimExchange
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.listingwatch import ListingWatch
from tickcast.upstream.pacing import Backoff
from tickcast.upstream.rest import RestClient

from ..support import eventually, free_port


@pytest.fixture
async def sim() -> AsyncIterator[SimExchange]:
    async with SimExchange(SimConfig(rate=5.0, symbols=(), symbol_count=300)) as exchange:
        yield exchange


@pytest.fixture
async def rest() -> AsyncIterator[RestClient]:
    client = RestClient()
    yield client
    await client.aclose()


class Applied:
    """The listings handed over, in order."""

    def __init__(self) -> None:
        self.listings: list[tuple[str, ...]] = []

    async def __call__(self, symbols: tuple[str, ...]) -> None:
        self.listings.append(symbols)


async def admin(sim: SimExchange, path: str) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"http://127.0.0.1:{sim.port}{path}")
    assert answer.status_code == 200, answer.text


def watch(rest: RestClient, base: str | None, applied: Applied, **kw: float) -> ListingWatch:
    return ListingWatch(
        rest,
        lambda: base,
        applied,
        refresh=kw.get("refresh", 3600.0),
        backoff=Backoff(kw.get("backoff", 0.05), 0.2),
    )


async def test_the_listing_is_read_then_refreshed_with_its_changes(
    sim: SimExchange, rest: RestClient
) -> None:
    """The trading symbols are handed over at once (the few not trading left out); a
    refresh sees a new listing and a delisting."""
    applied = Applied()
    runner = watch(rest, f"http://127.0.0.1:{sim.port}", applied, refresh=0.3)
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: applied.listings, timeout=5)
        first = applied.listings[0]
        assert 280 <= len(first) < 300 and first[0] == "BTCUSDT"
        assert runner.status()["skipped"] == {"not_trading": 300 - len(first)}
        await admin(sim, "/_sim/listing?symbol=NEWUSDT&status=TRADING")
        await admin(sim, "/_sim/listing?symbol=ETHUSDT&status=BREAK")
        await eventually(lambda: "NEWUSDT" in applied.listings[-1], timeout=5)
        assert "ETHUSDT" not in applied.listings[-1]
    finally:
        await cancel_and_wait(task)


@pytest.mark.parametrize("mode", ["not_json", "truncated", "empty"])
async def test_a_bad_answer_keeps_what_is_served_and_is_retried(
    sim: SimExchange, rest: RestClient, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """exchangeInfo that is not JSON, cut short, or lists nothing hands nothing over,
    is counted and logged, and the next good answer is taken."""
    await admin(sim, f"/_sim/exchange_info?mode={mode}&count=2")
    applied = Applied()
    runner = watch(rest, f"http://127.0.0.1:{sim.port}", applied)
    caplog.set_level(logging.WARNING, logger="tickcast.upstream.listingwatch")
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: applied.listings, timeout=10)
        assert len(applied.listings) == 1 and len(applied.listings[0]) > 250
        assert sum(runner.failures.values()) == 2
        assert runner.last_error is None and runner.reads == 3
        assert "could not be read" in caplog.text and "trying again" in caplog.text
    finally:
        await cancel_and_wait(task)


async def test_names_no_stream_can_carry_are_skipped_and_counted(
    sim: SimExchange, rest: RestClient
) -> None:
    """A listing with a symbol named in non-ASCII text, or with a character no stream
    name has, serves the others and counts the skipped one."""
    for mode in ("bad_name", "non_ascii"):
        await admin(sim, f"/_sim/exchange_info?mode={mode}&count=1")
        applied = Applied()
        runner = watch(rest, f"http://127.0.0.1:{sim.port}", applied)
        task = asyncio.create_task(runner.run())
        try:
            await eventually(lambda: applied.listings, timeout=5)  # noqa: B023
        finally:
            await cancel_and_wait(task)
        assert runner.status()["skipped"]["bad_name"] >= 1  # type: ignore[index]
        assert all(s.isascii() and s.isalnum() for s in applied.listings[0])


async def test_an_unreachable_exchange_is_retried_with_backoff(rest: RestClient) -> None:
    """Nothing answers: nothing is handed over (what is served stays), each failure is
    counted as a connect error, and the attempts are spaced out, not a tight loop."""
    applied = Applied()
    dead = f"http://127.0.0.1:{free_port()}"
    runner = ListingWatch(rest, lambda: dead, applied, backoff=Backoff(1.0, 2.0))
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.sleep(2.5)
    finally:
        await cancel_and_wait(task)
    assert applied.listings == []
    assert 2 <= runner.reads <= 3 and runner.failures == {"connect": runner.reads}
    assert runner.status()["last_error"] is not None


async def test_nothing_is_read_while_no_exchange_is_served(rest: RestClient) -> None:
    """No REST base (no exchange served yet, or this node does not lead): no read."""
    applied = Applied()
    runner = watch(rest, None, applied)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.sleep(1.2)
    finally:
        await cancel_and_wait(task)
    assert runner.reads == 0 and applied.listings == []
