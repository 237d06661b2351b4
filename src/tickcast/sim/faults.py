"""Fault kinds of the simulated exchange, their schedule syntax and their malformed frames.

Pure: parsing and payload building only. ``exchange`` applies the faults.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

import orjson


class FaultKind(enum.StrEnum):
    """What the simulated exchange can do wrong, on purpose."""

    DROP = "drop"
    CLOSE1000 = "close1000"
    CLOSE1001 = "close1001"
    CLOSE1008 = "close1008"
    STALL = "stall"
    SHUTDOWN = "shutdown"
    GARBAGE = "garbage"
    BURST = "burst"
    LATENCY = "latency"
    DEPTH_GAP = "depth_gap"
    REST_429 = "rest_429"
    REST_DOWN = "rest_down"


# Faults that last a window, DEFAULT_WINDOW when given no duration.
WINDOW_KINDS: Final = frozenset(
    {FaultKind.STALL, FaultKind.LATENCY, FaultKind.REST_429, FaultKind.REST_DOWN}
)


@dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` starting ``at`` seconds after ``start()``, lasting ``duration``.

    ``duration`` means: stall, latency, rest_429 (REST answers 429 with Retry-After)
    and rest_down (REST answers 503), how long (0: ``DEFAULT_WINDOW``); shutdown, the
    delay between the serverShutdown event and the close; garbage, how long malformed
    frames keep coming (0: one frame); burst, hundreds of messages (``burst_size``);
    ignored by drop, the closes and depth_gap (one symbol's next depth diff is never
    sent).
    """

    kind: FaultKind
    at: float
    duration: float = 0.0

    def __post_init__(self) -> None:
        for name, value in (("at", self.at), ("duration", self.duration)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"fault {name} must be a finite number >= 0, got {value!r}")


DEFAULT_WINDOW: Final = 10.0
DEFAULT_LATENCY_MS: Final = 250.0
_MIN_BURST: Final = 100

_KINDS_TEXT: Final = ", ".join(k.value for k in FaultKind)


def effective_duration(kind: FaultKind, duration: float) -> float:
    """Seconds a window fault lasts; a bare ``stall@10`` must still do something."""
    if kind in WINDOW_KINDS and duration <= 0:
        return DEFAULT_WINDOW
    return duration


def burst_size(duration: float) -> int:
    """Messages per connection in a burst: ``duration * 100``, at least 100."""
    return max(_MIN_BURST, int(duration * 100))


def _parse_kind(text: str, item: str) -> FaultKind:
    try:
        return FaultKind(text.strip().lower())
    except ValueError:
        raise ValueError(
            f"bad fault {item!r}: unknown kind {text.strip()!r}; expected one of {_KINDS_TEXT}"
        ) from None


def _parse_seconds(text: str, what: str, item: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"bad fault {item!r}: {what} {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"bad fault {item!r}: {what} must be a finite number >= 0")
    return value


def parse_fault_schedule(text: str) -> tuple[Fault, ...]:
    """Parse ``'drop@5,stall@10+12,burst@20+3'``: ``KIND@SECONDS[+DURATION]`` items.

    Returns the faults in the order given. Raises ValueError naming the bad item.
    """
    faults = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        kind_text, sep, when = item.partition("@")
        if not sep:
            raise ValueError(f"bad fault {item!r}: expected KIND@SECONDS[+DURATION]")
        kind = _parse_kind(kind_text, item)
        at_text, plus, duration_text = when.partition("+")
        at = _parse_seconds(at_text, "start time", item)
        duration = _parse_seconds(duration_text, "duration", item) if plus else 0.0
        faults.append(Fault(kind, at, duration))
    return tuple(faults)


@dataclass(frozen=True)
class FaultRequest:
    """A run-time injection as asked over the admin endpoint; ``symbol`` (lowercase)
    chooses a depth_gap's symbol."""

    kind: FaultKind
    duration: float = 0.0
    latency_ms: float = DEFAULT_LATENCY_MS
    symbol: str | None = None


def parse_fault_query(query: str) -> FaultRequest:
    """Parse ``kind=stall&duration=2[&ms=400][&symbol=BTCUSDT]`` from ``POST /_sim/fault``;
    ValueError if bad."""
    params = parse_qs(query, keep_blank_values=True)
    kinds = params.get("kind")
    if not kinds or not kinds[0]:
        raise ValueError(f"missing parameter 'kind'; expected one of {_KINDS_TEXT}")
    item = query
    kind = _parse_kind(kinds[0], item)
    duration = _parse_seconds(params.get("duration", ["0"])[0], "duration", item)
    latency_ms = _parse_seconds(params.get("ms", [str(DEFAULT_LATENCY_MS)])[0], "ms", item)
    symbol = params.get("symbol", [""])[0].lower() or None
    if symbol is not None and not (symbol.isascii() and symbol.isalnum() and len(symbol) <= 20):
        raise ValueError(f"bad fault {item!r}: symbol {symbol!r} is not a symbol")
    return FaultRequest(kind, duration, latency_ms, symbol)


def garbage_payload(index: int, event_time_ms: int, stream: str | None) -> bytes:
    """The ``index``-th malformed frame of a garbage fault (cycles through four shapes).

    ``stream`` is set on combined connections: the two well-formed-JSON shapes are then
    wrapped like real data, so they reach the client's payload parser.
    """
    shape = index % 4
    if shape == 0:
        return b'{"e":"24hrTicker","s":'
    if shape == 1:
        return b"this is not JSON"
    if shape == 2:
        body: dict[str, object] = {"e": "mystery", "E": event_time_ms}
    else:
        # A ticker without its prices: valid JSON a strict parser must reject.
        body = {"e": "24hrTicker", "E": event_time_ms, "s": "BTCUSDT"}
    if stream is not None:
        return orjson.dumps({"stream": stream, "data": body})
    return orjson.dumps(body)
