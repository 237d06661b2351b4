"""The leader's side of the Redis hub, as a pure core: ticks waiting to be sent, batches
sent and not yet answered, and which stream entries an answer proves were written.

The driver (``tickcast.hub.redis``) pipelines: it sends a new batch as soon as there is
one, without waiting for the answers to the batches before it. One connection keeps them
in order: Redis runs the scripts in the order they were sent, so the stream order is the
order of the batches, and a batch answered "fenced" is followed only by batches that are
refused too (or that a new term sends with its own fence).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from tickcast.hub.base import Origin
from tickcast.hub.redis_follow import Entry
from tickcast.hub.redis_script import APPLIED, PublishResult
from tickcast.messages.message import Message


@dataclass(frozen=True, slots=True)
class Batch:
    """Ticks sent in one script call, under the fence of the term that queued them: a
    batch re-sent after a lost link is still refused if that term is over."""

    fence: str
    ticks: tuple[tuple[Message, Origin | None], ...]


class Outbox:
    """Ticks queued by ``publish`` and batches not yet answered, oldest first.

    Bounded both ways: at most ``queue_size`` queued ticks (when full the OLDEST is dropped
    and counted ``dropped_full``: a tick carries its symbol's full state, so the newer one
    supersedes it) and at most ``max_in_flight`` batches on the wire, so a Redis that stops
    answering makes ticks queue here, where the bound applies.
    """

    def __init__(self, queue_size: int, batch_size: int, max_in_flight: int) -> None:
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._queued: deque[tuple[Message, Origin | None]] = deque()
        # Unanswered batches; the first ``_sent`` of them are on the current connection,
        # sent at the times in ``_sent_at``.
        self._batches: deque[Batch] = deque()
        self._sent = 0
        self._sent_at: deque[float] = deque()

    def __len__(self) -> int:
        """Ticks not yet answered for: queued or in a batch."""
        return len(self._queued) + sum(len(b.ticks) for b in self._batches)

    @property
    def in_flight(self) -> int:
        """Batches sent on the current connection and not yet answered."""
        return self._sent

    @property
    def oldest_sent_at(self) -> float | None:
        """When the oldest unanswered batch on the wire was sent."""
        return self._sent_at[0] if self._sent_at else None

    @property
    def waiting(self) -> bool:
        """Whether something waits to be sent: queued ticks or batches to send again."""
        return bool(self._queued) or self._sent < len(self._batches)

    def add(self, tick: Message, origin: Origin | None) -> bool:
        """Queue a tick; false when the queue was full and its oldest tick was dropped."""
        full = len(self._queued) >= self._queue_size
        if full:
            self._queued.popleft()
        self._queued.append((tick, origin))
        return not full

    def next_to_send(self, fence: str | None, now: float) -> Batch | None:
        """The next batch to put on the wire, now counted as sent: first those a lost
        link left unanswered (in their order), then a new one of queued ticks under
        ``fence``; ``None`` when there is nothing, or already ``max_in_flight``."""
        if self._sent >= self._max_in_flight:
            return None
        if self._sent < len(self._batches):
            batch = self._batches[self._sent]
        elif self._queued and fence is not None:
            count = min(self._batch_size, len(self._queued))
            batch = Batch(fence, tuple(self._queued.popleft() for _ in range(count)))
            self._batches.append(batch)
        else:
            return None
        self._sent += 1
        self._sent_at.append(now)
        return batch

    def answered(self) -> Batch:
        """The oldest batch on the wire, now answered (answers come in sending order)."""
        if not self._sent:
            raise RuntimeError("an answer came with no batch on the wire")
        self._sent -= 1
        self._sent_at.popleft()
        return self._batches.popleft()

    def link_lost(self) -> None:
        """The connection is gone: every unanswered batch must be sent again (the script
        drops what it had in fact applied)."""
        self._sent = 0
        self._sent_at.clear()

    def drop_all(self) -> int:
        """No longer leading: forget what is queued and what waits to be sent again (Redis
        would refuse it); batches on the wire are answered anyway. How many ticks went."""
        unsent = list(self._batches)[self._sent :]
        for _ in unsent:
            self._batches.pop()
        dropped = len(self._queued) + sum(len(b.ticks) for b in unsent)
        self._queued.clear()
        return dropped


def confirmed_entries(batch: Batch, result: PublishResult) -> list[Entry]:
    """The stream entries the script's ``result`` proves it wrote for ``batch``, in stream
    order, each naming its predecessor like the entry the reader would read back."""
    if result.fenced:
        return []
    ticks: Sequence[tuple[Message, Origin | None]] = batch.ticks
    if len(result.fates) != len(ticks):
        raise ValueError(f"{len(result.fates)} fates for a batch of {len(ticks)} ticks")
    entries: list[Entry] = []
    prev = result.first_prev
    for (tick, _), fate in zip(ticks, result.fates, strict=True):
        if fate == APPLIED:
            entries.append(Entry(tick.seq, prev, result.incarnation, result.written_ms, tick))
            prev = tick.seq
    return entries
