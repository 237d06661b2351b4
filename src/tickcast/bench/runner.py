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
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal

import orjson
import uvloop

from tickcast.bench import procstat
from tickcast.bench.loadgen import LoadSpec, receive, share, worker_main
from tickcast.bench.processes import (
    HOST,
    Child,
    baseline_command,
    clean_env,
    free_port,
    ready,
    redis_command,
    sim_command,
    tickcast_command,
)
from tickcast.bench.rawhttp import http_get
from tickcast.bench.reference import ReferenceFeed
from tickcast.bench.report import (
    STALL_RCVBUF,
    CpuSample,
    Measurements,
    Phase,
    failed_run,
    failure_text,
    format_ratios,
    format_table,
    ratios,
    summarize,
)
from tickcast.bench.wsbytes import BadHead
from tickcast.settings import DEFAULT_SYMBOLS, Settings

Target = Literal["tickcast", "tickcast-redis", "tickcast-workers", "naive", "raw"]
# The targets that run on a private Redis started by the bench.
ON_REDIS: tuple[Target, ...] = ("tickcast-redis", "tickcast-workers")
BASELINES: dict[str, Target] = {"naive": "naive", "raw": "raw"}
SETTLE_SECONDS = 0.5  # after /price answers, before the idle RSS is read
STATUS_POLL_SECONDS = 0.5
STALL_DRAIN_SECONDS = 2.0
READY_TIMEOUT = 30.0
SPAWN_TIMEOUT = 30.0
CONNECT_SLACK = 5.0  # beyond the load generators' own bound on connecting, for a busy host
REPORT_TIMEOUT = 30.0  # for the reports, beyond the stalled clients' drain


@dataclass(frozen=True)
class BenchConfig:
    """What ``tickcast bench`` was asked to do."""

    clients: int = 1000
    symbols: int = 10
    rate: float = 1.0
    duration: float = 10.0
    stall: int = 0
    transport: Literal["ws", "sse"] = "ws"
    compare: tuple[str, ...] = ()
    redis: bool = False
    nodes: int = 1
    workers: int = 1
    json_path: Path | None = None
    flush_ms: float | None = None
    slow_timeout: float = 10.0
    loadgen_procs: int = 1
    warmup: float = 3.0
    grace: float = 1.5
    connect_batch: int = 500
    connect_timeout: float = 10.0
    logs: Path | None = None
    argv: tuple[str, ...] = field(default_factory=tuple)

    def problems(self) -> list[str]:
        out = []
        if self.clients < 1:
            out.append("--clients must be at least 1")
        if self.symbols < 1:
            out.append("--symbols must be at least 1")
        if self.rate <= 0 or self.duration <= 0:
            out.append("--rate and --duration must be positive")
        if not 0 <= self.stall <= self.clients:
            out.append("--stall must be between 0 and --clients")
        if self.loadgen_procs < 1:
            out.append("--loadgen-procs must be at least 1")
        if self.nodes < 1 or (self.nodes > 1 and not self.redis):
            out.append("--nodes above 1 needs --redis: nodes share their upstream through it")
        if self.nodes > self.loadgen_procs:
            out.append(f"--nodes {self.nodes} needs --loadgen-procs {self.nodes} or more")
        if not 1 <= self.workers <= 64:
            out.append("--workers must be between 1 and 64")
        if self.flush_ms is not None and self.flush_ms < 0:
            out.append("--flush-ms must be 0 or more")
        if self.warmup < 0 or self.connect_batch < 1 or self.connect_timeout <= 0:
            out.append("--warmup, --connect-batch and --connect-timeout must be positive")
        return out


def symbol_names(count: int) -> list[str]:
    """The 10 default symbols, then synthetic ones: S11USDT, S12USDT, ..."""
    names = list(DEFAULT_SYMBOLS[:count])
    names += [f"S{i}USDT" for i in range(len(DEFAULT_SYMBOLS) + 1, count + 1)]
    return names


def command_line(argv: Sequence[str]) -> str:
    import shlex

    return shlex.join(["tickcast", *argv])


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
        print(f"== {target}: {config.clients} clients x {config.symbols} symbols at "
              f"{config.rate}/s for {config.duration}s", file=sys.stderr, flush=True)  # fmt: skip
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
        "config": _config_json(config),
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


def _config_json(config: BenchConfig) -> dict[str, Any]:
    out = asdict(config)
    out["json_path"] = str(config.json_path) if config.json_path else None
    out["logs"] = str(config.logs) if config.logs else None
    out["compare"] = list(config.compare)
    out["redis"] = config.redis
    out["nodes"] = config.nodes
    out["workers"] = config.workers
    out["argv"] = list(config.argv)
    default_flush = Settings.model_fields["flush_ms"].default
    out["flush_ms_effective"] = config.flush_ms if config.flush_ms is not None else default_flush
    out["symbol_names"] = symbol_names(config.symbols)
    return out


@dataclass
class Worker:
    process: BaseProcess
    conn: Connection

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("stop",))
        self.process.join(3)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class Run:
    """The processes of one run, all stopped by ``close``."""

    def __init__(self, config: BenchConfig, target: Target, log_dir: Path) -> None:
        self.config = config
        self.target = target
        self.log_dir = log_dir
        self.symbols = symbol_names(config.symbols)
        self.children: list[Child] = []
        self.workers: list[Worker] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.redis: Child | None = None
        self.redis_port: int | None = None
        self.phase_started = time.monotonic()

    async def start_redis(self) -> int:
        """A private Redis for the ``tickcast-redis`` run; returns its port."""
        port = free_port()
        self.redis = Child("redis", redis_command(port, self.log_dir), clean_env(), self.log_dir)
        self.children.append(self.redis)
        await ready(self.redis, port, None, READY_TIMEOUT)
        return port

    def start_simulator(self) -> tuple[Child, int]:
        port = free_port()
        argv = sim_command(port, self.config.rate, self.symbols)
        child = Child("simulator", argv, clean_env(), self.log_dir)
        self.children.append(child)
        return child, port

    def start_server(self, sim_port: int) -> tuple[Child, int]:
        port = free_port()
        c = self.config
        if self.target in ("tickcast", *ON_REDIS):
            env = {
                "TICKCAST_BINANCE_URL": f"ws://{HOST}:{sim_port}",
                "TICKCAST_SLOW_CLIENT_TIMEOUT": str(c.slow_timeout),
                "TICKCAST_MAX_CONNECTIONS": str(max(50_000, 2 * c.clients)),
                "TICKCAST_MAX_SUBSCRIPTIONS": str(max(200, c.symbols)),
            }
            if c.flush_ms is not None:
                env["TICKCAST_FLUSH_MS"] = str(c.flush_ms)
            if self.target in ON_REDIS:
                assert self.redis_port is not None
                env["TICKCAST_REDIS_URL"] = f"redis://{HOST}:{self.redis_port}/0"
            if self.target == "tickcast-workers":
                env["TICKCAST_WORKERS"] = str(c.workers)
            argv = tickcast_command(port, self.symbols)
        else:
            env = {}
            argv = baseline_command(self.target, port, sim_port, self.symbols, c.slow_timeout)
        servers = sum(child.name.startswith(self.target) for child in self.children)
        name = self.target if not servers else f"{self.target}-{servers + 1}"
        child = Child(name, argv, clean_env(env), self.log_dir)
        self.children.append(child)
        return child, port

    def start_workers(self, ports: list[int]) -> None:
        """The load generators; with several server ports (``--nodes``), worker ``i``
        connects to port ``i mod len(ports)``, splitting the clients evenly."""
        c = self.config
        context = multiprocessing.get_context("spawn")
        query = "symbols=" + ",".join(self.symbols)
        target = f"/{c.transport}?{query}"
        for index in range(c.loadgen_procs):
            spec = LoadSpec(
                host=HOST,
                port=ports[index % len(ports)],
                transport=c.transport,
                target=target,
                connections=share(c.clients, c.loadgen_procs, index),
                stall=share(c.stall, c.loadgen_procs, index),
                batch=max(1, c.connect_batch // c.loadgen_procs),
                connect_timeout=c.connect_timeout,
                stall_rcvbuf=STALL_RCVBUF,
                worker=index,
            )
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=worker_main,
                args=(child_end, spec),
                name=f"tickcast-loadgen-{index}",
                daemon=True,
            )
            process.start()
            child_end.close()
            self.workers.append(Worker(process, parent_end))

    async def gather(self) -> list[Any]:
        """One message from every worker; an ``error`` from any is raised."""
        replies: list[Any] = [None] * len(self.workers)

        async def one(index: int) -> None:
            replies[index] = await self.next_message(index)

        await _all(one(index) for index in range(len(self.workers)))
        return replies

    async def next_message(self, index: int) -> Any:
        """The next message of worker ``index``; its ``error``, or its exit, is raised."""
        try:
            kind, body = await receive(self.workers[index].conn)
        except EOFError:
            raise RuntimeError(f"load generator {index + 1} exited without a word") from None
        if kind == "error":
            raise RuntimeError(f"load generator {index + 1} failed: {body}")
        return body

    async def follow_connect(self, m: Measurements, until_done: bool) -> None:
        """Keep each worker's latest connect summary in ``m.connect`` until every worker
        has sent its first one (``until_done`` False: they have all started) or its last."""

        async def follow(index: int) -> None:
            while not m.connect[index] or (until_done and not m.connect[index].get("done")):
                m.connect[index] = await self.next_message(index)

        await _all(follow(index) for index in range(len(self.workers)))

    def enter(self, m: Measurements, phase: Phase) -> None:
        m.phase = phase
        self.phase_started = time.monotonic()

    def tell(self, message: tuple[Any, ...]) -> None:
        for worker in self.workers:
            worker.conn.send(message)

    def sample(self, servers: list[Child], simulator: Child) -> CpuSample:
        return CpuSample(
            wall=time.time(),
            server=_total_cpu(procstat.cpu_seconds(pid) for pid in server_pids(servers)),
            simulator=procstat.cpu_seconds(simulator.pid),
            loadgen=[procstat.cpu_seconds(w.process.pid or 0) for w in self.workers],
            bench=procstat.cpu_seconds(os.getpid()),
            machine=procstat.machine_busy_seconds(),
            redis=procstat.cpu_seconds(self.redis.pid) if self.redis is not None else None,
        )

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for worker in self.workers:
            worker.stop()
        for child in reversed(self.children):  # the server before the simulator
            child.stop()


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


async def _all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines together; the first error cancels the others and is raised as
    it is (not in an ExceptionGroup)."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except ExceptionGroup as group_error:
        raise group_error.exceptions[0] from None


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
    reference = ReferenceFeed(f"ws://{HOST}:{sim_port}", run.symbols)
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
    if run.target == "tickcast-workers":
        await _all_workers_serving(port, config.workers)
    await asyncio.sleep(SETTLE_SECONDS)
    m.rss_baseline = _total(procstat.rss_bytes(pid) for pid in server_pids(servers))
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
    m.status_start = await _status(port)
    await _sleep_until(m.window_end_ms / 1000)
    m.cpu_end = run.sample(servers, simulator)
    m.rss_end = _total(procstat.rss_bytes(pid) for pid in server_pids(servers))
    m.fds_end = _total(procstat.open_fds(pid) for pid in server_pids(servers))
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
    m.expected = reference.expected()
    m.reference_complete = not reference.reconnected
    drain = STALL_DRAIN_SECONDS if config.stall else 0.0
    run.tell(("finish", m.expected, drain))
    async with within(drain + REPORT_TIMEOUT, "not every load generator reported"):
        m.reports = await run.gather()
    m.status_end = await _status(port)
    m.server_emfile_logged = any(s.log_contains("Too many open files") for s in servers)
    for child in servers:
        if not child.alive():
            raise RuntimeError(f"{child.name} died during the run:\n{child.log_tail()}")


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


def server_pids(servers: list[Child]) -> list[int]:
    """Every process serving clients: each server, and under ``--workers`` each worker
    of its supervisor (which holds no client but is counted for its CPU and memory)."""
    return [pid for s in servers for pid in (s.pid, *procstat.children(s.pid))]


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


def _total(values: Iterable[int | None]) -> int | None:
    """The sum over the servers of a run (``--nodes``), or None if any is unknown."""
    items = list(values)
    return None if not items or None in items else sum(v for v in items if v is not None)


def _total_cpu(values: Iterable[float | None]) -> float | None:
    """``_total`` for CPU seconds."""
    items = list(values)
    return None if not items or None in items else sum(v for v in items if v is not None)


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
