"""Sources: auto fallback and switch-back, record and replay, and the full fault schedule."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from tickcast.cli import record
from tickcast.hub.memory import MemoryHub
from tickcast.ingest import Ingest
from tickcast.messages.tick import Tick
from tickcast.settings import Settings
from tickcast.sim.exchange import SimConfig, SimExchange
from tickcast.upstream.sources import AutoSource, ReplaySource

from ..support import ServerProcess, eventually, free_port, running_server, sim_exchange


async def test_auto_falls_back_to_sim_and_back_to_live() -> None:
    """auto: no live data within the grace -> simulated data labelled sim; live returns ->
    live data labelled binance, and the simulator is stopped."""
    port = free_port()
    settings = Settings(
        source="auto",
        binance_url=f"ws://127.0.0.1:{port}",
        auto_grace=1.0,
        sim_rate=10,
        backoff_initial=0.1,
        backoff_max=0.5,
        symbols=["BTCUSDT", "ETHUSDT"],
    )
    hub = MemoryHub(100)
    ticks: list[Tick] = []
    hub.subscribe(ticks.append)
    ingest = Ingest(hub, settings.symbols)
    source = AutoSource(settings, ingest.apply)
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: any(t.source == "sim" for t in ticks), timeout=8)
        assert source.label == "sim"
        assert source.status()["fallbacks"] == 1
        live = SimExchange(SimConfig(port=port, rate=10, seed=99, identify=False))
        await live.start()
        try:
            await eventually(lambda: ticks[-1].source == "binance", timeout=10)
            await eventually(lambda: source.sim is None, timeout=5)
            marker = len(ticks)
            await eventually(lambda: len(ticks) >= marker + 10)
            assert {t.source for t in ticks[marker:]} == {"binance"}
            assert source.label == "binance"
        finally:
            await live.stop()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_record_then_replay(tmp_path: Path) -> None:
    """`record` captures raw frames as JSONL with their source; a replay of simulated data
    stays labelled sim."""
    settings = Settings(source="sim", sim_rate=20, symbols=["BTCUSDT", "ETHUSDT"])
    capture = tmp_path / "capture.jsonl"
    with capture.open("wb") as out:
        frames = await record(settings, out, seconds=1.5)
    assert frames >= 10
    lines = capture.read_bytes().splitlines()
    assert len(lines) == frames
    first = orjson.loads(lines[0])
    assert set(first) == {"t", "source", "frame"}
    assert first["source"] == "sim"

    hub = MemoryHub(100)
    ticks: list[Tick] = []
    hub.subscribe(ticks.append)
    ingest = Ingest(hub, settings.symbols)
    replay = ReplaySource(capture, ingest.apply, speed=10.0)
    task = asyncio.create_task(replay.run())
    try:
        await eventually(lambda: len(ticks) >= 10, timeout=5)
        assert {t.source for t in ticks} == {"sim"}
        assert {t.symbol for t in ticks} == {"BTCUSDT", "ETHUSDT"}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_replay_rejects_a_malformed_capture(tmp_path: Path) -> None:
    """A capture line that is not a record names the file and line."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 1, "frame": "{}"}\nnot json\n')
    replay = ReplaySource(bad, lambda _u, _l: None)
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        replay.load()


def test_serve_rejects_a_missing_replay_file(tmp_path: Path) -> None:
    """serve --source replay:PATH with no such file exits non-zero with the file named."""
    result = subprocess.run(
        [sys.executable, "-m", "tickcast.cli", "serve", "--port", str(free_port()),
         "--source", f"replay:{tmp_path / 'missing.jsonl'}"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert result.returncode != 0
    assert "missing.jsonl" in result.stdout + result.stderr


@pytest.mark.exclusive
def test_serve_stays_fresh_through_every_fault_kind(tmp_path: Path) -> None:
    """serve --source binance against sim-exchange running every fault kind keeps /price
    fresh, and /status counts each reconnect."""
    # (seconds after the server serves, kind, duration): timed from the server's start, not
    # the simulator's, so a slow start-up cannot let a fault pass before anyone connects.
    faults = [
        (0.5, "drop", 0), (2, "close1000", 0), (3.5, "close1001", 0), (5, "close1008", 0),
        (11.5, "stall", 2.5), (15.5, "shutdown", 1), (17.5, "garbage", 1), (19, "burst", 1),
        (20.5, "latency", 1),
    ]  # fmt: skip
    args = ("--rate", "10", "--ping-interval", "1")
    with sim_exchange(*args, log=tmp_path / "sim.log") as sim_port:
        env = {
            "TICKCAST_BINANCE_URL": f"ws://127.0.0.1:{sim_port}",
            "TICKCAST_STALE_AFTER": "1",
            "TICKCAST_BACKOFF_MAX": "1",
        }
        admin = f"http://127.0.0.1:{sim_port}/_sim/fault"
        with running_server(tmp_path, ["--source", "binance"], env) as server:
            worst_age = 0.0
            started = time.monotonic()
            # The serverShutdown notice reaches only the connections open when it is sent: it
            # waits until the server is connected again after the stall (a loaded machine can
            # still be reconnecting at 15.5 s), and the later faults wait behind it.
            while time.monotonic() < started + 40 and (faults or time.monotonic() < started + 24):
                while faults and time.monotonic() >= started + faults[0][0]:
                    if faults[0][1] == "shutdown" and not connected(server):
                        break
                    _, kind, duration = faults.pop(0)
                    httpx.post(f"{admin}?kind={kind}&duration={duration}", timeout=5)
                tick = server.get("/price").json()
                worst_age = max(worst_age, time.time() - tick["timestamp_ms"] / 1000)
                time.sleep(0.25)
            upstream = server.status()["upstream"]
    assert faults == []
    assert isinstance(upstream, dict)
    # drop, close1000, close1001, close1008 and the stall each cost one reconnect.
    assert upstream["reconnects"] >= 5, upstream
    detail = upstream["detail"]
    assert detail["closes"].keys() >= {"1006", "1000", "1001", "1008"}, upstream
    assert detail["counters"]["stale"] >= 1
    assert detail["counters"]["server_shutdowns"] >= 1, upstream
    assert detail["counters"]["rotations"] >= 1, upstream
    assert upstream["parse_errors"], upstream
    assert upstream["state"] == "connected"
    # The stall lasts 2.5 s and the 1008 floor is 5 s: never staler than that plus slack.
    assert worst_age < 8.0


def connected(server: ServerProcess) -> bool:
    """Whether the server's upstream is connected and delivering now."""
    upstream = server.status()["upstream"]
    return isinstance(upstream, dict) and upstream["state"] == "connected"


def capture_line(t: int, frame: object, source: str | None = "sim") -> bytes:
    line: dict[str, object] = {"t": t, "frame": orjson.dumps(frame).decode()}
    if source is not None:
        line["source"] = source
    return orjson.dumps(line) + b"\n"


def write_capture(path: Path, source: str | None) -> int:
    """Five steps of BTCUSDT 100 ms apart, a ticker and a book update each; returns updates."""
    with path.open("wb") as out:
        for i in range(5):
            event = 1_600_000_000_000 + 100 * i
            ticker = {"e": "24hrMiniTicker", "E": event, "s": "BTCUSDT", "c": f"{100 + i}",
                      "o": "100", "h": "110", "l": "90", "v": "1", "q": "100"}  # fmt: skip
            book = {"u": 5_000 + i, "s": "BTCUSDT", "b": f"{99 + i}", "a": f"{101 + i}"}
            out.write(
                capture_line(event + 3, {"stream": "btcusdt@miniTicker", "data": ticker}, source)
            )
            out.write(
                capture_line(event + 4, {"stream": "btcusdt@bookTicker", "data": book}, source)
            )
    return 10


async def replay_ticks(path: Path, passes: int) -> tuple[ReplaySource, list[Tick]]:
    hub = MemoryHub(1000)
    ticks: list[Tick] = []
    hub.subscribe(ticks.append)
    ingest = Ingest(hub, ["BTCUSDT"])
    replay = ReplaySource(path, ingest.apply, speed=4.0)
    task = asyncio.create_task(replay.run())
    try:
        await eventually(lambda: replay.passes > passes, timeout=10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return replay, ticks


async def test_replay_passes_deliver_fresh_ticks(tmp_path: Path) -> None:
    """Every pass of a looped replay is published in full, with timestamps near now that
    advance from pass to pass; a simulated capture stays labelled sim."""
    capture = tmp_path / "sim.jsonl"
    per_pass = write_capture(capture, "sim")
    started_ms = time.time() * 1000
    replay, ticks = await replay_ticks(capture, passes=3)
    assert len(ticks) >= 3 * per_pass - 1  # the first book update waits for a price
    assert {t.source for t in ticks} == {"sim"}
    assert replay.label == "sim"
    stamps = [t.timestamp_ms for t in ticks]
    assert stamps == sorted(stamps)
    assert stamps[0] >= started_ms - 1000
    assert stamps[-1] - stamps[0] >= 2 * 400 / 4  # two passes of a 0.4 s capture at 4x
    assert replay.status()["recorded_sources"] == {"sim": per_pass}


async def test_replay_of_a_capture_without_labels_is_marked_replay(tmp_path: Path) -> None:
    """A capture written before records carried their source is still read, as replay."""
    capture = tmp_path / "old.jsonl"
    write_capture(capture, None)
    replay, ticks = await replay_ticks(capture, passes=1)
    assert ticks
    assert {t.source for t in ticks} == {"replay"}
    assert replay.label == "replay"


def test_serve_replays_a_recorded_simulation_for_ever_marked_simulated(tmp_path: Path) -> None:
    """`tickcast record` of the simulator, then `serve --source replay:PATH`: /price keeps
    advancing pass after pass, /readyz stays ready, and /status says the data is simulated."""
    capture = tmp_path / "capture.jsonl"
    subprocess.run(
        [sys.executable, "-m", "tickcast.cli", "record", "--out", str(capture), "--seconds", "1",
         "--source", "sim", "--sim-rate", "10", "--symbols", "BTCUSDT"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    lines = [orjson.loads(line) for line in capture.read_bytes().splitlines()]
    assert lines and {line["source"] for line in lines} == {"sim"}
    env = {"TICKCAST_REPLAY_SPEED": "3", "TICKCAST_SYMBOLS": "BTCUSDT"}
    with running_server(tmp_path, ["--source", f"replay:{capture}"], env) as server:
        first = server.get("/price").json()
        deadline = time.monotonic() + 15
        while server.status()["upstream"]["detail"]["passes"] < 3 and time.monotonic() < deadline:  # type: ignore[index]
            time.sleep(0.2)
        last = server.get("/price").json()
        assert last["seq"] > first["seq"] + 10
        assert last["timestamp_ms"] > first["timestamp_ms"]
        assert time.time() - last["timestamp_ms"] / 1000 < 3
        assert last["source"] == "sim"
        assert server.get("/readyz").status_code == 200
        status = server.status()
        assert status["simulated"] is True
        assert status["source"] == "sim"
        upstream = status["upstream"]
        assert isinstance(upstream, dict)
        assert upstream["detail"]["mode"] == "replay"
        assert upstream["detail"]["passes"] >= 3


@pytest.fixture
def sim_exchange_port() -> Iterator[int]:
    """``tickcast sim-exchange`` as its own process, the way the README runs it."""
    with sim_exchange("--rate", "4") as port:
        yield port


@pytest.mark.parametrize("source", ["binance", "auto"])
async def test_the_simulated_exchange_at_the_binance_url_is_served_as_sim(
    tmp_path: Path, sim_exchange_port: int, source: str
) -> None:
    """serve --source binance (or auto) pointed at ``tickcast sim-exchange``: the simulator
    says what it is in its handshake, so ticks, /status, status messages and /metrics all
    say sim, never binance."""
    env = {"TICKCAST_BINANCE_URL": f"ws://127.0.0.1:{sim_exchange_port}"}
    with running_server(tmp_path, ["--source", source], env) as server:
        async with websockets.connect(server.ws_base + "/ws?symbols=*&status=1") as ws:
            messages = [orjson.loads(await ws.recv()) for _ in range(15)]
        status = messages[0]
        assert status["type"] == "status", status
        assert status["source"] == "sim" and status["simulated"] is True, status
        ticks = [m for m in messages if m["type"] == "tick"]
        assert ticks and {t["source"] for t in ticks} == {"sim"}
        assert server.get("/price").json()["source"] == "sim"
        body = server.status()
        assert body["source"] == "sim" and body["simulated"] is True, body
        metrics = server.get("/metrics").text
        assert 'tickcast_source{source="sim"} 1.0' in metrics
        assert 'tickcast_source{source="binance"} 0.0' in metrics
