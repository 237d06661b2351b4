"""REST of the streams beside the ticker (SPEC §12): ``/streams``, ``/trades``, ``/klines``,
``/book``.

Each answer is built from the messages' own encodings, the same bytes the streams send.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from tickcast.messages.book import Book
from tickcast.messages.kline import Kline
from tickcast.messages.stream import KlineInterval, stream_name
from tickcast.messages.trade import Trade
from tickcast.node import Node
from tickcast.serve.openapi import UNKNOWN_SYMBOL
from tickcast.settings import Settings

# Binance's own cap on one klines request; the history held may be longer.
MAX_KLINES = 1000
# Binance's cap on one depth request; a held book may know more levels (learned since).
MAX_BOOK_LEVELS = 5000


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _listing(messages: Iterable[Trade | Kline]) -> Response:
    body = b"[" + b",".join(m.encode() for m in messages) + b"]"
    return Response(body, media_type="application/json")


def market_routes(settings: Settings, node: Node, served: AbstractSet[str]) -> APIRouter:
    """The routes of ``/streams``, ``/trades/{symbol}`` and ``/klines/{symbol}``."""
    router = APIRouter()

    def not_carried(symbol: str, stream: str) -> JSONResponse:
        if symbol not in node.served:
            return _error(404, "unknown_symbol", f"{symbol} is not served here; see /symbols")
        return _error(404, "unknown_stream", f"{stream} is not served here; see /streams")

    @router.get("/streams", summary="Every stream served, by kind")
    async def streams() -> dict[str, object]:
        names = sorted(stream_name(k) for k in served)
        return {
            "streams": names,
            "kinds": ["ticker", *settings.stream_kinds],
            "kline_intervals": list(settings.carried_intervals),
            "stream_symbols": list(node.served.carried),
            "backfill": node.backfill_status(),
        }

    @router.get(
        "/trades/{symbol}",
        summary="Recent trades of one symbol, oldest first",
        responses=UNKNOWN_SYMBOL,
    )
    async def trades(symbol: str, limit: Annotated[int, Query(ge=1)] = 100) -> Response:
        symbol = symbol.upper()
        stream = f"{symbol}@trades"
        if stream not in served:
            return not_carried(symbol, stream)
        held = node.hub.history(stream, min(limit, settings.history_size))
        return _listing(m for m in held if isinstance(m, Trade))

    @router.get(
        "/klines/{symbol}",
        summary="Candles of one symbol, oldest first (Binance's klines, then the stream's)",
        responses=UNKNOWN_SYMBOL,
    )
    async def klines(
        symbol: str,
        interval: KlineInterval = KlineInterval.M1,
        limit: Annotated[int, Query(ge=1, le=MAX_KLINES)] = 500,
        start_ms: Annotated[int | None, Query(ge=0)] = None,
        end_ms: Annotated[int | None, Query(ge=0)] = None,
    ) -> Response:
        symbol = symbol.upper()
        stream = f"{symbol}@kline_{interval.value}"
        if stream not in served:
            return not_carried(symbol, stream)
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            return _error(422, "invalid_request", "end_ms is before start_ms")
        return _listing(node.candles.candles(symbol, interval.value, limit, start_ms, end_ms))

    @router.get(
        "/book/{symbol}",
        summary="The order book of one symbol: its best levels per side, at one update id",
        responses={
            **UNKNOWN_SYMBOL,
            503: {"description": "The book is not whole (syncing, or broken and resyncing)"},
        },
    )
    async def book(
        symbol: str, limit: Annotated[int, Query(ge=1, le=MAX_BOOK_LEVELS)] = 100
    ) -> Response:
        symbol = symbol.upper()
        stream = f"{symbol}@depth"
        if stream not in served:
            return not_carried(symbol, stream)
        books = node.hub.books()
        held = books.depth(symbol)
        if held is None:
            state = books.state(symbol)
            status = books.status(symbol)
            reason = f" ({status.reason}: {status.detail})" if status is not None else ""
            return JSONResponse(
                {
                    "error": f"book_{state}",
                    "state": state,
                    "message": f"the {symbol} book is {state}{reason}; nothing is served "
                    "from it until it is whole",
                },
                status_code=503,
                headers={"Retry-After": "1"},
            )
        if len(held.bids) > limit or len(held.asks) > limit:
            held = Book(
                symbol=held.symbol,
                update_id=held.update_id,
                bids=held.bids[:limit],
                asks=held.asks[:limit],
                timestamp_ms=held.timestamp_ms,
                seq=held.seq,
                source=held.source,
                kind="depth",
                checked=False,
            )
        return Response(held.encode(), media_type="application/json")

    return router
