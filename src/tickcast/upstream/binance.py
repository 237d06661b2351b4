"""The Binance market-data client: sharded combined streams that never give up.

Each shard of at most 1024 streams is one ``_Shard`` supervising one connection at a time
(two during a make-before-break rotation). It reconnects on every close code with
exponential backoff and full jitter, replaces a connection that is open but silent, and
rotates a connection before Binance's 24-hour limit or when the server announces
``serverShutdown``. Duplicates during the overlap are dropped by the ingest.

A frame that fails to parse or to be handed on is counted in ``errors`` by kind and
skipped; an error of a connection ends in a reconnect. Nothing one frame holds can stop
the feed.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TypeVar

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tickcast.messages.book import DepthEvent
from tickcast.sim.control import SIMULATED_HEADER
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.normalize import (
    ControlReply,
    KlineEvent,
    MarketEvent,
    Normalizer,
    ServerShutdown,
    TradeEvent,
    Update,
)
from tickcast.upstream.pacing import AttemptBudget, Backoff, FailureLog, SendPacer
from tickcast.upstream.streams import MAX_STREAMS_PER_CONNECTION, combined_url, shard

log = logging.getLogger(__name__)
_T = TypeVar("_T")

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


@dataclass
class _Conn:
    """One open upstream connection and what its reader has seen."""

    ws: ClientConnection
    number: int
    opened_at: float
    last_data: float
    history: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    first_data: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once every SUBSCRIBE of the shard was sent and acked: all its streams flow here.
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
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
        """Note the reply to one of our SUBSCRIBEs."""
        self.pending_acks.discard(request_id)
        self.subscribe_failed = self.subscribe_failed or not ok
        self._check_confirmed()

    def sent_all(self) -> None:
        self.all_sent = True
        self._check_confirmed()

    def _check_confirmed(self) -> None:
        if self.all_sent and not self.pending_acks and not self.subscribe_failed:
            self.confirmed.set()


class BinanceClient:
    """Holds the upstream connections for ``streams`` and feeds every market-data event
    (ticker and book updates, trades, candles) to ``on_update``."""

    def __init__(
        self,
        base_url: str,
        streams: Sequence[str],
        on_update: Callable[[MarketEvent], None],
        *,
        options: ClientOptions | None = None,
        on_frame: Callable[[str], None] | None = None,
        on_state: Callable[[UpstreamState], None] | None = None,
        errors: Counter[str] | None = None,
    ) -> None:
        if not streams:
            raise ValueError("the Binance client needs at least one stream")
        self.url = combined_url(base_url)
        self.options = options or ClientOptions()
        self._on_update = on_update
        self._on_frame = on_frame
        self._on_state = on_state
        # Frames skipped, by kind: the parser's kinds, plus ``frame_hook_error`` (the frame
        # hook raised; the frame is still parsed) and ``sink_error`` (the sink raised on an
        # event). A counter given by the owner outlives this client (restarts add up).
        self.errors: Counter[str] = Counter() if errors is None else errors
        self.normalizer = Normalizer(errors=self.errors)
        self.budget = AttemptBudget()
        # One log for every shard: they fail together, at the same address. A line for the
        # first attempt and for each backoff step while the delay grows, then a count.
        backoff = Backoff(self.options.backoff_initial, self.options.backoff_max)
        self.failure_log = FailureLog(backoff.steps + 1, self.options.failure_log_interval)
        self.counters: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self._conn_numbers = itertools.count(1)
        self._shards = [
            _Shard(self, i, part)
            for i, part in enumerate(shard(streams, self.options.streams_per_connection))
        ]
        self._state = UpstreamState.CONNECTING
        self.state_since = time.time()
        # The server's handshake said it is a simulator (``SIMULATED_HEADER``).
        self.simulated = False
        # The newest failed connect attempt or connection error, kept after a recovery
        # (when it happened says whether it still matters).
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    @property
    def shards(self) -> int:
        return len(self._shards)

    @property
    def state(self) -> UpstreamState:
        return self._state

    @property
    def connected(self) -> bool:
        """Whether some connection to the upstream is open."""
        return any(s.connected for s in self._shards)

    @property
    def unreachable(self) -> bool:
        """Whether no connection is open and every shard's last connect attempt reached
        no server (see ``never_connected``): the upstream cannot be reached at all, as
        opposed to being reached and slow or silent."""
        return all(s.unreachable and not s.connected for s in self._shards)

    @property
    def last_connect_error(self) -> str | None:
        return next((s.last_error for s in self._shards if s.last_error), None)

    @property
    def last_message_age(self) -> float | None:
        ages = [s.last_data_age() for s in self._shards]
        known = [a for a in ages if a is not None]
        return max(known) if known and len(known) == len(ages) else None

    async def run(self) -> None:
        """Run every shard until cancelled. May be called again after it failed."""
        self._set_all(UpstreamState.CONNECTING)
        try:
            async with asyncio.TaskGroup() as group:
                for part in self._shards:
                    group.create_task(part.run(), name=f"binance-shard-{part.index}")
        except Exception:
            # Whoever restarts us reports the failure; until then, never claim "connected".
            self._set_all(UpstreamState.RECONNECTING)
            raise

    def _set_all(self, state: UpstreamState) -> None:
        for part in self._shards:
            part.state = state
        self._refresh_state()

    def status(self) -> dict[str, object]:
        age = self.last_message_age
        return {
            "state": self._state.value,
            "since": self.state_since,
            "url": self.url,
            "simulated": self.simulated,
            "connections": sum(1 for s in self._shards if s.connected),
            "shards": len(self._shards),
            "reconnects": self.counters["reconnects"],
            "last_message_age": None if age is None else round(age, 3),
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "counters": dict(self.counters),
            "closes": dict(self.closes),
            "parse_errors": dict(self.errors),
        }

    def _refresh_state(self) -> None:
        # The worst shard speaks for the whole upstream.
        order = [UpstreamState.STALE, UpstreamState.RECONNECTING, UpstreamState.CONNECTING]
        states = {s.state for s in self._shards}
        new = next((s for s in order if s in states), UpstreamState.CONNECTED)
        if new != self._state:
            log.info("upstream %s -> %s", self._state.value, new.value)
            self._state = new
            self.state_since = time.time()
            if self._on_state is not None:
                self._on_state(new)

    def _handle_frame(self, conn: _Conn, frame: str | bytes) -> None:
        self.counters["frames"] += 1
        if self._on_frame is not None:
            text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            self._guarded("frame_hook_error", self._on_frame, text)
        for event in self.normalizer.parse(frame):
            if isinstance(event, Update | TradeEvent | KlineEvent | DepthEvent):
                # Any market data shows the connection alive, not only tickers: a shard
                # may carry nothing but trades and candles.
                conn.last_data = time.monotonic()
                if not conn.first_data.is_set():
                    conn.first_data.set()
                market: MarketEvent = (
                    replace(event, history=conn.history, checked=False)
                    if type(event) is DepthEvent  # checked as it was parsed
                    else replace(event, history=conn.history)
                )
                self._guarded("sink_error", self._on_update, market)
            elif isinstance(event, ServerShutdown):
                self.counters["server_shutdowns"] += 1
                log.info("upstream connection %d: serverShutdown notice", conn.number)
                conn.shutdown_notice = True
                conn.wake.set()
            elif isinstance(event, ControlReply):
                self._control_reply(conn, event)

    def _error(self, text: str) -> None:
        self.last_error, self.last_error_at = text, time.time()

    def _connect_failed(self, exc: Exception) -> None:
        self.counters["connect_failures"] += 1
        self._error(f"connect: {type(exc).__name__}: {exc}")
        failures = self.failure_log.failed(time.monotonic())
        if not failures:
            return
        if not self.failure_log.summarizing:
            log.warning("upstream connect to %s failed: %s", self.url, exc)
            return
        log.warning(
            "upstream connect to %s still failing: %d failed attempts since the last line "
            "(%d in a row), the last: %s",
            self.url,
            failures,
            self.failure_log.streak,
            exc,
        )

    def _connect_succeeded(self) -> None:
        failures = self.failure_log.succeeded()
        if failures:
            log.info(
                "upstream connect to %s succeeded after %d failed attempts", self.url, failures
            )

    def _guarded(self, kind: str, call: Callable[[_T], None], arg: _T) -> None:
        """``call(arg)``; an error is counted under ``kind`` and logged once per kind."""
        try:
            call(arg)
        except Exception:
            self.errors[kind] += 1
            if self.errors[kind] == 1:
                log.exception("upstream frame skipped (%s)", kind)

    def _control_reply(self, conn: _Conn, reply: ControlReply) -> None:
        ok = reply.error_code is None
        if not ok:
            self.counters["control_errors"] += 1
            log.warning(
                "upstream rejected request %r: %s %s", reply.id, reply.error_code, reply.error_msg
            )
        # Our ids are ints; anything else (a string, a list from a broken server) is not ours.
        if type(reply.id) is int and reply.id in conn.pending_acks:
            conn.acked(reply.id, ok)


class _Shard:
    """One slice of the streams, on one connection at a time."""

    def __init__(self, client: BinanceClient, index: int, streams: list[str]) -> None:
        self.client = client
        self.index = index
        self.streams = streams
        self.state = UpstreamState.CONNECTING
        self.backoff = Backoff(client.options.backoff_initial, client.options.backoff_max)
        self.current: _Conn | None = None
        # A rotation's replacement until it takes over: owned here so that a cancellation
        # in the middle of a rotation closes it too.
        self.candidate: _Conn | None = None
        self._ids = itertools.count(1)
        # The last connect attempt reached no server (``never_connected``), and why.
        self.unreachable = False
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self.current is not None and self.current.alive

    def last_data_age(self) -> float | None:
        if self.current is None or not self.current.first_data.is_set():
            return None
        return time.monotonic() - self.current.last_data

    def _set_state(self, state: UpstreamState) -> None:
        self.state = state
        self.client._refresh_state()

    async def run(self) -> None:
        delay_floor = 0.0
        first = True
        try:
            while True:
                if self.current is None:
                    self.current = await self._establish(first, delay_floor)
                    first = False
                reason = await self._watch(self.current)
                if reason == "rotate":
                    await self._rotate()
                    continue
                delay_floor = await self._retire(self.current, reason)
                self.current = None
        finally:
            # Left clean, so that run() may be called again after a failure.
            conns = [c for c in (self.candidate, self.current) if c is not None]
            self.candidate = self.current = None
            for conn in conns:
                await self._close(conn, 1001)

    async def _establish(self, first: bool, delay_floor: float) -> _Conn:
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

    async def _try_connect(self, history: int | None = None) -> _Conn | None:
        """Open a connection and start subscribing. ``history``: the one it continues (a
        rotation's replacement); a fresh connection starts a new one."""
        budget = self.client.budget
        while (wait := budget.wait_time(time.monotonic())) > 0:
            log.warning("upstream connection attempts at Binance's limit; waiting %.1fs", wait)
            await asyncio.sleep(wait)
        budget.record(time.monotonic())
        self.client.counters["connect_attempts"] += 1
        try:
            ws = await connect(
                self.client.url,
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
            self.client._connect_failed(exc)
            return None
        self.unreachable, self.last_error = False, None
        self.client._connect_succeeded()
        # Set before the state turns connected, so the first status already says sim.
        self.client.simulated = ws.response is not None and (
            ws.response.headers.get(SIMULATED_HEADER) == "1"
        )
        now = time.monotonic()
        conn = _Conn(
            ws,
            next(self.client._conn_numbers),
            opened_at=now,
            last_data=now,
            history=new_history() if history is None else history,
        )
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

    async def _subscribe(self, conn: _Conn) -> None:
        """Send the streams in batched SUBSCRIBE messages, paced under 5 per second."""
        pacer = SendPacer(1 / SUBSCRIBE_INTERVAL)
        batch_size = self.client.options.subscribe_batch
        try:
            for i in range(0, len(self.streams), batch_size):
                await asyncio.sleep(pacer.reserve(time.monotonic()))
                request_id = next(self._ids)
                batch = self.streams[i : i + batch_size]
                request = {"method": "SUBSCRIBE", "params": batch, "id": request_id}
                conn.pending_acks.add(request_id)
                await conn.ws.send(orjson.dumps(request).decode())
                self.client.counters["subscribe_messages"] += 1
            conn.sent_all()
        except ConnectionClosed:
            pass
        except Exception as exc:
            await self._fail(conn, "subscribe", exc)

    async def _read(self, conn: _Conn) -> None:
        try:
            async for frame in conn.ws:
                self.client._handle_frame(conn, frame)
        except ConnectionClosed:
            pass
        except Exception as exc:
            await self._fail(conn, "read", exc)
        finally:
            conn.wake.set()

    async def _fail(self, conn: _Conn, where: str, exc: Exception) -> None:
        """An error of the connection itself: close it; the watch loop reconnects."""
        conn.error = f"{where}: {exc!r}"
        self.client.counters["connection_errors"] += 1
        self.client._error(conn.error)
        log.error("upstream connection %d failed (%s)", conn.number, conn.error, exc_info=exc)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(1011), timeout=2)

    async def _watch(self, conn: _Conn) -> str:
        """Wait until ``conn`` closes ("closed"), falls silent ("stale") or must rotate."""
        options = self.client.options
        check = min(1.0, options.stale_after / 4)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.wake.wait(), timeout=check)
            conn.wake.clear()
            now = time.monotonic()
            if not conn.alive:
                return "closed"
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

    async def _ready(self, conn: _Conn) -> bool:
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

    async def _retire(self, conn: _Conn, reason: str) -> float:
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

    async def _close(self, conn: _Conn, code: int) -> None:
        await cancel_and_wait(conn.subscriber, conn.reader)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(code), timeout=2)
