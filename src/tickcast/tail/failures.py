"""Why a connection to the server failed or ended, in one line a user can act on:
``Problem``, and ``describe_failure``, which names the cause (a refusal and what to change,
an unreachable or silent server, a lost connection) without the exception's noise.
"""

from __future__ import annotations

import math
import socket
from dataclasses import dataclass

import httpx
from websockets.exceptions import ConnectionClosed

from tickcast.tail.protocol import CONNECT_TIMEOUT, SSE_READ_TIMEOUT, decode_message


@dataclass(frozen=True)
class Problem:
    """Why the connection failed or ended, in one line; ``fatal`` when retrying cannot help."""

    text: str
    fatal: bool = False

    def line(self, retry_in: float | None) -> str:
        """The text with the retry delay: ``... is it running? retrying in 2s``."""
        if retry_in is None:
            return self.text
        joint = " " if self.text.endswith("?") else "; "
        return f"{self.text}{joint}retrying in {math.ceil(retry_in)}s"


class ServerRefused(Exception):
    """The server answered the connection request with an HTTP error status."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        decoded = decode_message(body) or {}
        # The server's denials are {"error": code, "message": text} (SPEC §10).
        self.code = str(decoded.get("error") or decoded.get("code") or "")
        self.message = str(decoded.get("message") or "")


def describe_failure(
    exc: BaseException, where: str, *, was_connected: bool, has_token: bool
) -> Problem:
    """One line saying why a connection to ``where`` failed, without the exception's noise."""
    if isinstance(exc, ServerRefused):
        return _refusal(exc, where, has_token)
    if isinstance(exc, httpx.ReadTimeout):
        return Problem(f"{where} sent nothing for {SSE_READ_TIMEOUT:g}s, not even a heartbeat")
    if was_connected:
        detail = ""
        if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
            detail = close_detail(exc.rcvd.code, exc.rcvd.reason)
        return Problem(f"lost the connection to {where}{detail}")
    if _caused_by(exc, socket.gaierror):
        return Problem(f"cannot resolve the host of {where}: check --url")
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return Problem(f"{where} did not answer within {CONNECT_TIMEOUT:g}s")
    if isinstance(exc, OSError | httpx.ConnectError):
        return Problem(f"server unreachable at {where}: is it running?")
    return Problem(f"{where} did not answer like a tickcast server ({type(exc).__name__})")


def _refusal(exc: ServerRefused, where: str, has_token: bool) -> Problem:
    status, code = exc.status, exc.code
    said = f": {exc.message}" if exc.message else ""
    if status == 401:
        if has_token:
            return Problem(f"{where} refused the token (401): check --token", fatal=True)
        return Problem(
            f"{where} requires a token (401): pass --token or set TICKCAST_TOKEN", fatal=True
        )
    if status in (403, 404) and code in ("", "not_found"):
        # Not one of the server's own denials: a path with no route (404 ``not_found``; a
        # WebSocket to one gets a bare 403 from the server's framework), so --url is
        # probably wrong.
        return Problem(
            f"{where} has no tickcast stream ({status}): --url takes the server's base URL, "
            "e.g. http://localhost:8000",
            fatal=True,
        )
    if status == 403:
        return Problem(f"{where} refused this client (403 {code}{said})", fatal=True)
    if status == 503 and code == "ingest_only":
        return Problem(
            f"{where} is an ingest-only node (503): point --url at an edge node", fatal=True
        )
    if status in (429, 503) or status >= 500:
        return Problem(f"{where} cannot take the connection now ({status} {code or 'busy'})")
    return Problem(f"{where} refused the request ({status} {code or 'error'}{said})", fatal=True)


def close_detail(code: int | None, reason: str) -> str:
    """`` (1001 going away)`` for a close frame's code and reason; empty without them."""
    detail = " ".join(str(part) for part in (code, reason) if part)
    return f" ({detail})" if detail else ""


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):  # httpx and websockets wrap the socket's error once or twice
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
