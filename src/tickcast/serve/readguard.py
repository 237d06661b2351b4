"""``TICKCAST_JWT_REST``: REST reads of market data need a token, one that allows what
they read (SPEC §10). Health, metrics, the docs and the dashboard's files stay open;
``/status`` keeps its own check (``TICKCAST_TOKEN``)."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tickcast.edge.access import Access
from tickcast.edge.ws import client_request

# REST reads of market data (``TICKCAST_JWT_REST``), by their first path segment.
READ_PATHS = frozenset(
    {"price", "prices", "symbols", "streams", "history", "trades", "klines", "book"}
)
# What each reads of one symbol, as a stream key; ``{}`` is the symbol.
READ_STREAMS = {
    "prices": "{}",
    "history": "{}",
    "trades": "{}@trades",
    "book": "{}@book",
}


def read_stream(path: str, query: str) -> tuple[bool, str | None]:
    """Whether ``path`` is a REST read of market data, and the stream it reads (None: a
    listing of what is served). ``/prices`` reads every ticker: ``*``, which only a token
    allowing every ticker (``*@ticker``, or no ``streams`` claim) allows."""
    parts = path.strip("/").split("/")
    if parts[0] not in READ_PATHS or len(parts) > 2:
        return False, None
    params = parse_qs(query)
    if parts[0] == "price":
        return True, params.get("symbol", ["BTCUSDT"])[0].upper()
    if len(parts) == 1:
        return True, "*" if parts[0] == "prices" else None
    symbol = parts[1].upper()
    if parts[0] == "klines":
        return True, f"{symbol}@kline_{params.get('interval', ['1m'])[0]}"
    template = READ_STREAMS.get(parts[0])
    return True, None if template is None else template.format(symbol)


class ReadGuard:
    """``TICKCAST_JWT_REST``: a REST read of market data needs a token that allows what
    it reads. Plain ASGI, inside the CORS middleware (a browser can read the 401)."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            request = Request(scope)
            is_read, stream = read_stream(request.url.path, request.url.query)
            if is_read:
                client = client_request(request)
                denial = self.access.admit_read(client.authorization, client.token_param, stream)
                if denial is not None:
                    response = JSONResponse(denial.body(), status_code=denial.status)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
