"""What the comparison servers share: reading the simulated exchange, and the tick.

Both relay every ``<symbol>@ticker`` event of the combined stream as the tick message of
SPEC §6 (same fields, same order), stamped with their own global ``seq``. Numbers are
floats, as the seed server sent them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

log = logging.getLogger(__name__)

RECONNECT_DELAY = 0.5
# Binance field -> tick field, in the order tickcast writes them.
_FIELDS = (
    ("last_price", "c"),
    ("change_percent", "P"),
    ("timestamp_ms", "E"),
    ("change", "p"),
    ("open", "o"),
    ("high", "h"),
    ("low", "l"),
    ("volume", "v"),
    ("quote_volume", "q"),
    ("bid", "b"),
    ("ask", "a"),
)


def combined_url(base: str, symbols: Iterable[str]) -> str:
    """``<base>/stream?streams=btcusdt@ticker/...``."""
    streams = "/".join(f"{symbol.lower()}@ticker" for symbol in symbols)
    return f"{base.rstrip('/')}/stream?streams={streams}"


def ticker_event(frame: bytes | str) -> dict[str, Any] | None:
    """The ``data`` of a combined-stream 24hrTicker frame; None for anything else."""
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, dict) or data.get("e") != "24hrTicker" or "s" not in data:
        return None
    return data


def tick_message(event: dict[str, Any], seq: int) -> bytes:
    """The tick JSON for a 24hrTicker event."""
    out: dict[str, Any] = {"type": "tick", "symbol": event["s"]}
    for name, key in _FIELDS:
        value = event.get(key)
        if name == "timestamp_ms":
            out[name] = int(value) if value is not None else None
        else:
            out[name] = float(value) if value is not None else None
    out["seq"] = seq
    # The bench's upstream is the simulated exchange, which tickcast labels sim: the same
    # label keeps the baselines' messages true and the same size as tickcast's.
    out["source"] = "sim"
    return orjson.dumps(out)


def wanted_symbols(query: str, served: frozenset[str]) -> frozenset[str]:
    """``symbols=A,B`` (or ``*``, or absent: everything served) from a query string."""
    values = parse_qs(query).get("symbols")
    if not values:
        return served
    asked = {s.strip().upper() for s in values[0].split(",") if s.strip()}
    return served if "*" in asked else frozenset(asked & served)


async def follow(url: str, on_frame: Callable[[bytes | str], None]) -> None:
    """Read ``url`` forever with the ``websockets`` client, reconnecting after errors."""
    while True:
        try:
            async with connect(url, max_size=None, compression=None) as ws:
                async for frame in ws:
                    on_frame(frame)
        except (OSError, WebSocketException, TimeoutError) as exc:
            log.warning("upstream %s: %s; reconnecting", url, exc)
        await asyncio.sleep(RECONNECT_DELAY)
