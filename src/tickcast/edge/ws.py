"""``WS /ws``: the WebSocket endpoint (SPEC §6).

The endpoint's own task only reads client ops; ticks reach the socket from the fan-out
through the session's transport, never through this task.
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import WebSocket
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection
from starlette.types import Message

from tickcast.edge.access import Admission
from tickcast.edge.fanout import ClientRequest, Edge
from tickcast.edge.fastpath import EXTENSION, RawWebSocket
from tickcast.edge.resume import parse_event_id
from tickcast.edge.session import MAX_THROTTLE_MS, Session
from tickcast.edge.transport import QueuedTransport
from tickcast.errors import CloseReason

log = logging.getLogger(__name__)


def client_request(connection: HTTPConnection) -> ClientRequest:
    """What admission needs of an HTTP request or a WebSocket (both HTTPConnections)."""
    client = connection.client
    return ClientRequest(
        ip=client.host if client else "",
        origin=connection.headers.get("origin"),
        authorization=connection.headers.get("authorization"),
        token_param=connection.query_params.get("token"),
        host=connection.headers.get("host"),
    )


def parse_symbols(value: str | None, streams: str | None = None) -> list[str] | None:
    """The names of ``?symbols=A,B`` (or ``*``) and ``?streams=A@trades,B@kline_1m`` (SPEC
    §12), as given (``ops.stream_key`` reads their case); None when both are absent."""
    if value is None and streams is None:
        return None
    names = f"{value or ''},{streams or ''}"
    return [part.strip() for part in names.split(",") if part.strip()]


def parse_throttle(value: str | None) -> float:
    """``?throttle_ms=``: 0 when absent; ValueError, with a message for the client, when
    it is not a number from 0 to ``MAX_THROTTLE_MS``."""
    if not value:
        return 0.0
    try:
        throttle = float(value)
    except ValueError:
        raise ValueError(f"throttle_ms: not a number: {value[:40]!r}") from None
    if not 0 <= throttle <= MAX_THROTTLE_MS:  # NaN fails this too
        raise ValueError(f"throttle_ms: must be a number from 0 to {MAX_THROTTLE_MS}")
    return throttle


async def websocket_endpoint(websocket: WebSocket, edge: Edge) -> None:
    """One client connection, for its whole life (called by ``TickcastApp``, not routed)."""
    # A browser cannot set headers on a WebSocket: without a token here, the client has
    # a few seconds to send an ``auth`` op (SPEC §10).
    admission = edge.admission(client_request(websocket), may_wait=True)
    if admission.denial is not None:
        await _deny(websocket, admission.denial.status, admission.denial.body())
        return
    try:
        throttle_ms = parse_throttle(websocket.query_params.get("throttle_ms"))
    except ValueError as exc:
        # The same status and body as /sse gives a bad parameter.
        await _deny(websocket, 422, {"error": "invalid_request", "message": str(exc)})
        return
    await websocket.accept()
    raw = websocket.scope.get("extensions", {}).get(EXTENSION)
    if raw is not None:
        raw_ws: RawWebSocket = raw["transport"]
        session = _open(edge, websocket, raw_ws, throttle_ms, admission)
        # Ops are applied as they arrive, from the protocol's data callback, and the
        # disconnect detaches the session: nothing waits here for the connection's end.
        raw_ws.hand_over(_Connection(edge, session))
        return
    transport = _queued(websocket)
    async with transport.running():
        session = _open(edge, websocket, transport, throttle_ms, admission)
        try:
            # A client the server closes (a slow one) may never send its close reply,
            # nor anything else: the closed transport ends the endpoint too.
            await transport.until_closed(_read_ops(edge, websocket, session))
        finally:
            edge.detach(session)


async def _deny(websocket: WebSocket, status: int, body: dict[str, object]) -> None:
    await websocket.send_denial_response(JSONResponse(body, status_code=status))


def _open(
    edge: Edge,
    websocket: WebSocket,
    transport: RawWebSocket | QueuedTransport,
    throttle_ms: float,
    admission: Admission,
) -> Session:
    params = websocket.query_params
    requested = parse_symbols(params.get("symbols"), params.get("streams"))
    wants_status = params.get("status") in ("1", "true", "yes")
    listed = "streams" if params.get("streams") is not None else "symbols"
    resume = parse_event_id(params.get("last_event_id"))
    session = edge.open(
        transport,
        client_request(websocket).ip,
        [],
        throttle_ms=throttle_ms,
        wants_status=wants_status,
        admission=admission,
    )

    def start() -> None:
        # The subscribe op's rule: unknown names are reported in one error and the served
        # ones subscribed, as are names the token does not allow (``forbidden``); more
        # than max_subscriptions subscribes none (an error says so).
        if requested is None:
            symbols = [s for s in edge.settings.named_symbols if session.may(s)]
        else:
            symbols = session.choose(requested)
        if requested is not None and symbols and session.wants_status:
            # Answered like a subscribe op with no id, to a client that asked for control
            # messages: one that did not (a page written for the seed server) gets ticks only.
            session.ack(None, "subscribe", symbols, listed)
        # A resume replays the allowed streams only: the others were never subscribed.
        if resume is None:
            edge.subscribe(session, symbols)
        else:
            edge.resume(session, symbols, resume)

    # Now, or once the client's ``auth`` op is accepted.
    edge.access.when_granted(session, start)
    return session


async def _read_ops(edge: Edge, websocket: WebSocket, session: Session) -> None:
    while True:
        message: Message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        _on_message(edge, session, message)


def _on_message(edge: Edge, session: Session, message: Message) -> None:
    """One message from the client: an op (text) or a binary frame (refused)."""
    if session.closed is not None:
        return
    text = message.get("text")
    if text is not None:
        edge.apply(session, session.handle_text(text))
    elif message.get("bytes") is not None:
        session.handle_binary()


class _Connection:
    """A fast-path client after its handshake (``RawWebSocket.hand_over``): its messages
    to its session, its disconnect to the edge. One slotted object per client."""

    __slots__ = ("edge", "session")

    def __init__(self, edge: Edge, session: Session) -> None:
        self.edge = edge
        self.session = session

    def __call__(self, message: Message) -> None:
        session = self.session
        if message["type"] == "websocket.disconnect":
            self.edge.detach(session)
            return
        try:
            _on_message(self.edge, session, message)
        except Exception:
            # No app task is left to fail with it: logged here, and the client closed.
            log.exception("client %d: closing it after an error handling its message", session.id)
            session.close(CloseReason.INTERNAL_ERROR)


def _queued(websocket: WebSocket) -> QueuedTransport:
    async def send(message: bytes) -> None:
        await websocket.send_text(message.decode())

    async def close(reason: CloseReason) -> None:
        with contextlib.suppress(Exception):
            await websocket.close(reason.code, reason.reason)

    return QueuedTransport("ws", "json", send, close)
