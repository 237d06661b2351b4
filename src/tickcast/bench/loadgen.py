"""The load-generating client process: holds its share of the connections and counts.

Each connection is a bare ``asyncio.Protocol`` on uvloop that writes one hand-made
upgrade request (or SSE ``GET``), checks the status line and from then on hands every
received chunk to the ``Scanner`` (one regex pass, no JSON parse, no per-frame callback).
With ``deflate`` the request offers permessage-deflate, and the chunks go through an
``Inflater`` first (a frame parse, and an inflate per compressed message); the scanner
still counts the bytes as they came on the wire.
Stalled connections set a small ``SO_RCVBUF`` before connecting and stop reading once
the handshake is through; with ``--streams trades`` they read like the others until the
bench says ``("pause", seconds)`` (at the burst), then read nothing for that long and
count what they get afterwards apart from the healthy ones (``TradeScanner``).

The bench talks to each process over a ``multiprocessing`` pipe: it sends a ``LoadSpec``
at start, then ``("window", start_ms, end_ms)``, ``("pause", seconds)`` and ``("finish", expected,
drain_s)``; with books also ``("freeze",)`` (answered ``("frozen", update ids)``) and
``("answers", server books)`` before the finish;
the process answers ``("connecting", summary)`` as it starts and after each batch of
connections (so a bench that gives up waiting still knows how far it got), then
``("connected", summary)`` and ``("report", report)``. A closed pipe (the bench gone)
ends the process, and so does the kernel if the bench is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal, cast

import uvloop

from tickcast.bench.bookscan import BookScanner, book_report, needed_ids
from tickcast.bench.histogram import UNIT_US
from tickcast.bench.procstat import raise_nofile
from tickcast.bench.scan import Scanner, Tally
from tickcast.bench.tradescan import TradeCounts, TradeScanner
from tickcast.bench.wsbytes import (
    DEFLATE_OFFER,
    MAX_HEAD,
    OP_PONG,
    Inflater,
    deflate_inflater,
    masked_frame,
    pongs_for,
    response_status,
    sse_request,
)
from tickcast.bench.wsbytes import upgrade_request as ws_upgrade
from tickcast.edge.tokens import mint
from tickcast.serve.workers import die_with_parent

NS_PER_UNIT = UNIT_US * 1000
RESUME_RCVBUF = 1 << 20
Transport = Literal["ws", "sse"]
Kind = Literal["ticker", "tickers", "trades", "book", "depth"]


@dataclass(frozen=True)
class LoadSpec:
    """One load-generator process's share of the work."""

    host: str
    port: int
    transport: Transport
    target: str  # path and query, e.g. /ws?symbols=BTCUSDT,ETHUSDT
    connections: int
    stall: int
    batch: int = 500
    batch_pause: float = 0.05
    connect_timeout: float = 10.0
    stall_rcvbuf: int = 4096
    worker: int = 0
    kind: Kind = "ticker"
    deflate: bool = False  # offer permessage-deflate (WebSocket only)
    # --tokens: each client sends its own token signed with this (a server remembers a
    # token it verified: one shared by all would be verified once).
    jwt_secret: str = ""
    token_ttl: float = 3600.0


class HandshakeRejected(Exception):
    """The server answered the upgrade or GET with another status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class HandshakeClosed(Exception):
    """The connection ended before the handshake completed."""


def classify_failure(error: BaseException) -> str:
    """A short name for why a connection could not be opened (counted, never raised)."""
    if isinstance(error, HandshakeRejected):
        return f"http_{error.status}"
    if isinstance(error, HandshakeClosed):
        return "closed_before_handshake"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(error, OSError):
        if error.errno in (errno.EMFILE, errno.ENFILE):
            return "client_emfile"
        if error.errno == errno.EADDRNOTAVAIL:
            return "no_local_ports"
        return f"oserror_{errno.errorcode.get(error.errno or 0, error.errno)}"
    return type(error).__name__


def stall_indices(connections: int, stall: int) -> frozenset[int]:
    """Which of ``connections`` stall: ``stall`` of them, spread evenly."""
    stall = max(0, min(stall, connections))
    return frozenset(k * connections // stall for k in range(stall)) if stall else frozenset()


def share(total: int, parts: int, index: int) -> int:
    """Part ``index`` of ``total`` split as evenly as possible into ``parts``."""
    return total // parts + (1 if index < total % parts else 0)


class TickClient(asyncio.Protocol):
    """One connection: handshake, then scan everything (or, stalled, read nothing:
    from the handshake on, or with ``stall_later`` only once ``pause`` is called)."""

    def __init__(
        self,
        scanner: Scanner,
        request: bytes,
        expect: int,
        stall: bool,
        answer_pings: bool,
        stall_later: bool = False,
        deflate: bool = False,
    ) -> None:
        self.scanner = scanner
        self.deflate = deflate  # the request offered permessage-deflate
        self.inflater: Inflater | None = None  # set when the server accepted it
        self.ledger: Any = scanner.new_ledger()
        self.request = request
        self.expect = expect
        self.stall = stall
        self.stall_later = stall_later
        self.counting = True
        self.answer_pings = answer_pings
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.head = b""
        self.stalled_at: float | None = None
        self.closed_at: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.open:
            if self.counting:
                now = time.time_ns() // NS_PER_UNIT
                inflater = self.inflater
                if inflater is None:
                    self.scanner.feed(self.ledger, data, now)
                    if self.answer_pings and b"\x89" in data:
                        for pong in pongs_for(data):
                            self._write(pong)
                else:
                    self.scanner.feed(self.ledger, inflater.feed(data), now, len(data))
                    for payload in inflater.pings:
                        self._write(masked_frame(OP_PONG, payload))
                    inflater.pings.clear()
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self._fail(HandshakeClosed("response head too large"))
            return
        try:
            status = response_status(self.head[:end])
        except ValueError as exc:
            self._fail(HandshakeClosed(str(exc)))
            return
        if status != self.expect:
            self._fail(HandshakeRejected(status))
            return
        if self.deflate:
            self.inflater = deflate_inflater(self.head[:end])
        rest, self.head, self.open = self.head[end + 4 :], b"", True
        if self.stall and not self.stall_later:
            # uvloop starts reading only after connection_made returns, so pausing is
            # done here; what came with the handshake (the snapshot) is dropped.
            assert self.transport is not None
            self.transport.pause_reading()
            self.stalled_at = time.time()
            self.counting = False
        elif rest:
            self.data_received(rest)
        if not self.opened.done():
            self.opened.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed_at = time.time()
        self.closed.set_result(None)
        if not self.opened.done():
            self.opened.set_exception(HandshakeClosed("closed during the handshake"))

    def pause(self, seconds: float) -> None:
        """Read nothing for ``seconds``, then read and count again (``stall_later``)."""
        if self.transport is None or self.closed_at is not None:
            return
        self.transport.pause_reading()
        self.stalled_at = time.time()
        asyncio.get_running_loop().call_later(seconds, self._resume)

    def _resume(self) -> None:
        if self.transport is None or self.closed_at is not None:
            return
        # The small buffer that made the stall show at the server would also make the
        # catch-up crawl (a few KB per turn of a busy loop): read again with the largest
        # window the handshake allows (a 4 KB buffer at SYN time means no window scaling:
        # at most 64 KB).
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RESUME_RCVBUF)
        self.transport.resume_reading()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _fail(self, error: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


@dataclass
class ConnectSummary:
    """How far one process's connecting has got; ``done`` once it has stopped trying."""

    requested: int
    healthy: int = 0
    stalled: int = 0
    not_attempted: int = 0
    seconds: float = 0.0
    failures: Counter[str] | None = None
    done: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "healthy": self.healthy,
            "stalled": self.stalled,
            "not_attempted": self.not_attempted,
            "seconds": round(self.seconds, 3),
            "failures": dict(self.failures or {}),
            "done": self.done,
        }


def client_target(spec: LoadSpec, index: int) -> str:
    """The request target of client ``index``: with its own token under --tokens."""
    if not spec.jwt_secret:
        return spec.target
    subject = f"bench-{spec.worker}-{index}"
    return spec.target + "&token=" + mint(spec.jwt_secret, subject, spec.token_ttl)


async def open_one(
    spec: LoadSpec, scanner: Scanner, stall: bool, target: str | None = None
) -> TickClient:
    """Connect, send the request (to ``target``, else the spec's), wait for the handshake
    (bounded by the timeout)."""
    loop = asyncio.get_running_loop()
    target = spec.target if target is None else target
    if spec.transport == "ws":
        offer = DEFLATE_OFFER if spec.deflate else None
        request = ws_upgrade(spec.host, spec.port, target, extensions=offer)
        expect = 101
    else:
        request, expect = sse_request(spec.host, spec.port, target), 200
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client: TickClient | None = None
    try:
        sock.setblocking(False)
        if stall:
            # Before connect, so the window the server sees is small from the start.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, spec.stall_rcvbuf)
        async with asyncio.timeout(spec.connect_timeout):
            await loop.sock_connect(sock, (spec.host, spec.port))
            _, client = await loop.create_connection(
                lambda: TickClient(
                    scanner,
                    request,
                    expect,
                    stall,
                    spec.transport == "ws",
                    spec.kind == "trades",
                    spec.deflate and spec.transport == "ws",
                ),
                sock=sock,
            )
            await client.opened
        return client
    except BaseException:
        # Once the transport exists it owns the socket: closing both could close an fd
        # number the kernel has already handed to another connection.
        if client is not None and client.transport is not None:
            client.transport.abort()
        else:
            sock.close()
        raise


async def open_all(
    spec: LoadSpec,
    scanner: Scanner,
    progress: Callable[[ConnectSummary], None] | None = None,
    stall_scanner: Scanner | None = None,
) -> tuple[list[TickClient], ConnectSummary]:
    """Open the connections in batches; stop early once a whole batch fails (the
    server is full: trying more would only wait out more timeouts). ``progress`` gets
    the summary so far before the first batch and after each one. The stalled ones
    count into ``stall_scanner`` when given."""
    stall_scanner = stall_scanner or scanner
    stalled = stall_indices(spec.connections, spec.stall)
    summary = ConnectSummary(spec.connections, failures=Counter())
    assert summary.failures is not None
    clients: list[TickClient] = []
    # Made before the clock starts: signing tokens is the clients' cost, not the server's.
    targets = [client_target(spec, i) for i in range(spec.connections)]
    started = time.monotonic()
    attempted = 0
    if progress is not None:
        progress(summary)
    while attempted < spec.connections:
        batch = range(attempted, min(attempted + max(1, spec.batch), spec.connections))
        results = await asyncio.gather(
            *(
                open_one(spec, stall_scanner if i in stalled else scanner, i in stalled, targets[i])
                for i in batch
            ),
            return_exceptions=True,
        )
        attempted = batch.stop
        for result in results:
            if isinstance(result, TickClient):
                clients.append(result)
                summary.stalled += result.stall
                summary.healthy += not result.stall
            else:
                summary.failures[classify_failure(result)] += 1
        summary.seconds = time.monotonic() - started
        if not any(isinstance(r, TickClient) for r in results):
            break
        if attempted < spec.connections:
            if progress is not None:
                progress(summary)
            await asyncio.sleep(spec.batch_pause)
    summary.not_attempted = spec.connections - attempted
    summary.done = True
    return clients, summary


async def finish(
    clients: list[TickClient],
    scanner: Scanner,
    expected: dict[str, int],
    drain: float,
    stall_scanner: Scanner | None = None,
) -> dict[str, Any]:
    """Tally the healthy connections against ``expected`` (distinct exchange events per
    symbol in the window), then let the stalled ones read again to see which the server
    has closed: their close waits behind the bytes it had queued for them."""
    wanted = {symbol.encode(): count for symbol, count in expected.items()}
    tally = Tally()
    healthy_closed = 0
    for client in clients:
        if not client.stall:
            tally.add(client.ledger, wanted)
            healthy_closed += client.closed_at is not None
    stalled = [c for c in clients if c.stall]
    for client in stalled:
        if client.transport is not None and client.closed_at is None:
            client.transport.resume_reading()
    waiting = [c.closed for c in stalled if not c.closed.done()]
    if waiting and drain > 0:
        await asyncio.wait(waiting, timeout=drain)
    histogram = scanner.histogram
    report = {
        "tally": tally.as_dict(),
        "histogram": histogram.to_sparse(),
        "max_units": histogram.max_units,
        "healthy_closed_by_server": healthy_closed,
        "deflated": sum(c.inflater is not None for c in clients),
        "stalled": len(stalled),
        "stalled_at": sorted(c.stalled_at for c in stalled if c.stalled_at is not None),
        "stalled_found_closed": sum(c.closed_at is not None for c in stalled),
    }
    if isinstance(scanner, TradeScanner):
        report["trades"] = trade_report(clients, wanted, stall_scanner or scanner)
    if isinstance(scanner, BookScanner):
        report["books"] = book_report((c.ledger for c in clients), scanner.answers)
    return report


def trade_report(
    clients: list[TickClient], wanted: dict[bytes, int], stall_scanner: Scanner
) -> dict[str, Any]:
    """The trade counters of the healthy and of the stalled connections, and the
    stalled ones' own tally and latencies (they read again after their pause)."""
    healthy, stalled, stalled_tally = TradeCounts(), TradeCounts(), Tally()
    for client in clients:
        if client.stall:
            stalled.add(client.ledger)
            stalled_tally.add(client.ledger, wanted)
        else:
            healthy.add(client.ledger)
    return {
        "healthy": healthy.as_dict(),
        "stalled": stalled.as_dict(),
        "stalled_tally": stalled_tally.as_dict(),
        "stalled_histogram": stall_scanner.histogram.to_sparse(),
        "stalled_max_units": stall_scanner.histogram.max_units,
    }


async def receive(conn: Connection) -> Any:
    """The next object from a pipe without blocking the loop; ``EOFError`` once the
    other end has closed."""
    if not conn.poll():
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(conn.fileno(), readable)
        try:
            await ready
        finally:
            loop.remove_reader(conn.fileno())
            # libuv made the descriptor non-blocking; Connection.send/recv of a message
            # larger than the socket buffer would then fail with EAGAIN halfway.
            os.set_blocking(conn.fileno(), True)
    return conn.recv()


async def serve(conn: Connection, spec: LoadSpec) -> None:
    """One load-generator process's life: connect, count, report, close."""
    scanner: Scanner
    stall_scanner: Scanner
    if spec.kind == "trades":
        scanner, stall_scanner = TradeScanner(), TradeScanner()
    elif spec.kind in ("book", "depth"):
        scanner = stall_scanner = BookScanner(spec.kind == "depth")
    else:
        scanner = stall_scanner = Scanner()
    clients, summary = await open_all(
        spec, scanner, lambda so_far: conn.send(("connecting", so_far.as_dict())), stall_scanner
    )
    conn.send(("connected", summary.as_dict()))
    try:
        while True:
            try:
                message = await receive(conn)
            except EOFError:
                return
            if message[0] == "window":
                for each in (scanner, stall_scanner):
                    each.set_window(int(message[1]), int(message[2]))
            elif message[0] == "pause":
                for client in clients:
                    if client.stall:
                        client.pause(float(message[1]))
            elif message[0] == "freeze":
                # Books are compared where each client stopped: stop them all reading.
                for client in clients:
                    if client.transport is not None and client.closed_at is None:
                        client.transport.pause_reading()
                conn.send(("frozen", needed_ids(c.ledger for c in clients)))
            elif message[0] == "answers" and isinstance(scanner, BookScanner):
                scanner.set_answers(message[1])
            elif message[0] == "finish":
                expected, drain = dict(message[1]), float(message[2])
                report = await finish(clients, scanner, expected, drain, stall_scanner)
                conn.send(("report", report))
            else:
                return
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.abort()


def worker_main(conn: Connection, spec: LoadSpec) -> None:
    """Entry point of a load-generator process (``multiprocessing`` spawn target)."""
    die_with_parent()
    raise_nofile()
    # Ctrl-C reaches the whole process group; the bench itself decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        uvloop.run(serve(conn, spec))
    except Exception as exc:  # reported to the bench, which prints it
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()
