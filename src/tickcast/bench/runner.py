"""One bench invocation: a run against tickcast, then against each ``--compare`` server.

A run: start the simulated exchange and the server under test as subprocesses, wait for
``/price``, note the server's idle RSS, start the load-generator processes and let them
connect, then after ``warmup`` measure for ``duration``: the measured window is a span
of *exchange* time, so every client counts the same ticks whatever its lag. CPU is read
from /proc at the window's edges; ``grace`` seconds later the clients are told how many
distinct events the exchange sent per symbol (``ReferenceFeed``) and report gaps,
duplicates and their latency histograms. Everything is stopped by its PID on the way
out, on errors and on Ctrl-C/SIGTERM too.

A run that fails says in which ``Phase`` and how far it had got (``4,200 of 5,000
clients within 10 s``), and its JSON keeps what it had measured: every wait is bounded
by ``within``, whose error says what did not happen in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import uvloop

from tickcast.bench import procstat
from tickcast.bench.bookrun import settle
from tickcast.bench.config import (
    BASELINES,
    ON_REDIS,
    BenchConfig,
    Target,
    command_line,
    config_json,
)
from tickcast.bench.processes import HOST, ready
from tickcast.bench.rawhttp import http_get, http_request
from tickcast.bench.reference import ReferenceFeed
from tickcast.bench.report import (
    Measurements,
    Phase,
    failed_run,
    failure_text,
    ratios,
    summarize,
)
from tickcast.bench.run import READY_TIMEOUT, Run, server_pids, total
from tickcast.bench.table import format_ratios, format_table
from tickcast.bench.wsbytes import BadHead

__all__ = ["BenchConfig", "error_text", "run_bench", "within"]

SETTLE_SECONDS = 0.5  # after /price answers, before the idle RSS is read
STATUS_POLL_SECONDS = 0.5
STALL_DRAIN_SECONDS = 2.0
SPAWN_TIMEOUT = 30.0
CONNECT_SLACK = 5.0  # beyond the load generators' own bound on connecting, for a busy host
REPORT_TIMEOUT = 30.0  # for the reports, beyond the stalled clients' drain
# The levels a side each client's book is compared on: @book's top 20 (the server's
# default TICKCAST_BOOK_LEVELS), @depth's whole book (the most GET /book answers).
BOOK_LIMITS = {"book": 20, "depth": 5000}


def run_bench(config: BenchConfig) -> int:
    """Run the bench; print the table, write the JSON; the exit status."""
    problems = config.problems()
    if problems:
        for problem in problems:
            print(f"tickcast bench: {problem}", file=sys.stderr)
        return 2
    procstat.raise_nofile()
    plan = _plan(config)
    status = 130
    try:
        status = uvloop.run(_bench(config, *plan))
        return status
    except KeyboardInterrupt:
        print("tickcast bench: interrupted; every process it started is stopped", file=sys.stderr)
        return status
    except asyncio.CancelledError:  # SIGTERM
        print("tickcast bench: terminated; every process it started is stopped", file=sys.stderr)
        status = 143
        return status
    finally:
        # A temporary log folder goes, unless a run failed: then its logs tell why.
        if config.logs is None and status != 1:
            shutil.rmtree(plan[0], ignore_errors=True)


def _plan(config: BenchConfig) -> tuple[Path, dict[Target, Path], list[Target], list[str]]:
    """The servers to run, their log folders (created), and notes on what is skipped."""
    log_dir = config.logs or Path(tempfile.mkdtemp(prefix="tickcast-bench-"))
    notes: list[str] = []
    targets: list[Target] = ["tickcast", "tickcast-redis"] if config.redis else ["tickcast"]
    if config.workers > 1:
        targets.append("tickcast-workers")
    for name in dict.fromkeys(config.compare):
        if config.transport == "sse":
            notes.append(f"--compare {name} skipped: the baselines serve WebSocket only")
        elif config.trades and name != "raw":
            notes.append(f"--compare {name} skipped: only raw relays trades")
        elif name in BASELINES:
            targets.append(BASELINES[name])
    log_dirs = {target: log_dir / target for target in targets}
    for path in log_dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return log_dir, log_dirs, targets, notes


async def _bench(
    config: BenchConfig,
    log_dir: Path,
    log_dirs: dict[Target, Path],
    targets: list[Target],
    notes: list[str],
) -> int:
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    machine = procstat.machine_info()
    runs: dict[str, dict[str, Any]] = {}
    for target in targets:
        what = "trades" if config.trades else "ticks"
        heading = (
            f"== {target}: {config.clients} clients x {config.symbols} symbols at "
            f"{config.rate} {what}/s for {config.duration}s"
        )
        print(heading, file=sys.stderr, flush=True)
        try:
            runs[target] = summarize(await run_target(config, target, log_dirs[target]))
        except RunFailed as failure:
            runs[target] = failed_run(failure.measurements, failure.error)
            print(failure_text(runs[target]), file=sys.stderr)
    ratio_table = ratios(runs)
    result = {
        "command": command_line(config.argv),
        "argv": list(config.argv),
        "started_at": started,
        "machine": {**machine, "load_average_end": procstat.load_average()},
        "config": config_json(config),
        "runs": runs,
        "ratios": ratio_table,
        "notes": notes,
    }
    if any("error" not in run for run in runs.values()):
        print(format_table(runs))
    if ratio_table:
        print(format_ratios(ratio_table))
    for note in notes:
        print(f"note: {note}")
    if config.json_path is not None:
        config.json_path.parent.mkdir(parents=True, exist_ok=True)
        config.json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"wrote {config.json_path}")
    failed = any("error" in run for run in runs.values())
    if failed:
        print(f"logs kept in {log_dir}", file=sys.stderr)
    return 1 if failed else 0


class RunFailed(Exception):
    """A run stopped by an error: what it had measured (its phase included) and the
    error in words."""

    def __init__(self, measurements: Measurements, error: str) -> None:
        super().__init__(error)
        self.measurements = measurements
        self.error = error


def error_text(exc: BaseException) -> str:
    """The error in words: its message, or for one without (a bare ``TimeoutError``)
    what it means, never a class name alone."""
    text = str(exc).strip()
    if text:
        return text
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, EOFError):
        return "a load generator's pipe closed"
    return f"{type(exc).__name__} (no message)"


@contextlib.asynccontextmanager
async def within(seconds: float, what: str) -> AsyncIterator[None]:
    """``asyncio.timeout(seconds)`` whose TimeoutError says ``what`` did not happen in
    time (a TimeoutError of the body's own passes as it is)."""
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            yield
    except TimeoutError as exc:
        if not deadline.expired():
            raise
        raise TimeoutError(f"{what} within {seconds:g} s") from exc


async def run_target(config: BenchConfig, target: Target, log_dir: Path) -> Measurements:
    """One run against ``target`` (``log_dir`` exists); see the module docstring. Raises
    ``RunFailed`` with what was measured up to the failure."""
    run = Run(config, target, log_dir)
    m = Measurements(
        target=target,
        clients=config.clients,
        stall=config.stall,
        symbols=config.symbols,
        rate=config.rate,
        duration=config.duration,
        slow_timeout=config.slow_timeout,
        grace=config.grace,
    )
    try:
        await _measure(run, m)
    except (RuntimeError, TimeoutError, OSError, EOFError) as exc:
        m.phase_seconds = time.monotonic() - run.phase_started
        raise RunFailed(m, error_text(exc)) from exc
    finally:
        run.close()
    return m


async def _measure(run: Run, m: Measurements) -> None:
    config = run.config
    run.enter(m, Phase.SIMULATOR)
    simulator, sim_port = run.start_simulator()
    await ready(simulator, sim_port, None, READY_TIMEOUT)
    run.enter(m, Phase.REFERENCE)
    reference = ReferenceFeed(f"ws://{HOST}:{sim_port}", run.symbols, config.trades)
    run.tasks.append(asyncio.create_task(reference.run(), name="reference"))
    async with within(READY_TIMEOUT, "no data from the simulator on the reference feed"):
        await reference.wait_ready()
    if run.target in ON_REDIS:
        run.enter(m, Phase.REDIS)
        run.redis_port = await run.start_redis()
    run.enter(m, Phase.SERVER)
    nodes = config.nodes if run.target == "tickcast-redis" else 1
    started = [run.start_server(sim_port) for _ in range(nodes)]
    servers, ports = [child for child, _ in started], [port for _, port in started]
    server, port = started[0]
    for child, child_port in started:
        await ready(child, child_port, f"/price?symbol={run.symbols[0]}", READY_TIMEOUT)
        if config.every_market:
            # Served once the listing is read and its streams subscribed: the last one.
            await ready(child, child_port, f"/price?symbol={run.symbols[-1]}", READY_TIMEOUT)
        for symbol in run.symbols if config.books else ():
            await ready(child, child_port, f"/book/{symbol}?limit=1", READY_TIMEOUT)
    if run.target == "tickcast-workers":
        await _all_workers_serving(port, config.workers)
    await asyncio.sleep(SETTLE_SECONDS)
    m.rss_baseline = total(procstat.rss_bytes(pid) for pid in server_pids(servers))
    fds_before = {pid: procstat.open_fds(pid) or 0 for pid in server_pids(servers)}
    m.fd_limit = procstat.nofile_limit(server.pid)
    if config.stall:
        run.tasks.append(asyncio.create_task(_poll_closes(port, m), name="status-poll"))
    await _connect(run, m, ports)
    run.enter(m, Phase.MEASURE)
    start_ms = int((time.time() + config.warmup) * 1000)
    m.window_start_ms, m.window_end_ms = start_ms, start_ms + int(config.duration * 1000)
    reference.set_window(m.window_start_ms, m.window_end_ms)
    run.tell(("window", m.window_start_ms, m.window_end_ms))
    await _sleep_until(m.window_start_ms / 1000)
    m.cpu_start = run.sample(servers, simulator)
    if config.trades and (config.burst or config.stall):
        burst = _burst(run, m, sim_port, m.window_start_ms / 1000 + config.burst_offset())
        run.tasks.append(asyncio.create_task(burst, name="burst"))
    m.status_start = await _status(port)
    await _sleep_until(m.window_end_ms / 1000)
    m.cpu_end = run.sample(servers, simulator)
    m.rss_end = total(procstat.rss_bytes(pid) for pid in server_pids(servers))
    m.fds_end = total(procstat.open_fds(pid) for pid in server_pids(servers))
    if run.target == "tickcast-workers":
        # Connections each worker holds: its descriptors now less those it had idle.
        m.spread = [
            (procstat.open_fds(pid) or 0) - before
            for pid, before in fds_before.items()
            if pid != server.pid
        ]
    await asyncio.sleep(config.grace)
    for task in run.tasks:
        task.cancel()
    run.enter(m, Phase.REPORT)
    # A book stream has no count of events to gap against: its books are checked instead.
    m.expected = {} if config.books else reference.expected()
    if config.books:
        async with within(REPORT_TIMEOUT, "the clients' books were not compared"):
            m.book_answers = await settle(run, port, BOOK_LIMITS[config.streams])
    m.reference_complete = not reference.reconnected
    # A stalled trades client is not waited for: it is meant to be open, reading again.
    drain = STALL_DRAIN_SECONDS if config.stall and not config.trades else 0.0
    run.tell(("finish", m.expected, drain))
    async with within(drain + REPORT_TIMEOUT, "not every load generator reported"):
        m.reports = await run.gather()
    m.status_end = await _status(port)
    different = sum(r.get("books", {}).get("mismatched", 0) for r in m.reports)
    if different:
        raise RuntimeError(f"{different} clients' books differ from the server's")
    m.server_emfile_logged = any(s.log_contains("Too many open files") for s in servers)
    for child in servers:
        if not child.alive():
            raise RuntimeError(f"{child.name} died during the run:\n{child.log_tail()}")


async def _burst(run: Run, m: Measurements, sim_port: int, at: float) -> None:
    """At ``at`` (wall time): the stalled clients stop reading, and the simulator starts
    the burst of trades of the first symbol; its answer is kept in ``m.burst``."""
    config = run.config
    await _sleep_until(at)
    if config.stall:
        run.tell(("pause", config.stall_seconds))
    m.burst = {"at_ms": int(time.time() * 1000), "count": config.burst}
    if config.burst:
        target = (
            f"/_sim/burst?symbol={run.symbols[0]}&count={config.burst}"
            f"&seconds={config.burst_seconds:g}"
        )
        status, body = await http_request(HOST, sim_port, "POST", target)
        if status != 200:
            raise RuntimeError(f"the simulator refused the burst: HTTP {status} {body[:200]!r}")
        m.burst["answer"] = json.loads(body)


async def _connect(run: Run, m: Measurements, ports: list[int]) -> None:
    """Start the load generators and wait until they have connected, keeping their
    progress in ``m.connect`` so that a failure can say how far they got. No client
    connected at all is a failure: there would be nothing to measure."""
    config = run.config
    run.enter(m, Phase.SPAWN)
    run.start_workers(ports)
    m.connect = [{} for _ in run.workers]
    async with within(SPAWN_TIMEOUT, "not every load generator started"):
        await run.follow_connect(m, until_done=False)
    run.enter(m, Phase.CONNECT)
    per_worker = -(-config.clients // config.loadgen_procs)
    batches = -(-per_worker // max(1, config.connect_batch // config.loadgen_procs))
    # Each batch is bounded by --connect-timeout in the load generator itself.
    limit = batches * (config.connect_timeout + 1) + CONNECT_SLACK
    async with within(limit, "the load generators had not finished connecting"):
        await run.follow_connect(m, until_done=True)
    if not any(s.get("healthy", 0) + s.get("stalled", 0) for s in m.connect):
        raise RuntimeError("no client connected: nothing to measure")


async def _all_workers_serving(port: int, workers: int) -> None:
    """Wait until ``/status`` has answered from every worker: each connection lands on
    one of them by the kernel's hash of its port, so a few dozen requests see them all."""
    seen: set[str] = set()
    async with within(READY_TIMEOUT, f"not all {workers} workers answered /status"):
        while len(seen) < workers:
            status = await _status(port)
            if status is not None and status.get("node_id"):
                seen.add(str(status["node_id"]))
            await asyncio.sleep(0.05)


async def _sleep_until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))


async def _status(port: int) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, TimeoutError, BadHead, json.JSONDecodeError):
        async with asyncio.timeout(5.0):
            status, body = await http_get(HOST, port, "/status")
        if status == 200:
            parsed = json.loads(body)
            return parsed if isinstance(parsed, dict) else None
    return None


async def _poll_closes(port: int, m: Measurements) -> None:
    """Server-side closes over time: a stalled client cannot see its own close (the
    close frame and FIN wait behind the bytes queued for it), so the server counts."""
    while True:
        status = await _status(port)
        if status is not None:
            closes = status.get("edge", {}).get("closes", {})
            m.closes_timeline.append((time.time(), sum(int(v) for v in closes.values())))
        await asyncio.sleep(STATUS_POLL_SECONDS)
