"""One simulated-exchange connection: HTTP request head, then an admin reply or a WebSocket.

A plain ``asyncio.Protocol`` drives websockets' sans-I/O ``ServerProtocol`` so that the
simulator keeps what a high-level server hides: raw TCP resets, its own ping payloads
and pong bookkeeping, plain HTTP (POST included) on the WebSocket port, and writing one
pre-encoded frame to many connections. What the connection decides (control replies,
limits, heartbeat deadlines) lives in ``control``; this module moves bytes and runs
timers. The owning exchange is reached through the narrow ``ConnectionOwner``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import http
import logging
import os
import socket
import struct
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, cast

import orjson
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from tickcast.sim.control import (
    SIMULATED_HEADER,
    TOO_MANY_REQUESTS,
    Heartbeat,
    Session,
    SlidingWindowLimiter,
    TargetError,
    handle_control,
    parse_connect_target,
    too_many_streams,
)
from tickcast.sim.faults import garbage_payload
from tickcast.sim.market import parse_stream, server_shutdown_payload
from tickcast.sim.rest import RestAnswer

# ServerProtocol logs every open and close at INFO; keep that apart from the main logger.
_WIRE_LOG: Final = logging.getLogger("tickcast.sim.wire")

_HANDSHAKE_TIMEOUT: Final = 10.0
# How long a closing handshake we started may take before the TCP connection is cut.
_CLOSE_TIMEOUT: Final = 3.0
_MAX_REQUEST_HEAD: Final = 64 * 1024
_MAX_MESSAGE_BYTES: Final = 1 << 20
# A real exchange cuts a consumer that lets this much pile up rather than buffer for it.
MAX_BUFFERED: Final = 4 * 1024 * 1024
# call_later may fire up to one clock resolution early.
_TIMER_SLACK: Final = 0.005
_COUNTED_OPCODES: Final = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG})


@dataclass(frozen=True)
class ConnectionLimits:
    """The per-connection rules an exchange applies (see ``SimConfig``)."""

    ping_interval: float
    pong_timeout: float
    max_streams: int
    max_incoming_per_second: int
    identify: bool = True


class ConnectionOwner(Protocol):
    """What a connection needs from its exchange."""

    def on_connection_made(self, conn: SimConnection) -> None: ...
    def on_attempt(self, peer: str) -> bool: ...
    def on_opened(self, conn: SimConnection) -> None: ...
    def on_connection_lost(self, conn: SimConnection) -> None: ...
    def on_subscribe(self, conn: SimConnection, names: tuple[str, ...]) -> None: ...
    def on_unsubscribe(self, conn: SimConnection, names: tuple[str, ...]) -> None: ...
    def on_admin(self, method: str, target: str) -> tuple[int, dict[str, object]]: ...
    def on_rest(self, method: str, target: str, peer: str) -> RestAnswer: ...


@dataclass
class SimStats:
    """Counters shared by an exchange and its connections."""

    connection_attempts: int = 0
    connections_rejected: int = 0
    connections_total: int = 0
    closes: Counter[str] = field(default_factory=Counter)
    resets: int = 0
    messages_sent: int = 0
    pings_sent: int = 0
    pongs_ok: int = 0
    incoming_rate_violations: int = 0
    slow_consumer_drops: int = 0
    faults: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The counters as JSON values (``closes`` keyed by code as text, sorted)."""
        return {
            "connections_total": self.connections_total,
            "connection_attempts": self.connection_attempts,
            "connections_rejected": self.connections_rejected,
            "closes": dict(sorted(self.closes.items())),
            "resets": self.resets,
            "messages_sent": self.messages_sent,
            "faults": list(self.faults),
            "pings_sent": self.pings_sent,
            "pongs_ok": self.pongs_ok,
            "incoming_rate_violations": self.incoming_rate_violations,
            "slow_consumer_drops": self.slow_consumer_drops,
        }


class _Phase(enum.Enum):
    REQUEST = "request"  # reading the HTTP request head
    HTTP = "http"  # answered as plain HTTP (admin, rejection); closing
    WEBSOCKET = "websocket"
    CLOSED = "closed"


class SimConnection(asyncio.Protocol):
    """One TCP connection: an HTTP request head, then either an admin reply or a WebSocket."""

    def __init__(
        self,
        owner: ConnectionOwner,
        loop: asyncio.AbstractEventLoop,
        limits: ConnectionLimits,
        stats: SimStats,
    ) -> None:
        self._owner = owner
        self._loop = loop
        self._config = limits
        self._stats = stats
        self._transport: asyncio.Transport | None = None
        self._phase = _Phase.REQUEST
        self._head = bytearray()
        self._ws: ServerProtocol | None = None
        self._limiter = SlidingWindowLimiter(self._config.max_incoming_per_second)
        self._heartbeat = Heartbeat(self._config.pong_timeout)
        self._fragments: list[bytes] | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._delayed: deque[tuple[float, bytes]] = deque()
        self._delayed_bytes = 0
        self._garbage_count = 0
        self.session = Session(combined=False)
        self.micro = False
        self.garbage_until = 0.0
        self.latency_until = 0.0
        self.latency = 0.0
        self.was_reset = False
        self.peer = "unknown"
        self.closed: asyncio.Future[None] = loop.create_future()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer = str(peer[0])
        self._owner.on_connection_made(self)
        self._set_timer("handshake", _HANDSHAKE_TIMEOUT, self.abort)

    def data_received(self, data: bytes) -> None:
        if self._phase is _Phase.WEBSOCKET:
            ws = self._protocol()
            ws.receive_data(data)
            self._handle_events(ws.events_received())
            self._flush()
        elif self._phase is _Phase.REQUEST:
            self._head += data
            self._on_head()

    def eof_received(self) -> bool | None:
        if self._ws is not None and self._phase is _Phase.WEBSOCKET:
            self._ws.receive_eof()
            self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = _Phase.CLOSED
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._delayed.clear()
        self._owner.on_connection_lost(self)
        if not self.closed.done():
            self.closed.set_result(None)

    # HTTP

    def _on_head(self) -> None:
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_REQUEST_HEAD:
                self._answer_http(431, {"ok": False, "error": "request head too large"})
            return
        line_end = self._head.find(b"\r\n")
        parts = bytes(self._head[:line_end]).decode("latin-1").split(" ")
        if len(parts) != 3:
            self._answer_http(400, {"ok": False, "error": "malformed request line"})
        elif parts[1].startswith("/_sim/"):
            status, body = self._owner.on_admin(parts[0], parts[1])
            self._answer_http(status, body)
        elif parts[1].startswith("/api/"):
            self._answer(self._owner.on_rest(parts[0], parts[1], self.peer))
        else:
            # websockets caps the request line at 8 KiB, but clients such as cryptofeed
            # put up to 1024 stream names (~25 KiB) in the URL. The handshake parser gets
            # a stand-in target; the real one is parsed here.
            method, target, version = parts
            stand_in = f"{method} / {version}".encode("latin-1")
            self._handshake(target, stand_in + bytes(self._head[line_end:]))

    def _answer_http(self, status: int, body: dict[str, object]) -> None:
        self._answer(RestAnswer(status, orjson.dumps(body)))

    def _answer(self, answer: RestAnswer) -> None:
        """One HTTP answer with a JSON body, then close: admin calls and REST alike."""
        transport = self._require_transport()
        self._phase = _Phase.HTTP
        self._cancel_timer("handshake")
        extra = "".join(f"{name}: {value}\r\n" for name, value in answer.headers)
        head = (
            f"HTTP/1.1 {answer.status} {http.HTTPStatus(answer.status).phrase}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(answer.body)}\r\n"
            f"{extra}Connection: close\r\n\r\n"
        )
        transport.write(head.encode() + answer.body)
        transport.close()

    def _handshake(self, target: str, data: bytes) -> None:
        ws = self._ws = ServerProtocol(max_size=_MAX_MESSAGE_BYTES, logger=_WIRE_LOG)
        ws.receive_data(data)
        events = ws.events_received()
        self._cancel_timer("handshake")
        if not events or not isinstance(events[0], Request):
            # Not a valid HTTP request: ServerProtocol has already queued the TCP close.
            self._phase = _Phase.HTTP
            self._flush()
            self._require_transport().close()
            return
        request = events[0]
        if not self._owner.on_attempt(self.peer):
            response = ws.reject(429, "Too many connection attempts\n")
        else:
            try:
                asked = parse_connect_target(target)
            except TargetError as exc:
                response = ws.reject(exc.status, f"{exc}\n")
            else:
                response = ws.accept(request)
                if self._config.identify:
                    response.headers[SIMULATED_HEADER] = "1"
                self.session = Session.from_target(asked)
                self.micro = asked.microseconds
        ws.send_response(response)
        if response.status_code != 101:
            self._phase = _Phase.HTTP
            self._flush()
            return
        self._phase = _Phase.WEBSOCKET
        self._flush()
        self._owner.on_opened(self)
        self._set_timer("ping", self._config.ping_interval, self._ping)
        wanted = len(self.session.streams)
        if wanted > self._config.max_streams:
            self.session.streams.clear()
            self.close(1008, too_many_streams(wanted, self._config.max_streams))
            return
        self._owner.on_subscribe(self, tuple(self.session.streams))
        self._handle_events(events[1:])
        self._flush()

    # WebSocket input

    def _handle_events(self, events: Sequence[object]) -> None:
        now = self._loop.time()
        for event in events:
            if not isinstance(event, Frame) or not self.is_open:
                continue
            opcode, data = event.opcode, bytes(event.data)
            if opcode in _COUNTED_OPCODES and not self._limiter.allow(now):
                self._stats.incoming_rate_violations += 1
                self.close(1008, TOO_MANY_REQUESTS)
                return
            if opcode is Opcode.PONG:
                if self._heartbeat.pong_received(data):
                    self._stats.pongs_ok += 1
                    self._arm_pong_check()
            elif opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if event.fin:
                    self._on_message(data)
                else:
                    self._fragments = [data]
            elif opcode is Opcode.CONT and self._fragments is not None:
                self._fragments.append(data)
                if event.fin:
                    message, self._fragments = b"".join(self._fragments), None
                    self._on_message(message)

    def _on_message(self, data: bytes) -> None:
        if not self.is_open:
            return
        outcome = handle_control(data, self.session, self._config.max_streams)
        if outcome.removed:
            self._owner.on_unsubscribe(self, outcome.removed)
        if outcome.added:
            self._owner.on_subscribe(self, outcome.added)
        if outcome.reply is not None:
            self.send_text(orjson.dumps(outcome.reply))
        if outcome.close_reason is not None:
            self.close(1008, outcome.close_reason)

    # WebSocket output

    @property
    def is_open(self) -> bool:
        """WebSocket open and not closing: data, replies and pings may be sent."""
        return (
            self._ws is not None
            and self._ws.state is OPEN
            and self._transport is not None
            and not self._transport.is_closing()
        )

    def send_text(self, payload: bytes) -> None:
        """A text frame that bypasses latency: replies, serverShutdown, garbage."""
        if not self.is_open:
            return
        self._protocol().send_text(payload)
        self._stats.messages_sent += 1
        self._flush()
        self._check_buffer()

    def send_data(self, frame: bytes) -> None:
        """A pre-encoded market-data frame, held back while a latency fault lasts."""
        if not self.is_open:
            return
        now = self._loop.time()
        if now < self.latency_until:
            self._hold(now + self.latency, frame)
        elif self._delayed:
            # The fault is over but older frames are still held: leave with the last of
            # them, so nothing overtakes and the queue drains within one latency.
            self._hold(self._delayed[-1][0], frame)
        else:
            self._write_data(frame)

    def _write_data(self, frame: bytes) -> None:
        self._require_transport().write(frame)
        self._stats.messages_sent += 1
        self._check_buffer()

    def _hold(self, due: float, frame: bytes) -> None:
        self._delayed.append((due, frame))
        self._delayed_bytes += len(frame)
        if self._delayed_bytes > MAX_BUFFERED:
            self._drop_slow("delayed data over 4 MiB")
        elif "release" not in self._timers:
            self._set_timer("release", due - self._loop.time(), self._release)

    def _release(self) -> None:
        due_by = self._loop.time() + _TIMER_SLACK
        while self._delayed and self._delayed[0][0] <= due_by:
            _, frame = self._delayed.popleft()
            self._delayed_bytes -= len(frame)
            if self.is_open:
                self._write_data(frame)
        if self._delayed:
            self._set_timer("release", self._delayed[0][0] - self._loop.time(), self._release)

    def send_shutdown(self, now_ms: int) -> None:
        """Binance's serverShutdown event, in this connection's wrapping and time unit."""
        event = server_shutdown_payload(now_ms, 1000 if self.micro else 1)
        body = {"stream": "!serverShutdown", "data": event} if self.session.combined else event
        self.send_text(orjson.dumps(body))

    def send_garbage(self, now_ms: int) -> None:
        """The next malformed frame of a garbage fault."""
        stream = None
        if self.session.combined:
            stream = next(iter(self.session.streams), "btcusdt@ticker")
        self.send_text(garbage_payload(self._garbage_count, now_ms, stream))
        self._garbage_count += 1

    def data_stream_count(self) -> int:
        """How many of this connection's subscriptions carry data."""
        return sum(1 for name in self.session.streams if parse_stream(name) is not None)

    def _check_buffer(self) -> None:
        if self._require_transport().get_write_buffer_size() > MAX_BUFFERED:
            self._drop_slow("send buffer over 4 MiB")

    def _drop_slow(self, why: str) -> None:
        # Like a real exchange, cut a slow consumer instead of buffering for it.
        self._stats.slow_consumer_drops += 1
        self._delayed.clear()
        self._delayed_bytes = 0
        self.close(1008, f"Slow consumer: {why}")

    def _flush(self) -> None:
        transport = self._require_transport()
        for chunk in self._protocol().data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                # End of stream: a server closes TCP first (RFC 6455 section 7.1.1).
                transport.close()

    # Closing

    def close(self, code: int, reason: str) -> None:
        """Start a closing handshake; cut the TCP connection if it does not finish."""
        if not self.is_open:
            return
        self._protocol().send_close(code, reason)
        self._flush()
        self._set_timer("close", _CLOSE_TIMEOUT, self.abort)

    def close_for_stop(self) -> None:
        """Close with 1001 if open; otherwise just close the TCP connection."""
        if self.is_open:
            self.close(1001, "Server stopping")
        elif self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def reset(self) -> None:
        """Drop the connection with a TCP RST and no close frame."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger on with a zero timeout makes close() send RST instead of FIN.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.was_reset = True
        transport.abort()

    def abort(self) -> None:
        """Cut the TCP connection at once (no close frame)."""
        if self._transport is not None and self._phase is not _Phase.CLOSED:
            self._transport.abort()

    def close_code(self) -> int:
        """The code of the close frame sent (or echoed); 1006 if there was none."""
        ws = self._ws
        if ws is not None and ws.close_sent is not None:
            return ws.close_sent.code
        if ws is not None and ws.close_rcvd is not None:
            return ws.close_rcvd.code
        return 1006

    # Heartbeat

    def _ping(self) -> None:
        if not self.is_open:
            return
        payload = os.urandom(8)
        self._protocol().send_ping(payload)
        self._flush()
        self._stats.pings_sent += 1
        self._heartbeat.ping_sent(payload, self._loop.time())
        self._arm_pong_check()
        self._set_timer("ping", self._config.ping_interval, self._ping)

    def _arm_pong_check(self) -> None:
        deadline = self._heartbeat.deadline()
        if deadline is None:
            self._cancel_timer("pong")
        else:
            self._set_timer("pong", max(0.0, deadline - self._loop.time()), self._check_pong)

    def _check_pong(self) -> None:
        if self._heartbeat.expired(self._loop.time() + _TIMER_SLACK):
            # 1008, not 1011: the client broke the heartbeat rule; nothing failed here.
            self.close(1008, "Pong timeout")
        else:
            self._arm_pong_check()

    # Helpers

    def _set_timer(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel_timer(name)

        def fire() -> None:
            self._timers.pop(name, None)
            callback()

        self._timers[name] = self._loop.call_later(delay, fire)

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _protocol(self) -> ServerProtocol:
        assert self._ws is not None
        return self._ws

    def _require_transport(self) -> asyncio.Transport:
        assert self._transport is not None
        return self._transport


# Faults over several connections at once (``SimExchange.inject``).


def shut_down(targets: Sequence[SimConnection], now_ms: int) -> None:
    """Send each of ``targets`` Binance's serverShutdown notice (they close later)."""
    for conn in targets:
        conn.send_shutdown(now_ms)


def close_all(targets: Sequence[SimConnection], code: int, reason: str) -> None:
    for conn in targets:
        conn.close(code, reason)


def start_garbage(targets: Sequence[SimConnection], now_ms: int, until: float) -> None:
    """Send each of ``targets`` a malformed frame now, and more until ``until``."""
    for conn in targets:
        conn.send_garbage(now_ms)
        conn.garbage_until = until


def garbage_round(garbage: set[SimConnection], now: float, now_ms: int) -> None:
    """One more malformed frame to each connection still in its garbage window."""
    for conn in list(garbage):
        if now >= conn.garbage_until:
            garbage.discard(conn)
        else:
            conn.send_garbage(now_ms)
