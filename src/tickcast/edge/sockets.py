"""Socket-level facts the fast path uses: per-connection buffer limits, and how much of
what was written the peer has acknowledged (Linux ``TCP_INFO``)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
from dataclasses import dataclass


@dataclass(frozen=True)
class SocketTuning:
    """Per-connection socket limits, so backpressure shows within seconds.

    With the kernel's auto-tuned send buffer (up to several MB) a client that stops
    reading would silently absorb minutes of stale ticks before flow control pauses, and
    conflation could not start; a modest buffer keeps what a client sees fresh.
    """

    sndbuf: int = 0  # 0 = the operating system's default
    write_high: int = 64 * 1024

    def apply(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if self.sndbuf and sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        # Duck-typed: uvloop's transports implement the methods but do not subclass
        # asyncio.WriteTransport, so an isinstance check would skip them silently.
        set_limits = getattr(transport, "set_write_buffer_limits", None)
        if set_limits is not None:
            set_limits(high=self.write_high, low=self.write_high // 4)


# struct tcp_info (linux/tcp.h): tcpi_bytes_acked (u64) at 120, tcpi_notsent_bytes (u32)
# at 144, tcpi_bytes_sent (u64) at 200, tcpi_bytes_retrans (u64) at 208 (Linux 4.19+).
_TCP_INFO_LEN = 216
_TCP_INFO = struct.Struct("=120xQ16xI52xQQ")


def tcp_progress(sock: socket.socket | None) -> tuple[int, int] | None:
    """(bytes the peer has acknowledged, bytes still in the kernel for it), or None where
    TCP_INFO is not available. A peer that reads nothing acknowledges nothing."""
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return None
    if len(raw) < _TCP_INFO_LEN:
        return None
    acked, notsent, sent, retrans = _TCP_INFO.unpack_from(raw)
    return acked, notsent + in_flight(acked, sent, retrans)


# SIOCOUTQ (the same number as TIOCOUTQ): a TCP socket's bytes not yet acknowledged,
# unsent ones included. It takes the descriptor itself, where ``getsockopt`` needs a socket
# object (uvloop makes one per call for its transports' sockets: three times the cost).
_OUTQ = getattr(termios, "TIOCOUTQ", None)
_INT = struct.Struct("=i")


# What ``RawTransport.progress`` answers when nothing is outstanding, without reading the
# acknowledged count (-1: unknown, so the next full reading never looks frozen).
NOTHING_OUTSTANDING: tuple[int, int] = (-1, 0)


def unacked_bytes(fd: int) -> int | None:
    """The bytes written to socket ``fd`` that its peer has not acknowledged yet, or None
    where the kernel cannot say (not Linux, the descriptor gone)."""
    if _OUTQ is None or fd < 0:
        return None
    buf = bytearray(4)
    try:
        fcntl.ioctl(fd, _OUTQ, buf, True)
    except OSError:
        return None
    queued: int = _INT.unpack(buf)[0]
    return queued


def in_flight(acked: int, sent: int, retrans: int) -> int:
    """Bytes sent and not yet acknowledged. ``tcpi_bytes_sent`` counts retransmissions
    too: without taking them out, one retransmitted segment would look outstanding for
    ever, and a quiet feed would get a healthy client closed as stalled."""
    return max(0, sent - retrans - acked)
