"""The upstream's REST market data: Binance's ``GET /api/v3/klines``, for candle history,
``GET /api/v3/aggTrades``, for the trades a connection did not deliver, and
``GET /api/v3/depth``, the snapshots a local order book starts from.

``parse_kline_row``, ``parse_klines``, ``parse_agg_trades`` and ``parse_depth`` are pure
and strict: a row that is not a candle (a trade, a price level) makes the whole answer a
``bad_answer``, never one with a made-up value. ``RestClient``
is the thin driver over one reused ``httpx.AsyncClient``; every way a request can fail
comes back as a ``RestError`` whose ``kind`` names it, with the server's ``Retry-After``
when it gave one. Whether and when to try again is the caller's (see ``RetryPacer``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from types import TracebackType
from typing import Final

import httpx
import orjson

from tickcast.messages.book import BookSnapshot, Levels
from tickcast.messages.decimals import canonical_decimal
from tickcast.messages.kline import check_kline
from tickcast.messages.trade import check_trade, taker_side
from tickcast.upstream.listing import Listing, parse_exchange_info
from tickcast.upstream.normalize import MAX_DECIMAL_LENGTH, TradeEvent

# Binance answers at most 1000 candles (or aggregate trades) per request.
MAX_KLINES_PER_REQUEST: Final = 1000
MAX_TRADES_PER_REQUEST: Final = 1000
DEFAULT_TIMEOUT: Final = 10.0
# ``GET /api/v3/depth``: the weight by the largest limit it covers (Binance's since
# 2023-10-19), and the most levels a side it answers.
DEPTH_WEIGHTS: Final = ((100, 5), (500, 25), (1000, 50), (5000, 250))
MAX_DEPTH_LIMIT: Final = 5000
WEIGHT_HEADER: Final = "X-MBX-USED-WEIGHT-1m"
# How much of an answer that was no candle list goes into the error (and the log).
_SAMPLE: Final = 200


class RestErrorKind(StrEnum):
    """Why a REST request failed."""

    TIMEOUT = "timeout"  # no answer (or no connection) within the timeout
    CONNECT = "connect"  # refused, no route, the name did not resolve
    NETWORK = "network"  # the connection broke before a whole answer came
    HTTP_429 = "http_429"  # over the weight budget: wait Retry-After
    HTTP_418 = "http_418"  # banned for ignoring 429s: wait Retry-After
    HTTP_5XX = "http_5xx"
    HTTP_4XX = "http_4xx"
    HTTP_OTHER = "http_other"  # a redirect or anything else but 200
    NOT_JSON = "not_json"
    BAD_ANSWER = "bad_answer"  # JSON, but not the candles asked for


class RestError(Exception):
    """A failed REST request: ``kind`` names why, ``message`` says what came back, and
    ``retry_after`` is the server's ``Retry-After`` in seconds, when it gave one."""

    def __init__(self, kind: RestErrorKind, message: str, retry_after: float | None = None):
        super().__init__(f"{kind.value}: {message}")
        self.kind = kind
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RestKline:
    """One candle of ``GET /api/v3/klines``; decimals are canonical strings."""

    symbol: str
    interval: str
    open_time: int
    close_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trades: int
    taker_buy_volume: str
    taker_buy_quote: str


def parse_kline_row(symbol: str, interval: str, row: object) -> RestKline:
    """One row of Binance's klines answer. Raises ``ValueError`` naming what makes it no
    candle. The row (Binance's docs)::

        [1499040000000,      // Kline open time
         "0.01634790",       // Open price
         "0.80000000",       // High price
         "0.01575800",       // Low price
         "0.01577100",       // Close price
         "148976.11427815",  // Volume
         1499644799999,      // Kline close time
         "2434.19055334",    // Quote asset volume
         308,                // Number of trades
         "1756.87402397",    // Taker buy base asset volume
         "28.46694368",      // Taker buy quote asset volume
         "0"]                // Unused field, ignore.
    """
    if not isinstance(row, list) or len(row) != 12:
        raise ValueError(f"a kline row is a list of 12 values, got {_sample(row)}")
    kline = RestKline(
        symbol=symbol,
        interval=interval,
        open_time=_int(row, 0, "open time"),
        close_time=_int(row, 6, "close time"),
        open=_decimal(row, 1, "open"),
        high=_decimal(row, 2, "high"),
        low=_decimal(row, 3, "low"),
        close=_decimal(row, 4, "close"),
        volume=_decimal(row, 5, "volume"),
        quote_volume=_decimal(row, 7, "quote volume"),
        trades=_int(row, 8, "trades"),
        taker_buy_volume=_decimal(row, 9, "taker buy volume"),
        taker_buy_quote=_decimal(row, 10, "taker buy quote volume"),
    )
    check_kline(kline)
    for name in ("taker_buy_volume", "taker_buy_quote"):
        if getattr(kline, name).startswith("-"):
            raise ValueError(f"{name} {getattr(kline, name)} is negative")
    return kline


def parse_klines(
    symbol: str, interval: str, body: object, *, limit: int, end_ms: int | None = None
) -> list[RestKline]:
    """Every row of a klines answer, oldest first. Raises ``ValueError`` when the answer
    is not at most ``limit`` candles in increasing open time, none opened after ``end_ms``."""
    if not isinstance(body, list):
        raise ValueError(f"a klines answer is a list, got {_sample(body)}")
    if len(body) > limit:
        raise ValueError(f"{len(body)} candles answered, {limit} asked for")
    klines = [parse_kline_row(symbol, interval, row) for row in body]
    for before, after in itertools.pairwise(klines):
        if after.open_time <= before.open_time:
            raise ValueError(f"open time {after.open_time} follows {before.open_time}")
    if end_ms is not None and klines and klines[-1].open_time > end_ms:
        raise ValueError(f"open time {klines[-1].open_time} is after endTime {end_ms}")
    return klines


def parse_agg_trades(symbol: str, body: object, *, from_id: int, limit: int) -> list[TradeEvent]:
    """Binance's aggregate trades answer (``[{"a":26129,"p":"0.01633102","q":"4.70443515",
    "f":27781,"l":27781,"T":1498793709153,"m":true,"M":true}, ...]``) as trade events,
    checked: ids consecutive from ``from_id``, at most ``limit``, prices and quantities
    positive decimals. ``ValueError`` names what is wrong."""
    if not isinstance(body, list):
        raise ValueError(f"expected a list of trades, got {_sample(body)}")
    if len(body) > limit:
        raise ValueError(f"{len(body)} trades for a limit of {limit}")
    out: list[TradeEvent] = []
    for index, row in enumerate(body):
        if not isinstance(row, dict):
            raise ValueError(f"trade {index} is not an object: {_sample(row)}")
        trade_id, time_ms, maker = row.get("a"), row.get("T"), row.get("m")
        if not isinstance(trade_id, int) or isinstance(trade_id, bool):
            raise ValueError(f"trade {index}: id is not an integer: {_sample(trade_id)}")
        if trade_id != from_id + index:
            raise ValueError(f"trade {index}: id {trade_id}, expected {from_id + index}")
        if not isinstance(time_ms, int) or isinstance(time_ms, bool) or time_ms < 0:
            raise ValueError(f"trade {trade_id}: time is not a time: {_sample(time_ms)}")
        if not isinstance(maker, bool):
            raise ValueError(f"trade {trade_id}: m is not a boolean: {_sample(maker)}")
        price, qty = row.get("p"), row.get("q")
        if not isinstance(price, str) or not isinstance(qty, str):
            raise ValueError(f"trade {trade_id}: price or quantity is not a decimal string")
        if max(len(price), len(qty)) > MAX_DECIMAL_LENGTH:
            raise ValueError(f"trade {trade_id}: price or quantity too long")
        price, qty, side = canonical_decimal(price), canonical_decimal(qty), taker_side(maker)
        check_trade(price, qty, side)
        out.append(TradeEvent(symbol, trade_id, price, qty, side, time_ms, time_ms))
    return out


def depth_weight(limit: int) -> int:
    """The request weight of ``GET /api/v3/depth?limit=`` (5, 25, 50 or 250)."""
    if not 1 <= limit <= MAX_DEPTH_LIMIT:
        raise ValueError(f"depth limit {limit} is not 1..{MAX_DEPTH_LIMIT}")
    return next(weight for top, weight in DEPTH_WEIGHTS if limit <= top)


def parse_depth(symbol: str, body: object, *, limit: int) -> BookSnapshot:
    """Binance's depth answer (``{"lastUpdateId":1027024,"bids":[["4.00000000",
    "431.00000000"]],"asks":[["4.00000200","12.00000000"]]}``) as a snapshot, checked:
    an update id, at most ``limit`` levels a side, each a pair of decimal strings with a
    positive price and quantity, bids strictly descending and asks strictly ascending, not
    crossed. ``ValueError`` names what is wrong."""
    if not isinstance(body, dict):
        raise ValueError(f"a depth answer is an object, got {_sample(body)}")
    last_id = body.get("lastUpdateId")
    if not isinstance(last_id, int) or isinstance(last_id, bool) or last_id < 0:
        raise ValueError(f"lastUpdateId is not an update id: {_sample(last_id)}")
    bids = _depth_side(body.get("bids"), "bids", limit)
    asks = _depth_side(body.get("asks"), "asks", limit)
    # positive, no price twice; a side as long as the limit may go on beyond it
    snapshot = BookSnapshot(symbol, last_id, bids, asks, len(bids) < limit, len(asks) < limit)
    prices = [Decimal(p) for p, _ in bids], [Decimal(p) for p, _ in asks]
    if any(a <= b for a, b in itertools.pairwise(prices[0])):
        raise ValueError("bids are not in descending price order")
    if any(a >= b for a, b in itertools.pairwise(prices[1])):
        raise ValueError("asks are not in ascending price order")
    if prices[0] and prices[1] and prices[0][0] >= prices[1][0]:
        raise ValueError(f"crossed: best bid {bids[0][0]} >= best ask {asks[0][0]}")
    return snapshot


def _depth_side(rows: object, name: str, limit: int) -> Levels:
    if not isinstance(rows, list):
        raise ValueError(f"{name} is not a list of levels: {_sample(rows)}")
    if len(rows) > limit:
        raise ValueError(f"{len(rows)} {name} answered for a limit of {limit}")
    levels: list[tuple[str, str]] = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 2:
            raise ValueError(f"a level of {name} is not a [price, qty] pair: {_sample(row)}")
        levels.append((_decimal(row, 0, f"{name} price"), _decimal(row, 1, f"{name} qty")))
    return tuple(levels)


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds; None when absent or not a number of seconds (the
    HTTP-date form, which Binance does not send)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def error_of_status(status: int, body: bytes, wait: float | None) -> RestError:
    """The error of an answer with ``status`` other than 200."""
    if status == 429:
        kind = RestErrorKind.HTTP_429
    elif status == 418:
        kind = RestErrorKind.HTTP_418
    elif 500 <= status <= 599:
        kind = RestErrorKind.HTTP_5XX
    elif 400 <= status <= 499:
        kind = RestErrorKind.HTTP_4XX
    else:
        kind = RestErrorKind.HTTP_OTHER
    return RestError(kind, f"HTTP {status}: {_sample(body)}", wait)


class RestClient:
    """Binance's market-data REST, over one HTTP client reused for every request.

    ``used_weight`` is the last ``X-MBX-USED-WEIGHT-1m`` the server reported: how much of
    its per-minute budget this address has spent.
    """

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        # One timeout for connecting, each read and the pool: a server that accepts and
        # never answers costs ``timeout``, not for ever.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False
        )
        self.used_weight: int | None = None

    async def klines(
        self, base_url: str, symbol: str, interval: str, *, limit: int, end_ms: int | None = None
    ) -> list[RestKline]:
        """At most ``limit`` candles of ``symbol`` at ``interval`` (the newest, or the newest
        opened at or before ``end_ms``), oldest first. Raises ``RestError``."""
        if not 1 <= limit <= MAX_KLINES_PER_REQUEST:
            raise ValueError(f"limit {limit} is not 1..{MAX_KLINES_PER_REQUEST}")
        params: dict[str, str | int] = {"symbol": symbol, "interval": interval, "limit": limit}
        if end_ms is not None:
            params["endTime"] = end_ms
        body = await self._get(f"{base_url}/api/v3/klines", params)
        try:
            return parse_klines(symbol, interval, body, limit=limit, end_ms=end_ms)
        except ValueError as exc:
            raise RestError(RestErrorKind.BAD_ANSWER, str(exc)) from exc

    async def agg_trades(
        self, base_url: str, symbol: str, *, from_id: int, limit: int
    ) -> list[TradeEvent]:
        """At most ``limit`` aggregate trades of ``symbol`` from the id ``from_id`` on,
        oldest first (fewer when the exchange has no more yet). Raises ``RestError``."""
        if not 1 <= limit <= MAX_TRADES_PER_REQUEST:
            raise ValueError(f"limit {limit} is not 1..{MAX_TRADES_PER_REQUEST}")
        params: dict[str, str | int] = {"symbol": symbol, "fromId": from_id, "limit": limit}
        body = await self._get(f"{base_url}/api/v3/aggTrades", params)
        try:
            return parse_agg_trades(symbol, body, from_id=from_id, limit=limit)
        except ValueError as exc:
            raise RestError(RestErrorKind.BAD_ANSWER, str(exc)) from exc

    async def depth(self, base_url: str, symbol: str, *, limit: int) -> BookSnapshot:
        """A snapshot of ``symbol``'s book, at most ``limit`` levels a side (its weight:
        ``depth_weight(limit)``). Raises ``RestError``."""
        depth_weight(limit)  # the limit's check
        params: dict[str, str | int] = {"symbol": symbol, "limit": limit}
        body = await self._get(f"{base_url}/api/v3/depth", params)
        try:
            return parse_depth(symbol, body, limit=limit)
        except ValueError as exc:
            raise RestError(RestErrorKind.BAD_ANSWER, str(exc)) from exc

    async def exchange_info(self, base_url: str, quote_assets: Iterable[str] = ()) -> Listing:
        """The symbols the exchange lists as trading (weight 20), narrowed to
        ``quote_assets``. Raises ``RestError`` (``bad_answer`` for one that is no listing:
        keep the last good one)."""
        body = await self._get(f"{base_url}/api/v3/exchangeInfo", {})
        try:
            return parse_exchange_info(body, quote_assets)
        except ValueError as exc:
            raise RestError(RestErrorKind.BAD_ANSWER, str(exc)) from exc

    async def _get(self, url: str, params: dict[str, str | int]) -> object:
        try:
            answer = await self._http.get(url, params=params)
        except httpx.TimeoutException as exc:
            raise RestError(RestErrorKind.TIMEOUT, _describe(exc)) from exc
        except httpx.ConnectError as exc:
            raise RestError(RestErrorKind.CONNECT, _describe(exc)) from exc
        except httpx.TransportError as exc:
            raise RestError(RestErrorKind.NETWORK, _describe(exc)) from exc
        self._note_weight(answer.headers.get(WEIGHT_HEADER))
        if answer.status_code != 200:
            wait = retry_after(answer.headers.get("Retry-After"))
            raise error_of_status(answer.status_code, answer.content, wait)
        try:
            return orjson.loads(answer.content)
        except orjson.JSONDecodeError as exc:
            raise RestError(RestErrorKind.NOT_JSON, _sample(answer.content)) from exc

    def _note_weight(self, value: str | None) -> None:
        if value is not None and value.isascii() and value.isdigit():
            self.used_weight = int(value)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _int(row: list[object], index: int, name: str) -> int:
    value = row[index]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} is not an integer: {_sample(value)}")
    return value


def _decimal(row: list[object], index: int, name: str) -> str:
    value = row[index]
    if not isinstance(value, str) or len(value) > MAX_DECIMAL_LENGTH:
        raise ValueError(f"{name} is not a decimal string: {_sample(value)}")
    return canonical_decimal(value)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _sample(value: object) -> str:
    if isinstance(value, bytes):
        return repr(value[:_SAMPLE].decode("utf-8", "replace"))
    return repr(value)[:_SAMPLE]
