"""Binance's per-connection rules, as plain objects: URL forms, control messages, limits.

Nothing here does I/O or reads a clock; callers pass the time in. The replies and
error texts follow Binance's "Live Subscribing/Unsubscribing" documentation; errors use
the wrapped shape ``{"error":{"code":N,"msg":...},"id":...}`` that the live server sends
and the official SDK checks for.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

Id = int | str | None
Reply = dict[str, object]

METHODS: Final = (
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST_SUBSCRIPTIONS",
    "SET_PROPERTY",
    "GET_PROPERTY",
)
_METHODS_TEXT: Final = ", ".join(f"`{m}`" for m in METHODS)
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
# Binance documents "alphanumeric, at most 36 characters"; its own SDK sends UUID4
# strings, so hyphens (and underscores) have to pass too.
_STRING_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,36}")
# Printable ASCII without space or "/": "/" separates streams in URLs, so a name that
# contains one can never be addressed.
_STREAM_NAME_RE: Final = re.compile(r"[\x21-\x2e\x30-\x7e]{1,200}")

# The handshake header by which the simulator says what it is. Real Binance never sends
# it, so a client pointed at a simulator (``TICKCAST_BINANCE_URL``) labels its data
# ``sim`` and never presents simulated prices as live.
SIMULATED_HEADER: Final = "X-Tickcast-Simulated"

MSG_BAD_ID: Final = "Invalid request: request ID must be an unsigned integer"
MSG_PROPERTY_NAME: Final = "Invalid request: property name must be a string"
MSG_TOO_MANY_PARAMS: Final = "Invalid request: too many parameters"
MSG_INVALID_STREAM: Final = "Invalid request: invalid stream"
MSG_UNKNOWN_PROPERTY: Final = "Unknown property"
MSG_NOT_BOOLEAN: Final = "Invalid value type: expected Boolean"
TOO_MANY_REQUESTS: Final = "Too many requests"


class TargetError(ValueError):
    """The handshake's request target is not a stream endpoint; carries the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ConnectTarget:
    """What a handshake URL asks for."""

    combined: bool
    streams: tuple[str, ...]
    microseconds: bool = False


_TIME_UNITS: Final = {
    "MILLISECOND": False,
    "millisecond": False,
    "MICROSECOND": True,
    "microsecond": True,
}


def is_stream_name(name: str) -> bool:
    """Whether ``name`` is syntactically a stream name (it may still carry no data)."""
    return _STREAM_NAME_RE.fullmatch(name) is not None


def parse_connect_target(target: str) -> ConnectTarget:
    """Parse ``/ws/<stream>``, ``/ws``, ``/ws/<anything>``, ``/stream?streams=a/b``, ``/stream``.

    Raises TargetError (404 for other paths, 400 for a bad ``timeUnit``).
    """
    parts = urlsplit(target)
    query = parse_qs(parts.query)
    time_unit = query.get("timeUnit", ["MILLISECOND"])[0]
    if time_unit not in _TIME_UNITS:
        raise TargetError(400, f"Invalid timeUnit {time_unit!r}")
    micro = _TIME_UNITS[time_unit]
    path = unquote(parts.path).rstrip("/")
    if path == "/ws" or path.startswith("/ws/"):
        # ccxt opens /ws/0, /ws/1, ... and subscribes later: a segment that does not
        # look like a stream is a connection label, not a subscription.
        segments = path[len("/ws/") :].split("/")
        streams = [s for s in segments if is_stream_name(s) and ("@" in s or s[:1] == "!")]
        return ConnectTarget(False, tuple(dict.fromkeys(streams)), micro)
    if path == "/stream":
        names = "/".join(query.get("streams", [])).split("/")
        streams = [s for s in names if is_stream_name(s)]
        return ConnectTarget(True, tuple(dict.fromkeys(streams)), micro)
    raise TargetError(404, f"Not found: {parts.path}")


@dataclass
class Session:
    """A connection's control state: its subscriptions (in order) and ``combined``."""

    combined: bool
    streams: dict[str, None] = field(default_factory=dict)

    @classmethod
    def from_target(cls, target: ConnectTarget) -> Session:
        return cls(target.combined, dict.fromkeys(target.streams))


@dataclass(frozen=True)
class ControlOutcome:
    """The reply to send (None: nothing), subscription changes, and a close reason."""

    reply: Reply | None
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    close_reason: str | None = None


def error_reply(code: int, msg: str, request_id: Id) -> Reply:
    """Binance's wrapped error shape."""
    return {"error": {"code": code, "msg": msg}, "id": request_id}


def too_many_streams(count: int, limit: int) -> str:
    """Close reason for a connection that asks for more streams than allowed."""
    return f"Too many streams: {count} requested, at most {limit} per connection"


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset``, the way serde reports positions."""
    before = text[:offset]
    line = before.count("\n") + 1
    return line, offset - (before.rfind("\n") + 1)


def _valid_id(value: object) -> bool:
    if value is None:
        return True
    if type(value) is int:
        return _INT64_MIN <= value <= _INT64_MAX
    return isinstance(value, str) and _STRING_ID_RE.fullmatch(value) is not None


def handle_control(raw: bytes | str, session: Session, max_streams: int) -> ControlOutcome:
    """Answer one control message and apply it to ``session``.

    A SUBSCRIBE that would take the connection past ``max_streams`` changes nothing and
    returns a close reason instead of a reply.
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        request = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        msg = f"Invalid JSON: expected value at line {exc.lineno} column {exc.colno}"
        return ControlOutcome(error_reply(3, msg, None))
    if not isinstance(request, dict):
        return ControlOutcome(error_reply(2, "Invalid request: expected a JSON object", None))
    request_id = request.get("id")
    # serde treats a missing Option field as None; only a present, wrong id is an error.
    if not _valid_id(request_id):
        return ControlOutcome(error_reply(2, MSG_BAD_ID, None))
    method = request.get("method")
    if method is None:
        line, column = _position(text, len(text.rstrip()))
        msg = f"Invalid request: missing field `method` at line {line} column {column}"
        return ControlOutcome(error_reply(2, msg, request_id))
    if method not in METHODS:
        token = orjson.dumps(method).decode()
        shown = method if isinstance(method, str) else token
        found = text.find(token)
        line, column = _position(text, found + len(token) if found >= 0 else len(text))
        msg = (
            f"Invalid request: unknown variant `{shown}`, expected one of {_METHODS_TEXT}"
            f" at line {line} column {column}"
        )
        return ControlOutcome(error_reply(2, msg, request_id))
    params = request.get("params", [])
    if not isinstance(params, list):
        return ControlOutcome(
            error_reply(2, "Invalid request: params must be an array", request_id)
        )
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        return _subscription(method, params, request_id, session, max_streams)
    if method == "LIST_SUBSCRIPTIONS":
        if params:
            return ControlOutcome(error_reply(2, MSG_TOO_MANY_PARAMS, request_id))
        return ControlOutcome({"result": list(session.streams), "id": request_id})
    return _property(method, params, request_id, session)


def _subscription(
    method: str, params: list[object], request_id: Id, session: Session, max_streams: int
) -> ControlOutcome:
    names: list[str] = []
    for param in params:
        if not isinstance(param, str) or not is_stream_name(param):
            return ControlOutcome(error_reply(2, MSG_INVALID_STREAM, request_id))
        names.append(param)
    ack: Reply = {"result": None, "id": request_id}
    if method == "UNSUBSCRIBE":
        removed = tuple(n for n in dict.fromkeys(names) if n in session.streams)
        for name in removed:
            del session.streams[name]
        return ControlOutcome(ack, removed=removed)
    added = tuple(n for n in dict.fromkeys(names) if n not in session.streams)
    total = len(session.streams) + len(added)
    if total > max_streams:
        return ControlOutcome(None, close_reason=too_many_streams(total, max_streams))
    session.streams.update(dict.fromkeys(added))
    return ControlOutcome(ack, added=added)


def _property(
    method: str, params: list[object], request_id: Id, session: Session
) -> ControlOutcome:
    expected = 2 if method == "SET_PROPERTY" else 1
    if len(params) > expected:
        return ControlOutcome(error_reply(2, MSG_TOO_MANY_PARAMS, request_id))
    if not params or not isinstance(params[0], str):
        return ControlOutcome(error_reply(2, MSG_PROPERTY_NAME, request_id))
    if params[0] != "combined":
        return ControlOutcome(error_reply(0, MSG_UNKNOWN_PROPERTY, request_id))
    if method == "GET_PROPERTY":
        return ControlOutcome({"result": session.combined, "id": request_id})
    value = params[1] if len(params) == 2 else None
    if not isinstance(value, bool):
        return ControlOutcome(error_reply(1, MSG_NOT_BOOLEAN, request_id))
    session.combined = value
    return ControlOutcome({"result": None, "id": request_id})


class SlidingWindowLimiter:
    """At most ``limit`` events in any ``window`` seconds; 0 disables the limit.

    Binance counts every incoming text, ping and pong frame against 5 per second per
    connection. A sliding window (not a token bucket) is what catches the reconnect
    storm of six SUBSCRIBEs sent back to back.
    """

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self._limit = limit
        self._window = window
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Record an event at ``now``; False if it is one too many."""
        if self._limit <= 0:
            return True
        times = self._times
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) >= self._limit:
            return False
        times.append(now)
        return True


class AttemptLimiter:
    """Connection attempts per client address within ``window`` seconds (0: no limit).

    Rejected attempts are not recorded, so a client is refused for exactly as long as
    its accepted attempts stay inside the window. Memory is bounded by ``max_keys``.
    """

    def __init__(self, limit: int, window: float = 300.0, max_keys: int = 100_000) -> None:
        self._limit = limit
        self._window = window
        self._max_keys = max_keys
        self._attempts: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float) -> bool:
        """Record an attempt from ``key``; False if it is over the limit."""
        if self._limit <= 0:
            return True
        times = self._attempts.get(key)
        if times is None:
            if len(self._attempts) >= self._max_keys:
                self._prune(now)
            times = self._attempts[key] = deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) >= self._limit:
            return False
        times.append(now)
        return True

    def _prune(self, now: float) -> None:
        stale = [k for k, t in self._attempts.items() if not t or t[-1] <= now - self._window]
        for key in stale:
            del self._attempts[key]
        if len(self._attempts) >= self._max_keys:
            # Every address is still active: forget the oldest rather than grow.
            del self._attempts[next(iter(self._attempts))]


class Heartbeat:
    """Pings in flight and the deadline for a pong that echoes one of them.

    A pong echoing ping *i* also answers every older ping. The deadline runs from the
    oldest unanswered ping, so pinging every 20 s cannot keep postponing a 60 s timeout.
    Unsolicited pongs and pongs with another payload answer nothing.
    """

    def __init__(self, timeout: float, max_in_flight: int = 64) -> None:
        self._timeout = timeout
        self._max = max(2, max_in_flight)
        self._in_flight: deque[tuple[bytes, float]] = deque()

    def ping_sent(self, payload: bytes, now: float) -> None:
        if len(self._in_flight) >= self._max:
            # Keep the oldest (it sets the deadline); forget the next one.
            del self._in_flight[1]
        self._in_flight.append((payload, now))

    def pong_received(self, payload: bytes) -> bool:
        """True if the pong echoes a ping in flight."""
        for index, (sent, _) in enumerate(self._in_flight):
            if sent == payload:
                for _ in range(index + 1):
                    self._in_flight.popleft()
                return True
        return False

    def deadline(self) -> float | None:
        """When the oldest unanswered ping times out, or None if all were answered."""
        return self._in_flight[0][1] + self._timeout if self._in_flight else None

    def expired(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline
