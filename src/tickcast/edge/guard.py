"""Limits on a request before the app sees it: the size of its head and the time it may
take to arrive.

A connection costs a file descriptor from its first byte, long before the app can refuse
it, so a client that sends a request head slowly (slowloris) or without end holds server
resources that no app-level limit sees. The HTTP protocol in ``fastpath`` applies these
limits; this module holds them and counts what they refused, for ``/status`` and metrics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

# What the protocol answers before closing; the body says what was wrong.
REQUEST_TIMEOUT: Final = (408, "Request Timeout", "request headers not received in time")
HEAD_TOO_LARGE: Final = (
    431,
    "Request Header Fields Too Large",
    "request line or headers too large",
)
TOO_MANY_HANDSHAKES: Final = (
    429,
    "Too Many Requests",
    "too many connections from your address",
)


@dataclass(frozen=True)
class HeadLimits:
    """How large and how slow a request head may be (nginx's and h11's order of size)."""

    max_line_bytes: int = 8 * 1024
    max_head_bytes: int = 32 * 1024
    timeout: float = 10.0


@dataclass
class HandshakeGuard:
    """The limits, and what each refused. One per app, shared by its connections."""

    limits: HeadLimits = field(default_factory=HeadLimits)
    # TICKCAST_MAX_CONNECTIONS_PER_IP: heads still arriving count against it (0 = off).
    max_per_ip: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    # Connections whose request head is still arriving, by client IP.
    in_handshake: Counter[str] = field(default_factory=Counter)

    def enter(self, ip: str) -> bool:
        """Count a connection from ``ip`` whose head is arriving; False (and not
        counted) when that address already has as many as the per-IP limit allows."""
        if self.max_per_ip and self.in_handshake[ip] >= self.max_per_ip:
            return False
        self.in_handshake[ip] += 1
        return True

    def leave(self, ip: str) -> None:
        left = self.in_handshake[ip] - 1
        if left > 0:
            self.in_handshake[ip] = left
        else:
            del self.in_handshake[ip]

    def status(self) -> dict[str, object]:
        return {
            "in_handshake": sum(self.in_handshake.values()),
            "timeouts": self.refused["timeout"],
            "too_large": self.refused["too_large"],
            "per_ip": self.refused["per_ip"],
        }


def refusal(status: tuple[int, str, str]) -> bytes:
    """A complete HTTP/1.1 response that also says the connection closes."""
    code, phrase, message = status
    body = (message + "\n").encode()
    head = (
        f"HTTP/1.1 {code} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body
