"""The simulated exchange's REST market data, as Binance serves it: no I/O.

``RestApi.answer`` takes a request line's method and target and the client's address, and
returns the status, headers and JSON body of Binance's answer: ``/api/v3/ping``,
``/api/v3/time``, ``/api/v3/exchangeInfo`` (the market's listings, see ``listings``),
``/api/v3/klines``, ``/api/v3/aggTrades`` and ``/api/v3/depth`` (the true book, see
``book``), with Binance's request weights, the
``X-MBX-USED-WEIGHT-1m`` header on every answer, and over the budget a 429 with
``Retry-After`` (seconds to the next minute; a test may shorten that window). A client
that keeps asking while told to wait is answered 418, as Binance bans an address that
ignores its 429s. Two fault windows (``refuse``) stand for an exchange in trouble: every
request answered 429 with ``Retry-After``, or 503.

Errors use Binance's body, ``{"code": -1121, "msg": "Invalid symbol."}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import orjson

from tickcast.sim.candles import CandleBook
from tickcast.sim.depth import snapshot_payload
from tickcast.sim.market import KLINE_INTERVALS_MS, Market
from tickcast.sim.tape import TradeTape

WEIGHT_LIMIT_1M: Final = 6000
_WEIGHTS: Final = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/klines": 2,
    "/api/v3/aggTrades": 4,
    "/api/v3/depth": 5,  # at the default limit; see _depth_weight
}
_DEPTH_DEFAULT_LIMIT: Final = 100
_DEPTH_MAX_LIMIT: Final = 5000
# Weight by the largest limit it covers (Binance's since 2023-10-19).
_DEPTH_WEIGHTS: Final = ((100, 5), (500, 25), (1000, 50), (_DEPTH_MAX_LIMIT, 250))
_TRADES_DEFAULT_LIMIT: Final = 500
_KLINES_DEFAULT_LIMIT: Final = 500
_KLINES_MAX_LIMIT: Final = 1000
# 429s ignored before an address is answered 418, and how long that lasts.
_IGNORED_429S_BEFORE_BAN: Final = 5
_BAN_SECONDS: Final = 120


@dataclass(frozen=True, slots=True)
class RestAnswer:
    """An HTTP answer: status, extra headers, JSON body."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class _Refused(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


@dataclass(slots=True)
class _Budget:
    """One address's weight in the current minute, and its ban if it ignored 429s."""

    minute: int = -1
    used: int = 0
    ignored_429s: int = 0
    banned_until_ms: int = 0
    counts: dict[str, int] = field(default_factory=dict)


class RestApi:
    """Binance's market-data REST over the simulator's market and candles."""

    def __init__(
        self,
        market: Market,
        candles: CandleBook,
        now_ms: Callable[[], int],
        weight_limit: int = WEIGHT_LIMIT_1M,
        window_ms: int = 60_000,
        tape: TradeTape | None = None,
    ) -> None:
        self._market = market
        self._candles = candles
        self._tape = tape or TradeTape()
        self._now_ms = now_ms
        self._limit = weight_limit
        self._window = window_ms
        self._budgets: dict[str, _Budget] = {}
        self._throttled_until = 0
        self._down_until = 0
        self.requests: dict[str, int] = {}
        # Depth snapshots answered, by symbol: how often each book was (re)synced.
        self.depth_snapshots: dict[str, int] = {}

    def refuse(self, status: int, until_ms: int) -> None:
        """Answer every request 429 (with ``Retry-After``) or 503 until ``until_ms``."""
        if status == 429:
            self._throttled_until = max(self._throttled_until, until_ms)
        elif status == 503:
            self._down_until = max(self._down_until, until_ms)
        else:
            raise ValueError(f"refuse with 429 or 503, not {status}")

    def end_refusals(self) -> None:
        """End the 429 and 503 windows now."""
        self._throttled_until = self._down_until = 0

    def answer(self, method: str, target: str, client: str) -> RestAnswer:
        """The answer to ``method target`` from ``client`` (an address)."""
        now = self._now_ms()
        parts = urlsplit(target)
        weight = _WEIGHTS.get(parts.path)
        if weight is None:
            return _error(404, -1000, f"Unknown endpoint {parts.path[:60]!r}.", ())
        if method not in ("GET", "HEAD"):
            return _error(405, -1000, f"Use GET for {parts.path}.", ())
        query = dict(parse_qsl(parts.query))
        if parts.path == "/api/v3/depth":
            weight = _depth_weight(query)
        if now < self._down_until:
            return _error(503, -1001, "Internal error; unable to process your request.", ())
        budget = self._budget(client, now)
        retry_after = math.ceil((self._window - now % self._window) / 1000)
        if now < self._throttled_until:
            retry_after = math.ceil((self._throttled_until - now) / 1000)
        if budget.banned_until_ms > now:
            wait = math.ceil((budget.banned_until_ms - now) / 1000)
            return _error(418, -1003, f"Way too many requests; IP banned for {wait} s.", (
                ("Retry-After", str(wait)),
                ("X-MBX-USED-WEIGHT-1m", str(budget.used)),
            ))  # fmt: skip
        if budget.used + weight > self._limit or now < self._throttled_until:
            budget.ignored_429s += 1
            if budget.ignored_429s > _IGNORED_429S_BEFORE_BAN:
                budget.banned_until_ms = now + _BAN_SECONDS * 1000
            return _error(429, -1003, "Too much request weight used; please use Retry-After.", (
                ("Retry-After", str(retry_after)),
                ("X-MBX-USED-WEIGHT-1m", str(budget.used)),
            ))  # fmt: skip
        budget.used += weight
        self.requests[parts.path] = self.requests.get(parts.path, 0) + 1
        headers = (("X-MBX-USED-WEIGHT-1m", str(budget.used)),)
        try:
            body = self._route(parts.path, query, now)
        except _Refused as refused:
            return _error(refused.status, refused.code, refused.msg, headers)
        return RestAnswer(200, orjson.dumps(body), headers)

    def used_weight(self, client: str) -> int:
        """The weight ``client`` used in the current minute."""
        return self._budget(client, self._now_ms()).used

    def _budget(self, client: str, now: int) -> _Budget:
        budget = self._budgets.setdefault(client, _Budget())
        minute = now // self._window
        if budget.minute != minute:
            budget.minute, budget.used = minute, 0
            if budget.banned_until_ms <= now:
                budget.ignored_429s = 0
        return budget

    def _route(self, path: str, query: Mapping[str, str], now: int) -> object:
        if path == "/api/v3/ping":
            return {}
        if path == "/api/v3/time":
            return {"serverTime": now}
        if path == "/api/v3/exchangeInfo":
            # Encoded by the listings, which keep it between changes (and can spoil it).
            return orjson.Fragment(self._market.listings.exchange_info(now, self._limit))
        if path == "/api/v3/aggTrades":
            return self._agg_trades(query)
        if path == "/api/v3/depth":
            return self._depth(query)
        return self._klines(query, now)

    def _depth(self, query: Mapping[str, str]) -> dict[str, object]:
        symbol = self._known_symbol(query)
        limit = _int_param(query, "limit")
        limit = _DEPTH_DEFAULT_LIMIT if limit is None else limit
        if limit < 1:
            raise _Refused(400, -1130, "Data sent for parameter 'limit' is not valid.")
        self.depth_snapshots[symbol] = self.depth_snapshots.get(symbol, 0) + 1
        # Over the maximum, Binance answers the maximum rather than refuse.
        return snapshot_payload(self._market.book(symbol.lower()), min(limit, _DEPTH_MAX_LIMIT))

    def _known_symbol(self, query: Mapping[str, str]) -> str:
        symbol = query.get("symbol", "").upper()
        if not symbol:
            raise _Refused(400, -1102, _mandatory("symbol"))
        if self._market.listings.get(symbol) is None:
            raise _Refused(400, -1121, "Invalid symbol.")
        return symbol

    def _agg_trades(self, query: Mapping[str, str]) -> list[dict[str, object]]:
        symbol = self._known_symbol(query)
        limit = _int_param(query, "limit")
        limit = _TRADES_DEFAULT_LIMIT if limit is None else limit
        if not 1 <= limit <= _KLINES_MAX_LIMIT:
            raise _Refused(400, -1130, "Data sent for parameter 'limit' is not valid.")
        return self._tape.rows(symbol, _int_param(query, "fromId"), limit)

    def _klines(self, query: Mapping[str, str], now: int) -> list[list[object]]:
        symbol = query.get("symbol", "")
        interval = query.get("interval", "")
        if not symbol:
            raise _Refused(400, -1102, _mandatory("symbol"))
        if not interval:
            raise _Refused(400, -1102, _mandatory("interval"))
        if interval not in KLINE_INTERVALS_MS:
            raise _Refused(400, -1120, "Invalid interval.")
        symbol = symbol.upper()
        if self._market.listings.get(symbol) is None:
            raise _Refused(400, -1121, "Invalid symbol.")
        limit = _int_param(query, "limit")
        if limit is None:
            limit = _KLINES_DEFAULT_LIMIT
        if not 1 <= limit <= _KLINES_MAX_LIMIT:
            raise _Refused(400, -1130, "Data sent for parameter 'limit' is not valid.")
        start = _int_param(query, "startTime")
        end = _int_param(query, "endTime")
        if start is not None and end is not None and start > end:
            raise _Refused(400, -1128, "Combination of optional parameters invalid.")
        state = self._market.state(symbol.lower())
        series = self._candles.series(symbol, interval, state.tick, state.lot)
        if series.current is None:
            # Nothing traded here yet: the live part starts flat at the market's price.
            series.open_flat(now, state.last)
        series.advance_to(now)
        return [c.rest_row() for c in series.candles(limit, start, end)]


def _depth_weight(query: Mapping[str, str]) -> int:
    """The weight of a depth request by its limit; a malformed one costs the least, as
    it is refused before any work."""
    text = query.get("limit") or str(_DEPTH_DEFAULT_LIMIT)
    limit = int(text) if text.isascii() and text.isdigit() and len(text) <= 15 else 1
    return next((w for top, w in _DEPTH_WEIGHTS if limit <= top), _DEPTH_WEIGHTS[-1][1])


def _mandatory(name: str) -> str:
    return f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."


def _int_param(query: Mapping[str, str], name: str) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 15:
        raise _Refused(400, -1100, f"Illegal characters found in parameter '{name}'.")
    return int(text)


def _error(status: int, code: int, msg: str, headers: tuple[tuple[str, str], ...]) -> RestAnswer:
    return RestAnswer(status, orjson.dumps({"code": code, "msg": msg}), headers)
