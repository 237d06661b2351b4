"""The in-process simulated market never repeats itself: each start walks a new path, and
a node that takes over the upstream continues the prices and volumes served before it."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
import websockets

from ..redis_support import RedisServer, running_redis
from ..support import ServerProcess, running_server
from ..test_cluster import leaders, start_nodes

pytestmark = pytest.mark.slow


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis") as server:
        yield server


async def btc_ticks(node: ServerProcess, count: int) -> list[dict[str, object]]:
    """The next ``count`` BTCUSDT ticks a client of ``node`` receives (snapshot first)."""
    ticks: list[dict[str, object]] = []
    async with websockets.connect(node.ws_base + "/ws?symbols=BTCUSDT") as ws:
        while len(ticks) < count:
            message = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] == "tick":
                ticks.append(message)
    return ticks


def path(ticks: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(t["last_price"], t["open"], t["volume"]) for t in ticks]


async def test_two_starts_walk_different_paths(tmp_path: Path) -> None:
    """Two successive starts of ``serve --source sim`` with no seed configured serve
    different prices; with the same seed configured, the same ones."""
    paths = []
    for seed in (None, None, "7", "7"):
        env = {"TICKCAST_SIM_RATE": "10"} | ({} if seed is None else {"TICKCAST_SIM_SEED": seed})
        with running_server(tmp_path, ["--source", "sim"], env) as server:
            ticks = await btc_ticks(server, 6)
        paths.append(path(ticks[1:]))  # the snapshot may be any step of the walk
    # Which step a client joins at depends on timing; the 24h open is the run's own.
    assert paths[0] != paths[1], paths
    assert paths[0][0][1] != paths[1][0][1], paths
    assert paths[2][0][1] == paths[3][0][1], paths


async def test_a_failover_continues_the_prices_and_volume(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """kill -9 of the leader: the node that takes over continues the simulated market
    from the last ticks: same 24h open, a price one step away, volume never backwards."""
    nodes = start_nodes(tmp_path, redis_server, 2)
    try:
        (leader,) = leaders(nodes)
        (survivor,) = [n for n in nodes if n is not leader]
        before = await btc_ticks(survivor, 12)
        leader.proc.send_signal(signal.SIGKILL)
        after = await btc_ticks(survivor, 30)
        ticks = before + after
        volumes = [Decimal(str(t["volume"])) for t in ticks]
        assert volumes == sorted(volumes), volumes
        assert len({t["open"] for t in ticks}) == 1, [t["open"] for t in ticks]
        seqs = [t["seq"] for t in ticks]
        assert seqs == sorted(seqs)
        prices = [Decimal(str(t["last_price"])) for t in ticks]
        steps = [abs(b / a - 1) for a, b in zip(prices, prices[1:], strict=False)]
        assert max(steps) < Decimal("0.005"), prices
        assert leaders([survivor]) == [survivor]
    finally:
        for node in nodes:
            node.stop()
