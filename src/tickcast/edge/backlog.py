"""A resuming client's backlog: every message it missed, then every live one, never conflated.

Pure data with no I/O: the session drains it as the transport's flow control allows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from tickcast.edge.wire import Wire, WireFormat, encode_market
from tickcast.messages.message import Message


class Backlog:
    """Ticks a client must receive in full and in order before anything live: those it
    missed (from history), then the live ticks that arrive while it catches up.

    Never conflated, since a skipped tick would be a gap in a resume; bounded instead:
    it holds at most ``limit`` ticks, references to ticks the hub and the fan-out share.
    """

    __slots__ = ("_items", "limit")

    def __init__(self, messages: Iterable[Message], limit: int) -> None:
        self._items: deque[Message | Wire] = deque(messages)
        self.limit = max(limit, len(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def add(self, wire: Wire) -> bool:
        """Queue a live tick behind the rest; False when that would pass the limit."""
        if len(self._items) >= self.limit:
            return False
        self._items.append(wire)
        return True

    def take(self, fmt: WireFormat, max_bytes: int) -> tuple[bytes, int]:
        """The next ticks, encoded, up to ``max_bytes`` (at least one): bytes and count."""
        items = self._items
        out: list[bytes] = []
        size = 0
        while items and (not out or size < max_bytes):
            item = items.popleft()
            data = item.get(fmt) if isinstance(item, Wire) else encode_market(fmt, item)
            out.append(data)
            size += len(data)
        return b"".join(out), len(out)

    def discard(self, keys: Iterable[str]) -> None:
        """Forget the messages of the streams ``keys`` (the client unsubscribed them)."""
        gone = set(keys)
        kept = [i for i in self._items if _key_of(i) not in gone]
        self._items = deque(kept)


def _key_of(item: Message | Wire) -> str:
    return item.message.key if isinstance(item, Wire) else item.key
