"""What nodes say about the upstream, as real processes (over a private Redis where there
are several): the ``status`` messages a follower's clients get, the one shape of
``/status`` on every node, and the failed connect attempts it counts."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import websockets

from . import redis_support
from .redis_support import RedisServer, running_redis
from .support import ServerProcess, eventually, free_port, running_server
from .test_cluster import cluster, leaders

pytestmark = pytest.mark.slow

STALE_AFTER = 1.0  # short, so that Redis is down for longer than ticks are fresh


def start_nodes(
    tmp_path: Path, redis: RedisServer, count: int, stale_after: float
) -> list[ServerProcess]:
    """``count`` nodes on ``redis`` with the simulated source."""
    env = {"TICKCAST_STALE_AFTER": str(stale_after)}
    return redis_support.start_nodes(tmp_path, redis, count, env)


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
    """Redis killed and started empty under two nodes: the last ``status`` the clients of
    either node get says connected once ticks flow again, also on the follower, whose
    view of the upstream is derived from the ticks it reads."""
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


UPSTREAM_KEYS = {
    "state", "source", "simulated", "since", "reconnects", "restarts", "last_message_age",
    "last_error", "last_error_at", "parse_errors", "via", "detail",
}  # fmt: skip


async def test_status_has_one_shape_on_leader_follower_and_the_memory_hub(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """/status has the same keys, and the same keys under ``upstream``, on a leader, a
    follower and a node with the memory hub; each says whether it sees the upstream
    itself or through the hub."""
    nodes = start_nodes(tmp_path, redis_server, 2, stale_after=10)
    single = ServerProcess(["--source", "sim"], {"TICKCAST_SIM_RATE": "4"}, tmp_path / "m.log")
    try:
        single.wait_ready("/price", timeout=30)
        (leader,) = leaders(nodes)
        (follower,) = [n for n in nodes if n is not leader]
        bodies = {"leader": leader.status(), "follower": follower.status()}
        bodies["memory"] = single.status()
        shapes = {name: set(body) for name, body in bodies.items()}
        assert shapes["leader"] == shapes["follower"] == shapes["memory"], shapes
        for name, body in bodies.items():
            upstream = body["upstream"]
            assert isinstance(upstream, dict)
            assert set(upstream) == UPSTREAM_KEYS, (name, upstream)
            assert upstream["state"] == "connected", (name, upstream)
            assert upstream["source"] == body["source"] == "sim", (name, upstream)
            assert upstream["simulated"] is True and isinstance(upstream["since"], float)
            assert set(body["cluster"]) == set(bodies["leader"]["cluster"])  # type: ignore[arg-type]
        assert bodies["follower"]["upstream"]["via"] == "hub"  # type: ignore[index]
        assert bodies["follower"]["upstream"]["detail"] is None  # type: ignore[index]
        for name in ("leader", "memory"):
            upstream = bodies[name]["upstream"]
            assert isinstance(upstream, dict) and upstream["via"] == "upstream"
            assert isinstance(upstream["detail"], dict) and upstream["detail"]["source"] == "sim"
    finally:
        single.stop()
        for node in nodes:
            node.stop()


@pytest.mark.parametrize("source", ["binance", "auto"])
async def test_failed_connect_attempts_are_counted_and_the_last_error_kept(
    tmp_path: Path, source: str
) -> None:
    """Live Binance refuses every connection: each retry counts as a reconnect and the
    last error says why, in /status (and under ``live`` with auto, which serves simulated
    data meanwhile) and in /metrics."""
    env = {
        "TICKCAST_BINANCE_URL": f"ws://127.0.0.1:{free_port()}",
        "TICKCAST_BACKOFF_INITIAL": "0.05",
        "TICKCAST_BACKOFF_MAX": "0.1",
    }
    with running_server(tmp_path, ["--source", source], env, ready="/healthz") as server:

        def live() -> dict[str, object]:
            upstream = server.status()["upstream"]
            assert isinstance(upstream, dict)
            detail = upstream["detail"]
            assert isinstance(detail, dict)
            return detail["live"] if source == "auto" else detail  # type: ignore[no-any-return]

        await eventually(lambda: int(live()["reconnects"]) >= 5)  # type: ignore[call-overload]
        failed = live()
        assert "ConnectionRefusedError" in str(failed["last_error"]), failed
        assert isinstance(failed["last_error_at"], float)
        assert failed["counters"]["connect_failures"] >= 6, failed  # type: ignore[index]
        upstream = server.status()["upstream"]
        assert isinstance(upstream, dict)
        assert "ConnectionRefusedError" in str(upstream["last_error"]), upstream
        if source == "binance":
            assert upstream["reconnects"] >= 5, upstream  # type: ignore[operator]
            metrics = server.get("/metrics").text
            found = re.search(r"^tickcast_upstream_reconnects_total (\S+)$", metrics, re.M)
            assert found is not None and float(found.group(1)) >= 5, metrics
