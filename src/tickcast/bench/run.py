"""The processes of one bench run: the simulator, the server(s), a private Redis and the
load-generator processes, each started by ``Run`` and all stopped by ``Run.close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import secrets
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from tickcast.bench import procstat
from tickcast.bench.config import ON_REDIS, BenchConfig, Target, symbol_names
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
from tickcast.bench.report import STALL_RCVBUF, CpuSample, Measurements, Phase
from tickcast.settings import DEFAULT_SYMBOLS, Settings

READY_TIMEOUT = 30.0


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
        # --tokens: the server verifies an HS256 token at each handshake.
        self.jwt_secret = secrets.token_hex(32) if config.tokens else ""

    async def start_redis(self) -> int:
        """A private Redis for the ``tickcast-redis`` run; returns its port."""
        port = free_port()
        self.redis = Child("redis", redis_command(port, self.log_dir), clean_env(), self.log_dir)
        self.children.append(self.redis)
        await ready(self.redis, port, None, READY_TIMEOUT)
        return port

    def start_simulator(self) -> tuple[Child, int]:
        port = free_port()
        c = self.config
        argv = sim_command(port, 1.0 if c.trades or c.books else c.rate, self.symbols)
        if c.trades:
            argv += ["--trade-rate", str(c.rate)]
        child = Child("simulator", argv, clean_env(), self.log_dir)
        self.children.append(child)
        return child, port

    def start_server(self, sim_port: int) -> tuple[Child, int]:
        port = free_port()
        c = self.config
        if self.target in ("tickcast", *ON_REDIS):
            env = {
                "TICKCAST_BINANCE_URL": f"ws://{HOST}:{sim_port}",
                "TICKCAST_BINANCE_REST_URL": f"http://{HOST}:{sim_port}",
                "TICKCAST_SLOW_CLIENT_TIMEOUT": str(c.slow_timeout),
                "TICKCAST_MAX_CONNECTIONS": str(max(50_000, 2 * c.clients)),
                "TICKCAST_MAX_SUBSCRIPTIONS": str(max(200, c.symbols)),
            }
            if c.flush_ms is not None:
                env["TICKCAST_FLUSH_MS"] = str(c.flush_ms)
            line = len(self.target_path()) + 64
            if line > Settings.model_fields["max_header_line_bytes"].default:
                # Thousands of symbols named in the request line, one by one.
                env["TICKCAST_MAX_HEADER_LINE_BYTES"] = str(line)
                env["TICKCAST_MAX_HEADER_BYTES"] = str(line + 8192)
                # The WebSocket handshake's own parser has a line limit of its own.
                env["WEBSOCKETS_MAX_LINE_LENGTH"] = str(line)
            if self.jwt_secret:
                env["TICKCAST_JWT_SECRET"] = self.jwt_secret
            if c.stream_kinds is not None:
                env["TICKCAST_STREAM_KINDS"] = c.stream_kinds
            if c.symbols > len(DEFAULT_SYMBOLS) and not (c.trades or c.books):
                # Trades, candles and books of the first ten only, named or ``*``.
                env["TICKCAST_STREAM_SYMBOLS"] = ",".join(self.symbols[: len(DEFAULT_SYMBOLS)])
            if c.trades:
                # The trades and nothing else beside the ticker, as raw relays them.
                env["TICKCAST_STREAM_KINDS"] = "trades"
            if c.books:
                env["TICKCAST_STREAM_KINDS"] = "book"
            if self.target in ON_REDIS:
                assert self.redis_port is not None
                env["TICKCAST_REDIS_URL"] = f"redis://{HOST}:{self.redis_port}/0"
            if self.target == "tickcast-workers":
                env["TICKCAST_WORKERS"] = str(c.workers)
            argv = tickcast_command(port, ["*"] if c.every_market else self.symbols)
        else:
            env = {}
            kind = "rawbook" if c.books and self.target == "raw" else self.target
            argv = baseline_command(kind, port, sim_port, self.symbols, c.slow_timeout)
            if c.trades or c.books:
                argv += ["--streams", c.streams]
        servers = sum(child.name.startswith(self.target) for child in self.children)
        name = self.target if not servers else f"{self.target}-{servers + 1}"
        child = Child(name, argv, clean_env(env), self.log_dir)
        self.children.append(child)
        return child, port

    def target_path(self) -> str:
        """What each client asks for: its path and query."""
        c = self.config
        if c.streams == "tickers":
            query = "streams=!tickers"
        elif c.trades or c.books:
            query = "streams=" + ",".join(f"{symbol}@{c.streams}" for symbol in self.symbols)
        else:
            query = "symbols=" + ",".join(self.symbols)
        return f"/{c.transport}?{query}"

    def start_workers(self, ports: list[int]) -> None:
        """The load generators; with several server ports (``--nodes``), worker ``i``
        connects to port ``i mod len(ports)``, splitting the clients evenly."""
        c = self.config
        context = multiprocessing.get_context("spawn")
        tokens = self.jwt_secret and self.target in ("tickcast", *ON_REDIS)
        target = self.target_path()
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
                kind=c.streams,
                deflate=c.deflate,
                jwt_secret=self.jwt_secret if tokens else "",
                token_ttl=3600 + c.duration + c.warmup,
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

        await run_all(one(index) for index in range(len(self.workers)))
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

        await run_all(follow(index) for index in range(len(self.workers)))

    def enter(self, m: Measurements, phase: Phase) -> None:
        m.phase = phase
        self.phase_started = time.monotonic()

    def tell(self, message: tuple[Any, ...]) -> None:
        for worker in self.workers:
            worker.conn.send(message)

    def sample(self, servers: list[Child], simulator: Child) -> CpuSample:
        return CpuSample(
            wall=time.time(),
            server=total_cpu(procstat.cpu_seconds(pid) for pid in server_pids(servers)),
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


async def run_all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines together; the first error cancels the others and is raised as
    it is (not in an ExceptionGroup)."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except ExceptionGroup as group_error:
        raise group_error.exceptions[0] from None


def server_pids(servers: list[Child]) -> list[int]:
    """Every process serving clients: each server, and under ``--workers`` each worker
    of its supervisor (which holds no client but is counted for its CPU and memory)."""
    return [pid for s in servers for pid in (s.pid, *procstat.children(s.pid))]


def total(values: Iterable[int | None]) -> int | None:
    """The sum over the servers of a run (``--nodes``), or None if any is unknown."""
    items = list(values)
    return None if not items or None in items else sum(v for v in items if v is not None)


def total_cpu(values: Iterable[float | None]) -> float | None:
    """``_total`` for CPU seconds."""
    items = list(values)
    return None if not items or None in items else sum(v for v in items if v is not None)
