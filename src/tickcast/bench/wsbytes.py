"""The HTTP and WebSocket bytes the bench writes and reads by hand (no I/O here).

The load generator's clients send one upgrade request (RFC 6455 §4.1) or one SSE
``GET``, check the status line, then only scan; the ``raw`` comparison server does the
server half of the same handshake (§4.2.2). Client frames must be masked (§5.3); the
only ones the load generator sends are pongs.

A client that offers permessage-deflate (RFC 7692) must read frames to inflate the
compressed ones (``Inflater``) before scanning. tickcast negotiates it without context
takeover, so each of its messages inflates alone; a server that takes its context over
(the naive baseline's uvicorn) needs one inflater kept for the connection's life.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
import zlib
from dataclasses import dataclass

# RFC 6455 §1.3: the GUID appended to Sec-WebSocket-Key before hashing.
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 16 * 1024
OP_PONG = 0xA
# An unfragmented ping frame from a server: FIN + opcode 9, unmasked, length <= 125.
_PING = re.compile(rb"\x89([\x00-\x7d])")


class BadHead(ValueError):
    """An HTTP request or response head that cannot be read."""


# What browsers and the websockets library offer (RFC 7692 §7.1.2.1).
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
# §7.2.2: the receiver appends this before inflating a message.
_EMPTY_BLOCK = b"\x00\x00\xff\xff"
_RSV1 = 0x40
_OPCODE = 0x0F
_OP_PING = 0x9
_LONG16 = struct.Struct("!H")
_LONG64 = struct.Struct("!Q")


def upgrade_request(
    host: str, port: int, target: str, key: bytes | None = None, extensions: str | None = None
) -> bytes:
    """A WebSocket opening handshake for ``target`` (path and query), offering
    ``extensions`` (a Sec-WebSocket-Extensions value) when given."""
    key = key if key is not None else base64.b64encode(os.urandom(16))
    offer = b"" if extensions is None else b"Sec-WebSocket-Extensions: %s\r\n" % extensions.encode()
    return (
        b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
        % (target.encode(), host.encode(), port, key, offer)
    )


def server_frames(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The complete unmasked frames at the start of ``data`` as (first header byte,
    payload), and how many bytes they took; an incomplete last frame is left."""
    frames: list[tuple[int, bytes]] = []
    at, end = 0, len(data)
    while end - at >= 2:
        length, start = data[at + 1] & 0x7F, at + 2
        if length == 126:
            if end - at < 4:
                break
            (length,), start = _LONG16.unpack_from(data, at + 2), at + 4
        elif length == 127:
            if end - at < 10:
                break
            (length,), start = _LONG64.unpack_from(data, at + 2), at + 10
        if end - start < length:
            break
        frames.append((data[at], data[start : start + length]))
        at = start + length
    return frames, at


class Inflater:
    """A connection's received bytes in, the payloads of its data frames out, the
    compressed ones (RSV1 set) inflated: each on its own, or, when the server takes its
    context over (``takeover``), by one inflater that has seen every message before."""

    __slots__ = ("_kept", "_rest", "pings")

    def __init__(self, takeover: bool = False) -> None:
        self._rest = b""
        self._kept = zlib.decompressobj(wbits=-15) if takeover else None
        # Payloads of the pings read, for the client to answer. ``pongs_for``'s search for
        # a ping header in the raw bytes would find one in nearly every compressed frame.
        self.pings: list[bytes] = []

    def feed(self, data: bytes) -> bytes:
        """Every data-frame payload completed by ``data``, joined; the payloads of pings
        go to ``pings``."""
        if self._rest:
            data = self._rest + data
        frames, used = server_frames(data)
        self._rest = data[used:]
        out = []
        for first, payload in frames:
            if first & _OPCODE >= 0x8:
                if first & _OPCODE == _OP_PING:
                    self.pings.append(payload)
                continue
            if first & _RSV1:
                inflater = self._kept or zlib.decompressobj(wbits=-15)
                payload = inflater.decompress(payload + _EMPTY_BLOCK)
            out.append(payload)
        return b"".join(out)


def deflate_inflater(head: bytes) -> Inflater | None:
    """The ``Inflater`` for what a 101 response head accepted, None when it did not
    accept permessage-deflate (the frames are then plain)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-extensions" and b"permessage-deflate" in value:
            return Inflater(takeover=b"server_no_context_takeover" not in value)
    return None


def sse_request(host: str, port: int, target: str) -> bytes:
    """A ``GET`` for an event stream."""
    return b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n" % (
        target.encode(),
        host.encode(),
        port,
    )


def response_status(head: bytes) -> int:
    """The status code of a response head (``HTTP/1.1 101 Switching Protocols``)."""
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise BadHead(f"not an HTTP status line: {line[:80]!r}")
    return int(parts[1])


def masked_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """A final client frame (masked, as §5.3 requires) with a payload up to 125 bytes."""
    if len(payload) > 125:
        raise ValueError("control frame payloads are at most 125 bytes (RFC 6455 §5.5)")
    mask = mask if mask is not None else os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body


def pongs_for(data: bytes) -> list[bytes]:
    """Masked pongs echoing every complete ping frame found in ``data``.

    A false find (0x89 inside a 16-bit length field) answers with an unsolicited pong,
    which §5.5.3 allows; a ping split across two reads goes unanswered, and the next
    ping (20 s later, with a 40 s timeout) gets its answer.
    """
    pongs = []
    for match in _PING.finditer(data):
        size = match.group(1)[0]
        payload = data[match.end() : match.end() + size]
        if len(payload) == size:
            pongs.append(masked_frame(OP_PONG, payload))
    return pongs


@dataclass(frozen=True)
class Request:
    """A parsed request head."""

    method: str
    target: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""


def parse_request(head: bytes) -> Request:
    """``GET /ws?symbols=A HTTP/1.1`` plus headers (names lowercased)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadHead(f"not an HTTP request line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Request(parts[0], parts[1], headers)


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (§4.2.2)."""
    digest = hashlib.sha1(key.encode() + _WS_GUID).digest()
    return base64.b64encode(digest).decode()


def switching_protocols(key: str) -> bytes:
    """The server's 101 answer to an upgrade request carrying ``key``."""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept_key(key).encode()
    )


def http_response(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    """A complete ``Connection: close`` response."""
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
        status,
        reason.get(status, "Status").encode(),
        content_type.encode(),
        len(body),
    ) + (b"Connection: close\r\n\r\n" + body)
