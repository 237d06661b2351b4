"""A bounded soak: hundreds of churning clients while the exchange runs every fault.

``TICKCAST_SOAK_SECONDS`` (default 25) sets the churn phase; the whole test takes about
that plus 25 s. At the end the server must be back near its baseline, healthy clients must
have seen no gap they were not told about, and the server must not have logged a traceback.

Tolerances, against a baseline taken after a warm-up round of the same churn (so the
allocator's arenas and the caches of a first use are already in it):
- sessions: exactly the baseline (0): every client left, every session must be gone;
- asyncio tasks: at most 2 more (a timer-driven task may be running at the moment read);
- file descriptors: at most 5 more (a socket in the middle of its close);
- RSS: at most 40 MB or 50 % more, whichever is larger; CPython rarely returns freed
  memory to the system, so RSS can only show a leak that grows with the churn, and
  hundreds of leaked sessions with their buffers would exceed that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from .rawclient import RawWebSocket, abort_socket, open_socket, raw_http_get
from .support import TICKERS_ONLY, ServerProcess, eventually, sim_exchange

SOAK_SECONDS = float(os.environ.get("TICKCAST_SOAK_SECONDS", "25"))
WARMUP_SECONDS = 5.0
HEALTHY_WS = 16
HEALTHY_SSE = 8
CHURN_CONCURRENCY = 60

pytestmark = [pytest.mark.slow, pytest.mark.exclusive]


def fault_schedule(seconds: float) -> str:
    """Every fault kind, spread over the churn phase (after the warm-up)."""
    kinds = [
        ("drop", 0),
        ("close1000", 0),
        ("close1001", 0),
        ("close1008", 0),
        ("stall", 4),
        ("shutdown", 1),
        ("garbage", 2),
        ("burst", 2),
        ("latency", 3),
    ]
    step = seconds * 0.85 / len(kinds)
    start = WARMUP_SECONDS + 5
    return ",".join(
        f"{kind}@{start + i * step:.1f}" + (f"+{d}" if d else "")
        for i, (kind, d) in enumerate(kinds)
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("soak")
    schedule = fault_schedule(SOAK_SECONDS)
    env = {
        "TICKCAST_STALE_AFTER": "3",
        "TICKCAST_SLOW_CLIENT_TIMEOUT": "3",
        "TICKCAST_OPS_PER_SECOND": "20",
        "TICKCAST_HANDSHAKE_TIMEOUT": "3",
        **TICKERS_ONLY,
    }
    with sim_exchange("--rate", "4", "--fault-schedule", schedule, log=tmp / "sim.log") as port:
        args = ["--source", "binance", "--binance-url", f"ws://127.0.0.1:{port}"]
        server = ServerProcess(args, env, tmp / "server.log")
        try:
            server.wait_ready("/price", timeout=30)
            yield server
        finally:
            server.stop()


# -- healthy clients: every tick, in order, or told why not --------------------------------


@dataclass
class Watch:
    """One healthy client's view: ticks in seq order; a jump is a gap unless a status or
    reset message came since the last tick."""

    name: str
    last_seq: int = 0
    ticks: int = 0
    told: bool = False
    untold_gaps: list[tuple[int, int]] = field(default_factory=list)
    duplicates: int = 0
    server_closes: list[str] = field(default_factory=list)

    def see(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        if kind in ("status", "reset"):
            self.told = True
            return
        if kind != "tick":
            return
        seq = message["seq"]
        assert isinstance(seq, int)
        if seq <= self.last_seq:
            self.duplicates += 1
            return
        if self.last_seq and seq != self.last_seq + 1 and not self.told:
            self.untold_gaps.append((self.last_seq, seq))
        self.last_seq, self.told = seq, False
        self.ticks += 1


async def healthy_ws(base: str, watch: Watch, stop: asyncio.Event) -> None:
    async with websockets.connect(base + "/ws?symbols=*&status=1", max_size=2**20) as ws:
        # Never a timeout around recv(): a message must not be lost to a cancelled read.
        async def close_on_stop() -> None:
            await stop.wait()
            await ws.close()

        closer = asyncio.create_task(close_on_stop())
        try:
            async for raw in ws:
                watch.see(orjson.loads(raw))
        finally:
            closer.cancel()


async def healthy_sse(base: str, watch: Watch, stop: asyncio.Event, rng: random.Random) -> None:
    """Reconnects every few seconds with the last id it saw, as EventSource does, and
    also whenever the server ends the stream."""
    last_id: str | None = None
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(5, read=None)) as http:
        while not stop.is_set():
            headers = {"Last-Event-ID": last_id} if last_id else {}
            deadline = asyncio.get_running_loop().time() + rng.uniform(2, 6)
            try:
                async with http.stream("GET", "/sse?symbols=*", headers=headers) as stream:
                    if last_id is None:
                        watch.told = True  # the first connection starts with a snapshot
                    event: dict[str, str] = {}
                    async for line in stream.aiter_lines():
                        if line == "":
                            if "data" in event:
                                message = orjson.loads(event["data"])
                                if event.get("event") == "reset":
                                    message["type"] = "reset"
                                watch.see(message)
                                if "id" in event:
                                    last_id = event["id"]
                            event = {}
                        elif not line.startswith(":"):
                            name, _, value = line.partition(":")
                            event[name] = value.removeprefix(" ")
                        if stop.is_set() or asyncio.get_running_loop().time() > deadline:
                            break
            except httpx.HTTPError as exc:
                watch.server_closes.append(repr(exc))


# -- churn: short-lived clients that behave well, badly, or not at all ----------------------


async def churn_one(server: ServerProcess, rng: random.Random) -> None:
    kind = rng.randrange(7)
    symbols = ",".join(rng.sample(["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "NOPE"], 2))
    if kind == 0:  # subscribe and unsubscribe with ops, then leave politely
        async with websockets.connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws:
            for i in range(rng.randrange(1, 6)):
                op = rng.choice(["subscribe", "unsubscribe", "list", "ping"])
                await ws.send(orjson.dumps({"op": op, "symbols": symbols.split(","), "id": i}))
                await asyncio.wait_for(ws.recv(), 5)
    elif kind == 1:  # throttled, then gone without a close frame
        query = f"/ws?symbols={symbols}&throttle_ms={rng.choice([50, 500, 5000])}"
        client = await RawWebSocket.connect(server.ws_base + query)
        try:
            with contextlib.suppress(TimeoutError, AssertionError):
                await client.next_frame(timeout=rng.uniform(0.1, 2))
        finally:
            client.abort()
    elif kind == 2:  # stops reading with a tiny window: the server must close it
        client = await RawWebSocket.connect(server.ws_base + "/ws?symbols=*", rcvbuf=2048)
        try:
            await asyncio.sleep(rng.uniform(1, 6))
        finally:
            client.abort()
    elif kind == 3:  # SSE resume from an id, good or bad, vanishing mid-event
        last = rng.choice(["1", "999999999", "abc", "%C2%B2", "9" * 200, "-3"])
        sock, _head = await raw_http_get(
            f"{server.base}/sse?symbols={symbols.replace(',NOPE', '').replace('NOPE,', '')}",
            headers={"Last-Event-ID": last},
        )
        try:
            await asyncio.sleep(rng.uniform(0, 1))
        finally:
            abort_socket(sock)
    elif kind == 4:  # a flood of bad ops
        async with websockets.connect(server.ws_base + "/ws?symbols=ETHUSDT") as ws:
            for _ in range(rng.randrange(20, 80)):
                await ws.send(rng.choice(['{"op":', "null", '{"op":"dance"}', "[]" * 50]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.recv(), 1)
    elif kind == 5:  # a half-sent request head
        sock = await open_socket("127.0.0.1", server.port)
        try:
            await asyncio.get_running_loop().sock_sendall(sock, b"GET /price HTTP/1.1\r\nHo")
            await asyncio.sleep(rng.uniform(0, 1))
        finally:
            sock.close()
    else:  # REST reads
        async with httpx.AsyncClient(base_url=server.base, timeout=5) as http:
            for path in rng.sample(["/price", "/prices", "/history/BTCUSDT?limit=5", "/status"], 2):
                await http.get(path)


async def churn(server: ServerProcess, seconds: float, seed: int) -> int:
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    gate = asyncio.Semaphore(CHURN_CONCURRENCY)
    done = 0

    async def one(case_rng: random.Random) -> None:
        nonlocal done
        try:
            await asyncio.wait_for(churn_one(server, case_rng), 12)
        except (OSError, TimeoutError, websockets.WebSocketException, httpx.HTTPError):
            pass  # the server may refuse, close or reset a churning client
        finally:
            gate.release()
            done += 1

    async with asyncio.TaskGroup() as group:
        while loop.time() < end:
            await gate.acquire()
            group.create_task(one(random.Random(rng.getrandbits(64))))
    return done


def vitals(server: ServerProcess) -> dict[str, int]:
    status = server.status()
    edge, proc = status["edge"], status["process"]
    assert isinstance(edge, dict) and isinstance(proc, dict)
    return {
        "sessions": int(edge["clients"]["total"]),
        "tasks": int(proc["asyncio_tasks"]),
        "fds": int(proc["open_fds"]),
        "rss": int(proc["rss_bytes"]),
        # An upstream connection holds a reader and a subscriber task while it is open:
        # counts compare only between moments when it is (the faults drop it at times).
        "connected": int(_upstream_state(status) == "connected"),
    }


def _upstream_state(status: dict[str, object]) -> object:
    upstream = status["upstream"]
    return upstream.get("state") if isinstance(upstream, dict) else None


async def test_soak_returns_to_baseline_with_no_untold_gaps(
    stack: ServerProcess, tmp_path: Path
) -> None:
    """Churn and faults for the soak period: resources come back, healthy clients see
    every tick or a status/reset, and nothing is logged as a traceback."""
    seed = random.SystemRandom().randrange(2**32)
    await churn(stack, WARMUP_SECONDS, seed)

    def idle() -> bool:
        now = vitals(stack)
        return now["sessions"] == 0 and now["connected"] == 1

    await eventually(idle, timeout=20, interval=0.25)
    baseline = vitals(stack)

    stop = asyncio.Event()
    watches = [Watch(f"ws{i}") for i in range(HEALTHY_WS)]
    watches += [Watch(f"sse{i}") for i in range(HEALTHY_SSE)]
    rng = random.Random(seed)
    async with asyncio.TaskGroup() as group:
        healthy = [
            group.create_task(healthy_ws(stack.ws_base, w, stop)) for w in watches[:HEALTHY_WS]
        ]
        healthy += [
            group.create_task(healthy_sse(stack.base, w, stop, random.Random(rng.getrandbits(64))))
            for w in watches[HEALTHY_WS:]
        ]
        churned = await churn(stack, SOAK_SECONDS, seed + 1)
        stop.set()
    assert all(t.done() and t.exception() is None for t in healthy)

    settled: dict[str, int] = {}

    def back_to_baseline() -> bool:
        settled.update(vitals(stack))
        return (
            settled["sessions"] == baseline["sessions"]
            and settled["connected"] == 1
            and settled["tasks"] <= baseline["tasks"] + 2
            and settled["fds"] <= baseline["fds"] + 5
        )

    try:
        await eventually(back_to_baseline, timeout=20, interval=0.5)
    except AssertionError:
        pytest.fail(f"seed {seed}: baseline {baseline}, after the soak {settled}")
    assert settled["rss"] <= max(baseline["rss"] * 1.5, baseline["rss"] + 40 * 2**20), (
        f"RSS {baseline['rss'] >> 20} -> {settled['rss'] >> 20} MB"
    )
    assert churned > 200, f"only {churned} churning clients ran"
    closes = stack.status()["edge"]
    for watch in watches:
        assert not watch.server_closes, f"{watch.name}: {watch.server_closes}, {closes}"
        assert watch.ticks > 0, f"{watch.name} got no ticks"
        assert not watch.untold_gaps, f"seed {seed}: {watch.name} gaps {watch.untold_gaps[:5]}"
        assert watch.duplicates == 0, f"{watch.name} got {watch.duplicates} duplicates"
    log = stack.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 2000 :][:6000]
