"""A minimal HTTP/1.1 GET for the bench's own probes (readiness, ``/status``).

The bench needs nothing but a status and a body from a server on 127.0.0.1, and must
not depend on the dev-only httpx.
"""

from __future__ import annotations

import asyncio
import contextlib

from tickcast.bench.wsbytes import BadHead, response_status


async def http_get(host: str, port: int, target: str) -> tuple[int, bytes]:
    """``GET target`` with ``Connection: close``; (status, body). Raises ``OSError`` or
    ``BadHead``; the caller bounds it with ``asyncio.timeout``."""
    return await http_request(host, port, "GET", target)


async def http_request(host: str, port: int, method: str, target: str) -> tuple[int, bytes]:
    """``method target`` with no body, as ``http_get`` (the simulator's admin calls)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        length = b"" if method == "GET" else b"Content-Length: 0\r\n"
        writer.write(
            b"%s %s HTTP/1.1\r\nHost: %s:%d\r\n%sConnection: close\r\n\r\n"
            % (method.encode(), target.encode(), host.encode(), port, length)
        )
        data = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise BadHead(f"incomplete response: {data[:80]!r}")
    status = response_status(head)
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return status, body


def dechunk(body: bytes) -> bytes:
    """The payload of an HTTP/1.1 chunked body (RFC 9112 §7.1); extensions ignored."""
    out: list[bytes] = []
    at = 0
    while True:
        line_end = body.find(b"\r\n", at)
        if line_end < 0:
            raise BadHead("truncated chunked body")
        size = int(body[at:line_end].split(b";", 1)[0], 16)
        if size == 0:
            return b"".join(out)
        start = line_end + 2
        out.append(body[start : start + size])
        at = start + size + 2
