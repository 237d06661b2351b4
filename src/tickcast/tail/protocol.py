"""What a tickcast server speaks to ``tickcast tail``: the ``/ws`` and ``/sse`` URLs, its
JSON messages (SPEC §6) and the line-level SSE parser. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

# The server sends an SSE comment every 15 s; three missed heartbeats mean the stream is dead.
SSE_READ_TIMEOUT: Final = 45.0
CONNECT_TIMEOUT: Final = 10.0

Message = Mapping[str, object]


def message_kind(message: Message) -> object:
    """The message's ``type``; the seed server's untyped ``{symbol, last_price}`` is a tick."""
    kind = message.get("type")
    if kind is None and "symbol" in message and "last_price" in message:
        return "tick"
    return kind


def error_detail(message: Message) -> object:
    """What an ``error`` message says: its text, else its code."""
    return message.get("message") or message.get("code") or "unknown error"


def websocket_url(base: str, symbols: Sequence[str], streams: Sequence[str] = ()) -> str:
    """The ``/ws`` URL (asking for status messages) for a base such as ``http://host:8000``.

    Bare symbols go in ``?symbols=`` as they always did, stream names (``BTCUSDT@trades``)
    in ``?streams=`` (SPEC §12). Query parameters already on the base (``?token=...``)
    are kept.
    """
    schemes = {"http": "ws", "https": "wss"}
    return _endpoint(base, "/ws", schemes, [("status", "1")], symbols, streams)


def sse_url(base: str, symbols: Sequence[str], streams: Sequence[str] = ()) -> str:
    """The ``/sse`` URL for a base such as ``http://host:8000`` (``ws://`` bases work too)."""
    return _endpoint(base, "/sse", {"ws": "http", "wss": "https"}, [], symbols, streams)


def symbols_url(base: str) -> str:
    """The REST ``/symbols`` URL (the symbols served) for a base such as ``http://host:8000``."""
    return _endpoint(base, "/symbols", {"ws": "http", "wss": "https"}, [], [])


def streams_url(base: str) -> str:
    """The REST ``/streams`` URL (every stream served, SPEC §12)."""
    return _endpoint(base, "/streams", {"ws": "http", "wss": "https"}, [], [])


def server_label(base: str) -> str:
    """The base URL as messages name it: ``http://host:8000``, without its query (a token)."""
    parts = _split_base(base)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), "", ""))


def _endpoint(
    base: str,
    path: str,
    schemes: Mapping[str, str],
    params: list[tuple[str, str]],
    symbols: Sequence[str],
    streams: Sequence[str] = (),
) -> str:
    parts = _split_base(base)
    scheme = parts.scheme.lower()
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params]
    if symbols:
        query.append(("symbols", ",".join(symbols)))
    if streams:
        query.append(("streams", ",".join(streams)))
    return urlunsplit(
        (
            schemes.get(scheme, scheme),
            parts.netloc,
            parts.path.rstrip("/") + path,
            # Names stay readable in logs and proxies: ``BTCUSDT@trades``, not ``%40``.
            urlencode(query, safe=",@!"),
            "",
        )
    )


def _split_base(base: str) -> SplitResult:
    # A base without a scheme (``host:8000``) is HTTP.
    return urlsplit(base if "://" in base else f"http://{base}")


def decode_message(raw: str | bytes) -> dict[str, object] | None:
    """One JSON object from the server, numbers as exact decimals; None if not an object."""
    try:
        value = json.loads(raw, parse_float=Decimal)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class SseEvent:
    """One dispatched Server-Sent Event."""

    event: str
    data: str
    id: str | None


class SseParser:
    """The line-level SSE parser of the HTML standard, fed one line at a time.

    An ``id:`` line only fills the last event ID buffer; "If the line is empty (a blank
    line): dispatch the event", and dispatching is what sets "the last event ID string of
    the event source to the value of the last event ID buffer". So an event cut off by a
    dropped connection never becomes the resume point that ``Last-Event-ID`` resends.
    """

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self._event = ""
        self._data: list[str] = []
        self._id_buffer: str | None = None

    def restart(self) -> None:
        """Drop a half-received event and the id it carried, as when a new connection starts.

        The buffer restarts from the last dispatched id (as Chromium's parser does), not
        empty as the standard has it: an id-less event (the opening ``retry:``, a status
        event) on the new connection must not erase the resume point.
        """
        self._event = ""
        self._data = []
        self._id_buffer = self.last_event_id

    def feed_line(self, line: str) -> SseEvent | None:
        """Process one line (without its line ending); return an event on a blank line."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment: the server's heartbeat
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id_buffer = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        # The event is complete: its id (even one without data) is now the resume point.
        self.last_event_id = self._id_buffer
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return SseEvent(event=event, data="\n".join(data), id=self.last_event_id)


def sse_message(event: SseEvent) -> dict[str, object] | None:
    """The message an SSE event carries, typed by its event name when the data is untyped.

    Ticks are unnamed events (type ``message``) whose JSON says ``"type":"tick"`` (SPEC §6);
    servers before that named them ``tick``, which reads the same. ``status`` and ``reset``
    stay named.
    """
    message = decode_message(event.data)
    if message is not None and "type" not in message and event.event != "message":
        message["type"] = event.event
    return message
