"""What a session is given: the transport it writes to, its limits, its timers. Apart
from ``session`` so that the transports can name what they are without importing it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from tickcast.edge.wire import WireFormat
from tickcast.errors import CloseReason

if TYPE_CHECKING:
    from tickcast.edge.session import Session

TransportKind = Literal["ws", "sse"]


class Transport(Protocol):
    """Where a session's bytes go: a WebSocket or an SSE stream.

    The transport calls ``on_pause`` when its flow control stops taking writes and
    ``on_resume`` when it takes them again; the edge points them at the session.
    """

    on_pause: Callable[[], None] | None
    on_resume: Callable[[], None] | None

    @property
    def kind(self) -> TransportKind: ...

    @property
    def wire_format(self) -> WireFormat:
        """How this transport wants its bytes (see ``tickcast.edge.wire``)."""

    @property
    def writable(self) -> bool:
        """False while the connection's flow control says it cannot take more."""

    def write(self, data: bytes) -> None:
        """Queue already-encoded wire bytes (frames or events) without blocking."""

    def buffered(self) -> int:
        """Bytes written but not yet accepted by the peer's socket."""

    def close(self, reason: CloseReason) -> None:
        """Close the connection now, with ``reason`` where the protocol can carry it."""


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Coalescer(Protocol):
    """Collects sessions with bytes waiting in ``outbuf`` and flushes them together."""

    def add(self, session: Session) -> None: ...


Scheduler = Callable[[float, Callable[[], None]], Cancellable]


@dataclass(frozen=True)
class Limits:
    max_subscriptions: int = 200
    ops_per_second: float = 20.0
    ops_burst: int = 40
    client_buffer_bytes: int = 1 << 20
    slow_client_timeout: float = 10.0
    trade_queue: int = 1000
