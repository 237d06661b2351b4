"""The ASGI app: REST reads of the latest state, health, status and the dashboard files."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from tickcast import __version__
from tickcast.edge.fanout import Edge
from tickcast.edge.guard import HandshakeGuard
from tickcast.edge.ops import resolve
from tickcast.edge.session import MAX_THROTTLE_MS
from tickcast.edge.sse import EventStream, parse_last_event_id
from tickcast.edge.ws import client_request, parse_symbols, websocket_endpoint
from tickcast.errors import http_error_code
from tickcast.logs import flush_rate_limits
from tickcast.messages.message import ticks_of
from tickcast.messages.tick import Tick
from tickcast.node import Node
from tickcast.serve.gcpolicy import HEAP
from tickcast.serve.markets import market_routes
from tickcast.serve.metrics import Metrics
from tickcast.serve.openapi import (
    DOCS_ASSETS,
    EVENT_STREAM,
    METRICS,
    NO_DATA,
    ONE_TICK,
    READY,
    TICKS,
    UNAUTHORIZED,
    UNKNOWN_SYMBOL,
    VALIDATION,
    description,
)
from tickcast.serve.prices import Prices
from tickcast.serve.readguard import ReadGuard
from tickcast.settings import Settings
from tickcast.upstream.normalize import wall_ms

STATIC_DIR = Path(__file__).parent.parent / "static"
# Recent ticks per symbol that /symbols reads to learn its price decimals.

STATIC_FILES = {
    # The dashboard's scripts, in the order index.html loads them.
    "state.js": "text/javascript",
    "format.js": "text/javascript",
    "decimals.js": "text/javascript",
    "seq.js": "text/javascript",
    "connection.js": "text/javascript",
    "probe.js": "text/javascript",
    "table.js": "text/javascript",
    "market-table.js": "text/javascript",
    "columns.js": "text/javascript",
    "candles.js": "text/javascript",
    "tape.js": "text/javascript",
    "ladder.js": "text/javascript",
    "follow.js": "text/javascript",
    "chart.js": "text/javascript",
    "status.js": "text/javascript",
    "app.js": "text/javascript",
    "style.css": "text/css",
    # The dashboard's chart library, shipped in the package (see static/vendor/README.md).
    "vendor/uPlot.iife.min.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def process_status() -> dict[str, object]:
    """What leaks would show: memory, descriptors and tasks of this process."""
    out: dict[str, object] = {
        "pid": os.getpid(),
        "asyncio_tasks": len(asyncio.all_tasks()),
        "gc": HEAP.status(),
    }
    try:
        out["open_fds"] = len(os.listdir("/proc/self/fd"))
        with open("/proc/self/statm") as statm:
            out["rss_bytes"] = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: report what is portable
        pass
    return out


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """A bad query or path parameter gets the same ``{"error","message"}`` body as any error."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return error_response(422, "invalid_request", "; ".join(parts) or "invalid request")


# What an error message repeats of the request's path, at most: enough to recognise it.
ECHO_PATH_CHARS = 120


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """An HTTP error raised by the framework (no such path, a method the path does not
    take, ...) gets the common ``{"error","message"}`` body with a named code, and keeps
    its headers (a 405's ``Allow``)."""
    if not isinstance(exc, StarletteHTTPException):
        return error_response(500, "internal_error", "internal error")
    path = request.url.path[:ECHO_PATH_CHARS]
    status = exc.status_code
    if status == 404:
        message = f"nothing at {path}; the API is described at /docs"
    elif status == 405:
        allowed = (exc.headers or {}).get("Allow", "GET")
        message = f"{request.method} is not allowed on {path} (allowed: {allowed})"
    else:
        message = str(exc.detail)
    response = error_response(status, http_error_code(status), message)
    response.headers.update(exc.headers or {})
    return response


def tick_response(tick: Tick) -> Response:
    # The tick's own encoding: exact decimals, the same bytes the streams send.
    return Response(tick.encode(), media_type="application/json")


def ticks_response(ticks: list[Tick]) -> Response:
    return Response(
        b"[" + b",".join(t.encode() for t in ticks) + b"]", media_type="application/json"
    )


class TickcastApp:
    """The ASGI app. ``/ws`` goes straight to its endpoint; everything else to FastAPI.

    A WebSocket lives for hours, and whatever the app's call chain holds stays alive with
    it: FastAPI's middleware, routing and exit stacks cost about 15 KB per connection.
    Dispatching ``/ws`` here, before all of that, keeps a connection's footprint small.
    """

    def __init__(self, api: FastAPI, edge: Edge, guard: HandshakeGuard) -> None:
        self.api = api
        self.edge = edge
        self.guard = guard  # the request-head limits the server's HTTP protocol applies
        self.state = api.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await websocket_endpoint(WebSocket(scope, receive, send), self.edge)
            return
        await self.api(scope, receive, send)


def create_app(settings: Settings, node: Node | None = None) -> TickcastApp:
    """Build the app for ``settings``; the node starts and stops with the app's lifespan."""
    node = node if node is not None else Node(settings)
    edge = Edge(settings, node, node.served)
    guard = edge.guard
    metrics = Metrics(node, edge)
    edge.on_fanout = lambda tick, seconds: metrics.observe_fanout(tick, seconds, wall_ms())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await node.start()
        await edge.start()
        try:
            yield
        finally:
            await edge.stop()
            await node.stop()
            # Here rather than after the server returns: uvicorn re-raises SIGTERM then.
            flush_rate_limits()

    # Swagger UI and ReDoc from the installed package's files, not a CDN: /docs works offline.
    app = FastAPIOffline(
        title="tickcast",
        version=__version__,
        description=description(),
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        # Validation errors use the common error body (see _validation_error).
        responses=VALIDATION,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.state.node = node
    app.state.edge = edge
    app.state.settings = settings
    if settings.jwt_rest:
        app.add_middleware(ReadGuard, access=edge.access)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET"],
        allow_headers=["*"],
    )
    served = node.served.symbol_set
    app.include_router(market_routes(settings, node, edge.served))

    def latest_response(symbol: str) -> Response:
        symbol = symbol.upper()
        if symbol not in served:
            return error_response(
                404, "unknown_symbol", f"symbol {symbol!r} is not served here; see /symbols"
            )
        tick = node.hub.latest(symbol)
        if not isinstance(tick, Tick):
            return error_response(503, "no_data", f"no data for {symbol} yet; retry shortly")
        return tick_response(tick)

    @app.get(
        "/price",
        summary="Latest tick of one symbol",
        responses={**ONE_TICK, **UNKNOWN_SYMBOL, **NO_DATA},
    )
    async def price(symbol: str = "BTCUSDT") -> Response:
        return latest_response(symbol)

    prices_of = Prices(lambda: node.served.symbols, node.hub.latest, node.hub.history)

    @app.get("/prices", summary="Latest tick of every symbol", responses={**TICKS, **NO_DATA})
    async def prices() -> Response:
        body = prices_of.prices()
        if body is None:
            return error_response(503, "no_data", "no data yet; retry shortly")
        return Response(body, media_type="application/json")

    @app.get(
        "/prices/{symbol}",
        summary="Latest tick of one symbol",
        responses={**ONE_TICK, **UNKNOWN_SYMBOL, **NO_DATA},
    )
    async def price_of(symbol: str) -> Response:
        return latest_response(symbol)

    @app.get("/symbols", summary="Symbols served, and the decimals of each one's prices")
    async def symbols() -> dict[str, object]:
        # Learned from the prices held (see price_decimals): clients show every price of
        # a symbol with as many decimals from its first tick on.
        return {"symbols": list(node.served.symbols), "price_decimals": prices_of.decimals()}

    # The annotation names nothing local: with postponed annotations FastAPI resolves it
    # in the module's globals, where ``settings`` is not (a per-app bound is applied below).
    @app.get(
        "/history/{symbol}",
        summary="Recent ticks of one symbol, oldest first",
        responses={**TICKS, **UNKNOWN_SYMBOL},
    )
    async def history(symbol: str, limit: Annotated[int, Query(ge=1)] = 100) -> Response:
        symbol = symbol.upper()
        if symbol not in served:
            return error_response(404, "unknown_symbol", f"{symbol} is not served here")
        held = node.hub.history(symbol, min(limit, settings.history_size))
        return ticks_response(ticks_of(held))

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, object]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: fresh data and a connected hub", responses=READY)
    async def readyz() -> JSONResponse:
        ok, reason = node.ready()
        return JSONResponse({"ready": ok, "reason": reason}, status_code=200 if ok else 503)

    @app.get(
        "/status",
        summary="Upstream, source, hub, node and client state",
        responses=UNAUTHORIZED,
    )
    async def status(request: Request) -> Response:
        denial = edge.admit_token(client_request(request))
        if denial is not None:
            return error_response(denial.status, denial.code, denial.message)
        body = {
            "version": __version__,
            **node.status(),
            "edge": {**edge.status(), "handshakes": guard.status()},
            "process": process_status(),
        }
        return JSONResponse(body)

    @app.get("/metrics", summary="Prometheus metrics", responses=METRICS)
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/sse",
        summary="Server-Sent Events: ticks as unnamed events with an id; resume with Last-Event-ID",
        response_class=EventStream,
        responses={**EVENT_STREAM, **UNAUTHORIZED, **UNKNOWN_SYMBOL},
        # EventStream's constructor has no status_code for FastAPI to read it from; the
        # OpenAPI schema (and so /docs) fails to build without it.
        status_code=200,
    )
    async def sse(
        request: Request,
        symbols: str | None = None,
        streams: str | None = None,
        throttle_ms: Annotated[float, Query(ge=0, le=MAX_THROTTLE_MS)] = 0.0,
        last_event_id: str | None = None,
    ) -> Response:
        client = client_request(request)
        admission = edge.admission(client)
        if (denial := admission.denial) is not None:
            return JSONResponse(denial.body(), status_code=denial.status)
        asked = parse_symbols(symbols, streams)
        names = settings.named_symbols if asked is None else asked
        # SPEC §6's partial subscribe, as on /ws: the served symbols stream and the others
        # are reported in an ``event: error``; only a request serving nothing is refused.
        # So are the streams the token does not allow (SPEC §10), except that no names
        # asked means those the token allows.
        wanted, unknown = resolve(names, edge.served)
        grant, forbidden = admission.grant, list[str]()
        if grant is not None and grant.scope is not None:
            wanted, forbidden = grant.scope.split(wanted)
            forbidden = forbidden if asked is not None else []
        if forbidden and not wanted:
            edge.access.refused["forbidden_stream"] += 1
            message = "your token allows none of these streams"
            body = {"error": "forbidden", "reason": "forbidden_stream", "message": message}
            return JSONResponse(body, status_code=403)
        if unknown and not wanted:
            listed = ", ".join(unknown)
            if all("@" in n or n.startswith("!") for n in unknown):
                message = f"none of these streams is served here: {listed}; see /streams"
                return error_response(404, "unknown_stream", message)
            message = f"none of these symbols is served here: {listed}; see /symbols"
            return error_response(404, "unknown_symbol", message)
        limit = settings.max_subscriptions
        if grant is not None:
            limit = grant.subscription_limit(limit)
        if asked is not None and len(wanted) > limit:
            return error_response(
                400, "too_many_subscriptions", f"at most {limit} streams per client"
            )
        resume = parse_last_event_id(request.headers.get("last-event-id") or last_event_id)
        return EventStream(
            edge, client, wanted, resume, max(0.0, throttle_ms), unknown, forbidden, admission
        )

    # A WebSocket upgrade of /ws never gets here (TickcastApp sends it to its endpoint):
    # this is a plain HTTP request of it, a client that forgot to upgrade.
    @app.get("/ws", include_in_schema=False)
    async def ws_without_upgrade() -> JSONResponse:
        response = error_response(
            426,
            "upgrade_required",
            "/ws is a WebSocket endpoint: connect with a WebSocket client "
            "(ws://HOST:PORT/ws), or read /sse or /price over plain HTTP",
        )
        response.headers["Upgrade"] = "websocket"
        return response

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    # Only these named files of the static folder: no request path reaches the filesystem.
    for name, media_type in STATIC_FILES.items():
        app.add_api_route(
            f"/{name}", _static_route(name, media_type), include_in_schema=False, methods=["GET"]
        )

    return TickcastApp(app, edge, guard)


def _static_route(name: str, media_type: str) -> Callable[[], Awaitable[FileResponse]]:
    async def serve() -> FileResponse:
        return FileResponse(STATIC_DIR / name, media_type=media_type)

    return serve
