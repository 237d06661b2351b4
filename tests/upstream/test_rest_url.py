"""Each source names the REST base of the exchange whose data it serves now."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tickcast.messages.tick import SourceLabel
from tickcast.settings import Settings
from tickcast.sim.exchange import SimConfig, SimExchange
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.normalize import MarketEvent
from tickcast.upstream.sources import AutoSource, ReplaySource, SimSource, build_source

from ..support import eventually, free_port


class Recorder:
    """A sink keeping every event with its label."""

    def __init__(self) -> None:
        self.events: list[tuple[MarketEvent, SourceLabel]] = []

    def __call__(self, event: MarketEvent, label: SourceLabel) -> None:
        self.events.append((event, label))

    def last_label(self) -> SourceLabel | None:
        return self.events[-1][1] if self.events else None


def settings(**changes: object) -> Settings:
    base: dict[str, object] = {
        "sim_rate": 10,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "symbols": ["BTCUSDT"],
    }
    return Settings(_env_file=None, **{**base, **changes})  # type: ignore[call-arg, arg-type]


async def pings(base: str) -> bool:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{base}/api/v3/ping")).status_code == 200


async def test_binance_names_the_configured_rest_and_a_replay_none(tmp_path: Path) -> None:
    """binance: TICKCAST_BINANCE_REST_URL, through the supervisor; replay: none."""
    chosen = settings(source="binance", binance_rest_url="http://127.0.0.1:9/")
    assert build_source(chosen, Recorder()).rest_url == "http://127.0.0.1:9"
    assert ReplaySource(tmp_path / "none.jsonl", Recorder()).rest_url is None


async def test_sim_names_its_exchange_while_it_runs() -> None:
    """sim: None before it started; its own exchange's HTTP base (answering REST) while it
    runs; None once stopped."""
    sink = Recorder()
    source = SimSource(settings(source="sim"), sink)
    assert source.rest_url is None
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: sink.events, timeout=10)
        assert source.rest_url == f"http://127.0.0.1:{source.exchange.port}"
        assert await pings(source.rest_url)
    finally:
        await cancel_and_wait(task)
    assert source.rest_url is None


async def test_auto_names_the_rest_of_whichever_it_serves() -> None:
    """auto: None before anything is served, the simulator's while its data is served,
    live's once live data is served again."""
    port = free_port()
    live_rest = f"http://127.0.0.1:{port}"
    chosen = settings(
        source="auto",
        binance_url=f"ws://127.0.0.1:{port}",
        binance_rest_url=live_rest,
        auto_grace=1.0,
    )
    sink = Recorder()
    source = AutoSource(chosen, sink)
    assert source.rest_url is None
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: sink.last_label() == "sim", timeout=10)
        fallback = source.rest_url
        assert fallback is not None and fallback != live_rest
        assert await pings(fallback)
        live = SimExchange(SimConfig(port=port, rate=10, seed=3, identify=False))
        await live.start()
        try:
            await eventually(lambda: sink.last_label() == "binance", timeout=10)
            assert source.rest_url == live_rest
        finally:
            await live.stop()
    finally:
        await cancel_and_wait(task)
