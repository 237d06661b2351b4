"""What nodes of a cluster say about the upstream, as real processes over a private Redis:
the ``status`` messages a follower's clients get, and the shape of ``/status``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import websockets

from .redis_support import RedisServer, running_redis
from .support import ServerProcess, eventually
from .test_cluster import cluster

pytestmark = pytest.mark.slow

STALE_AFTER = 1.0  # short, so that Redis is down for longer than ticks are fresh


def start_nodes(
    tmp_path: Path, redis: RedisServer, count: int, stale_after: float
) -> list[ServerProcess]:
    """``count`` nodes on ``redis`` with the simulated source."""
    env = {"TICKCAST_SIM_RATE": "4", "TICKCAST_STALE_AFTER": str(stale_after)}
    nodes = []
    for i in range(count):
        args = ["--source", "sim", "--redis-url", redis.url, "--node-id", f"node{i}"]
        nodes.append(ServerProcess(args, env, tmp_path / f"node{i}.log"))
    for node in nodes:
        node.wait_ready("/price", timeout=30)
    return nodes


def newest_tick_age(node: ServerProcess) -> float:
    """Seconds since the exchange time of the newest tick ``node`` serves."""
    return max(0.0, time.time() - int(node.get("/price").json()["timestamp_ms"]) / 1000)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis") as server:
        yield server


async def read_statuses(url: str, into: list[dict[str, object]]) -> None:
    """Append every ``status`` message a client at ``url`` receives to ``into``."""
    async with websockets.connect(url) as ws:
        async for raw in ws:
            message = orjson.loads(raw)
            if message.get("type") == "status":
                into.append(message)


async def test_a_followers_clients_hear_connected_again_after_redis_restarts_empty(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Redis killed and started empty under two nodes: the ``status`` clients of either
    node get last says connected once ticks flow again, also on the follower, whose view
    of the upstream is derived from the ticks it reads."""
    nodes = start_nodes(tmp_path, redis_server, 2, stale_after=STALE_AFTER)
    heard: list[list[dict[str, object]]] = [[], [], []]
    readers = [
        asyncio.create_task(read_statuses(n.ws_base + "/ws?symbols=BTCUSDT&status=1", into))
        for n, into in zip(nodes, heard, strict=False)
    ]
    try:
        await eventually(lambda: all(h and h[-1]["upstream"] == "connected" for h in heard[:2]))
        redis_server.stop(kill=True)
        await eventually(lambda: all(h[-1]["hub"] == "disconnected" for h in heard[:2]))
        # Down for longer than the nodes call fresh: the ticks they hold are stale by then.
        await eventually(lambda: newest_tick_age(nodes[0]) > STALE_AFTER, timeout=10)
        redis_server.start()

        # Which node leads afterwards is up to the election: the one that follows is the
        # one whose view of the upstream is derived from the ticks it reads.
        def settled() -> bool:
            roles = [cluster(n)["leader"] for n in nodes]
            if sum(map(bool, roles)) != 1:
                return False
            for lead, told in zip(roles, heard, strict=False):
                last = told[-1] if told else {}
                if last.get("upstream") != "connected" or last.get("hub") != "connected":
                    return False
                if (last.get("via") == "hub") == bool(lead):
                    return False
            return True

        await eventually(settled, timeout=20)
        # A client that connects to the follower now is told connected too.
        (follower,) = [n for n in nodes if not cluster(n)["leader"]]
        url = follower.ws_base + "/ws?symbols=BTCUSDT&status=1"
        readers.append(asyncio.create_task(read_statuses(url, heard[2])))
        await eventually(lambda: bool(heard[2]) and heard[2][-1]["upstream"] == "connected")
        assert heard[2][-1]["via"] == "hub", heard[2]
    finally:
        for reader in readers:
            reader.cancel()
        for reader in readers:
            with contextlib.suppress(BaseException):
                await reader
        for node in nodes:
            node.stop()
