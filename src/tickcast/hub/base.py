"""The ``Hub`` interface: memory and Redis implementations are siblings behind it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from tickcast.messages.tick import Tick

Listener = Callable[[Tick], None]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a tick came from upstream: what the script deduplicates on.

    ``order`` is the update's upstream order within ``history`` (see ``Update``); a tick
    whose (symbol, kind, history) already reached this order in Redis was applied before
    (a takeover overlap, or redis-py re-sending a write that Redis had in fact applied).
    """

    kind: str
    history: int
    order: int

    def field(self, symbol: str) -> str:
        return f"{symbol}|{self.kind}|{self.history}"


class Hub(Protocol):
    """Publish ticks; read the latest state and history; listen for new ticks.

    Reads are synchronous and served from local memory so the fan-out and REST never wait
    on I/O; ``publish`` never blocks the ingest (a Redis hub queues, bounded).
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def publish(self, tick: Tick, origin: Origin | None = None) -> None:
        """Make ``tick`` the latest for its symbol, record it, and deliver it to listeners.
        ``origin`` names the upstream update it came from, for a hub that deduplicates
        across nodes (Redis); the memory hub needs only the seq."""

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every tick published from now on; returns the unsubscribe."""

    def on_reset(self, hook: Callable[[str], None]) -> Callable[[], None]:
        """Call ``hook(reason)`` whenever the hub rebuilt its state because history was
        lost (the clients' ticks no longer connect to what follows); returns the undo."""

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
