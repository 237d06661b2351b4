"""Binance frames -> normalized events. Pure functions, no I/O.

A frame is one WebSocket text message from a Binance market-data stream, raw
(``{"e":"24hrTicker",...}``) or combined (``{"stream":"btcusdt@ticker","data":{...}}``).
A frame that does not parse raises ``ParseError`` naming its kind; ``Normalizer`` counts
those, logs one sample per kind, and skips them, so bad input never stops the feed. A failure
the parser did not foresee is skipped the same way, under the kind ``parser_error``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Final

import orjson

from tickcast.messages.book import DepthEvent, Levels
from tickcast.messages.decimals import canonical_decimal
from tickcast.messages.kline import check_kline
from tickcast.messages.trade import Side, check_trade, taker_side

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Update:
    """One market-data event for one symbol.

    ``order`` increases with each event of the same ``kind`` and symbol (event time, book
    update id, trade id); it is what deduplication across overlapping connections uses.
    ``history`` names the run of the exchange the event belongs to: orders are comparable
    only within one history (a restarted exchange starts its update ids over). The client
    gives each fresh connection a new one, and a rotation's replacement its predecessor's.
    """

    symbol: str
    kind: str
    order: int
    event_time_ms: int
    values: dict[str, str]
    history: int = 0


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """Binance's notice that this connection's server is about to go away."""

    event_time_ms: int


@dataclass(frozen=True, slots=True)
class ControlReply:
    """A reply to SUBSCRIBE and friends: ``{"result":..,"id":..}`` or an error."""

    id: object
    result: object = None
    error_code: int | None = None
    error_msg: str | None = None


@dataclass(frozen=True, slots=True)
class TradeEvent:
    """One aggregate trade (``@aggTrade``): ``side`` is the taker's; ``price`` and ``qty``
    are canonical positive decimals. ``history`` as in ``Update``."""

    symbol: str
    trade_id: int
    price: str
    qty: str
    side: Side
    trade_time_ms: int
    event_time_ms: int
    history: int = 0


@dataclass(frozen=True, slots=True)
class KlineEvent:
    """One update of a candle (``@kline_<interval>``), checked to be a candle (see
    ``check_kline``); ``closed`` is Binance's ``x``. ``history`` as in ``Update``."""

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
    closed: bool
    event_time_ms: int
    history: int = 0


# What a source hands on to its sink: market data, as opposed to the connection's own talk.
MarketEvent = Update | TradeEvent | KlineEvent | DepthEvent
Event = MarketEvent | ServerShutdown | ControlReply


class ParseError(ValueError):
    """A frame that is not a market-data event we understand; ``kind`` names why."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


# Binance field -> tick field, per event type. 24hrTicker:
#   {"e":"24hrTicker","E":1672515782136,"s":"BNBBTC","p":"0.0015","P":"250.00",
#    "w":"0.0018","x":"0.0009","c":"0.0025","Q":"10","b":"0.0024","B":"10","a":"0.0026",
#    "A":"100","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,
#    "C":86400000,"F":0,"L":18150,"n":18151}
_TICKER: Final = {
    "c": "last_price",
    "P": "change_percent",
    "p": "change",
    "o": "open",
    "h": "high",
    "l": "low",
    "v": "volume",
    "q": "quote_volume",
    "b": "bid",
    "a": "ask",
}
# 24hrMiniTicker: {"e":"24hrMiniTicker","E":..,"s":"BNBBTC","c":"0.0025","o":"0.0010",
#   "h":"0.0025","l":"0.0010","v":"10000","q":"18"}
_MINI: Final = {
    "c": "last_price",
    "o": "open",
    "h": "high",
    "l": "low",
    "v": "volume",
    "q": "quote_volume",
}
# bookTicker has no "e"/"E": {"u":400900217,"s":"BNBUSDT","b":"25.3519","B":"31.21",
#   "a":"25.3652","A":"40.66"}
_BOOK: Final = {"b": "bid", "a": "ask"}
# trade: {"e":"trade","E":..,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":..,"m":true}
_TRADE: Final = {"p": "last_price"}
# kline: {"e":"kline","E":..,"s":"BNBBTC","k":{"t":1672515780000,"T":1672515839999,
#   "s":"BNBBTC","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025",
#   "l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"0"}}
_KLINE: Final = {
    "o": "open",
    "h": "high",
    "l": "low",
    "c": "close",
    "v": "volume",
    "q": "quote_volume",
}

_PERCENT_QUANTUM: Final = Decimal("0.001")
# Binance's decimals are at most ~25 characters; anything much longer is garbage, and an
# unbounded length would let one frame cost unbounded arithmetic and JSON.
MAX_DECIMAL_LENGTH: Final = 40
# Enough digits that every sum and quotient of two accepted decimals is exact to the
# percent quantum: 40-character operands give at most ~85 digits. The default context (28
# digits) raised InvalidOperation on "c":"1e20","o":"1e-8", which once stopped the feed.
_EXACT: Final = Context(prec=200)
# An event time this far from our clock is not a clock skew but garbage (or microseconds):
# taken as an order it would make every later event of its symbol look like a duplicate.
MAX_EVENT_TIME_SKEW_MS: Final = 24 * 3600 * 1000


def parse_frame(frame: str | bytes, now_ms: Callable[[], int]) -> list[Event]:
    """Parse one upstream frame into events. Raises ``ParseError``."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ParseError("invalid_json", str(exc)) from exc
    if isinstance(obj, dict) and "stream" in obj and "data" in obj:
        obj = obj["data"]
    if isinstance(obj, list):
        return [_parse_event(item, now_ms) for item in obj]
    return [_parse_event(obj, now_ms)]


def _parse_event(obj: object, now_ms: Callable[[], int]) -> Event:
    if not isinstance(obj, dict):
        raise ParseError("not_object", f"expected a JSON object, got {type(obj).__name__}")
    event = obj.get("e")
    if event == "24hrTicker":
        return _update(
            obj, "ticker", _TICKER, order_key="E", event_time_ms=_event_time(obj, now_ms)
        )
    if event == "24hrMiniTicker":
        return _mini_update(obj, _event_time(obj, now_ms))
    if event == "trade":
        return _update(obj, "trade", _TRADE, order_key="t", event_time_ms=_event_time(obj, now_ms))
    if event == "aggTrade":
        return _trade_event(obj, _event_time(obj, now_ms))
    if event == "kline":
        return _kline_event(obj, _event_time(obj, now_ms))
    if event == "depthUpdate":
        return _depth_event(obj, _event_time(obj, now_ms))
    if event == "serverShutdown":
        return ServerShutdown(event_time_ms=_int(obj, "E"))
    if event is None:
        if "u" in obj and "b" in obj and "a" in obj and "s" in obj:
            return _update(obj, "bookTicker", _BOOK, order_key="u", event_time_ms=now_ms())
        if "id" in obj and ("result" in obj or "error" in obj):
            return _control(obj)
        if "code" in obj and "msg" in obj:
            return ControlReply(
                id=obj.get("id"), error_code=_int(obj, "code"), error_msg=str(obj["msg"])
            )
    raise ParseError("unknown_event", f"event type {event!r}")


def _update(
    obj: dict[str, object],
    kind: str,
    fields: dict[str, str],
    *,
    order_key: str,
    event_time_ms: int,
) -> Update:
    symbol = _symbol(obj)
    values = {name: _decimal(obj, key) for key, name in fields.items()}
    return Update(symbol, kind, _int(obj, order_key), event_time_ms, values)


def _trade_event(obj: dict[str, object], event_time_ms: int) -> TradeEvent:
    """``@aggTrade``: {"e":"aggTrade","E":..,"s":"BNBBTC","a":12345,"p":"0.001","q":"100",
    "f":100,"l":105,"T":..,"m":true,"M":true}; ``m`` (the buyer made the bid) is a sell."""
    maker = obj.get("m")
    if not isinstance(maker, bool):
        raise ParseError("bad_value", f"field 'm' is not a boolean: {maker!r}")
    price, qty = _decimal(obj, "p"), _decimal(obj, "q")
    side = taker_side(maker)
    try:
        check_trade(price, qty, side)
    except ValueError as exc:
        raise ParseError("invalid_trade", str(exc)) from exc
    return TradeEvent(_symbol(obj), _int(obj, "a"), price, qty, side, _int(obj, "T"), event_time_ms)


def _kline_event(obj: dict[str, object], event_time_ms: int) -> KlineEvent:
    k = obj.get("k")
    if not isinstance(k, dict):
        raise ParseError("missing_field", "field 'k' (the candle)")
    interval = k.get("i")
    if not isinstance(interval, str):
        raise ParseError("bad_value", f"interval {interval!r}")
    closed = k.get("x")
    if not isinstance(closed, bool):
        raise ParseError("bad_value", f"field 'x' is not a boolean: {closed!r}")
    values = {name: _decimal(k, key) for key, name in _KLINE.items()}
    event = KlineEvent(
        symbol=_symbol(obj),
        interval=interval,
        open_time=_int(k, "t"),
        close_time=_int(k, "T"),
        open=values["open"],
        high=values["high"],
        low=values["low"],
        close=values["close"],
        volume=values["volume"],
        quote_volume=values["quote_volume"],
        trades=_int(k, "n"),
        closed=closed,
        event_time_ms=event_time_ms,
    )
    try:
        check_kline(event)
    except ValueError as exc:
        raise ParseError("invalid_candle", str(exc)) from exc
    return event


def _depth_event(obj: dict[str, object], event_time_ms: int) -> DepthEvent:
    """``<symbol>@depth@100ms``: {"e":"depthUpdate","E":1672515782136,"s":"BNBBTC",
    "U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}; quantities are
    absolute, "0" removes the level. Anything that is no such diff (``U > u``, a level
    that is no pair of decimals, a price not positive or twice, a negative quantity) is
    ``invalid_depth``: applied, it would make the book wrong without a gap to show it."""
    symbol, first, last = _symbol(obj), _int(obj, "U"), _int(obj, "u")
    try:
        bids, asks = _depth_levels(obj, "b"), _depth_levels(obj, "a")
        return DepthEvent(symbol, first, last, bids, asks, event_time_ms)
    except ValueError as exc:
        raise ParseError("invalid_depth", str(exc)) from exc


def _depth_levels(obj: dict[str, object], key: str) -> Levels:
    rows = obj.get(key)
    if not isinstance(rows, list):
        raise ValueError(f"field {key!r} is not a list of levels: {str(rows)[:40]!r}")
    levels: list[tuple[str, str]] = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 2:
            raise ValueError(f"{key} level {str(row)[:40]!r} is not a [price, qty] pair")
        price, qty = row
        if not isinstance(price, str) or not isinstance(qty, str):
            raise ValueError(f"{key} level {str(row)[:40]!r} is not two decimal strings")
        if max(len(price), len(qty)) > MAX_DECIMAL_LENGTH:
            raise ValueError(f"{key} level is longer than {MAX_DECIMAL_LENGTH} characters")
        levels.append((canonical_decimal(price), canonical_decimal(qty)))
    return tuple(levels)


def _event_time(obj: dict[str, object], now_ms: Callable[[], int]) -> int:
    event_time = _int(obj, "E")
    if abs(event_time - now_ms()) > MAX_EVENT_TIME_SKEW_MS:
        raise ParseError("bad_value", f"event time {event_time} is more than a day from now")
    return event_time


def _mini_update(obj: dict[str, object], event_time_ms: int) -> Update:
    update = _update(obj, "miniTicker", _MINI, order_key="E", event_time_ms=event_time_ms)
    # The mini ticker carries no change fields; derive them exactly from close and open.
    close, open_ = Decimal(update.values["last_price"]), Decimal(update.values["open"])
    with localcontext(_EXACT):
        change = close - open_
        update.values["change"] = canonical_decimal(format(change, "f"))
        if open_ != 0:
            percent = (change / open_ * 100).quantize(_PERCENT_QUANTUM, ROUND_HALF_EVEN)
            update.values["change_percent"] = canonical_decimal(format(percent, "f"))
    return update


def _control(obj: dict[str, object]) -> ControlReply:
    error = obj.get("error")
    if error is None:
        return ControlReply(id=obj.get("id"), result=obj.get("result"))
    # Binance: {"error":{"code":2,"msg":"Invalid request"},"id":..}. Anything else in
    # "error" is no success either: read as one, it would confirm a SUBSCRIBE that failed.
    if not isinstance(error, dict):
        raise ParseError("bad_value", f"error {error!r} is not an object")
    return ControlReply(
        id=obj.get("id"), error_code=_int(error, "code"), error_msg=str(error.get("msg", ""))
    )


def _symbol(obj: dict[str, object]) -> str:
    value = obj.get("s")
    if not isinstance(value, str) or not value or not value.isalnum() or not value.isascii():
        raise ParseError("bad_value", f"symbol {value!r}")
    return value.upper()


def _decimal(obj: dict[str, object], key: str) -> str:
    value = obj.get(key)
    if value is None:
        raise ParseError("missing_field", f"field {key!r}")
    if not isinstance(value, str):
        raise ParseError("bad_value", f"field {key!r} is not a decimal string: {value!r}")
    if len(value) > MAX_DECIMAL_LENGTH:
        raise ParseError("bad_value", f"field {key!r} is {len(value)} characters long")
    try:
        return canonical_decimal(value)
    except ValueError as exc:
        raise ParseError("bad_value", f"field {key!r}: {exc}") from exc


def _int(obj: dict[str, object], key: str) -> int:
    value = obj.get(key)
    if value is None:
        raise ParseError("missing_field", f"field {key!r}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise ParseError("bad_value", f"field {key!r} is not an integer: {value!r}")
    return value


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Normalizer:
    """Parses frames, counting and skipping the ones that do not parse.

    Each kind of failure is logged once with a sample of the offending frame, so a flood
    of garbage cannot flood the log. ``errors`` may be a counter shared with the client
    that also counts the frames it could not hand on (see ``BinanceClient.errors``).
    """

    def __init__(
        self, now_ms: Callable[[], int] = wall_ms, errors: Counter[str] | None = None
    ) -> None:
        self._now_ms = now_ms
        self.errors: Counter[str] = Counter() if errors is None else errors
        self.frames = 0
        self._unforeseen: set[type[BaseException]] = set()

    def parse(self, frame: str | bytes, now_ms: Callable[[], int] | None = None) -> list[Event]:
        """The frame's events, or none when it does not parse (counted by kind).

        ``now_ms`` overrides the clock for this frame (a replay stamps a bookTicker with the
        time it was recorded, not the time it is replayed).
        """
        self.frames += 1
        try:
            return parse_frame(frame, now_ms or self._now_ms)
        except ParseError as exc:
            self.errors[exc.kind] += 1
            if self.errors[exc.kind] == 1:
                log.warning("skipping upstream frame (%s); sample: %r", exc, _sample(frame))
            return []
        except Exception as exc:
            # A bug of ours, or input no rule foresaw: one frame must not stop the feed.
            self.errors["parser_error"] += 1
            if type(exc) not in self._unforeseen:
                self._unforeseen.add(type(exc))
                log.exception("upstream frame broke the parser; sample: %r", _sample(frame))
            return []


def _sample(frame: str | bytes) -> str:
    return frame[:200] if isinstance(frame, str) else frame[:200].decode("utf-8", "replace")
