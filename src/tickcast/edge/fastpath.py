"""uvicorn protocols that let the fan-out write pre-encoded bytes straight to each socket.

ASGI's ``send`` is a coroutine per message: awaiting it per client per tick costs a task
switch per delivery, and uvicorn's ``send`` waits while the socket is paused, which would
make a slow client stall whoever awaits it. These subclasses of uvicorn's own protocols
add one ASGI extension, ``scope["extensions"]["tickcast.raw"]``, holding a transport the
fan-out writes to without awaiting, plus the socket's flow-control signals
(``pause_writing``/``resume_writing``), so the session conflates instead of queueing.
Under any other ASGI server the extension is absent and ``tickcast.edge.transport``'s queued
fallback is used.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, ClassVar, Final, cast

import uvicorn
from starlette.types import Message
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.extensions.base import ServerExtensionFactory
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from tickcast.edge.contracts import TransportKind
from tickcast.edge.deflate import SharedDeflateFactory, negotiated
from tickcast.edge.guard import (
    HEAD_TOO_LARGE,
    REQUEST_TIMEOUT,
    TOO_MANY_HANDSHAKES,
    HandshakeGuard,
    refusal,
)
from tickcast.edge.leanio import LeanEvent, LeanQueue, PingWheel
from tickcast.edge.sockets import NOTHING_OUTSTANDING, SocketTuning, tcp_progress, unacked_bytes
from tickcast.edge.wire import WireFormat
from tickcast.errors import CloseReason

log = logging.getLogger(__name__)

EXTENSION = "tickcast.raw"
# A slow client's close frame gets this long to go out before the socket is reset:
# a client that is not reading would otherwise pin its buffers until TCP gives up.
SLOW_CLOSE_GRACE = 1.0
_LAST_CHUNK = b"0\r\n\r\n"
# A keep-alive ping: a server's frame is not masked, so its bytes are the same for all.
PING_PAYLOAD: Final = b"tick"
_PING_FRAME: Final = Frame(Opcode.PING, PING_PAYLOAD).serialize(mask=False)


# The uvicorn releases whose protocol internals these subclasses are tested against;
# pyproject.toml pins the same range, so an upgrade is a deliberate change.
TESTED_UVICORN: Final = ("0.54",)
# What the subclasses override or call on uvicorn's classes.
_HOOKS: Final[dict[type, tuple[str, ...]]] = {
    HttpToolsProtocol: (
        "connection_made",
        "connection_lost",
        "data_received",
        "send_400_response",
        "on_message_begin",
        "on_url",
        "on_header",
        "on_headers_complete",
        "shutdown",
    ),
    WebSocketsSansIOProtocol: (
        "connection_made",
        "handle_connect",
        "handle_close",
        "keepalive_timeout",
        "shutdown",
        "send",
        "send_receive_event_to_app",
        "handle_parser_exception",
        "schedule_ping",
        "send_keepalive_ping",
        "stop_keepalive",
    ),
}


def fast_path_problem() -> str | None:
    """Why the fast path cannot be trusted with the installed uvicorn, or None."""
    release = ".".join(uvicorn.__version__.split(".")[:2])
    if release not in TESTED_UVICORN:
        return (
            f"uvicorn {uvicorn.__version__} is not a tested release ({', '.join(TESTED_UVICORN)})"
        )
    for cls, names in _HOOKS.items():
        missing = [name for name in names if not callable(getattr(cls, name, None))]
        if missing:
            return f"uvicorn's {cls.__name__} has no {', '.join(missing)}"
    return None


def write_path() -> str:
    """``fast`` or ``portable (why)``: what start-up logs."""
    problem = fast_path_problem()
    return "fast" if problem is None else f"portable ({problem})"


def protocol_classes(
    tuning: SocketTuning, guard: HandshakeGuard | None = None, *, deflate: bool = False
) -> tuple[type | str, type | str]:
    """uvicorn ``http`` and ``ws`` protocol classes that apply ``tuning`` to each socket
    and ``guard``'s limits to each request head, and with ``deflate`` negotiate
    permessage-deflate with the clients that offer it (``tickcast.edge.deflate``);
    uvicorn's stock protocols (the queued, portable path, without those limits and
    without compression) when the fast path is not safe."""
    if fast_path_problem() is not None:
        return "httptools", "websockets-sansio"
    attrs = {"tuning": tuning, "guard": guard if guard is not None else HandshakeGuard()}
    http = type("TunedHttpProtocol", (FastHttpProtocol,), attrs)
    extensions: tuple[ServerExtensionFactory, ...] = (SharedDeflateFactory(),) if deflate else ()
    ws = type(
        "TunedWebSocketProtocol",
        (FastWebSocketProtocol,),
        {"tuning": tuning, "extensions": extensions},
    )
    return http, ws


class RawTransport:
    """The fan-out's view of one connection: write now, or be told when it can."""

    __slots__ = ("_fd", "_sock", "_transport", "on_pause", "on_resume")

    kind: TransportKind
    wire_format: WireFormat

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._sock: socket.socket | None = transport.get_extra_info("socket")
        self._fd = -1 if self._sock is None else self._sock.fileno()
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None

    def buffered(self) -> int:
        return int(self._transport.get_write_buffer_size())

    def progress(self) -> tuple[int, int] | None:
        """Acknowledged and outstanding bytes, kernel and asyncio buffers together.

        Most clients have read and acknowledged everything when the sweep asks: one
        ``ioctl`` on the descriptor says so (``NOTHING_OUTSTANDING``), and only the others
        pay for the kernel's full counters."""
        if self._transport.is_closing():
            return None  # its descriptor may already belong to another connection
        buffered = self.buffered()
        if not buffered and unacked_bytes(self._fd) == 0:
            return NOTHING_OUTSTANDING
        found = tcp_progress(self._sock)
        return None if found is None else (found[0], found[1] + buffered)

    def _paused(self) -> None:
        if self.on_pause is not None:
            self.on_pause()

    def _resumed(self) -> None:
        if self.on_resume is not None:
            self.on_resume()


class RawWebSocket(RawTransport):
    kind: TransportKind = "ws"
    wire_format: WireFormat = "ws_frame"
    __slots__ = ("_protocol",)

    def __init__(self, protocol: FastWebSocketProtocol) -> None:
        super().__init__(protocol.transport)
        self._protocol = protocol

    @property
    def writable(self) -> bool:
        p = self._protocol
        return (
            p.writable.is_set()
            and not p.close_sent
            and not p.disconnected
            and not p.transport.is_closing()
        )

    @property
    def raw_write(self) -> Callable[[bytes], object]:
        """The socket's own write, for the fan-out's fast path: only valid while
        ``writable``, which the session tracks through ``on_pause``/``on_resume``."""
        write: Callable[[bytes], object] = self._protocol.transport.write
        return write

    def write(self, data: bytes) -> None:
        p = self._protocol
        if not p.close_sent and not p.disconnected and not p.transport.is_closing():
            p.transport.write(data)

    def close(self, reason: CloseReason) -> None:
        self._protocol.close_now(reason)

    def hand_over(self, handler: Callable[[Message], None]) -> None:
        """Make the connection ``handler``'s for the rest of its life: each message from
        the client, and last its disconnect, goes to ``handler`` straight from the
        protocol's data callback. The app may then return, and its task end: the
        connection stays open (uvicorn would close it) and lives on in its protocol.

        A task awaiting the end of each connection would hold, for hours, its coroutines
        (uvicorn's, the app's, the endpoint's), their frames, the ASGI scope and a
        future: about 2 KB per client, and objects the garbage collector walks."""
        protocol = self._protocol
        if protocol.close_timer is None:
            protocol.close_timer = _OPEN_AFTER_APP  # type: ignore[assignment]
        # The scope served the handshake (uvicorn reads it to log that alone); it holds
        # this transport (in its extensions), which holds the protocol.
        del protocol.scope
        cast(LeanQueue, protocol.queue).deliver_to(handler)
        if protocol.read_paused:  # a message arrived before this: reading waits on it
            protocol.read_paused = False
            protocol.transport.resume_reading()


class RawDeflateWebSocket(RawWebSocket):
    """A WebSocket whose client negotiated permessage-deflate: its market data goes out
    as frames compressed once for every such client."""

    wire_format: WireFormat = "ws_deflate"
    __slots__ = ()


# The addresses the connections hold for their lives (uvicorn's ``server`` and ``client``):
# the listening address is one for all of them, and the clients' addresses few; each new
# tuple and string is over 100 bytes a connection.
_ADDRESSES: dict[object, object] = {}
_ADDRESSES_MAX = 4096


def shared_addresses(
    server: tuple[str, int | None] | None, client: tuple[str, int] | None
) -> tuple[tuple[str, int | None] | None, tuple[str, int] | None]:
    """``server`` and ``client`` with the server's tuple and the client's host string
    shared with the connections before (while there are few distinct ones)."""
    if len(_ADDRESSES) < _ADDRESSES_MAX:
        server = cast(tuple[str, int | None] | None, _ADDRESSES.setdefault(server, server))
        if client is not None:
            client = (cast(str, _ADDRESSES.setdefault(client[0], client[0])), client[1])
    return server, client


class _OpenAfterApp:
    """What ``close_timer`` holds for a connection handed over (``RawWebSocket.hand_over``):
    uvicorn closes a connection whose app returned unless a close is under way, which it
    tells by ``close_timer`` set. Cancelling it, as uvicorn does when the connection
    ends, does nothing; the protocol's own close replaces it with a real timer."""

    __slots__ = ()

    def cancel(self) -> None:
        pass


_OPEN_AFTER_APP: Final = _OpenAfterApp()


class _FlowSignals(asyncio.Protocol):
    """Relays a connection's flow-control signals to its raw transport, if it has one."""

    raw: RawTransport | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.raw is not None:
            self.raw._paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.raw is not None:
            self.raw._resumed()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.raw is not None:
            self.raw._paused()


class FastWebSocketProtocol(_FlowSignals, WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol plus the ``tickcast.raw`` extension."""

    raw: RawWebSocket | None = None
    tuning: ClassVar[SocketTuning] = SocketTuning()
    # What the handshake may negotiate: permessage-deflate or nothing (protocol_classes).
    extensions: ClassVar[tuple[ServerExtensionFactory, ...]] = ()

    # What uvicorn sets on every connection but is the same for all of a server's: held
    # once, on the class. uvicorn gives each protocol object about 40 attributes, past the
    # 30 that CPython keeps in a compact per-instance table; the plain dict that replaces
    # it costs 1.6 KB per client, the compact table a quarter of that.
    _server_config: ClassVar[Config | None] = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # uvicorn 0.54's __init__, with the per-server values on the class, the lean
        # queue and event, and our own extensions: frames are pre-encoded, compressed
        # once for all clients when deflate is negotiated, never by uvicorn per client.
        cls = type(self)
        if cls.__dict__.get("_server_config") is not config:
            if not config.loaded:
                config.load()
            shared = {
                "config": config,
                "app": config.loaded_app,
                "loop": _loop or asyncio.get_event_loop(),
                "logger": logging.getLogger("uvicorn.error"),
                "root_path": config.root_path,
                "asgi_version": config.asgi_version,
                "app_state": app_state,
                "connections": server_state.connections,
                "tasks": server_state.tasks,
                "default_headers": server_state.default_headers,
                "close_timeout": 10.0,
                "ping_interval": config.ws_ping_interval,
                "ping_timeout": config.ws_ping_timeout,
                "_server_config": config,
            }
            for name, value in shared.items():
                setattr(cls, name, value)
        self.transport = None  # type: ignore[assignment]
        self.server = None
        self.client = None
        self.scheme = None  # type: ignore[assignment]
        self.queue = LeanQueue()  # type: ignore[assignment]
        self.handshake_initiated = False
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.close_timer = None
        self.initial_response = None
        self.conn = ServerProtocol(
            extensions=list(self.extensions), max_size=config.ws_max_size, logger=self.logger
        )
        self.read_paused = False
        self.writable = LeanEvent()  # type: ignore[assignment]
        self.writable.set()
        self.ping_timer = None
        self.pong_timer = None
        self.pending_ping_payload = None
        self.ping_sent_at = 0.0
        self.last_ping_rtt = 0.0
        self.frames = []
        self.curr_msg_data_type = "bytes"

    # Keep-alive pings from one timer for all connections (``PingWheel``) rather than a
    # timer per connection (a handle, a libuv timer and a bound method: 600 bytes each).
    def schedule_ping(self) -> None:
        assert self.ping_interval is not None
        delay = max(0.0, self.ping_interval - self.last_ping_rtt)
        self.ping_timer = PingWheel.of(self.loop).schedule(self, delay)  # type: ignore[assignment]

    def send_keepalive_ping(self) -> None:
        """uvicorn 0.54's ping with one frame encoded once for every connection, where
        uvicorn builds and serializes a frame with a random payload per ping (most of a
        ping's cost, at thousands of clients). The payload need not be random: a
        connection's next ping goes out only once the last one was answered or the
        connection closed for want of an answer, so no pong can be stale."""
        self.ping_timer = None
        if self.close_sent or self.transport.is_closing():
            return
        self.pending_ping_payload = PING_PAYLOAD
        self.ping_sent_at = self.loop.time()
        self.transport.write(_PING_FRAME)
        if self.ping_timeout is not None:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
        else:
            self.schedule_ping()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            # The handshake's request and response (headers and all) are not used again.
            # websockets' parser generator still holds the request for the connection's
            # life, so its headers are emptied rather than just dropped here.
            self.request.headers.clear()
            del self.request, self.response

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.tuning.apply(transport)
        self.server, self.client = shared_addresses(self.server, self.client)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the handshake was accepted and the app task created
            # websockets' negotiation is done: its extension inflates what the client
            # compresses, and the fan-out compresses for it (see RawDeflateWebSocket).
            deflate = negotiated(self.conn.extensions)
            self.raw = RawDeflateWebSocket(self) if deflate else RawWebSocket(self)
            scope["extensions"][EXTENSION] = {"transport": self.raw}

    # Every way the connection stops taking frames tells the session, so the fan-out's
    # fast path stops writing to it at once.
    def handle_close(self, event: Any) -> None:
        super().handle_close(event)
        if self.raw is not None:
            self.raw._paused()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        if self.raw is not None:
            self.raw._paused()

    def send_receive_event_to_app(self) -> None:
        # uvicorn logs a full traceback for every text message that is not UTF-8: the
        # client's fault, and a cheap way to flood the log. One line instead (the log
        # handler rate-limits repeats), and the same close, 1007.
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        text = None
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self.frames = []
                peer = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
                log.info("closing client %s: invalid UTF-8 in a text message (1007)", peer)
                reason = CloseReason.INVALID_UTF8
                self.conn.send_close(reason.code, reason.reason)
                self.handle_parser_exception()
                if self.raw is not None:
                    self.raw._paused()
                return
        if cast(LeanQueue, self.queue).direct:
            # Straight to the session (see ``RawWebSocket.hand_over``), decoded once:
            # no receive call will come to resume reading, so reading is never paused.
            self.frames = []
            if self.close_sent:
                return
            if text is not None:
                self.queue.put_nowait({"type": "websocket.receive", "text": text})
            else:
                self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
            return
        super().send_receive_event_to_app()

    def shutdown(self) -> None:
        # uvicorn closes with 1012 (service restart); SPEC §9 says 1001 (going away).
        if self.handshake_complete and not self.close_sent and not self.disconnected:
            self.stop_keepalive()
            self.close_now(CloseReason.SHUTDOWN)
            return
        super().shutdown()

    def close_now(self, reason: CloseReason) -> None:
        """Send a close frame without waiting for the socket to drain (ASGI's close waits
        while the socket is paused, i.e. forever for a client that stopped reading)."""
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return
        self.conn.send_close(reason.code, reason.reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": reason.code, "reason": reason.reason}
        )
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if reason in (CloseReason.SLOW_CLIENT, CloseReason.BUFFER_FULL):
            self.close_timer = self.loop.call_later(SLOW_CLOSE_GRACE, self.transport.abort)
        else:
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)


class RawEventStream(RawTransport):
    """An SSE response body written as HTTP/1.1 chunks straight to the socket."""

    kind: TransportKind = "sse"
    wire_format: WireFormat = "sse_chunk"
    __slots__ = ("_protocol", "closed")

    def __init__(self, protocol: FastHttpProtocol) -> None:
        super().__init__(protocol.transport)
        self._protocol = protocol
        self.closed = False

    @property
    def writable(self) -> bool:
        return (
            not self.closed
            and not self._protocol.flow.write_paused
            and not self._transport.is_closing()
        )

    @property
    def raw_write(self) -> Callable[[bytes], object]:
        """The socket's own write, for the fan-out's fast path (see RawWebSocket)."""
        write: Callable[[bytes], object] = self._transport.write
        return write

    def write(self, data: bytes) -> None:
        if not self.closed and not self._transport.is_closing():
            self._transport.write(data)

    def close(self, reason: CloseReason) -> None:
        if self.closed:
            return
        self.closed = True
        if reason in (CloseReason.SLOW_CLIENT, CloseReason.BUFFER_FULL):
            # Nothing queued for a stalled client is worth delivering: reset at once.
            self._transport.abort()
        else:
            self._transport.write(_LAST_CHUNK)
            self._transport.close()


class _HeadTooLarge(Exception):
    """Raised from a parser callback; httptools wraps it in ``HttpParserCallbackError``."""


class FastHttpProtocol(_FlowSignals, HttpToolsProtocol):
    """uvicorn's httptools protocol plus the ``tickcast.raw`` extension for streams, and
    the request-head limits of ``guard`` (size and time), which uvicorn does not have."""

    raw: RawEventStream | None = None
    tuning: ClassVar[SocketTuning] = SocketTuning()
    guard: ClassVar[HandshakeGuard] = HandshakeGuard()
    _head_bytes = 0  # received while the head is incomplete
    _head_parsed = 0  # handed over by the parser for the current head
    _head_timer: asyncio.TimerHandle | None = None
    _head_ip: str | None = None  # set while this connection counts as in the handshake
    _head_rejected = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.tuning.apply(transport)
        self._head_started()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    # -- request head limits --------------------------------------------------------

    def _head_started(self) -> None:
        """A request head may now arrive: bound its time (and, in ``data_received``, size)."""
        if self._head_ip is not None:
            return  # this head is already bounded (the first request's begins after connect)
        # The peer's address: for a trusted proxy the guard bounds the head but does not
        # count it, as the proxy speaks for many clients (admission counts those).
        ip = self.client[0] if self.client else ""
        if not self.guard.enter(ip):
            self._refuse("per_ip", TOO_MANY_HANDSHAKES)
            return
        self._head_ip = ip
        self._head_bytes = self._head_parsed = 0
        self._head_timer = self.loop.call_later(self.guard.limits.timeout, self._head_late)

    def _head_done(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._head_ip is not None:
            self.guard.leave(self._head_ip)
            self._head_ip = None

    def _head_late(self) -> None:
        self._head_timer = None
        self._refuse("timeout", REQUEST_TIMEOUT)

    def _refuse(self, why: str, status: tuple[int, str, str]) -> None:
        self._head_done()
        if not self.transport.is_closing():
            self.guard.refused[why] += 1
            self.transport.write(refusal(status))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._head_ip is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._head_ip is not None and self._head_bytes > self.guard.limits.max_head_bytes:
            self._refuse("too_large", HEAD_TOO_LARGE)

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to any parser error, ours included: say which it was.
        if self._head_rejected:
            self._refuse("too_large", HEAD_TOO_LARGE)
        else:
            self._head_done()
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started()  # the next request on a kept-alive connection

    # A head that arrives in one read is parsed whole within ``data_received``: its size is
    # checked here, as the parser hands it over, so no request over the limit reaches the app.
    def on_url(self, url: bytes) -> None:
        self._check_head(len(url), len(self.url) + len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._check_head(len(name) + len(value) + 4, len(name) + len(value))
        super().on_header(name, value)

    def _check_head(self, added: int, line: int) -> None:
        self._head_parsed += added
        limits = self.guard.limits
        if line > limits.max_line_bytes or self._head_parsed > limits.max_head_bytes:
            self._head_rejected = True
            raise _HeadTooLarge

    def on_headers_complete(self) -> None:
        self._head_done()
        super().on_headers_complete()
        if self.scope.get("type") == "http" and "path" in self.scope:
            self.scope.setdefault("extensions", {})[EXTENSION] = {"stream": self.open_stream}

    def shutdown(self) -> None:
        # An event stream never completes by itself: end it now instead of letting the
        # server wait out its graceful-shutdown timeout.
        if self.raw is not None and not self.raw.closed:
            self.raw.close(CloseReason.SHUTDOWN)
            return
        super().shutdown()

    def open_stream(self) -> RawEventStream:
        """Take over the response body of the current request (after its headers)."""
        self.raw = RawEventStream(self)
        return self.raw
