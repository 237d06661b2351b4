"""One shard of the upstream streams: at most 1024 of them, on one connection at a time.

A ``Shard`` supervises its connection (two during a make-before-break rotation). It
reconnects on every close code with exponential backoff and full jitter, replaces a
connection that is open but silent, and rotates a connection before Binance's 24-hour
limit or when the server announces ``serverShutdown``.

Its streams may change while it runs (``set_streams``): each connection has one
subscriber task that keeps what was sent on it equal to the shard's streams, UNSUBSCRIBE
first, then SUBSCRIBE, in batches, every control message of the connection paced by one
``SendPacer``. A new connection (a reconnect, a rotation's replacement) subscribes the
shard's streams as they are then, not as they were at the start.

The connections report to the ``ShardOwner`` (the client): frames, connect outcomes and
errors, and its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import secrets
import socket
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tickcast.sim.control import SIMULATED_HEADER
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.pacing import AttemptBudget, Backoff, SendPacer
from tickcast.upstream.streams import MAX_STREAMS_PER_CONNECTION, next_request

log = logging.getLogger(__name__)

# Streams per SUBSCRIBE message: one message carries many streams, so a full shard of
# 1024 streams needs 4 messages, sent within Binance's 5 messages per second.
SUBSCRIBE_BATCH = 256
CONNECT_TIMEOUT = 10.0
# SendPacer's default spacing of control messages, to bound how long subscribing takes.
SUBSCRIBE_INTERVAL = 0.25
# A connect that failed with one of these reached no server: refused, or no route to it.
_NO_ROUTE = frozenset(
    {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}
)


class UpstreamState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    STALE = "stale"


@dataclass
class ClientOptions:
    """Timing of the upstream client (all in seconds)."""

    stale_after: float = 10.0
    rotate_after: float = 23 * 3600.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_reset_after: float = 60.0
    streams_per_connection: int = MAX_STREAMS_PER_CONNECTION
    # After a 1008 (policy violation: too many requests), retrying at once is what gets
    # an IP banned; wait at least this long whatever the backoff says.
    policy_close_floor: float = 5.0
    subscribe_batch: int = SUBSCRIBE_BATCH
    # Connect failures past the backoff's growth are logged at most once per this period.
    failure_log_interval: float = 60.0


def never_connected(exc: BaseException) -> bool:
    """Whether a failed connect attempt established no connection at all: the URL is not
    one, the name did not resolve, the connection was refused, or there is no route.

    Not a timeout (a server may have accepted the connection and be slow to answer its
    handshake), not a TLS or handshake error (a server answered), not a reset.
    """
    if isinstance(exc, InvalidURI):
        return True
    if not isinstance(exc, OSError) or isinstance(exc, TimeoutError | ssl.SSLError):
        return False
    if isinstance(exc, socket.gaierror | ConnectionRefusedError) or exc.errno in _NO_ROUTE:
        return True
    # asyncio's create_connection raises a bare OSError("Multiple exceptions: ...") with no
    # errno when every address of the name failed to connect, each in its own way.
    return type(exc) is OSError and exc.errno is None and str(exc).startswith("Multiple exc")


def new_history() -> int:
    """A fresh history id (see ``Update.history``). Random rather than counted, so the ids
    of a client started later (the simulator's second run under ``auto``) never repeat
    those of an earlier one, with no counter shared between clients."""
    return secrets.randbits(62)


@dataclass(eq=False)  # compared and hashed by identity: the shard keeps a set of them
class Conn:
    """One open upstream connection, what its reader has seen and what was sent on it."""

    ws: ClientConnection
    number: int
    opened_at: float
    last_data: float
    history: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    first_data: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once the shard's streams were all sent (the first pass of the subscriber) and
    # every request so far was acked: all its streams flow here.
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    # The shard's streams changed: the subscriber has a difference to send.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Streams SUBSCRIBEd and not UNSUBSCRIBEd since, in the order sent (a dict as an
    # ordered set).
    subscribed: dict[str, None] = field(default_factory=dict)
    pending_acks: set[int] = field(default_factory=set)
    all_sent: bool = False
    subscribe_failed: bool = False
    shutdown_notice: bool = False
    error: str | None = None
    reader: asyncio.Task[None] | None = None
    subscriber: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.reader is not None and not self.reader.done()

    def acked(self, request_id: int, ok: bool) -> None:
        """Note the reply to one of our SUBSCRIBEs or UNSUBSCRIBEs."""
        self.pending_acks.discard(request_id)
        self.subscribe_failed = self.subscribe_failed or not ok
        self._check_confirmed()

    def sent_all(self) -> None:
        self.all_sent = True
        self._check_confirmed()

    def _check_confirmed(self) -> None:
        if self.all_sent and not self.pending_acks and not self.subscribe_failed:
            self.confirmed.set()


class ShardOwner(Protocol):
    """What a shard needs from the client that holds it."""

    url: str
    options: ClientOptions
    budget: AttemptBudget
    counters: Counter[str]
    closes: Counter[str]
    simulated: bool

    def next_conn_number(self) -> int:
        """A number for a new connection, unique across the client's shards (for logs)."""

    def handle_frame(self, conn: Conn, frame: str | bytes) -> None:
        """Parse one frame of ``conn`` and hand on what it holds."""

    def refresh_state(self) -> None:
        """A shard's state changed: recompute the client's."""

    def connect_failed(self, exc: Exception) -> None: ...

    def connect_succeeded(self) -> None: ...

    def record_error(self, text: str) -> None:
        """Keep ``text`` as the newest error of the upstream."""


class Shard:
    """One slice of the streams, on one connection at a time."""

    def __init__(self, owner: ShardOwner, index: int, streams: list[str]) -> None:
        self.client = owner
        self.index = index
        self.streams = streams
        self.state = UpstreamState.CONNECTING
        self.backoff = Backoff(owner.options.backoff_initial, owner.options.backoff_max)
        self.current: Conn | None = None
        # A rotation's replacement until it takes over: owned here so that a cancellation
        # in the middle of a rotation closes it too.
        self.candidate: Conn | None = None
        # Every connection with a subscriber, the ones above and one being established.
        self._conns: set[Conn] = set()
        # Set on every change of ``streams``: what an idle shard waits for.
        self._changed = asyncio.Event()
        self._ids = itertools.count(1)
        # The last connect attempt reached no server (``never_connected``), and why.
        self.unreachable = False
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self.current is not None and self.current.alive

    @property
    def idle(self) -> bool:
        """No streams: no connection, and nothing the client's state depends on."""
        return not self.streams

    def set_streams(self, streams: list[str]) -> None:
        """Make ``streams`` the shard's; every connection of it catches up (see
        ``_subscribe``). At most 1024, no duplicates: the client's ``assign`` sees to it."""
        if streams == self.streams:
            return
        self.streams = streams
        self._changed.set()
        for conn in self._conns:
            conn.changed.set()
            conn.wake.set()  # its watch notices a shard left with no streams

    def last_data_age(self) -> float | None:
        if self.current is None or not self.current.first_data.is_set():
            return None
        return time.monotonic() - self.current.last_data

    def _set_state(self, state: UpstreamState) -> None:
        self.state = state
        self.client.refresh_state()

    async def run(self) -> None:
        delay_floor = 0.0
        first = True
        try:
            while True:
                if not self.streams:
                    await self._idle()
                    first, delay_floor = True, 0.0
                    continue
                if self.current is None:
                    self.current = await self._establish(first, delay_floor)
                    first = False
                reason = await self._watch(self.current)
                if reason == "rotate":
                    await self._rotate()
                    continue
                if reason == "emptied":
                    continue
                delay_floor = await self._retire(self.current, reason)
                self.current = None
        finally:
            # Left clean, so that run() may be called again after a failure.
            conns = [c for c in (self.candidate, self.current) if c is not None]
            self.candidate = self.current = None
            for conn in conns:
                await self._close(conn, 1001)

    async def _idle(self) -> None:
        """Close the connection of a shard left with no streams; wait until it has some.

        Closed rather than kept open with nothing on it: an empty connection delivers
        nothing, so the stale watchdog, a rotation's wait for first data and the
        client's state and message age would each need an exception for it, and it would
        still answer pings (which count against the 5 messages a second) for nothing.
        Opening it again costs one connection attempt, and only when streams are added.
        """
        if self.current is not None:
            conn, self.current = self.current, None
            log.info(
                "upstream connection %d: shard %d has no streams left", conn.number, self.index
            )
            await self._close(conn, 1000)
        self.backoff.reset()
        self.client.refresh_state()
        while not self.streams:
            self._changed.clear()
            await self._changed.wait()
        # A shard that starts again is connecting, not reconnecting: nothing was lost.
        self._set_state(UpstreamState.CONNECTING)

    async def _establish(self, first: bool, delay_floor: float) -> Conn:
        """Connect and subscribe, retrying with backoff until it works."""
        while True:
            if not first:
                self._set_state(UpstreamState.RECONNECTING)
                await asyncio.sleep(max(delay_floor, self.backoff.next_delay()))
                # Every attempt after the first counts, failed ones too: a feed that has
                # failed to connect 20 times has not "0 reconnects".
                self.client.counters["reconnects"] += 1
            first = False
            delay_floor = 0.0
            conn = await self._try_connect()
            if conn is not None:
                self._set_state(UpstreamState.CONNECTED)
                return conn

    async def _try_connect(self, history: int | None = None) -> Conn | None:
        """Open a connection and start subscribing. ``history``: the one it continues (a
        rotation's replacement); a fresh connection starts a new one."""
        client = self.client
        while (wait := client.budget.wait_time(time.monotonic())) > 0:
            log.warning("upstream connection attempts at Binance's limit; waiting %.1fs", wait)
            await asyncio.sleep(wait)
        client.budget.record(time.monotonic())
        client.counters["connect_attempts"] += 1
        try:
            ws = await connect(
                client.url,
                ping_interval=None,  # Binance pings us; our own pings would count as requests
                compression=None,
                open_timeout=CONNECT_TIMEOUT,
                close_timeout=2,
                max_size=1 << 22,
                proxy=None,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            self.unreachable = never_connected(exc)
            self.last_error = f"{type(exc).__name__}: {exc}"
            client.connect_failed(exc)
            return None
        self.unreachable, self.last_error = False, None
        client.connect_succeeded()
        # Set before the state turns connected, so the first status already says sim.
        client.simulated = ws.response is not None and (
            ws.response.headers.get(SIMULATED_HEADER) == "1"
        )
        now = time.monotonic()
        conn = Conn(
            ws,
            client.next_conn_number(),
            opened_at=now,
            last_data=now,
            history=new_history() if history is None else history,
        )
        self._conns.add(conn)
        conn.reader = asyncio.create_task(self._read(conn), name=f"binance-read-{conn.number}")
        conn.subscriber = asyncio.create_task(
            self._subscribe(conn), name=f"binance-subscribe-{conn.number}"
        )
        log.info(
            "upstream connection %d open (%d streams, shard %d)",
            conn.number,
            len(self.streams),
            self.index,
        )
        return conn

    async def _subscribe(self, conn: Conn) -> None:
        """Keep the streams sent on ``conn`` equal to the shard's, for as long as it lives:
        send the difference, note the first full pass (``sent_all``), wait for a change.

        The one sender of control messages on the connection, so one pacer spaces them
        all (the first SUBSCRIBEs and every later change) under 5 per second.
        """
        pacer = SendPacer(1 / SUBSCRIBE_INTERVAL)
        try:
            while True:
                # Cleared before the difference is read, so a change made while this
                # pass sends is either in it or wakes the next one.
                conn.changed.clear()
                await self._send_difference(conn, pacer)
                conn.sent_all()
                await conn.changed.wait()
        except ConnectionClosed:
            pass
        except Exception as exc:
            await self._fail(conn, "subscribe", exc)

    async def _send_difference(self, conn: Conn, pacer: SendPacer) -> None:
        """Send what ``conn`` lacks of the shard's streams, one paced batch at a time."""
        batch = self.client.options.subscribe_batch
        counters = self.client.counters
        while next_request(self.streams, conn.subscribed, batch) is not None:
            await asyncio.sleep(pacer.reserve(time.monotonic()))
            # Read again after the wait: the streams may have changed during it.
            request = next_request(self.streams, conn.subscribed, batch)
            if request is None:
                return
            method, names = request
            request_id = next(self._ids)
            conn.pending_acks.add(request_id)
            # Noted before the send completes: a send that fails ends the connection, and
            # its successor starts from nothing sent.
            if method == "SUBSCRIBE":
                conn.subscribed.update(dict.fromkeys(names))
            else:
                for name in names:
                    del conn.subscribed[name]
            message = {"method": method, "params": names, "id": request_id}
            await conn.ws.send(orjson.dumps(message).decode())
            counters[f"{method.lower()}_messages"] += 1

    async def _read(self, conn: Conn) -> None:
        try:
            async for frame in conn.ws:
                self.client.handle_frame(conn, frame)
        except ConnectionClosed:
            pass
        except Exception as exc:
            await self._fail(conn, "read", exc)
        finally:
            conn.wake.set()

    async def _fail(self, conn: Conn, where: str, exc: Exception) -> None:
        """An error of the connection itself: close it; the watch loop reconnects."""
        conn.error = f"{where}: {exc!r}"
        self.client.counters["connection_errors"] += 1
        self.client.record_error(conn.error)
        log.error("upstream connection %d failed (%s)", conn.number, conn.error, exc_info=exc)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(1011), timeout=2)

    async def _watch(self, conn: Conn) -> str:
        """Wait until ``conn`` closes ("closed"), falls silent ("stale"), must rotate, or
        the shard has no streams left ("emptied")."""
        options = self.client.options
        check = min(1.0, options.stale_after / 4)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.wake.wait(), timeout=check)
            conn.wake.clear()
            now = time.monotonic()
            if not conn.alive:
                return "closed"
            if not self.streams:
                return "emptied"
            if conn.shutdown_notice or now - conn.opened_at >= options.rotate_after:
                return "rotate"
            if now - conn.last_data > options.stale_after:
                self.client.counters["stale"] += 1
                self._set_state(UpstreamState.STALE)
                log.warning(
                    "upstream connection %d silent for %.1fs: replacing it",
                    conn.number,
                    now - conn.last_data,
                )
                return "stale"
            if now - conn.opened_at >= options.backoff_reset_after and conn.first_data.is_set():
                self.backoff.reset()

    async def _rotate(self) -> None:
        """Make before break: open a replacement, switch when it has confirmed every stream
        and delivers, close the old.

        Switching at the replacement's first update would be too early on a shard of more
        than one SUBSCRIBE batch: the later batches are still being paced out, and their
        streams would be on no connection until then. The replacement continues the old
        connection's history, so the ingest drops what both deliver during the overlap.
        """
        old = self.current
        assert old is not None
        self.client.counters["rotations"] += 1
        log.info("upstream connection %d: rotating", old.number)
        new = self.candidate = await self._try_connect(history=old.history)
        if new is not None:
            if await self._ready(new):
                self.current, self.candidate = new, None
                await self._close(old, 1000)
                log.info("upstream connection %d replaced by %d", old.number, new.number)
                return
            self.candidate = None
            await self._close(new, 1000)
        self.client.counters["rotation_failures"] += 1
        # The old connection keeps serving until it closes; then the normal path
        # reconnects. Postpone the next rotation try so a failing one cannot loop.
        old.shutdown_notice = False
        old.opened_at = time.monotonic() - self.client.options.rotate_after + self._retry_pause()

    async def _ready(self, conn: Conn) -> bool:
        """Wait until ``conn`` confirmed all its streams and delivered, or gave up."""
        batches = -(-len(self.streams) // self.client.options.subscribe_batch)
        timeout = self.client.options.stale_after + batches * SUBSCRIBE_INTERVAL

        async def both() -> None:
            await conn.confirmed.wait()
            await conn.first_data.wait()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(both(), timeout)
        return conn.alive and conn.confirmed.is_set() and conn.first_data.is_set()

    def _retry_pause(self) -> float:
        return max(1.0, self.backoff.next_delay())

    async def _retire(self, conn: Conn, reason: str) -> float:
        """Close ``conn`` after it ended or went stale; returns the minimum retry delay."""
        code = conn.ws.close_code
        await self._close(conn, 1000)
        if reason == "stale" or conn.error is not None:
            return 0.0
        label = "1006" if code is None else str(code)
        self.client.closes[label] += 1
        log.warning(
            "upstream connection %d closed (code %s, %s)",
            conn.number,
            label,
            conn.ws.close_reason or "no reason",
        )
        return self.client.options.policy_close_floor if code == 1008 else 0.0

    async def _close(self, conn: Conn, code: int) -> None:
        self._conns.discard(conn)
        await cancel_and_wait(conn.subscriber, conn.reader)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(code), timeout=2)
