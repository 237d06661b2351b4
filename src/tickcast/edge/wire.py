"""Wire encodings of a message, built once per message and shared by every client.

Server-to-client WebSocket frames are never masked (RFC 6455 §5.1: "A server MUST NOT
mask any frames that it sends to the client"), so a text frame is the same bytes for every
client and can be written to each socket as is. Likewise an SSE event, and its HTTP/1.1
chunk, are the same bytes for every SSE client. A permessage-deflate frame too, compressed
without context takeover (``tickcast.edge.deflate``).

SSE (SPEC §6): a market-data message (a tick, a trade, a candle) is an unnamed event, so
it arrives as the default ``message`` type (``new EventSource(url).onmessage``; its JSON
says ``"type":"tick"``, ``"trade"``...), with an ``id:`` that is the client's resume token
(its format: ``tickcast.edge.resume``). Control events (``status``, ``reset``, ``gap``,
replies) are named by their type.
"""

from __future__ import annotations

import struct
from typing import Literal

from tickcast.edge.deflate import ws_deflate_frame
from tickcast.messages.book import BookStatus
from tickcast.messages.message import Message

# ws_frame: a complete WebSocket text frame, written straight to the socket.
# ws_deflate: the same, compressed (RFC 7692), for a client that negotiated permessage-deflate.
# json: the bare message, for a server that frames it itself (generic ASGI).
# sse_chunk: an SSE event inside an HTTP/1.1 chunk, written straight to the socket.
# sse_event: the bare SSE event, for a server that chunks it itself (generic ASGI).
WireFormat = Literal["ws_frame", "ws_deflate", "json", "sse_chunk", "sse_event"]


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (opcode 0x1) carrying ``payload``."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


def sse_event(event: str | None, data: bytes, event_id: int | None = None) -> bytes:
    """One Server-Sent Event, named ``event`` or unnamed (a ``message``) when None;
    ``data`` must be a single line (JSON is)."""
    head = b"" if event_id is None else b"id: %d\n" % event_id
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


def http_chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk (RFC 9112 §7.1)."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


def encode_message(fmt: WireFormat, data: bytes, event: str | None, event_id: int | None) -> bytes:
    """``data`` (a JSON message) in the wire format ``fmt``; ``event`` names it in SSE."""
    if fmt == "json":
        return data
    if fmt == "ws_frame":
        return ws_text_frame(data)
    if fmt == "ws_deflate":
        return ws_deflate_frame(data)
    sse = sse_event(event, data, event_id)
    return http_chunk(sse) if fmt == "sse_chunk" else sse


class Wire:
    """A message and its encodings, each built on first use."""

    __slots__ = ("_cache", "message")

    def __init__(self, message: Message) -> None:
        self.message = message
        self._cache: dict[WireFormat, bytes] = {}

    def get(self, fmt: WireFormat) -> bytes:
        data = self._cache.get(fmt)
        if data is None:
            data = self._cache[fmt] = encode_market(fmt, self.message)
        return data


def encode_market(fmt: WireFormat, message: Message) -> bytes:
    """``message`` in the wire format ``fmt``: in SSE an unnamed event whose id is its seq
    (a book's ``status`` is a named event: SSE control events are named by their type)."""
    event = "status" if type(message) is BookStatus else None
    return encode_message(fmt, message.encode(), event, message.seq)
