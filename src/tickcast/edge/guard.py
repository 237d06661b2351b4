"""Limits on a request before the app sees it: the size of its head and the time it may
take to arrive.

A connection costs a file descriptor from its first byte, long before the app can refuse
it, so a client that sends a request head slowly (slowloris) or without end holds server
resources that no app-level limit sees. The HTTP protocol in ``fastpath`` applies these
limits; this module holds them and counts what they refused, for ``/status`` and metrics.

A trusted proxy (``TICKCAST_TRUSTED_PROXIES``) is one peer address for all of its clients:
its connections keep the size and time limits but are not counted per address here. The
clients behind it are counted by admission, by the address the proxy forwards.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, TypeAlias

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

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


def trusted_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``TICKCAST_TRUSTED_PROXIES`` (addresses and networks, as the settings checked
    them) as networks; a single address is a network of one."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


@dataclass
class HandshakeGuard:
    """The limits, and what each refused. One per app, shared by its connections."""

    limits: HeadLimits = field(default_factory=HeadLimits)
    # TICKCAST_MAX_CONNECTIONS_PER_IP: heads still arriving count against it (0 = off).
    max_per_ip: int = 0
    # TICKCAST_TRUSTED_PROXIES, parsed once (see ``trusted_networks``).
    trusted: tuple[Network, ...] = ()
    refused: Counter[str] = field(default_factory=Counter)
    # Connections whose request head is still arriving, by client IP.
    in_handshake: Counter[str] = field(default_factory=Counter)

    def trusts(self, ip: str) -> bool:
        """Whether ``ip`` is a trusted proxy's address (so its requests say whose they
        are in X-Forwarded-For, and it speaks for many clients)."""
        if not self.trusted:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:  # not an IP peer at all (a Unix socket, say)
            return False
        return any(address in network for network in self.trusted)

    def enter(self, ip: str) -> bool:
        """Count a connection from ``ip`` whose head is arriving; False (and not
        counted) when that address already has as many as the per-IP limit allows.
        A trusted proxy's connections are let in uncounted: every client behind it
        shares its address, so a limit on that address would be a limit on all of them."""
        if self.trusts(ip):
            return True
        if self.max_per_ip and self.in_handshake[ip] >= self.max_per_ip:
            return False
        self.in_handshake[ip] += 1
        return True

    def leave(self, ip: str) -> None:
        """The head from ``ip`` is complete (or the connection gone); nothing for a
        connection ``enter`` did not count."""
        left = self.in_handshake[ip] - 1
        if left > 0:
            self.in_handshake[ip] = left
        else:
            self.in_handshake.pop(ip, None)

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
