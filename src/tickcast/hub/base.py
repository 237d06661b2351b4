"""The ``Hub`` interface: memory and Redis implementations are siblings behind it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from tickcast.tick import Tick

Listener = Callable[[Tick], None]


class Hub(Protocol):
    """Publish ticks; read the latest state and history; listen for new ticks.

    Reads are synchronous and served from local memory so the fan-out and REST never wait
    on I/O; ``publish`` never blocks the ingest (a Redis hub queues, bounded).
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def publish(self, tick: Tick) -> None:
        """Make ``tick`` the latest for its symbol, record it, and deliver it to listeners."""

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every tick published from now on; returns the unsubscribe."""

    def latest(self, symbol: str) -> Tick | None: ...

    def snapshot(self) -> dict[str, Tick]:
        """The latest tick of every symbol held."""

    def history(self, symbol: str, limit: int) -> list[Tick]:
        """Up to ``limit`` most recent ticks of ``symbol``, oldest first."""

    def since(self, symbols: Iterable[str], after_seq: int) -> list[Tick] | None:
        """Every held tick of ``symbols`` with ``seq > after_seq`` in seq order, or ``None``
        when some of them are no longer held (the caller must resynchronize)."""

    def last_seq(self) -> int:
        """The highest ``seq`` published so far (0 before any)."""

    def status(self) -> dict[str, object]: ...

    @property
    def connected(self) -> bool:
        """Whether the hub can deliver new ticks (always true in memory)."""
