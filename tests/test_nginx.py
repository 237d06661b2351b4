"""The repository's nginx configuration (deploy/nginx/), run for real in front of tickcast
nodes: WebSocket and SSE through it, the clients of a killed node carried over to the
other node, and the per-IP limit applied to the client's own address, not nginx's."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from .edge.rawsse import RawSse
from .redis_support import RedisServer, running_redis
from .support import TICKERS_ONLY, ServerProcess, eventually, free_port, require_program

pytestmark = pytest.mark.slow

NGINX = "/usr/sbin/nginx"
CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "nginx.conf"
FAILOVER_BOUND = 6.0  # seconds from a node's death to its clients' next tick
SYMBOLS = 10  # the default symbols: a `?symbols=*` connection starts with 10 snapshot ticks

require_program(NGINX, "nginx", "nginx")


class Nginx:
    """nginx running ``deploy/nginx/nginx.conf`` itself (a symlink to it), with this
    test's ``tickcast-nodes.conf`` and ``tickcast-listen.conf`` beside it."""

    def __init__(self, directory: Path, nodes: list[ServerProcess]) -> None:
        directory.mkdir()
        self.directory = directory
        (directory / "nginx.conf").symlink_to(CONFIG)
        servers = [f"server 127.0.0.1:{n.port} max_fails=1 fail_timeout=5s;" for n in nodes]
        (directory / "tickcast-nodes.conf").write_text("\n".join(servers) + "\n")
        self.port = free_port()
        (directory / "tickcast-listen.conf").write_text(f"listen 127.0.0.1:{self.port};\n")
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        # The build's own user and temp paths; only the pid file and logs move here.
        self.command = [
            NGINX,
            "-c", str(directory / "nginx.conf"),
            "-p", f"{directory}/",
            "-e", str(directory / "error.log"),
            "-g", f"pid {directory}/nginx.pid; daemon off;",
        ]  # fmt: skip
        self.log_path = directory / "nginx.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        checked = subprocess.run(
            [*self.command, "-t"], capture_output=True, text=True, timeout=20, check=False
        )
        assert checked.returncode == 0, f"nginx -t refused the configuration:\n{checked.stderr}"
        # Append mode: nginx reopens /dev/stdout for its access log, and without
        # O_APPEND on both, its error lines (stderr) would overwrite the access lines.
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited at start:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"nginx did not pass /healthz through within 10 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: nginx's fast shutdown, workers included
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def running_nginx(directory: Path, nodes: list[ServerProcess]) -> Iterator[Nginx]:
    nginx = Nginx(directory, nodes)
    try:
        nginx.start()
        yield nginx
    finally:
        nginx.stop()


@contextlib.contextmanager
def running_nodes(tmp_path: Path, count: int, *extra: str) -> Iterator[list[ServerProcess]]:
    """``count`` nodes that believe X-Forwarded-For from nginx (127.0.0.1) only; more
    than one share a private Redis."""
    with contextlib.ExitStack() as stack:
        args = ["--source", "sim", "--trusted-proxies", "127.0.0.1", *extra]
        if count > 1:
            redis: RedisServer = stack.enter_context(running_redis(tmp_path / "redis"))
            args += ["--redis-url", redis.url]
        nodes = []
        for i in range(count):
            node = ServerProcess(
                [*args, "--node-id", f"node{i}"],
                {"TICKCAST_SIM_RATE": "4", **TICKERS_ONLY},
                tmp_path / f"node{i}.log",
            )
            stack.callback(node.stop)
            nodes.append(node)
        for node in nodes:
            node.wait_ready("/price", timeout=30)
        yield nodes


def clients(node: ServerProcess) -> dict[str, int]:
    edge = node.status()["edge"]
    assert isinstance(edge, dict)
    return edge["clients"]  # type: ignore[no-any-return]


@dataclass
class Follower:
    """What one client through nginx received; it reconnects as soon as its connection
    ends (as the dashboard and EventSource do), an SSE one with its last event id."""

    ticks: list[tuple[float, int]] = field(default_factory=list)  # (arrival, seq)
    drops: list[float] = field(default_factory=list)  # when a connection ended
    resets: int = 0
    last_id: str | None = None

    def seqs_after(self, moment: float) -> list[int]:
        return [seq for at, seq in self.ticks if at > moment]


async def follow_ws(url: str, follower: Follower) -> None:
    while True:
        try:
            async with websockets.connect(url, open_timeout=5) as ws:
                async for raw in ws:
                    message = orjson.loads(raw)
                    if message.get("type") == "tick":
                        follower.ticks.append((time.monotonic(), message["seq"]))
        except (websockets.ConnectionClosed, websockets.InvalidHandshake, OSError):
            pass
        follower.drops.append(time.monotonic())
        await asyncio.sleep(0.05)


async def follow_sse(url: str, follower: Follower) -> None:
    while True:
        resume = [] if follower.last_id is None else [f"Last-Event-ID: {follower.last_id}"]
        stream = await RawSse.get(url, headers=[line.encode() for line in resume])
        assert stream.status == 200
        try:
            while (event := await stream.next_event(timeout=30)) is not None:
                if event.get("event") == "reset":
                    follower.resets += 1
                elif "data" in event and "id" in event:
                    follower.last_id = event["id"]
                    seq = orjson.loads(event["data"])["seq"]
                    follower.ticks.append((time.monotonic(), seq))
        finally:
            stream.close()
        follower.drops.append(time.monotonic())


async def test_streams_through_nginx_survive_the_death_of_a_node(tmp_path: Path) -> None:
    """WebSocket and SSE clients get ticks through nginx. When a node is killed (-9), its
    clients reconnect through nginx to the other node and get ticks again within the
    bound; an SSE client resumes with exactly the ticks it missed, no gap, no duplicate."""
    with (
        running_nodes(tmp_path, 2) as nodes,
        running_nginx(tmp_path / "nginx", nodes) as nginx,
    ):
        ws_clients = [Follower() for _ in range(4)]
        sse_clients = [Follower() for _ in range(2)]
        async with asyncio.TaskGroup() as group:
            tasks = []
            for follower in ws_clients:
                tasks.append(
                    group.create_task(follow_ws(nginx.ws_base + "/ws?symbols=*", follower))
                )
                await eventually(lambda f=follower: f.ticks, timeout=5)
            for follower in sse_clients:
                tasks.append(group.create_task(follow_sse(nginx.base + "/sse?symbols=*", follower)))
                await eventually(lambda f=follower: f.ticks, timeout=5)
            try:
                await kill_a_node_and_check(nodes, ws_clients, sse_clients)
            finally:
                for task in tasks:
                    task.cancel()
    assert "[emerg]" not in nginx.log() and "[crit]" not in nginx.log(), nginx.log()


async def kill_a_node_and_check(
    nodes: list[ServerProcess], ws_clients: list[Follower], sse_clients: list[Follower]
) -> None:
    everyone = ws_clients + sse_clients
    # Every client gets live ticks (each node holds some of them: checked below).
    await eventually(lambda: all(len(f.ticks) >= SYMBOLS + 20 for f in everyone), timeout=10)
    assert all(not f.drops for f in everyone)
    # The node that does not lead is killed: the leader's ticks go on meanwhile, so a
    # resumed stream must be contiguous (a leader's death and the takeover are
    # test_cluster's). Its clients are those whose connection ends.
    (victim,) = [n for n in nodes if not n.status()["cluster"]["leader"]]  # type: ignore[index]
    (survivor,) = [n for n in nodes if n is not victim]
    on_victim = clients(victim)
    assert on_victim["ws"] >= 1 and on_victim["sse"] >= 1, on_victim
    victim.proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()

    await eventually(
        lambda: sum(bool(f.drops) for f in everyone) == on_victim["ws"] + on_victim["sse"],
        timeout=FAILOVER_BOUND,
    )
    moved = [f for f in everyone if f.drops]
    assert sum(f in ws_clients for f in moved) == on_victim["ws"]
    await eventually(lambda: all(f.seqs_after(f.drops[0]) for f in moved), timeout=FAILOVER_BOUND)
    failover = max(min(at for at, _ in f.ticks if at > f.drops[0]) for f in moved) - killed_at
    print(f"through nginx, the killed node's clients had ticks again after {failover:.2f} s")
    assert failover < FAILOVER_BOUND
    assert all(len(f.drops) == 1 for f in moved), "a client was dropped more than once"
    assert clients(survivor) == {"ws": len(ws_clients), "sse": len(sse_clients), "total": 6}

    # The SSE client of the killed node got every tick it missed, then live ones.
    for follower in (f for f in sse_clients if f in moved):
        await eventually(lambda f=follower: len(f.seqs_after(f.drops[0])) >= 40, timeout=10)
        before = [seq for at, seq in follower.ticks if at <= follower.drops[0]]
        after = follower.seqs_after(follower.drops[0])
        assert follower.resets == 0, "a reset instead of a resume"
        assert after == list(range(before[-1] + 1, before[-1] + 1 + len(after))), after[:20]
    # The clients that stayed on the survivor saw nothing happen.
    assert all(not f.drops for f in everyone if f not in moved)


async def test_the_per_ip_limit_counts_the_address_nginx_forwards(tmp_path: Path) -> None:
    """With two connections allowed per address: two WebSockets from 127.0.0.2 through
    nginx are admitted, a third and an event stream from it get 429, while 127.0.0.3
    is admitted. nginx itself (every connection comes from 127.0.0.1) is not limited.
    One node: the limit is per node, and nginx would spread the connections."""
    with (
        running_nodes(tmp_path, 1, "--max-connections-per-ip", "2") as nodes,
        running_nginx(tmp_path / "nginx", nodes) as nginx,
    ):
        url = nginx.ws_base + "/ws?symbols=BTCUSDT"

        def ws_from(source: str) -> websockets.connect:
            return websockets.connect(url, open_timeout=5, local_addr=(source, 0))

        async with ws_from("127.0.0.2") as first, ws_from("127.0.0.2") as second:
            assert await asyncio.wait_for(first.recv(), 5)
            assert await asyncio.wait_for(second.recv(), 5)
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with ws_from("127.0.0.2"):
                    pass
            assert refused.value.response.status_code == 429
            transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
            async with httpx.AsyncClient(transport=transport, timeout=10) as http:
                response = await http.get(nginx.base + "/sse?symbols=BTCUSDT")
                assert response.status_code == 429
                assert response.json()["error"] == "too_many_connections"
            async with ws_from("127.0.0.3") as other:
                assert await asyncio.wait_for(other.recv(), 5)
            assert clients(nodes[0])["ws"] == 2
