"""``tickcast serve --workers N`` as a user runs it: N processes on one port, each a node
of the cluster over a private Redis, one upstream for all, a dead worker restarted, and
SIGTERM closing every client with 1001 within 5 s."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import websockets

from .redis_support import RedisServer, running_redis
from .support import ServerProcess, free_port

pytestmark = pytest.mark.slow

CLIENTS = 24


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis") as server:
        yield server


def worker_pids(supervisor: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(supervisor)], capture_output=True, text=True)
    return sorted(int(pid) for pid in out.stdout.split())


async def open_client(url: str) -> tuple[websockets.ClientConnection, str]:
    """A client asking for status messages; returns it and the node serving it."""
    ws = await websockets.connect(url, close_timeout=0.5)
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if message.get("type") == "status":
            return ws, str(message["node"])


async def next_tick(ws: websockets.ClientConnection, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if message.get("type") == "tick":
            assert isinstance(message, dict)
            return message


async def wait_for_log(server: ServerProcess, text: str, count: int) -> None:
    """Wait for ``count`` lines with ``text`` in the whole log (``log()`` is its tail)."""
    deadline = time.monotonic() + 20
    while server.log_path.read_text(errors="replace").count(text) < count:
        assert time.monotonic() < deadline, server.log()
        await asyncio.sleep(0.1)


def test_without_redis_workers_are_a_clear_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tickcast.cli", "serve", "--workers", "2", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "TICKCAST_REDIS_URL": ""},
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "--workers 2 needs Redis" in done.stderr and "--redis-url" in done.stderr


@pytest.mark.parametrize("value", ["0", "many", "-3"])
def test_a_bad_worker_count_names_the_setting(value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tickcast.cli", "serve", "--workers", value],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "TICKCAST_WORKERS / --workers" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.exclusive
async def test_workers_share_one_port_and_one_upstream_and_survive_a_dead_worker(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    args = ["--source", "sim", "--workers", "2", "--redis-url", redis_server.url]
    server = ServerProcess(
        [*args, "--node-id", "box"], {"TICKCAST_SIM_RATE": "4"}, tmp_path / "serve.log"
    )
    try:
        server.wait_ready("/price", timeout=30)
        await wait_for_log(server, "Application startup complete", 2)
        url = f"{server.ws_base}/ws?status=1"
        clients = [await open_client(url) for _ in range(CLIENTS)]
        spread = Counter(node for _, node in clients)
        # SO_REUSEPORT hashes each connection's address and port: both workers get some.
        assert set(spread) == {"box-w1", "box-w2"}, spread
        for ws, _ in clients:
            await next_tick(ws, 10)

        # One upstream: exactly one worker leads, and both name the same leader.
        leaders = set()
        for _ in range(20):
            leaders.add(server.status()["cluster"]["leader_id"])  # type: ignore[index]
        assert len(leaders) == 1 and leaders <= {"box-w1", "box-w2"}, leaders
        assert server.log().count("starting the upstream") == 1

        # A worker killed outright is replaced; its clients reconnect and are served.
        before = worker_pids(server.proc.pid)
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = worker_pids(server.proc.pid)
            if len(now) == 2 and before[0] not in now:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"worker not restarted: {worker_pids(server.proc.pid)}\n{server.log()}")
        assert "exited with signal SIGKILL; restarting it" in server.log()
        await wait_for_log(server, "Application startup complete", 3)
        fresh = [await open_client(url) for _ in range(CLIENTS)]
        assert set(Counter(node for _, node in fresh)) == {"box-w1", "box-w2"}
        for ws, _ in fresh:
            await next_tick(ws, 15)

        await asyncio.gather(*(ws.close() for ws, _ in clients))

        # SIGTERM to the supervisor: every client closed with 1001, all gone within 5 s.
        pids = worker_pids(server.proc.pid)
        took = server.stop(signal.SIGTERM)
        assert took < 5.0, server.log()
        for ws, _ in fresh:
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1001
        for pid in pids:
            assert _gone(pid), pid
    finally:
        server.stop(signal.SIGKILL)


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its parent has not reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_a_port_in_use_is_one_line_before_any_worker_starts(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tickcast.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
                "--redis-url",
                redis_server.url,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert f"port {port} is already in use" in done.stderr
    assert "started" not in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_each_workers_log_lines_name_it_and_a_clean_release_is_info(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """With --workers, every line a worker writes names its node (`[box-w1]`); at SIGTERM
    the leader's release of its lease is logged at INFO, not as a warning."""
    args = ["--source", "sim", "--workers", "2", "--redis-url", redis_server.url]
    server = ServerProcess([*args, "--node-id", "box"], {}, tmp_path / "serve.log")
    try:
        server.wait_ready("/price", timeout=30)
        deadline = time.monotonic() + 20
        while server.log().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
    finally:
        server.stop()
    lines = server.log_path.read_text().splitlines()
    workers = [line for line in lines if "tickcast.workers:" not in line]
    assert workers
    unnamed = [line for line in workers if not re.search(r" \[box-w[12]\] ", line)]
    assert unnamed == []
    assert {m[1] for line in workers if (m := re.search(r"\[(box-w\d)\]", line))} == {
        "box-w1",
        "box-w2",
    }
    # The leader releases its lease; the other worker, stopping too, may take it for a
    # moment and release it in turn.
    released = [line for line in lines if "stepped down (released)" in line]
    assert released, lines
    assert all(" INFO " in line for line in released), released
    assert not [line for line in lines if "released" in line and " WARNING " in line]
