"""``WS /ws``: the WebSocket endpoint (SPEC §6).

The endpoint's own task only reads client ops; ticks reach the socket from the fan-out
through the session's transport, never through this task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection
from starlette.types import Message

from tickcast.edge.fanout import ClientRequest, Edge
from tickcast.edge.fastpath import EXTENSION, RawWebSocket
from tickcast.edge.session import Session
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
    )


def parse_symbols(value: str | None) -> list[str] | None:
    """``?symbols=A,B`` or ``*``; None when absent."""
    if value is None:
        return None
    return [part.strip().upper() for part in value.split(",") if part.strip()]


def parse_throttle(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


async def websocket_endpoint(websocket: WebSocket, edge: Edge) -> None:
    """One client connection, for its whole life (called by ``TickcastApp``, not routed)."""
    denial = edge.admit(client_request(websocket))
    if denial is not None:
        body = {"error": denial.code, "message": denial.message}
        await websocket.send_denial_response(JSONResponse(body, status_code=denial.status))
        return
    await websocket.accept()
    raw = websocket.scope.get("extensions", {}).get(EXTENSION)
    sender: asyncio.Task[None] | None = None
    if raw is not None:
        transport: RawWebSocket | QueuedTransport = raw["transport"]
    else:
        transport = _queued(websocket)
        sender = asyncio.create_task(transport.run(), name="ws-sender")
    session = _open(edge, websocket, transport)
    try:
        await _read_ops(edge, websocket, session)
    finally:
        edge.detach(session)
        if sender is not None:
            transport.close(session.closed or CloseReason.SHUTDOWN)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sender, timeout=2)


def _open(edge: Edge, websocket: WebSocket, transport: RawWebSocket | QueuedTransport) -> Session:
    params = websocket.query_params
    requested = parse_symbols(params.get("symbols"))
    wants_status = params.get("status") in ("1", "true", "yes")
    session = edge.open(
        transport,
        client_request(websocket).ip,
        [],
        throttle_ms=parse_throttle(params.get("throttle_ms")),
        wants_status=wants_status,
    )
    if requested is None:
        edge.subscribe(session, edge.settings.symbols)
        return session
    # Unknown symbols at connect get an error message; the known ones are served.
    known = [s for s in requested if s in edge.served or s == "*"]
    unknown = [s for s in requested if s not in known]
    if unknown:
        session.send_message(
            {
                "type": "error",
                "code": "unknown_symbol",
                "message": f"not served here: {', '.join(unknown)}",
            }
        )
    symbols = session.resolve(known) if known else []
    edge.subscribe(session, symbols[: edge.limits.max_subscriptions])
    return session


async def _read_ops(edge: Edge, websocket: WebSocket, session: Session) -> None:
    while True:
        message: Message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if session.closed is not None:
            continue
        text = message.get("text")
        if text is not None:
            edge.apply(session, session.handle_text(text))
        elif message.get("bytes") is not None:
            session.handle_binary()


def _queued(websocket: WebSocket) -> QueuedTransport:
    async def send(message: bytes) -> None:
        await websocket.send_text(message.decode())

    async def close(reason: CloseReason) -> None:
        with contextlib.suppress(Exception):
            await websocket.close(reason.code, reason.reason)

    return QueuedTransport("ws", "json", send, close)
