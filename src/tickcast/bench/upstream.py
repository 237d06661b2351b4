"""What the comparison servers share: reading the simulated exchange, the tick, the trade.

Both relay every ``<symbol>@ticker`` event of the combined stream as the tick message of
SPEC §6 (same fields, same order), stamped with their own global ``seq``. Numbers are
floats, as the seed server sent them. ``raw`` relays ``<symbol>@aggTrade`` events as the
trade message of SPEC §12 the same way (``--streams trades``); a trade's price and
quantity are written as tickcast writes them, the exchange's decimals verbatim, so the
messages are the same bytes long.
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

from tickcast.messages.decimals import canonical_decimal
from tickcast.messages.trade import taker_side

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


def combined_url(base: str, symbols: Iterable[str], kind: str = "ticker") -> str:
    """``<base>/stream?streams=btcusdt@ticker/...`` (``kind`` ``aggTrade``: the trades)."""
    streams = "/".join(f"{symbol.lower()}@{kind}" for symbol in symbols)
    return f"{base.rstrip('/')}/stream?streams={streams}"


def ticker_event(frame: bytes | str) -> dict[str, Any] | None:
    """The ``data`` of a combined-stream 24hrTicker frame; None for anything else."""
    return _event(frame, "24hrTicker")


def trade_event(frame: bytes | str) -> dict[str, Any] | None:
    """The ``data`` of a combined-stream aggTrade frame; None for anything else."""
    return _event(frame, "aggTrade")


def _event(frame: bytes | str, kind: str) -> dict[str, Any] | None:
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, dict) or data.get("e") != kind or "s" not in data:
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


def trade_message(event: dict[str, Any], seq: int) -> bytes:
    """The trade JSON for an aggTrade event: tickcast's fields in tickcast's order."""
    out = {
        "type": "trade",
        "stream": f"{event['s']}@trades",
        "symbol": event["s"],
        "trade_id": int(event["a"]),
        "price": orjson.Fragment(canonical_decimal(str(event["p"])).encode()),
        "qty": orjson.Fragment(canonical_decimal(str(event["q"])).encode()),
        "side": taker_side(bool(event["m"])),
        "timestamp_ms": int(event["T"]),
        "seq": seq,
        "source": "sim",
    }
    return orjson.dumps(out)


def wanted_streams(query: str, served: frozenset[str], kind: str = "trades") -> frozenset[str]:
    """The symbols of ``streams=A@trades,B@trades`` (or another ``kind``) in a query
    string that are served (a stream of another kind, or none asked: nothing)."""
    values = parse_qs(query).get("streams")
    if not values:
        return frozenset()
    asked = {s.strip() for s in values[0].split(",")}
    suffix = f"@{kind}"
    symbols = {name[: -len(suffix)].upper() for name in asked if name.endswith(suffix)}
    return frozenset(symbols & served)


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
