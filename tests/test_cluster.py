"""Several nodes over one private Redis, as real processes: one leader holds the upstream,
every node serves the same ticks, a killed leader is replaced, and SSE resumes on any node."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from . import redis_support
from .redis_support import LinkProxy, RedisServer, running_redis
from .support import TICKERS_ONLY, ServerProcess, eventually, sim_exchange, wait_ready_async

pytestmark = pytest.mark.slow

TAKEOVER_BOUND = 6.0  # SPEC §7, default lease TTL, simulated upstream
SHORT_TTL = 1.5  # a short lease where no bound is timed: waiting past it is short too


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis") as server:
        yield server


def start_nodes(
    tmp_path: Path, redis: RedisServer, count: int, lease_ttl: float | None = None
) -> list[ServerProcess]:
    """``count`` nodes; ``lease_ttl`` shortens the lease where no SPEC bound is timed."""
    env = {} if lease_ttl is None else {"TICKCAST_LEASE_TTL": str(lease_ttl)}
    return redis_support.start_nodes(tmp_path, redis, count, env)


def cluster(node: ServerProcess) -> dict[str, object]:
    status = node.status()["cluster"]
    assert isinstance(status, dict)
    return status


def leaders(nodes: list[ServerProcess]) -> list[ServerProcess]:
    return [n for n in nodes if n.proc.poll() is None and cluster(n)["leader"]]


async def collect_ticks(
    url: str, seconds: float, until: asyncio.Event | None = None, into: list[int] | None = None
) -> list[int]:
    """The seqs of the ticks a client gets for ``seconds``, or until ``until`` is set;
    ``into`` shows them as they come, so a test can wait for the client to have read some."""
    seqs: list[int] = [] if into is None else into
    stop = until or asyncio.Event()
    async with websockets.connect(url) as ws:
        deadline = asyncio.get_running_loop().time() + seconds
        while not stop.is_set() and (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                message = orjson.loads(await asyncio.wait_for(ws.recv(), min(left, 0.2)))
            except TimeoutError:
                continue
            if message.get("type") == "tick":
                seqs.append(message["seq"])
    return seqs


async def flowing(node: ServerProcess, past: int, timeout: float) -> float:
    """Seconds until ``node``'s latest seq passes ``past`` (a bounded wait)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(httpx.HTTPError):
            if node.get("/price").json().get("seq", 0) > past:
                break
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_one_leader_and_every_node_serves_the_same_ticks(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Three nodes: exactly one leads; clients on every node get the same ticks, in seq
    order, with no gap and no duplicate."""
    nodes = start_nodes(tmp_path, redis_server, 3)
    try:
        assert len(leaders(nodes)) == 1
        epochs = {cluster(n)["epoch"] for n in nodes}
        assert len(epochs) == 1
        got = await asyncio.gather(*(collect_ticks(n.ws_base + "/ws?symbols=*", 2) for n in nodes))
        for seqs in got:
            live = seqs[10:]  # after the snapshot of 10 symbols
            assert live == list(range(live[0], live[0] + len(live))), live[:20]
        common = set(got[0][10:]) & set(got[1][10:]) & set(got[2][10:])
        assert len(common) > 20
    finally:
        for node in nodes:
            node.stop()


async def test_a_killed_leader_is_replaced_and_clients_see_no_duplicate(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """kill -9 of the leader: a survivor leads within the bound, ticks flow again, and a
    client on a survivor sees seqs that only increase."""
    nodes = start_nodes(tmp_path, redis_server, 3)
    try:
        (leader,) = leaders(nodes)
        survivors = [n for n in nodes if n is not leader]
        stop = asyncio.Event()
        seen: list[int] = []
        url = survivors[0].ws_base + "/ws?symbols=*"
        watcher = asyncio.create_task(collect_ticks(url, TAKEOVER_BOUND + 4, stop, seen))
        await eventually(lambda: len(seen) > 20)  # the snapshot and live ticks
        last = survivors[0].get("/price").json()["seq"]
        leader.proc.send_signal(signal.SIGKILL)
        flowing_after = await flowing(survivors[0], last + 10, TAKEOVER_BOUND + 2)
        assert flowing_after < TAKEOVER_BOUND, f"ticks flowed again after {flowing_after:.1f}s"
        # The watcher reads on into the new leader's ticks.
        await eventually(lambda: seen[-1] > last + 10)
        stop.set()
        assert len(leaders(survivors)) == 1
        assert cluster(survivors[0])["epoch"] == 2
        (new_leader,) = leaders(survivors)
        metrics = new_leader.get("/metrics").text
        assert "tickcast_cluster_leader 1.0" in metrics
        assert 'tickcast_lease_changes_total{change="elected"} 1.0' in metrics
        assert "tickcast_hub_connected 1.0" in metrics
        seqs = (await watcher)[10:]
        assert seqs == sorted(set(seqs)), "a duplicate or reordering across the takeover"
    finally:
        for node in nodes:
            node.stop()


async def test_sse_resumes_on_another_node_with_exactly_the_missed_ticks(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """An SSE client that read up to an id on one node and comes back with it on another
    node gets every tick it missed, and nothing before."""
    nodes = start_nodes(tmp_path, redis_server, 2)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            first = []
            async with http.stream("GET", nodes[0].base + "/sse?symbols=*") as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("id:"):
                        first.append(int(line[3:].strip()))
                    if len(first) >= 15:
                        break
            last_id = first[-1]
            # 40 ticks are missed meanwhile (20 are read back).
            await eventually(lambda: nodes[1].get("/price").json()["seq"] > last_id + 40)
            resumed = []
            headers = {"Last-Event-ID": str(last_id)}
            async with http.stream("GET", nodes[1].base + "/sse?symbols=*", headers=headers) as s:
                async for line in s.aiter_lines():
                    assert not line.startswith("event: reset"), "a reset instead of a resume"
                    if line.startswith("id:"):
                        resumed.append(int(line[3:].strip()))
                    if len(resumed) >= 20:
                        break
        assert resumed[0] == last_id + 1
        assert resumed == list(range(last_id + 1, last_id + 1 + len(resumed)))
    finally:
        for node in nodes:
            node.stop()


async def test_roles_edge_never_leads_and_ingest_serves_no_streams(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """An edge node never takes the lease, even alone with a dead leader's key gone; an
    ingest node leads and serves REST, and refuses WebSocket clients with 503."""

    def node(name: str, role: str) -> ServerProcess:
        args = ["--source", "sim", "--redis-url", redis_server.url, "--node-id", name]
        env = {"TICKCAST_LEASE_TTL": str(SHORT_TTL)}
        return ServerProcess([*args, "--role", role], env, tmp_path / f"{name}.log")

    edge, ingest = node("edge0", "edge"), node("ingest0", "ingest")
    try:
        ingest.wait_ready("/price", timeout=30)
        edge.wait_ready("/price", timeout=30)
        assert cluster(ingest)["leader"] is True
        assert cluster(edge)["leader"] is False and cluster(edge)["leader_id"] is None
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ingest.ws_base + "/ws"):
                pass
        assert refused.value.response.status_code == 503
        ingest.stop()
        await asyncio.sleep(SHORT_TTL + 1)  # past the lease TTL, many standby polls
        assert cluster(edge)["leader"] is False
    finally:
        edge.stop()
        ingest.stop()


async def test_a_node_that_loses_redis_keeps_its_clients_and_resumes_without_a_gap(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The link of a follower to Redis goes dead (blackholed, no reset): its clients stay
    connected, those that asked for status hear "disconnected" and later "connected",
    /readyz says 503 meanwhile, and the ticks resume with no gap and no duplicate."""
    leader = ServerProcess(
        ["--source", "sim", "--redis-url", redis_server.url, "--node-id", "leader"],
        {"TICKCAST_SIM_RATE": "4", **TICKERS_ONLY},
        tmp_path / "leader.log",
    )
    proxy = LinkProxy(redis_server.port)
    await proxy.start()
    follower = ServerProcess(
        ["--source", "sim", "--redis-url", proxy.url, "--node-id", "follower", "--role", "edge"],
        {},
        tmp_path / "follower.log",
    )
    try:
        await wait_ready_async(leader)
        await wait_ready_async(follower)
        statuses: list[str] = []
        seqs: list[int] = []
        async with websockets.connect(follower.ws_base + "/ws?symbols=*&status=1") as ws:

            async def read() -> None:
                async for raw in ws:
                    message = orjson.loads(raw)
                    if message["type"] == "status" and "hub" in message:
                        statuses.append(str(message["hub"]))
                    elif message["type"] == "tick":
                        seqs.append(message["seq"])

            reader = asyncio.create_task(read())
            await eventually(lambda: len(seqs) > 20)
            proxy.blackholed = True
            cut = time.monotonic()
            async with httpx.AsyncClient(timeout=2) as http:
                while "disconnected" not in statuses and time.monotonic() - cut < 15:
                    await asyncio.sleep(0.2)
                detected = time.monotonic() - cut
                assert "disconnected" in statuses, statuses
                assert (await http.get(follower.base + "/readyz")).status_code == 503
                await asyncio.sleep(0.5)
                proxy.blackholed = False
                proxy.reset_all()
                restored = time.monotonic()
                while statuses[-1] != "connected" and time.monotonic() - restored < 15:
                    await asyncio.sleep(0.2)
                assert statuses[-1] == "connected", statuses
                resumed = len(seqs)

                async def ready_and_flowing() -> bool:
                    ready = (await http.get(follower.base + "/readyz")).status_code == 200
                    return ready and len(seqs) > resumed + 20

                await eventually(ready_and_flowing)
            reader.cancel()
        assert detected < 10, f"a dead link took {detected:.1f}s to notice"
        live = seqs[10:]
        assert live == list(range(live[0], live[0] + len(live))), "a gap or duplicate"
    finally:
        follower.stop()
        leader.stop()
        await proxy.stop()


async def test_a_frozen_leader_steps_down_and_nothing_it_sends_late_reaches_clients(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The leader frozen (SIGSTOP) past its lease TTL: another node leads; resumed
    (SIGCONT), the old leader stops itself, and clients see no duplicate or reordering."""
    nodes = start_nodes(tmp_path, redis_server, 2, lease_ttl=SHORT_TTL)
    try:
        (leader,) = leaders(nodes)
        (other,) = [n for n in nodes if n is not leader]
        stop = asyncio.Event()
        seen: list[int] = []
        url = other.ws_base + "/ws?symbols=*"
        watcher = asyncio.create_task(collect_ticks(url, 20, stop, seen))
        await eventually(lambda: len(seen) > 20)  # the snapshot and live ticks
        leader.proc.send_signal(signal.SIGSTOP)
        try:
            # Frozen until the other node has taken the lease (so past the TTL).
            await eventually(lambda: cluster(other)["leader"] is True, timeout=10)
            assert cluster(other)["epoch"] == 2
            # The successor's ticks flow while the old leader is still frozen.
            await flowing(other, other.get("/price").json()["seq"] + 10, 5)
        finally:
            leader.proc.send_signal(signal.SIGCONT)
        # Resumed, it learns it was deposed; whatever it sent late would reach the watcher
        # before the successor's next 20 ticks do.
        await eventually(lambda: cluster(leader)["leader"] is False)
        assert cluster(leader)["leader_id"] == cluster(other)["leader_id"]
        resumed_at = other.get("/price").json()["seq"]
        await eventually(lambda: seen[-1] > resumed_at + 20)
        stop.set()
        seqs = (await watcher)[10:]
        assert seqs == sorted(set(seqs)), "a duplicate or reordering after the freeze"
    finally:
        for node in nodes:
            node.stop()


async def test_redis_restarts_under_running_nodes(tmp_path: Path) -> None:
    """Redis restarted with AOF: no client is disconnected and no tick is missed or
    repeated. Restarted without its data: a new incarnation, seq keeps rising, and a
    client resuming from before it gets a reset."""
    with running_redis(tmp_path / "redis", appendonly=True) as redis_server:
        nodes = start_nodes(tmp_path, redis_server, 2)
        follower = next(n for n in nodes if not cluster(n)["leader"])
        try:
            incarnation = cluster(follower)["incarnation"]
            stop = asyncio.Event()
            seen: list[int] = []
            url = follower.ws_base + "/ws?symbols=*"
            watcher = asyncio.create_task(collect_ticks(url, 20, stop, seen))
            await eventually(lambda: len(seen) > 20)  # the snapshot and live ticks
            at_restart = follower.get("/price").json()["seq"]
            redis_server.restart()  # AOF: the data survives
            # Ticks flow again through the restarted Redis, and the watcher reads on.
            assert await flowing(follower, at_restart + 40, 10) < 10, "no ticks after the restart"
            await eventually(lambda: seen[-1] > at_restart + 40)
            stop.set()
            seqs = (await watcher)[10:]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap or duplicate"
            assert cluster(follower)["incarnation"] == incarnation
            live: list[dict[str, object]] = []

            async def read_live() -> None:
                async with websockets.connect(url) as ws:
                    async for raw in ws:
                        live.append(orjson.loads(raw))

            live_reader = asyncio.create_task(read_live())
            await eventually(lambda: any(m["type"] == "tick" for m in live))
            before = follower.get("/price").json()["seq"]
            redis_server.restart(keep_data=False)
            # A client connected across it gets a reset with a snapshot (SPEC §7) once the
            # node has rebuilt its state from the new incarnation, then ticks past it.
            await eventually(lambda: any(m["type"] == "reset" for m in live), timeout=15)
            assert cluster(follower)["incarnation"] not in (incarnation, None)

            def price_seq() -> int:
                seq = follower.get("/price").json().get("seq", 0)
                assert isinstance(seq, int)
                return seq

            await eventually(lambda: price_seq() > before, timeout=10)  # never backwards

            def ticks_past_the_reset() -> int:
                at = next(i for i, m in enumerate(live) if m["type"] == "reset")
                return sum(m["type"] == "tick" for m in live[at + 1 :])

            await eventually(lambda: ticks_past_the_reset() >= 5)
            live_reader.cancel()
            at = next(i for i, m in enumerate(live) if m["type"] == "reset")
            reset = live[at]
            # The snapshot is what the new incarnation holds: often nothing yet.
            assert isinstance(reset["ticks"], list), reset
            assert isinstance(reset["last_seq"], int) and reset["last_seq"] >= before, reset
            assert all(t["seq"] <= reset["last_seq"] for t in reset["ticks"]), reset
            after = [m["seq"] for m in live[at + 1 :] if m["type"] == "tick"]
            assert after and all(isinstance(q, int) and q > reset["last_seq"] for q in after)
            async with (
                httpx.AsyncClient(timeout=10) as http,
                http.stream(
                    "GET", follower.base + "/sse?symbols=BTCUSDT", headers={"Last-Event-ID": "5"}
                ) as stream,
            ):
                lines = []
                async for line in stream.aiter_lines():
                    lines.append(line)
                    if len(lines) > 6:
                        break
            assert "event: reset" in lines, lines
        finally:
            for node in nodes:
                node.stop()


@pytest.fixture
def sim_port() -> Iterator[int]:
    """An external simulated exchange, so a fault can be injected into the leader's link."""
    with sim_exchange("--rate", "4") as port:
        yield port


async def test_the_upstream_dropped_on_the_leader_brings_no_duplicate(
    tmp_path: Path, redis_server: RedisServer, sim_port: int
) -> None:
    """The leader's upstream connection is reset (it keeps the lease): it reconnects, and
    clients on every node see seqs that only increase, with ticks flowing again."""
    nodes = []
    try:
        for i in range(2):
            args = ["--source", "binance", "--binance-url", f"ws://127.0.0.1:{sim_port}"]
            args += ["--redis-url", redis_server.url, "--node-id", f"node{i}"]
            nodes.append(ServerProcess(args, TICKERS_ONLY, tmp_path / f"node{i}.log"))
        for node in nodes:
            node.wait_ready("/price", timeout=30)
        (leader,) = leaders(nodes)
        stop = asyncio.Event()
        seen: list[list[int]] = [[] for _ in nodes]
        watchers = [
            asyncio.create_task(collect_ticks(n.ws_base + "/ws?symbols=*", 8, stop, into))
            for n, into in zip(nodes, seen, strict=True)
        ]
        await eventually(lambda: all(len(got) > 20 for got in seen))
        async with httpx.AsyncClient(timeout=5) as http:
            await http.post(f"http://127.0.0.1:{sim_port}/_sim/fault?kind=drop")
        dropped_at = leader.get("/price").json()["seq"]

        def reconnected() -> bool:
            upstream = leader.status()["upstream"]
            return isinstance(upstream, dict) and upstream["reconnects"] >= 1

        await eventually(reconnected, timeout=6)
        # Ticks flow again on every node after the reconnect, while the watchers read.
        for node in nodes:
            await flowing(node, dropped_at + 40, 6)
        await eventually(lambda: all(got[-1] > dropped_at + 40 for got in seen))
        stop.set()
        got = await asyncio.gather(*watchers)
        upstream = leader.status()["upstream"]
        assert isinstance(upstream, dict) and upstream["reconnects"] >= 1
        assert cluster(leader)["leader"] is True and cluster(leader)["epoch"] == 1
        for seqs in got:
            live = seqs[10:]
            assert live == sorted(set(live)), "a duplicate after the upstream reconnect"
            assert len(live) > 20
    finally:
        for node in nodes:
            node.stop()


async def collect_trades(url: str, until: asyncio.Event, into: list[dict[str, object]]) -> None:
    """Every trade message ``url`` delivers until ``until`` is set, kept in ``into``."""
    async with websockets.connect(url) as ws:
        while not until.is_set():
            with contextlib.suppress(TimeoutError):
                message = orjson.loads(await asyncio.wait_for(ws.recv(), 0.2))
                if message.get("type") == "trade":
                    into.append(message)
                elif message.get("e") == "aggTrade" or "data" in message:
                    into.append(message.get("data", message))


async def test_trades_reach_every_node_alike_and_a_leader_kill_loses_and_repeats_none(
    tmp_path: Path, redis_server: RedisServer, sim_port: int
) -> None:
    """Trades go through Redis: clients on two nodes get the same trades with the same
    seqs. The leader is killed while the exchange trades on: the survivor takes over,
    fetches the trades no one received meanwhile from the exchange's REST, and its
    client's trade ids go on one apart: no trade lost, none repeated."""
    args = ["--source", "binance", "--binance-url", f"ws://127.0.0.1:{sim_port}"]
    env = {
        "TICKCAST_STREAM_SYMBOLS": "BTCUSDT",
        "TICKCAST_BINANCE_REST_URL": f"http://127.0.0.1:{sim_port}",
        "TICKCAST_LEASE_TTL": str(SHORT_TTL),
    }
    nodes = []
    try:
        for i in range(2):
            more = ["--redis-url", redis_server.url, "--node-id", f"node{i}"]
            nodes.append(ServerProcess([*args, *more], env, tmp_path / f"node{i}.log"))
        for node in nodes:
            node.wait_ready("/price", timeout=30)
        (leader,) = leaders(nodes)
        (survivor,) = [n for n in nodes if n is not leader]
        stop, gone = asyncio.Event(), asyncio.Event()
        on_leader: list[dict[str, object]] = []
        on_survivor: list[dict[str, object]] = []
        on_exchange: list[dict[str, object]] = []
        url = "/ws?streams=BTCUSDT@trades"
        # A subscriber of the exchange's own keeps it trading through the takeover.
        direct = f"ws://127.0.0.1:{sim_port}/stream?streams=btcusdt@aggTrade"
        watchers = [
            asyncio.create_task(collect_trades(leader.ws_base + url, gone, on_leader)),
            asyncio.create_task(collect_trades(survivor.ws_base + url, stop, on_survivor)),
            asyncio.create_task(collect_trades(direct, stop, on_exchange)),
        ]
        await eventually(lambda: len(on_leader) > 10 and len(on_survivor) > 10)
        gone.set()
        await watchers[0]
        leader.proc.send_signal(signal.SIGKILL)
        before = {int(str(t["trade_id"])) for t in on_survivor}
        await eventually(lambda: len(leaders([survivor])) == 1, timeout=TAKEOVER_BOUND + 2)
        await eventually(lambda: int(str(on_survivor[-1]["trade_id"])) > max(before) + 5, 8)
        stop.set()
        await asyncio.gather(*watchers[1:])
        # The same trades, with the same seqs, on both nodes while both ran.
        both = {int(str(t["trade_id"])) for t in on_leader} & before
        assert len(both) > 5
        seen_on_leader = {t["trade_id"]: t["seq"] for t in on_leader}
        for trade in on_survivor:
            if trade["trade_id"] in seen_on_leader:
                assert seen_on_leader[trade["trade_id"]] == trade["seq"]
        ids = [int(str(t["trade_id"])) for t in on_survivor]
        assert ids == list(range(ids[0], ids[0] + len(ids))), "a trade lost or repeated"
        fill = survivor.status()["trade_fill"]
        assert isinstance(fill, dict) and int(str(fill["filled"])) >= 1, fill
        held = {int(str(t["trade_id"])) for t in survivor.get("/trades/BTCUSDT?limit=1000").json()}
        # Every trade the hub holds from the client's first on reached the client.
        assert {i for i in held if ids[0] <= i <= ids[-1]} <= set(ids)
    finally:
        for node in nodes:
            node.stop()


async def test_a_follower_fills_its_candles_from_the_simulator_the_leader_runs(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """With the simulator running in the leader alone, a follower learns where it answers
    REST (through Redis) and serves the same 1,000 candles of history as the leader."""
    nodes = redis_support.start_nodes(
        tmp_path, redis_server, 2, {"TICKCAST_STREAM_KINDS": "klines"}
    )
    try:
        (leader,) = leaders(nodes)
        (follower,) = [n for n in nodes if n is not leader]

        def history(node: ServerProcess) -> list[dict[str, object]]:
            candles = node.get("/klines/BTCUSDT", params={"limit": 1000}).json()
            assert isinstance(candles, list)
            return [c for c in candles if c["seq"] == 0]

        await eventually(lambda: len(history(follower)) >= 999, timeout=20)
        await eventually(lambda: len(history(leader)) >= 999, timeout=5)
        theirs = {c["open_time"]: c for c in history(leader)}
        mine = history(follower)
        assert all(theirs[c["open_time"]] == c for c in mine if c["open_time"] in theirs)

        def pending() -> object:
            return follower.status()["klines"]["backfill"]["pending"]  # type: ignore[index]

        await eventually(lambda: pending() == [], timeout=10)
    finally:
        for node in nodes:
            node.stop()
