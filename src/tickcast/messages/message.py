"""Every market-data message, as one type: what the hub stores and the edge fans out.

Each kind keeps its own module (see the package's docstring); what they share is small:
a ``key`` (the stream it belongs to), a ``seq`` (one count over every kind, so one resume
token covers them all), a ``symbol`` and ``encode()``, built once and shared by every
subscriber.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

import orjson

from tickcast.messages.book import Book, BookStatus, Depth
from tickcast.messages.kline import Kline
from tickcast.messages.tick import Tick
from tickcast.messages.tickers import Tickers
from tickcast.messages.trade import Trade

# ``Tickers`` is the edge's (``!tickers``), built from the hub's ticks, never in the hub.
Message = Tick | Trade | Kline | Book | Depth | BookStatus | Tickers

_DECODERS: Final[dict[str, Callable[[bytes], Message]]] = {
    "tick": Tick.from_json,
    "trade": Trade.from_json,
    "kline": Kline.from_json,
    "book": Book.from_json,
    "depth": Depth.from_json,
    "status": BookStatus.from_json,
}

_PREFIXES: Final = tuple((b'{"type":"%s"' % k.encode(), d) for k, d in _DECODERS.items())


def decode_message(data: bytes) -> Message:
    """A message rebuilt from its own encoding (the Redis hub's entries); ``ValueError``
    for anything that is not one of them."""
    decoder = _decoder_of(data)
    try:
        return decoder(data)
    except (KeyError, TypeError) as exc:
        # A field missing (KeyError) or of the wrong JSON type (``int(None)``): still
        # no message, and its readers expect ValueError alone.
        raise ValueError(f"not a whole market-data message: {exc!r}") from exc


def _decoder_of(data: bytes) -> Callable[[bytes], Message]:
    # Every encoding starts with its type (``encode`` writes it first): no second parse
    # of each entry a follower reads.
    for prefix, decoder in _PREFIXES:
        if data.startswith(prefix):
            return decoder
    try:
        head = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    kind = head.get("type") if isinstance(head, dict) else None
    named = _DECODERS.get(kind) if isinstance(kind, str) else None
    if named is None:
        raise ValueError(f"not a market-data message (type {kind!r})")
    return named


def is_event(message: Message) -> bool:
    """Whether ``message`` is an event that has no latest value to snapshot (a trade, a
    book's diff or state change), rather than a state (a tick, a candle, a book)."""
    kind = type(message)
    return kind is Trade or kind is Depth or kind is BookStatus


def ticks_of(messages: Iterable[Message]) -> list[Tick]:
    """The ticks among ``messages``, in their order."""
    return [m for m in messages if type(m) is Tick]
