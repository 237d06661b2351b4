"""``GET /sse``: Server-Sent Events with resume (SPEC §6).

Each tick is an unnamed event (``onmessage``; its JSON says ``"type":"tick"``) with an
``id:``, the resume token (format: ``tickcast.edge.resume``). ``status`` and ``reset``
are named events, and so is ``error``: a request naming symbols not served here streams
the ones that are and reports the others in one ``event: error`` first (SPEC §6). A
client that reconnects with ``Last-Event-ID`` gets every tick it missed from history,
then live ticks, or ``event: reset`` with a fresh snapshot when those ticks are no longer
held or its id is not one the server knows.

The missed ticks (up to the whole history) go through the session's flow control like
live ones, so a large resume is paced by how fast the client reads.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tickcast.edge.access import Admission
from tickcast.edge.fanout import ClientRequest, Edge
from tickcast.edge.fastpath import EXTENSION
from tickcast.edge.ops import unknown_errors
from tickcast.edge.resume import (
    ResumePoint,
    missed_ticks,
    parse_event_id,
    reset_message,
    snapshot,
)
from tickcast.edge.session import Session, Transport
from tickcast.edge.transport import QueuedTransport
from tickcast.edge.wire import WireFormat, encode_market, http_chunk, sse_event
from tickcast.errors import CloseReason, ErrorCode
from tickcast.messages.message import Message
from tickcast.messages.stream import stream_name

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def parse_last_event_id(value: str | None) -> ResumePoint | None:
    """The resume point of a ``Last-Event-ID`` header or ``?last_event_id=``; never raises."""
    return parse_event_id(value)


@dataclass(frozen=True)
class Opening:
    """What a new stream starts with.

    ``head``: the bytes to write at once: ``retry:``, the notices (an ``event: error``
    naming symbols not served), then the snapshot, or a ``reset`` when the client cannot
    resume. ``sent``: the symbols whose latest tick ``head`` carries (under a throttle,
    their last send). ``replay``: the missed ticks of a resume, which go through the
    session's flow control: up to the whole history, too much to write in one go.
    """

    head: bytes
    sent: list[str]
    replay: list[Message]


def opening(
    edge: Edge, symbols: list[str], resume: ResumePoint | None, notices: bytes = b""
) -> Opening:
    """How a stream of ``symbols`` opens (see ``Opening``)."""
    hub = edge.node.hub
    head = b"retry: %d\n\n" % edge.settings.sse_retry_ms + notices
    missed = None if resume is None else missed_ticks(hub, symbols, resume, edge.served)
    if missed is not None:
        return Opening(head, [], missed)
    ticks = snapshot(hub, symbols, edge.served)
    if resume is None:
        head += b"".join(encode_market("sse_event", t) for t in ticks)
    else:
        head += reset_event(ticks, hub.last_seq())
    return Opening(head, [t.key for t in ticks], [])


def reset_event(ticks: list[Message], last_seq: int) -> bytes:
    return sse_event("reset", reset_message(ticks, last_seq), last_seq)


def unknown_event(unknown: list[str]) -> bytes:
    """The ``event: error`` of a stream that names symbols not served here: the body of
    the ``/ws`` error reply to the same request (SPEC §6's partial subscribe)."""
    return b"".join(sse_event("error", orjson.dumps(e)) for e in unknown_errors(unknown))


def forbidden_event(forbidden: list[str]) -> bytes:
    """The ``event: error`` naming streams asked for that the token does not allow: the
    body of the ``/ws`` error reply to the same request."""
    if not forbidden:
        return b""
    names = [stream_name(k) for k in forbidden]
    error = {
        "type": "error",
        "code": ErrorCode.FORBIDDEN.value,
        "message": f"not allowed by your token: {', '.join(names)}",
        "streams": names,
    }
    return sse_event("error", orjson.dumps(error))


class EventStream(Response):
    """The streaming response of one SSE client."""

    media_type = "text/event-stream"

    def __init__(
        self,
        edge: Edge,
        request: ClientRequest,
        symbols: list[str],
        last_event_id: ResumePoint | None,
        throttle_ms: float,
        unknown: list[str] | None = None,
        forbidden: list[str] | None = None,
        admission: Admission | None = None,
    ) -> None:
        super().__init__()
        self.unknown = unknown or []
        self.forbidden = forbidden or []
        self.admission = admission
        self.edge = edge
        self.client = request
        self.symbols = symbols
        self.last_event_id = last_event_id
        self.throttle_ms = throttle_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        raw = scope.get("extensions", {}).get(EXTENSION)
        if raw is not None:
            session = self._open(raw["stream"]())
            try:
                await _disconnected(receive)
            finally:
                self.edge.detach(session)
            return
        transport = _queued(send)
        async with transport.running():
            session = self._open(transport)
            try:
                # The server may close the session (a slow client) while the client
                # sends nothing: that ends the stream too.
                await transport.until_closed(_disconnected(receive))
            finally:
                self.edge.detach(session)

    def _open(self, transport: Transport) -> Session:
        # No await between the opening and the registration: no tick can fall between.
        notices = unknown_event(self.unknown) + forbidden_event(self.forbidden)
        start = opening(self.edge, self.symbols, self.last_event_id, notices)
        transport.write(_framed(transport.wire_format, start.head))
        session = self.edge.open(
            transport,
            self.client.ip,
            self.symbols,
            throttle_ms=self.throttle_ms,
            wants_status=True,
            snapshot=False,
            replay=start.replay,
            admission=self.admission,
        )
        session.sent_now(start.sent)
        return session


def _framed(fmt: WireFormat, events: bytes) -> bytes:
    return http_chunk(events) if fmt == "sse_chunk" else events


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _queued(send: Send) -> QueuedTransport:
    async def write(data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})

    async def close(_reason: CloseReason) -> None:
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    return QueuedTransport("sse", "sse_event", write, close)
