"""An SSE client on a socket the test owns: any header bytes, a small receive buffer, and
reads paced to a given rate, for what httpx will not do (send a byte that is not UTF-8 in
a header, or read slowly enough for the server's flow control to matter)."""

from __future__ import annotations

import asyncio
import socket
import time

from ..rawclient import READ_CHUNK, raw_http_get

Event = dict[str, str]


class RawSse:
    """One ``GET`` of an event stream, its chunked body decoded and split into events."""

    def __init__(self, sock: socket.socket, status: int, rest: bytes, chunked: bool) -> None:
        self.sock = sock
        self.status = status
        self.chunked = chunked
        self.ended = False
        self._raw = rest
        self._body = b""
        self.received = 0

    @classmethod
    async def get(cls, url: str, headers: list[bytes] | None = None, rcvbuf: int = 0) -> RawSse:
        """Send the request (``headers`` as raw ``Name: value`` lines) and read the head."""
        sock, received = await raw_http_get(url, rcvbuf=rcvbuf, raw_headers=headers)
        head, _, rest = received.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        chunked = b"transfer-encoding: chunked" in head.lower()
        return cls(sock, status, rest, chunked)

    async def next_event(self, timeout: float = 5.0, rate: float = 0.0) -> Event | None:
        """The next event (a comment counts as one), None at the end of the stream.

        With ``rate`` (bytes per second) each read is followed by the pause that keeps
        the reading at that rate, and reads are small: the kernel's buffers, not this
        client, decide how much the server can send.
        """
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self._body:
            if self.ended:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete event in time")
            await self._read(left, rate)
        block, _, self._body = self._body.partition(b"\n\n")
        event: Event = {}
        for line in block.decode().split("\n"):
            name, _, value = line.partition(":")
            name = name or "comment"
            event[name] = event.get(name, "") + value.removeprefix(" ")
        return event

    async def _read(self, timeout: float, rate: float) -> None:
        loop = asyncio.get_running_loop()
        size = 1024 if rate else READ_CHUNK
        try:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, size), timeout)
        except ConnectionResetError:  # the server aborted the stream
            data = b""
        if not data:
            self.ended = True
            return
        self.received += len(data)
        self._raw += data
        self._decode()
        if rate:
            await asyncio.sleep(len(data) / rate)

    def _decode(self) -> None:
        if not self.chunked:
            self._body += self._raw
            self._raw = b""
            return
        while True:
            line, found, rest = self._raw.partition(b"\r\n")
            if not found:
                return
            size = int(line, 16)
            if size == 0:
                self.ended = True
                return
            if len(rest) < size + 2:
                return
            self._body += rest[:size]
            self._raw = rest[size + 2 :]

    def close(self) -> None:
        self.sock.close()
