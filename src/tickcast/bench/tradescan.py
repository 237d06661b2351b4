"""Counting trades and ``gap`` messages in the raw bytes a client receives (``--streams
trades``), without parsing JSON: the trade twin of ``scan``.

A trade is ``{"type":"trade","stream":..,"symbol":..,"trade_id":..,..,"timestamp_ms":..,
"seq":..,..}`` and a gap ``{"type":"gap","stream":"BTCUSDT@trades","missed":N}`` (SPEC
§12); one regex with two alternatives finds both, in order, in each chunk. The simulated
exchange numbers each symbol's aggregate trades one apart, so per connection and symbol:

- an id at or below the last one is a duplicate;
- an id more than one above the last is a hole of the ids between: trades lost;
- a ``gap`` message announces ``missed`` trades dropped for this client (tickcast's
  bounded trade queue); holes not covered by announcements are *unannounced* losses.

Trades whose exchange time is in the measured window are counted once each against the
exchange's own count for the window (``ReferenceFeed``), as ``scan`` does for ticks, so
a trade lost at the window's end (no later id to show the hole) is still a gap.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from tickcast.bench.histogram import FINE, UNITS_PER_MS, bucket_of
from tickcast.bench.scan import Ledger, Scanner, partial_object

# Group 1-4: a trade's symbol, id, time and seq ([,}] after the seq: its digits are
# complete); group 5-6: a gap's symbol and missed count.
TRADE_PATTERN = re.compile(
    rb'"symbol":"([A-Z0-9]+)","trade_id":(\d+)[^}]*"timestamp_ms":(\d+)[^}]*"seq":(\d+)[,}]'
    rb'|"stream":"([A-Z0-9]+)@trades","missed":(\d+)}'
)
_findall = TRADE_PATTERN.findall

# Per symbol in a TradeLedger: [last trade id, in-window trades].
# A symbol's entry in a ledger: laid out as ``scan.Ledger``'s, whose ``events`` reads it
# (the middle slot, a tick's last stamp there, is unused here).
_LAST_ID, _EVENTS = 0, 2


class TradeLedger(Ledger):
    """What one connection received: ``scan.Ledger``'s counts (so ``scan.Tally`` adds
    these up too), with trades for events, and what the tape shows of its losses."""

    __slots__ = ("gap_messages", "holes", "missed")

    def __init__(self) -> None:
        super().__init__()
        self.holes = 0  # trade ids skipped, anywhere on the connection
        self.gap_messages = 0
        self.missed = 0  # the sum of the gap messages' ``missed``

    @property
    def unannounced(self) -> int:
        """Skipped ids that no ``gap`` message accounted for."""
        return max(0, self.holes - self.missed)


class TradeScanner(Scanner):
    """Scans chunks for a group of connections: one window and one latency histogram
    for the group (the healthy clients, or the stalled ones; ``scan.Scanner``'s), a
    ``TradeLedger`` each, counted by trade id."""

    def new_ledger(self) -> TradeLedger:
        return TradeLedger()

    def feed(self, ledger: Ledger, data: bytes, now_units: int, wire_bytes: int = -1) -> int:
        """Account every complete trade and gap in ``ledger.tail + data`` received at
        ``now_units`` (wall clock, 0.1 ms units); returns the in-window trade count.
        ``wire_bytes``: what ``data`` took on the wire, when it was inflated from that."""
        assert isinstance(ledger, TradeLedger), "a trade scanner's ledgers are its own"
        ledger.received_bytes += len(data) if wire_bytes < 0 else wire_bytes
        if ledger.tail:
            data = ledger.tail + data
        found = _findall(data)
        if not found:
            ledger.tail = partial_object(data)
            return 0
        ledger.tail = _rest_after(data, found[-1])
        start, end = self.window_start_ms, self.window_end_ms
        counts = self.histogram.counts
        top = self.histogram.max_units
        symbols = ledger.symbols
        in_window = 0
        for symbol, id_text, stamp_text, _seq, gap_symbol, missed in found:
            if gap_symbol:
                ledger.gap_messages += 1
                ledger.missed += int(missed)
                continue
            ledger.messages += 1
            trade_id = int(id_text)
            entry = symbols.get(symbol)
            if entry is None:
                entry = symbols[symbol] = [trade_id - 1, 0, 0]
            last = entry[_LAST_ID]
            if trade_id <= last:
                ledger.duplicates += 1
                continue
            ledger.holes += trade_id - last - 1
            entry[_LAST_ID] = trade_id
            stamp = int(stamp_text)
            if start <= stamp < end:
                in_window += 1
                entry[_EVENTS] += 1
                units = now_units - stamp * UNITS_PER_MS
                if units < 0:
                    units = 0
                elif units > top:
                    top = units
                counts[units if units < FINE else bucket_of(units)] += 1
        self.histogram.max_units = top
        ledger.deliveries += in_window
        self.deliveries += in_window
        return in_window


def _rest_after(data: bytes, last: tuple[bytes, ...]) -> bytes:
    """The start of an incomplete message after the last match (see ``scan.rest_after``:
    a later copy of the match's closing text would itself be the last match)."""
    if last[4]:
        needle = b'"missed":' + last[5] + b"}"
        end = data.rfind(needle) + len(needle)
    else:
        needle = b'"seq":' + last[3]
        at = data.rfind(needle + b",")
        if at < 0:
            at = data.rfind(needle + b"}")
        end = at + len(needle) + 1
    return partial_object(data[end:]) if end < len(data) else b""


@dataclass
class TradeCounts:
    """The trade-only counters over many connections (``scan.Tally`` has the rest)."""

    clients: int = 0
    holes: int = 0
    gap_messages: int = 0
    missed: int = 0
    clients_with_gap_messages: int = 0
    unannounced: int = 0
    clients_unannounced: int = 0

    def add(self, ledger: TradeLedger) -> None:
        self.clients += 1
        self.holes += ledger.holes
        self.gap_messages += ledger.gap_messages
        self.missed += ledger.missed
        self.clients_with_gap_messages += ledger.gap_messages > 0
        self.unannounced += ledger.unannounced
        self.clients_unannounced += ledger.unannounced > 0

    def merge(self, other: TradeCounts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return {name: int(value) for name, value in asdict(self).items()}
