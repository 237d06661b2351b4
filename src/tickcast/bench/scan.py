"""Counting ticks in the raw bytes a client receives, without parsing JSON.

At hundreds of thousands of messages per second a JSON parse per message would make the
load generator the bottleneck. Each received chunk is scanned once with one compiled
regex instead (C speed); the unconsumed end of a chunk is kept for the next one, so a
message split across reads is counted once, whole. WebSocket frames from a server are
unmasked (RFC 6455 §5.1) and their 2-4 byte headers never contain ``"symbol":"``, so
the scan runs over frames and SSE chunks alike and skips the framing.

A tick is ``{"type":"tick","symbol":..., ..., "timestamp_ms":..., ..., "seq":..., ...}``
with no nested object: ``[^}]`` keeps a match inside one message. ``timestamp_ms`` is
the exchange's event time (ms), so latency is receive wall time minus it (same host,
same clock; the ms truncation adds up to 1 ms). ``seq`` is global across symbols and
increases, so per symbol a seq at or below the last one is a duplicate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from tickcast.bench.histogram import FINE, UNITS_PER_MS, LatencyHistogram, bucket_of

# Greedy ``[^}]*`` scans to the closing brace and backtracks: about 3x faster under
# CPython's re than the lazy ``.*?`` form. ``[,}]`` after the seq proves its digits are
# complete (a read can end inside a number).
TICK_PATTERN = re.compile(rb'"symbol":"([A-Z0-9]+)"[^}]*"timestamp_ms":(\d+)[^}]*"seq":(\d+)[,}]')
# Longest incomplete message kept for the next read: far above one tick (~300 B).
MAX_TAIL = 4096
NEVER_MS = 1 << 62
_findall = TICK_PATTERN.findall

# Per symbol in a Ledger: [last seq, last in-window timestamp, distinct in-window events].
_LAST_SEQ, _LAST_STAMP, _EVENTS = 0, 1, 2


class Ledger:
    """What one connection received: per symbol, the last seq and how many distinct
    exchange events (by ``timestamp_ms``) fell in the measured window."""

    __slots__ = ("deliveries", "duplicates", "messages", "received_bytes", "symbols", "tail")

    def __init__(self) -> None:
        self.symbols: dict[bytes, list[int]] = {}
        self.tail = b""
        self.deliveries = 0  # non-duplicate ticks of the window
        self.messages = 0  # every tick found, in the window or not
        self.duplicates = 0
        self.received_bytes = 0

    def events(self, symbol: bytes) -> int:
        entry = self.symbols.get(symbol)
        return 0 if entry is None else entry[_EVENTS]

    def gaps(self, expected: Mapping[bytes, int]) -> tuple[int, int]:
        """(missing, extra): in-window events per symbol against ``expected``."""
        missing = extra = 0
        for symbol, want in expected.items():
            got = self.events(symbol)
            missing += max(0, want - got)
            extra += max(0, got - want)
        for symbol, entry in self.symbols.items():
            if symbol not in expected:
                extra += entry[_EVENTS]
        return missing, extra


class Scanner:
    """Scans chunks for one process: the measured window and the latency histogram are
    shared by all its connections; each connection has its own ``Ledger``."""

    def __init__(self, window_start_ms: int = NEVER_MS, window_end_ms: int = NEVER_MS) -> None:
        # No window until one is set: nothing counts before the measurement starts.
        self.window_start_ms = window_start_ms
        self.window_end_ms = window_end_ms
        self.histogram = LatencyHistogram()
        self.deliveries = 0

    def new_ledger(self) -> Ledger:
        return Ledger()

    def set_window(self, start_ms: int, end_ms: int) -> None:
        """Count only ticks whose exchange time is in ``[start_ms, end_ms)``."""
        self.window_start_ms = start_ms
        self.window_end_ms = end_ms

    def feed(self, ledger: Ledger, data: bytes, now_units: int, wire_bytes: int = -1) -> int:
        """Account every complete tick in ``ledger.tail + data`` received at
        ``now_units`` (wall clock, 0.1 ms units); returns the in-window count.
        ``wire_bytes``: what ``data`` took on the wire, when it was inflated from that."""
        ledger.received_bytes += len(data) if wire_bytes < 0 else wire_bytes
        if ledger.tail:
            data = ledger.tail + data
        found = _findall(data)
        if not found:
            ledger.tail = partial_object(data)
            return 0
        ledger.tail = rest_after(data, found[-1][2])
        ledger.messages += len(found)
        start = self.window_start_ms
        end = self.window_end_ms
        counts = self.histogram.counts
        top = self.histogram.max_units
        symbols = ledger.symbols
        duplicates = in_window = 0
        # The hot loop: locals only, no calls but int() and one dict lookup.
        for symbol, stamp_text, seq_text in found:
            seq = int(seq_text)
            entry = symbols.get(symbol)
            if entry is None:
                entry = symbols[symbol] = [0, 0, 0]
            if seq <= entry[0]:
                duplicates += 1
                continue
            entry[0] = seq
            stamp = int(stamp_text)
            if start <= stamp < end:
                in_window += 1
                if stamp != entry[1]:
                    entry[1] = stamp
                    entry[2] += 1
                units = now_units - stamp * UNITS_PER_MS
                if units < 0:
                    units = 0
                elif units > top:
                    top = units
                counts[units if units < FINE else bucket_of(units)] += 1
        self.histogram.max_units = top
        ledger.duplicates += duplicates
        ledger.deliveries += in_window
        self.deliveries += in_window
        return in_window


def rest_after(data: bytes, last_seq: bytes) -> bytes:
    """The start of an incomplete tick after the last matched one (which ends with
    ``"seq":<last_seq>`` plus ``,`` or ``}``). A later copy of that text would itself be
    a complete tick and so the last match: the rightmost occurrence is the one."""
    needle = b'"seq":' + last_seq
    at = data.rfind(needle + b",")
    if at < 0:
        at = data.rfind(needle + b"}")
    end = at + len(needle) + 1
    return partial_object(data[end:]) if end < len(data) else b""


def partial_object(rest: bytes) -> bytes:
    """From the last ``{`` on (a tick has no nested object, so an incomplete one starts
    there), at most ``MAX_TAIL`` bytes; empty when no object has begun. Keeping only
    that avoids copying every next read behind a useless remnant."""
    start = rest.rfind(b"{")
    return rest[start:][-MAX_TAIL:] if start >= 0 else b""


@dataclass
class Tally:
    """Gaps and duplicates over many connections (healthy ones only)."""

    clients: int = 0
    deliveries: int = 0
    messages: int = 0
    received_bytes: int = 0
    gaps: int = 0
    gaps_max_per_client: int = 0
    clients_with_gaps: int = 0
    extra: int = 0
    duplicates: int = 0
    duplicates_max_per_client: int = 0

    def add(self, ledger: Ledger, expected: Mapping[bytes, int]) -> None:
        missing, extra = ledger.gaps(expected)
        self.clients += 1
        self.deliveries += ledger.deliveries
        self.messages += ledger.messages
        self.received_bytes += ledger.received_bytes
        self.gaps += missing
        self.gaps_max_per_client = max(self.gaps_max_per_client, missing)
        self.clients_with_gaps += missing > 0
        self.extra += extra
        self.duplicates += ledger.duplicates
        self.duplicates_max_per_client = max(self.duplicates_max_per_client, ledger.duplicates)

    def merge(self, other: Tally) -> None:
        for name, value in asdict(other).items():
            if name.endswith("_max_per_client"):
                setattr(self, name, max(getattr(self, name), value))
            else:
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return {name: int(value) for name, value in asdict(self).items()}
