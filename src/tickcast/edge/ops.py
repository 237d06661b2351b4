"""Client ops: parsing, the rate limiter, and what an op asks of the edge. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Literal

import orjson

from tickcast.errors import CloseReason, ErrorCode
from tickcast.messages.stream import (
    StreamKind,
    StreamNameError,
    is_ticker_key,
    parse_stream,
    stream_name,
)


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; each op takes one."""

    __slots__ = ("_at", "_burst", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


# A client whose ops stay over the rate limit this long is closed.
RATE_LIMIT_CLOSE_AFTER = 5.0
# Refusals less than this far apart count as one stretch over the limit: a client sending
# flat out still gets an op through whenever a token refills, and that must not restart
# the count.
RATE_LIMIT_CALM = 1.0


class OpRateLimit:
    """One client's op rate limit (SPEC §10): each op takes a token; one refused is
    answered ``rate_limited``, and a client over the limit for
    ``RATE_LIMIT_CLOSE_AFTER`` seconds is closed."""

    __slots__ = ("_bucket", "_last", "_since")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._bucket = TokenBucket(rate, burst, now)
        self._since: float | None = None
        self._last = 0.0

    def check(self, now: float) -> Literal["ok", "refuse", "close"]:
        if self._bucket.take(now):
            return "ok"
        if self._since is None or now - self._last > RATE_LIMIT_CALM:
            self._since = now
        self._last = now
        return "close" if now - self._since >= RATE_LIMIT_CLOSE_AFTER else "refuse"


@dataclass
class OpOutcome:
    """What an op asks the driver to do besides the replies the session already sent."""

    subscribe: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)
    close: CloseReason | None = None
    # An ``auth`` or ``refresh`` op: its token, for the edge to check (``Access``).
    token: str | None = None
    token_op: str = ""
    op_id: object = None


class OpError(Exception):
    def __init__(self, code: ErrorCode, message: str, op_id: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.op_id = op_id


def with_id(message: dict[str, object], op_id: object) -> dict[str, object]:
    if op_id is not None:
        return {"type": message["type"], "id": op_id, **message}
    return message


def parse_op(text: str) -> dict[str, object]:
    try:
        request = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise OpError(ErrorCode.INVALID_JSON, f"not valid JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise OpError(ErrorCode.INVALID_OP, 'expected a JSON object like {"op":"subscribe"}')
    op_id = request.get("id")
    if op_id is not None and not isinstance(op_id, int | str):
        raise OpError(ErrorCode.INVALID_OP, "id must be a number or a string")
    if not isinstance(request.get("op"), str):
        raise OpError(ErrorCode.INVALID_OP, 'missing "op"', op_id)
    return request


def op_id_of(text: str) -> object:
    """The ``id`` of the op in ``text``, None when it has none or is not an op: the
    reply to an op refused before it is read (rate limited) still names it."""
    try:
        return parse_op(text).get("id")
    except OpError as exc:
        return exc.op_id


def stream_key(name: str) -> str:
    """The key of the stream ``name`` asks for: a symbol uppercased (``btcusdt`` and
    ``BTCUSDT@ticker`` are both ``BTCUSDT``), a stream by its canonical name. A name that is
    no stream at all is returned as given (stripped), to be reported unknown."""
    name = name.strip()
    if "@" not in name and not name.startswith("!"):
        return name.upper()
    try:
        stream = parse_stream(name)
    except StreamNameError:
        return name
    if stream.kind is StreamKind.TICKER and stream.symbol is not None:
        return stream.symbol
    return stream.name


def resolve(names: Iterable[str], served: AbstractSet[str]) -> tuple[list[str], list[str]]:
    """The served streams ``names`` ask for, as keys (``*`` = every served symbol's
    ticker, sorted), and the names not served here, each once, in the order given (SPEC
    §6: a request naming both subscribes the first and reports the second)."""
    wanted = list(dict.fromkeys(stream_key(n) for n in names if n.strip()))
    unknown = [s for s in wanted if s != "*" and s not in served]
    if "*" in wanted:
        tickers = sorted(k for k in served if is_ticker_key(k))
        return list(dict.fromkeys([*tickers, *(s for s in wanted if s in served)])), unknown
    return [s for s in wanted if s in served], unknown


def unknown_errors(unknown: list[str], op_id: object = None) -> list[dict[str, object]]:
    """The errors naming ``unknown``: bare names in one ``unknown_symbol`` error (its
    ``symbols``), stream names in one ``unknown_stream`` error (its ``streams``); the same
    messages on ``/ws`` (replies) and ``/sse`` (``event: error``)."""
    symbols = [n for n in unknown if is_ticker_key(n)]
    streams = [n for n in unknown if n not in symbols]
    out = []
    for code, field_name, names in (
        (ErrorCode.UNKNOWN_SYMBOL, "symbols", symbols),
        (ErrorCode.UNKNOWN_STREAM, "streams", streams),
    ):
        if names:
            message = f"not served here: {', '.join(names)}"
            error = {"type": "error", "code": code.value, "message": message}
            out.append(with_id({**error, field_name: names}, op_id))
    return out


def delisted_errors(keys: Iterable[str]) -> list[dict[str, object]]:
    """One ``delisted`` error per symbol that stopped trading, naming it and the streams
    of it a client held (SPEC §12: ``*`` follows the exchange's listing)."""
    by_symbol: dict[str, list[str]] = {}
    for key in sorted(keys):
        by_symbol.setdefault(key.partition("@")[0], []).append(stream_name(key))
    return [
        {
            "type": "error",
            "code": ErrorCode.DELISTED.value,
            "message": f"{symbol} is no longer trading on the exchange: its streams ended",
            "symbol": symbol,
            "streams": streams,
        }
        for symbol, streams in by_symbol.items()
    ]


def symbols_field(request: dict[str, object]) -> list[str]:
    """The names an op asks for: its ``symbols`` and its ``streams`` (SPEC §12), at least
    one of them a non-empty list of strings."""
    names: list[str] = []
    for field_name in ("symbols", "streams"):
        if field_name not in request:
            continue
        value = request[field_name]
        if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
            raise OpError(
                ErrorCode.INVALID_OP, f'"{field_name}" must be a non-empty list of strings'
            )
        names.extend(value)
    if not names:
        raise OpError(ErrorCode.INVALID_OP, '"symbols" or "streams" must be a non-empty list')
    return names
