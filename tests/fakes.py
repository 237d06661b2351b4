"""Recording fakes for in-process tests of the session and the edge: a transport that
keeps what it is given, and a clock with timers that move only when the test says."""

from __future__ import annotations

import json
from collections.abc import Callable

from tickcast.edge.contracts import TransportKind
from tickcast.edge.wire import Wire, WireFormat
from tickcast.errors import CloseReason
from tickcast.messages.tick import Tick


class RecordingTransport:
    """Takes writes while ``writable``; remembers every write and the close reason.

    Like the real transports, it calls ``on_pause``/``on_resume`` when its writability
    changes (a test flips ``writable`` the way flow control would).
    """

    kind: TransportKind = "ws"

    def __init__(self, wire_format: WireFormat = "json") -> None:
        # "json": one message per write (a server framing each write); "sse_event": events
        # that may be joined in one write, as every format of the fast path may be.
        self.wire_format: WireFormat = wire_format
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None
        self._writable = True
        self.writes: list[bytes] = []
        self.buffered_bytes = 0
        self.closed_with: CloseReason | None = None

    @property
    def writable(self) -> bool:
        return self._writable

    @writable.setter
    def writable(self, value: bool) -> None:
        changed, self._writable = value != self._writable, value
        callback = self.on_resume if value else self.on_pause
        if changed and callback is not None:
            callback()

    def writable_before_resume(self) -> None:
        """Writable again, with the resume callback not run yet (it runs a moment later)."""
        self._writable = True

    def write(self, data: bytes) -> None:
        assert self.closed_with is None, "write after close"
        self.writes.append(data)

    def buffered(self) -> int:
        return self.buffered_bytes

    def close(self, reason: CloseReason) -> None:
        self.closed_with = reason

    def messages(self) -> list[dict[str, object]]:
        """Every message written, oldest first, and forgotten. In the "json" format each
        write must be one message (it is one WebSocket message there); in "sse_event" a
        write may carry several events."""
        out: list[dict[str, object]] = []
        if self.wire_format == "sse_event":
            for data in self.writes:
                out.extend(
                    json.loads(line[6:])
                    for line in data.decode().split("\n")
                    if line.startswith("data: ")
                )
            self.writes.clear()
            return out
        out.extend(json.loads(data) for data in self.writes)  # two in one: an error here
        self.writes.clear()
        return out


class Timer:
    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeTime:
    """A monotonic clock and a ``call_later`` that only run when the test advances."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[Timer] = []

    def __call__(self) -> float:
        return self.now

    def schedule(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = [t for t in self.timers if not t.cancelled and t.due <= end]
            if not due:
                break
            timer = min(due, key=lambda t: t.due)
            self.timers.remove(timer)
            self.now = max(self.now, timer.due)
            timer.callback()
        self.now = end

    @property
    def armed(self) -> int:
        return sum(not t.cancelled for t in self.timers)


def tick(symbol: str, seq: int, price: str = "1.5") -> Wire:
    return Wire(Tick(symbol=symbol, seq=seq, timestamp_ms=1_700_000_000_000 + seq, source="sim",
                     last_price=price, change_percent="0.1"))  # fmt: skip
