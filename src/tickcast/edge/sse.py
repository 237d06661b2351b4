"""``GET /sse``: Server-Sent Events with resume (SPEC §6).

Each tick is ``event: tick`` with ``id: <seq>``. A client that reconnects with
``Last-Event-ID`` gets every tick it missed from history, or ``event: reset`` with a fresh
snapshot when those ticks are no longer held.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tickcast.edge.fanout import ClientRequest, Edge
from tickcast.edge.fastpath import EXTENSION
from tickcast.edge.session import Transport
from tickcast.edge.transport import QueuedTransport
from tickcast.edge.wire import Wire, WireFormat, http_chunk, sse_event
from tickcast.errors import CloseReason
from tickcast.tasks import cancel_and_wait
from tickcast.tick import Tick

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def parse_last_event_id(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def opening(edge: Edge, symbols: list[str], last_event_id: int | None) -> bytes:
    """What a new stream starts with: retry, then resume, reset or snapshot (bare events)."""
    hub = edge.node.hub
    out = [b"retry: %d\n\n" % edge.settings.sse_retry_ms]
    if last_event_id is not None:
        missed = None if last_event_id > hub.last_seq() else hub.since(symbols, last_event_id)
        if missed is None:
            snapshot = [t for s in symbols if (t := hub.latest(s)) is not None]
            return b"".join([*out, reset_event(snapshot, hub.last_seq())])
        return b"".join([*out, *(Wire(t).get("sse_event") for t in missed)])
    snapshot = sorted((t for s in symbols if (t := hub.latest(s)) is not None), key=lambda t: t.seq)
    return b"".join([*out, *(Wire(t).get("sse_event") for t in snapshot)])


def reset_event(snapshot: list[Tick], last_seq: int) -> bytes:
    ticks = b",".join(t.encode() for t in snapshot)
    data = b'{"type":"reset","last_seq":%d,"ticks":[%b]}' % (last_seq, ticks)
    return sse_event("reset", data, last_seq)


class EventStream(Response):
    """The streaming response of one SSE client."""

    media_type = "text/event-stream"

    def __init__(
        self,
        edge: Edge,
        request: ClientRequest,
        symbols: list[str],
        last_event_id: int | None,
        throttle_ms: float,
    ) -> None:
        super().__init__()
        self.edge = edge
        self.client = request
        self.symbols = symbols
        self.last_event_id = last_event_id
        self.throttle_ms = throttle_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        raw = scope.get("extensions", {}).get(EXTENSION)
        if raw is not None:
            await self._serve(raw["stream"](), receive, None)
            return
        transport = _queued(send)
        sender = asyncio.create_task(transport.run(), name="sse-sender")
        try:
            await self._serve(transport, receive, sender)
        finally:
            transport.close(CloseReason.SHUTDOWN)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sender, timeout=2)

    async def _serve(
        self, transport: Transport, receive: Receive, sender: asyncio.Task[None] | None
    ) -> None:
        # No await between the opening and the registration: no tick can fall between.
        first = opening(self.edge, self.symbols, self.last_event_id)
        transport.write(_framed(transport.wire_format, first))
        session = self.edge.open(
            transport,
            self.client.ip,
            self.symbols,
            throttle_ms=self.throttle_ms,
            wants_status=True,
            snapshot=False,
        )
        try:
            await _until_gone(receive, sender)
        finally:
            self.edge.detach(session)


def _framed(fmt: WireFormat, events: bytes) -> bytes:
    return http_chunk(events) if fmt == "sse_chunk" else events


async def _until_gone(receive: Receive, sender: asyncio.Task[None] | None) -> None:
    """Return when the client disconnects, or when the server closed the session."""
    if sender is None:
        await _disconnected(receive)
        return
    watcher = asyncio.create_task(_disconnected(receive))
    try:
        await asyncio.wait({watcher, sender}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(watcher)


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
