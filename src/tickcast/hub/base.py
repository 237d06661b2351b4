"""The ``Hub`` interface: memory and Redis implementations are siblings behind it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from tickcast.hub.books import HeldBooks
from tickcast.messages.message import Message

Listener = Callable[[Message], None]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message came from upstream: what the script deduplicates on.

    ``order`` is the event's upstream order within ``history`` (see ``Update``: an event
    time, a book update id, a trade id); a message whose (stream key, kind, history)
    already reached this order in Redis was applied before
    (a takeover overlap, or redis-py re-sending a write that Redis had in fact applied).
    """

    kind: str
    history: int
    order: int

    def field(self, key: str) -> str:
        return f"{key}|{self.kind}|{self.history}"


class Hub(Protocol):
    """Publish messages; read the latest state and history; listen for new messages.

    Every kind of message (ticks, trades, candles) goes through the one hub, keyed by its
    stream (``Message.key``: the bare symbol for ticks) and numbered by one ``seq``.

    Reads are synchronous and served from local memory so the fan-out and REST never wait
    on I/O; ``publish`` never blocks the ingest (a Redis hub queues, bounded).
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def publish(self, message: Message, origin: Origin | None = None) -> None:
        """Make ``message`` the latest of its stream, record it, and deliver it to listeners.
        ``origin`` names the upstream update it came from, for a hub that deduplicates
        across nodes (Redis); the memory hub needs only the seq."""

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every message published from now on; returns the undo."""

    def on_reset(self, hook: Callable[[str], None]) -> Callable[[], None]:
        """Call ``hook(reason)`` whenever the hub rebuilt its state because history was
        lost (the clients' ticks no longer connect to what follows); returns the undo."""

    def latest(self, key: str) -> Message | None:
        """The newest message of the stream ``key`` (a bare symbol: its tick)."""

    def snapshot(self) -> dict[str, Message]:
        """The latest message of every stream held, by key."""

    def history(self, key: str, limit: int) -> list[Message]:
        """Up to ``limit`` most recent messages of the stream ``key``, oldest first."""

    def since(self, keys: Iterable[str], after_seq: int) -> list[Message] | None:
        """Every held message of the streams ``keys`` with ``seq > after_seq`` in seq
        order, or ``None`` when some of them are no longer held (the caller must
        resynchronize)."""

    def last_seq(self) -> int:
        """The highest ``seq`` published so far (0 before any)."""

    def books(self) -> HeldBooks:
        """The order books held, as the hub's messages built them (SPEC §12)."""

    def status(self) -> dict[str, object]: ...

    @property
    def connected(self) -> bool:
        """Whether the hub can deliver new messages (always true in memory)."""
