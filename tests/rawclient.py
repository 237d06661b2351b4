"""Clients on sockets the test owns, for what a well-behaved client library will not do.

A WebSocket client built on websockets' sans-I/O ``ClientProtocol`` over a plain
non-blocking socket read only when the test says so: it can shrink its receive buffer,
never read, send a text frame that is not UTF-8, or vanish without a close frame.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from urllib.parse import urlsplit

import orjson
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

READ_CHUNK = 4096


async def open_socket(host: str, port: int, rcvbuf: int = 0) -> socket.socket:
    """A connected non-blocking TCP socket; ``rcvbuf`` is set before connecting, so the
    window the peer sees is small from the start."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def abort_socket(sock: socket.socket) -> None:
    """Close with a TCP reset: no close frame, no FIN, the way a crashed client goes."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class RawWebSocket:
    """One WebSocket connection driven by hand."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock = sock
        self.protocol = protocol
        self.response: Response | None = None
        self._frames: list[Frame] = []

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        rcvbuf: int = 0,
        headers: dict[str, str] | None = None,
        deflate: bool = False,
    ) -> RawWebSocket:
        """Open the socket and do the upgrade handshake (``response`` holds the reply);
        ``deflate`` offers permessage-deflate as the websockets library does by default."""
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        sock = await open_socket(parts.hostname, parts.port, rcvbuf)
        extensions = [ClientPerMessageDeflateFactory()] if deflate else None
        client = cls(sock, ClientProtocol(parse_uri(url), extensions=extensions))
        try:
            request = client.protocol.connect()
            for name, value in (headers or {}).items():
                request.headers[name] = value
            client.protocol.send_request(request)
            await client._flush()
            while client.response is None:
                await client._read(timeout=10)
        except BaseException:
            sock.close()
            raise
        return client

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                await self.loop.sock_sendall(self.sock, data)

    async def _read(self, timeout: float, size: int = READ_CHUNK) -> bool:
        """Read once from the socket; False at end of stream."""
        data = await asyncio.wait_for(self.loop.sock_recv(self.sock, size), timeout)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                self.response = event
            elif isinstance(event, Frame):
                self._frames.append(event)
        await self._flush()  # pongs and the close reply
        return bool(data)

    async def next_frame(self, timeout: float = 10.0, size: int = READ_CHUNK) -> Frame | None:
        """The next data or close frame; None once the connection has ended."""
        while True:
            while self._frames:
                frame = self._frames.pop(0)
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CLOSE):
                    return frame
            if not await self._read(timeout, size):
                return None

    async def next_message(
        self, timeout: float = 10.0, size: int = READ_CHUNK
    ) -> dict[str, object]:
        """The next text message as JSON; fails on a close or the end of the stream."""
        frame = await self.next_frame(timeout, size)
        assert frame is not None, "connection ended"
        assert frame.opcode is Opcode.TEXT, f"expected a text frame, got {frame}"
        message = orjson.loads(frame.data)
        assert isinstance(message, dict)
        return message

    async def close_code(self, timeout: float = 10.0) -> int | None:
        """Skip data until the server's close frame; its code (None if none came)."""
        deadline = self.loop.time() + timeout
        while True:
            frame = await self.next_frame(max(0.01, deadline - self.loop.time()))
            if frame is None:
                return None if self.protocol.close_rcvd is None else self.protocol.close_rcvd.code
            if frame.opcode is Opcode.CLOSE:
                assert self.protocol.close_rcvd is not None
                return self.protocol.close_rcvd.code

    async def send_raw_text(self, payload: bytes) -> None:
        """A text frame with exactly these bytes, valid UTF-8 or not."""
        self.protocol.send_text(payload)
        await self._flush()

    def abort(self) -> None:
        abort_socket(self.sock)

    def close(self) -> None:
        self.sock.close()


async def raw_http_get(
    url: str,
    headers: dict[str, str] | None = None,
    rcvbuf: int = 0,
    raw_headers: list[bytes] | None = None,
) -> tuple[socket.socket, bytes]:
    """Send a GET on a fresh socket and read until the end of the response headers.

    ``raw_headers`` are ``Name: value`` lines sent byte for byte (not UTF-8, say).
    Returns the socket (left open, not read further) and the bytes read so far.
    """
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    sock = await open_socket(parts.hostname, parts.port, rcvbuf)
    loop = asyncio.get_running_loop()
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1".encode(), f"Host: {parts.netloc}".encode()]
    lines += [f"{name}: {value}".encode() for name, value in (headers or {}).items()]
    lines += raw_headers or []
    try:
        await loop.sock_sendall(sock, b"\r\n".join(lines) + b"\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, READ_CHUNK), 10)
            assert chunk, f"connection ended before the headers: {received!r}"
            received += chunk
    except BaseException:
        sock.close()
        raise
    return sock, received
