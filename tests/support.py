"""Helpers for tests that run real processes over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def require_program(path: str, package: str, what: str) -> None:
    """Skip the calling test module (or test) when ``path`` is missing, or fail it when
    TICKCAST_E2E_REQUIRED=1 (CI installs the Debian ``package`` first, so there a missing
    program is a broken install, not a reason to pass)."""
    if Path(path).exists():
        return
    if os.environ.get("TICKCAST_E2E_REQUIRED") == "1":
        pytest.fail(
            f"{what} tests are required (TICKCAST_E2E_REQUIRED=1) but {path} is missing: "
            f"install it with `apt-get install -y {package}`",
            pytrace=False,
        )
    pytest.skip(f"{path} is not installed", allow_module_level=True)


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """The system Chromium, headless, driven by Playwright (call ``require_program``
    first: Playwright is imported here, not at module level)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def sim_exchange(*args: str, log: Path | None = None) -> Iterator[int]:
    """``tickcast sim-exchange ARGS`` as its own process on a free port, the way the README
    runs it; yields the port and stops the process after."""
    port = free_port()
    command = [sys.executable, "-m", "tickcast.cli", "sim-exchange", "--port", str(port)]
    with contextlib.ExitStack() as stack:
        out = subprocess.DEVNULL if log is None else stack.enter_context(log.open("wb"))
        process = subprocess.Popen([*command, *args], stdout=out, stderr=subprocess.STDOUT)
        try:
            yield port
        finally:
            process.terminate()
            process.wait(10)


# ``seq`` is one count over every stream (SPEC §12): a client of the tickers alone sees it
# jump where a trade or a candle took a number. Tests that prove no tick was lost by the
# seqs being contiguous run the server with the tickers alone.
TICKERS_ONLY = {"TICKCAST_STREAM_KINDS": ""}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``tickcast serve`` as its own process, the way users run it."""

    # A port chosen by ``free_port`` is free when chosen, not surely when the server binds
    # it: another process of a parallel run may take it in between. The server then says
    # so and exits, and is started again on another port, this many times at most.
    PORT_RETRIES = 3

    def __init__(
        self, args: list[str], env: Mapping[str, str], log_path: Path, port: int | None = None
    ) -> None:
        self._chosen_port = port is None
        self.log_path = log_path
        self._args = args
        self._env = {**os.environ, "TICKCAST_LOG_LEVEL": "info", **env}
        self._log = log_path.open("wb")
        self._start(port or free_port())

    def _start(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.ws_base = f"ws://127.0.0.1:{port}"
        command = [sys.executable, "-m", "tickcast.cli", "serve", "--host", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*command, "--port", str(port), *self._args],
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _lost_its_port(self) -> bool:
        """The server exited because the port chosen for it was taken meanwhile."""
        return self._chosen_port and f"port {self.port} is already in use" in self.log()

    def wait_ready(self, path: str = "/price", timeout: float = 20.0) -> None:
        """Wait until ``path`` answers 200 (for /price: data has arrived)."""
        deadline = time.monotonic() + timeout
        retries = self.PORT_RETRIES
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if retries and self._lost_its_port():
                    retries -= 1
                    self._start(free_port())
                    continue
                raise RuntimeError(f"server exited early:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + path, timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"server not ready on {path} in {timeout}s:\n{self.log()}")

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.base + path, timeout=5, **kwargs)  # type: ignore[arg-type]

    def status(self) -> dict[str, object]:
        body = self.get("/status").json()
        assert isinstance(body, dict)
        return body

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> float:
        """Signal the server; returns how long it took to exit."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return time.monotonic() - started


@contextlib.contextmanager
def running_server(
    tmp_path: Path, args: list[str], env: Mapping[str, str] | None = None, ready: str = "/price"
) -> Iterator[ServerProcess]:
    server = ServerProcess(args, env or {}, tmp_path / f"server-{free_port()}.log")
    try:
        server.wait_ready(ready)
        yield server
    finally:
        server.stop()


def newest_seq(server: ServerProcess) -> int:
    """The highest ``seq`` among the latest ticks a server holds (0 before any)."""
    return max((int(t["seq"]) for t in server.get("/prices").json()), default=0)


async def wait_ready_async(node: ServerProcess, timeout: float = 30) -> None:
    """``wait_ready`` that leaves the event loop free (the link proxy runs on it)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(node.base + "/price")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError(node.log())


def wait_until(check: Callable[[], object], timeout: float = 15.0, interval: float = 0.1) -> None:
    """Block until ``check()`` is truthy (for tests that drive servers by plain HTTP)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


async def eventually(check: object, timeout: float = 10.0, interval: float = 0.05) -> None:
    """Wait until ``check()`` is truthy (it may be a coroutine function)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        result = check()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        last = result
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
