"""``tickcast serve --workers N``: N server processes on one host and port.

Each worker is a whole node of the Redis cluster (its own node id, its own clients), so
they share one upstream connection through the leader lease exactly as separate hosts
would. Each worker opens its own listening socket with ``SO_REUSEPORT``, and the kernel
spreads new connections over them by a hash of the client's address and port. A shared
socket would make the busiest worker (the one whose loop comes back to ``accept`` first)
take most of them.

The supervisor (this module, in the process the user started) only starts, watches and
stops the workers: it holds no client. It keeps a bound socket of its own on the port so
that the port stays reserved while a worker is being restarted, and so a port in use is
one clear error before any worker starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import time
import types
from dataclasses import dataclass

from tickcast.logs import configure_logging
from tickcast.serve.listen import BindError, bind_listener
from tickcast.settings import Settings

log = logging.getLogger("tickcast.workers")

# SPEC §9: SIGTERM closes every client and exits within 5 s. Workers get 4 s of grace
# (server.GRACEFUL_SHUTDOWN_SECONDS); whatever is left at 4.5 s is killed.
STOP_DEADLINE = 4.5
POLL_SECONDS = 0.1
RESTART_DELAY_FIRST = 0.5
RESTART_DELAY_MAX = 30.0
# A worker that ran this long before dying is restarted with the first delay again.
HEALTHY_AFTER = 60.0
_PR_SET_PDEATHSIG = 1
# The settings a worker runs with arrive on its stdin, as JSON (secrets stay off argv).
WORKER_ENTRY = "from tickcast.serve.workers import worker_main; worker_main()"


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux), so
    no child outlives a parent that was killed without a chance to stop it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)


def _worker_setup() -> None:
    # SIGTERM, not SIGKILL: a worker left alone still closes its clients with 1001.
    die_with_parent(signal.SIGTERM)


@dataclass
class Worker:
    index: int
    settings: Settings
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = RESTART_DELAY_FIRST
    restart_at: float | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER_ENTRY],
            stdin=subprocess.PIPE,
            preexec_fn=_worker_setup,  # the supervisor runs no threads
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(self.settings.model_dump_json().encode())
        self.proc.stdin.close()
        self.started = time.monotonic()
        self.restart_at = None
        log.info("worker %d started (pid %d)", self.index, self.proc.pid)


def worker_settings(settings: Settings, index: int) -> Settings:
    """The settings of worker ``index`` (1-based): a node id of its own, one process."""
    return settings.model_copy(update={"node_id": f"{settings.node_id}-w{index}", "workers": 1})


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers = [
            Worker(i, worker_settings(settings, i)) for i in range(1, settings.workers + 1)
        ]
        self.stopping = False

    def _on_signal(self, signum: int, _frame: types.FrameType | None) -> None:
        if not self.stopping:
            log.info("stopping %d workers (%s)", len(self.workers), signal.Signals(signum).name)
        self.stopping = True

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for worker in self.workers:
            worker.start()
        while not self.stopping:
            self._watch(time.monotonic())
            time.sleep(POLL_SECONDS)
        return self._stop_all()

    def _watch(self, now: float) -> None:
        for worker in self.workers:
            if worker.restart_at is not None:  # waiting out its restart delay
                if now >= worker.restart_at:
                    worker.start()
                continue
            assert worker.proc is not None  # every worker is started before the watch
            status = worker.proc.poll()
            if status is None:
                continue
            if now - worker.started >= HEALTHY_AFTER:
                worker.delay = RESTART_DELAY_FIRST
            log.warning(
                "worker %d (pid %d) exited with %s; restarting it in %.1f s",
                worker.index,
                worker.proc.pid,
                _describe_exit(status),
                worker.delay,
            )
            worker.restart_at = now + worker.delay
            worker.delay = min(RESTART_DELAY_MAX, worker.delay * 2)

    def _stop_all(self) -> int:
        running = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_DEADLINE
        for proc in running:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
        return 0


def _describe_exit(status: int) -> str:
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-status).name}"
        return f"signal {-status}"
    return f"status {status}"


def workers_problem(settings: Settings) -> str | None:
    """Why these settings cannot run several workers, in one line; None if they can."""
    if not settings.redis_url:
        return (
            f"--workers {settings.workers} needs Redis: each worker is a node of a cluster "
            "that shares one upstream connection through it; give --redis-url or "
            "TICKCAST_REDIS_URL (or run one worker)"
        )
    return None


def run_workers(settings: Settings) -> int:
    """Run ``settings.workers`` workers until SIGINT/SIGTERM; returns the exit status."""
    configure_logging(
        settings.log_format, settings.log_level, secrets=[settings.token, settings.jwt_secret]
    )
    try:
        reserved = bind_listener(settings.host, settings.port, reuse_port=True)
    except BindError as exc:
        log.error("%s", exc)
        return 1
    with reserved:
        port = reserved.getsockname()[1]
        # Port 0 means any free port: every worker must take the one reserved here.
        settings = settings.model_copy(update={"port": port})
        log.info(
            "starting %d workers on %s:%d (SO_REUSEPORT), nodes %s-w1..w%d",
            settings.workers,
            settings.host,
            port,
            settings.node_id,
            settings.workers,
        )
        return Supervisor(settings).run()


def worker_main() -> None:
    """Entry point of a worker process: its settings arrive on stdin."""
    from tickcast.serve.server import run_server

    settings = Settings.model_validate_json(sys.stdin.buffer.read())
    sys.stdin.close()
    raise SystemExit(run_server(settings, reuse_port=True))
