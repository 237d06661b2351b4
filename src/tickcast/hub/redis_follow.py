"""The Redis hub's reader, as a pure core: parse stream entries, decide whether each one
continues the stream with no gap, and rebuild the local state from a Redis snapshot.

The driver (``tickcast.hub.redis``) does the I/O and feeds what it reads in here.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tickcast.hub.redis_script import F_INCARNATION, F_PREV, F_TICK, F_TIME
from tickcast.hub.store import MessageStore
from tickcast.messages.message import Message, decode_message


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry: a message plus what proves the stream's continuity."""

    seq: int
    prev: int
    incarnation: str
    written_ms: int
    message: Message


def entry_seq(entry_id: bytes | str) -> int:
    """``b"1234-0"`` -> 1234 (stream ids are ``<seq>-0``)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


def parse_entry(entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> Entry:
    """Raises ``ValueError`` (or ``KeyError``) for an entry the hub did not write."""
    return Entry(
        seq=entry_seq(entry_id),
        prev=int(fields[F_PREV]),
        incarnation=fields[F_INCARNATION].decode(),
        written_ms=int(fields.get(F_TIME, b"0")),
        message=decode_message(fields[F_TICK]),
    )


def stream_entries(reply: object) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The (id, fields) pairs of an XREAD reply for one stream, RESP2 or RESP3 shaped."""
    if not reply:
        return []
    if isinstance(reply, dict):
        streams: Iterable[object] = reply.values()
    else:
        streams = (item[1] for item in reply)  # type: ignore[attr-defined]
    out: list[tuple[bytes, dict[bytes, bytes]]] = []
    for entries in streams:
        out.extend((eid, fields) for eid, fields in entries)  # type: ignore[attr-defined]
    return out


class Verdict(enum.Enum):
    DELIVER = "deliver"
    SKIP = "skip"  # already delivered: the leader's own entries, on its script's answer
    NEW_INCARNATION = "incarnation"  # Redis lost its data: history is gone
    GAP = "trimmed"  # entries between our position and this one are gone (trimmed past)


class Follower:
    """Where this node is in the stream: the seq of the last entry delivered and the
    incarnation it belongs to. Every entry names its predecessor (``prev``), so an entry
    that does not follow ``position`` exactly proves a gap instead of skipping silently."""

    def __init__(self, position: int, incarnation: str) -> None:
        self.position = position
        self.incarnation = incarnation

    def check(self, entry: Entry) -> Verdict:
        if entry.incarnation != self.incarnation:
            return Verdict.NEW_INCARNATION
        if entry.seq <= self.position:
            return Verdict.SKIP
        if entry.prev != self.position:
            return Verdict.GAP
        return Verdict.DELIVER

    def advance(self, entry: Entry) -> None:
        self.position = entry.seq

    @property
    def last_id(self) -> str:
        """The explicit id the next XREAD starts after (never ``$``)."""
        return f"{self.position}-0"


@dataclass(slots=True)
class Loaded:
    """Local state rebuilt from Redis: the store, where the reader continues, and the
    ``floor``: ``since(after)`` is complete only for ``after >= floor``."""

    store: MessageStore
    incarnation: str
    position: int
    floor: int


def load_state(
    history_size: int,
    incarnation: str,
    meta_seq: int,
    latest: Iterable[bytes],
    entries: Sequence[Entry],
    lost_after: int = 0,
) -> Loaded:
    """Build a fresh store from the latest hash and the stream (read in one transaction).

    ``lost_after``: the highest seq this node had seen of a history that is now gone (a new
    incarnation); a resume from at or below it cannot be complete whatever Redis holds now.
    """
    messages: dict[int, Message] = {}
    for payload in latest:
        message = decode_message(payload)
        messages[message.seq] = message
    for entry in entries:
        messages[entry.seq] = entry.message
    store = MessageStore(history_size)
    # Latest-hash ticks whose entries were trimmed come first (lower seqs): the store only
    # accepts increasing seqs.
    for seq in sorted(messages):
        store.add(messages[seq])
    position = max(meta_seq, entries[-1].seq if entries else 0)
    floor = entries[0].seq - 1 if entries else position
    return Loaded(store, incarnation, position, max(floor, lost_after))


def backoff_delay(attempt: int, rng: random.Random, base: float = 0.05, cap: float = 2.0) -> float:
    """Exponential backoff with jitter (half to full of the step), so nodes that lost Redis
    together do not all come back in the same instant."""
    step = min(cap, base * 2.0 ** min(attempt, 16))
    return float(step * rng.uniform(0.5, 1.0))
