"""The API's own documentation: the OpenAPI description of what is not a path (``/ws``).

``/docs`` and ``/redoc`` are served by ``fastapi-offline`` from the Swagger UI and ReDoc
files it installs, under ``DOCS_ASSETS``: no CDN, so they render offline."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel

from tickcast.errors import CloseReason, ErrorCode

DOCS_ASSETS = "/docs/assets"


def _close_codes() -> str:
    rows = [f"| {r.code} | {r.reason} |" for r in CloseReason if r is not CloseReason.GONE]
    return "\n".join(["| code | reason |", "|---|---|", *rows])


def _error_codes() -> str:
    return ", ".join(f"`{code.value}`" for code in ErrorCode)


def description() -> str:
    """The API description: the REST paths document themselves; ``/ws`` is described here."""
    return f"""Real-time market data: one upstream, many WebSocket and SSE clients.

## WebSocket `/ws`

`ws://HOST:PORT/ws` with no parameters sends one snapshot tick per default symbol, then
live ticks. Query parameters: `symbols=BTCUSDT,ETHUSDT` (or `*`), `throttle_ms=N` (at most
one tick per symbol per N ms, latest value wins), `status=1` (also send upstream `status`
messages), `last_event_id=ID` (resume, as SSE), `token=T` (when the server requires one).

Every message is one JSON object. A tick:
`{{"type":"tick","symbol":"BTCUSDT","last_price":60500.5,"change_percent":1.25,
"timestamp_ms":1678886400000,"seq":1234,"source":"binance",...}}`

Client ops, each a JSON text message:

| op | example | reply |
|---|---|---|
| subscribe | `{{"op":"subscribe","symbols":["ETHUSDT"],"id":1}}` | `ack`, a tick per new symbol |
| unsubscribe | `{{"op":"unsubscribe","symbols":["ETHUSDT"],"id":2}}` | `ack` |
| list | `{{"op":"list","id":3}}` | `ack` with the current symbols |
| ping | `{{"op":"ping"}}` | `{{"type":"pong"}}` |
| auth | `{{"op":"auth","token":"T"}}` | `ack` (the first op, within 5 s) |
| refresh | `{{"op":"refresh","token":"T"}}` | `ack` with the new `expires_at` |

An ack: `{{"type":"ack","id":1,"op":"subscribe","symbols":["ETHUSDT"]}}`. Errors are
replies, not closes: `{{"type":"error","id":1,"code":"...","message":"..."}}` with code
one of {_error_codes()}. A reply carries its op's `id` when the op had one (a
`rate_limited` refusal too). Names not served here are reported in one `unknown_symbol`
error (with `"symbols":[...]`) and the served ones subscribed, for an op and for
`symbols=` at connect alike.

Control messages go to clients that ask for them: with `status=1`, or once the client has
sent an op, `{{"type":"status","upstream":...}}` when the upstream state changes; with
`status=1&symbols=...`, the connect's own ack `{{"type":"ack","op":"subscribe",
"symbols":[...]}}` (no `id`) before the snapshot. A client that passes no `status=1` and
sends nothing receives ticks only (and the `unknown_symbol` error its `symbols=` earns).
With per-client tokens (JWT), a stream the token does not allow gets a `forbidden` error
and the allowed ones are subscribed; 30 s before the token expires the client gets
`{{"type":"token_expiring","in_ms":...}}`, and without a `refresh` is closed with 4001.
Under `throttle_ms` the snapshot counts as a symbol's send. A plain HTTP `GET /ws` (no
upgrade) gets 426 `upgrade_required` with `Upgrade: websocket`.

The server pings every 20 s and closes a client silent for 60 s. Close codes:

{_close_codes()}

## Server-Sent Events `/sse`

Ticks are unnamed events (`onmessage`) with an `id:`; `event: status`, `event: reset` and
`event: error` are named. Symbols not served here are named in one `event: error` (the
`/ws` error's JSON, code `unknown_symbol`) and the served ones stream; a request naming no
served symbol gets 404. Reconnect with `Last-Event-ID` (the `id:` of the last event
received, or any tick's `seq`) to receive what was missed, or an `event: reset` with a
fresh snapshot when that id is too old or not one this server issued.

## Errors

Every HTTP error has the body `{{"error":"<code>","message":"..."}}`: `invalid_request`
(422), `unknown_symbol`, `not_found` (404), `method_not_allowed` (405), and the codes
named on each path.
"""


# -- response documentation -----------------------------------------------------------
# The routes write pre-encoded bytes (exact decimals), so these models document the
# responses without being used to build them.


class TickDoc(BaseModel):
    """One symbol's latest state, as sent on /ws, /sse and REST; decimals are exact JSON
    numbers."""

    type: Literal["tick"]
    symbol: str
    last_price: float
    change_percent: float
    timestamp_ms: int
    change: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    volume: float | None = None
    quote_volume: float | None = None
    bid: float | None = None
    ask: float | None = None
    seq: int
    source: Literal["binance", "sim", "replay"]


class ErrorDoc(BaseModel):
    """Every error response: a stable code and a message for people."""

    error: str
    message: str


class ReadyDoc(BaseModel):
    ready: bool
    reason: str


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorDoc, "description": description}


Responses = dict[int | str, dict[str, Any]]

VALIDATION: Final[Responses] = {422: _error("A query or path parameter is not valid")}
UNKNOWN_SYMBOL: Final[Responses] = {404: _error("The symbol is not served here")}
NO_DATA: Final[Responses] = {503: _error("No data has arrived yet")}
UNAUTHORIZED: Final[Responses] = {401: _error("A token is required and was missing or wrong")}
ONE_TICK: Final[Responses] = {200: {"model": TickDoc, "description": "The latest tick"}}
TICKS: Final[Responses] = {200: {"model": list[TickDoc], "description": "Ticks, oldest first"}}
READY: Final[Responses] = {
    200: {"model": ReadyDoc, "description": "Ready"},
    503: {"model": ReadyDoc, "description": "Not ready, and why"},
}
METRICS: Final[Responses] = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}
EVENT_STREAM: Final[Responses] = {
    200: {
        "description": "An endless text/event-stream of ticks, status and reset events",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    400: _error("Too many symbols"),
    403: _error("The Origin is not allowed"),
    429: _error("Too many connections from this address"),
    503: _error("The server is at its connection limit"),
}
