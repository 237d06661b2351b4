"""``TICKCAST_SYMBOLS=*`` across a Redis cluster (SPEC §12 "Every market"): 2,000 symbols
at a tick a second each through Redis, every one of them flowing to every node; every node
serves the leader's listing; a node that joins late has every symbol's latest at once, and
a delisting reaches every node."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .redis_support import RedisServer, running_redis
from .support import ServerProcess, sim_exchange, wait_until

pytestmark = pytest.mark.slow

COUNT = 2000


def node(tmp_path: Path, redis: RedisServer, port: int, index: int, role: str) -> ServerProcess:
    args = ["--source", "binance", "--redis-url", redis.url, "--node-id", f"node{index}"]
    env = {
        "TICKCAST_SYMBOLS": "*",
        "TICKCAST_ROLE": role,
        "TICKCAST_BINANCE_URL": f"ws://127.0.0.1:{port}",
        "TICKCAST_BINANCE_REST_URL": f"http://127.0.0.1:{port}",
        "TICKCAST_STREAM_KINDS": "",
        "TICKCAST_LISTING_REFRESH_S": "1",
        "TICKCAST_HISTORY_SIZE": "50",
    }
    return ServerProcess(args, env, tmp_path / f"node{index}.log")


def symbols(server: ServerProcess) -> list[str]:
    listed = server.get("/symbols").json()["symbols"]
    assert isinstance(listed, list)
    return listed


def test_every_node_serves_every_market_and_a_late_node_has_it_at_once(
    tmp_path: Path,
) -> None:
    """The leader reads the listing and carries 2,000 tickers a second through Redis; an
    edge node started late serves the same symbols, each with its latest tick, as soon
    as it answers, and each one's latest moves on there; a delisting leaves both nodes'
    /symbols."""
    with (
        running_redis(tmp_path / "redis") as redis,
        sim_exchange("--symbols", str(COUNT), "--rate", "1", log=tmp_path / "sim.log") as port,
    ):
        leader = node(tmp_path, redis, port, 0, "all")
        late: ServerProcess | None = None
        try:
            leader.wait_ready("/price", timeout=30)
            wait_until(lambda: len(symbols(leader)) > COUNT * 0.95, timeout=30)
            listed = symbols(leader)
            wait_until(lambda: len(leader.get("/prices").json()) >= len(listed) - 5, timeout=20)
            late = node(tmp_path, redis, port, 1, "edge")
            late.wait_ready("/prices", timeout=30)
            assert symbols(late) == listed
            assert len(late.get("/prices").json()) >= len(listed) - 5
            hub = late.status()["hub"]
            assert isinstance(hub, dict) and hub["connected"] is True
            # Every symbol keeps flowing through Redis to the late node: each one's latest
            # moves on (the rate itself is the bench's to measure, not a test's).
            before = _seqs(late)
            wait_until(lambda: _moved(before, _seqs(late)) >= len(listed) - 5, timeout=20)
            gone = listed[-1]
            answer = httpx.post(
                f"http://127.0.0.1:{port}/_sim/listing?symbol={gone}&status=BREAK", timeout=5
            )
            assert answer.status_code == 200
            wait_until(lambda: gone not in symbols(leader), timeout=15)
            wait_until(lambda: gone not in symbols(late), timeout=15)
        finally:
            for server in (late, leader):
                if server is not None:
                    server.stop()


def _seqs(server: ServerProcess) -> dict[str, int]:
    """Each symbol's latest seq the node serves."""
    return {t["symbol"]: int(t["seq"]) for t in server.get("/prices").json()}


def _moved(before: dict[str, int], now: dict[str, int]) -> int:
    """How many symbols have a newer tick than ``before``."""
    return sum(1 for symbol, seq in now.items() if seq > before.get(symbol, seq))
