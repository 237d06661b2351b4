"""Resuming a stream: the format of event ids, and what a reconnecting client is sent.

An event id (the SSE ``id:`` line) is a resume token: a client keeps the last one it saw
and hands it back unchanged (``Last-Event-ID``, or ``?last_event_id=``); it never parses
it. The format, which only the server relies on:

    ``<seq>``: ASCII decimal digits, the ``seq`` of the tick the event carries, or for a
    ``reset`` event the highest ``seq`` its snapshot covers. Example: ``id: 1234``.

``seq`` is unique and increasing across the cluster and never goes backwards, so a token
is good on any node. A bare number is therefore also accepted as an id: "resume after
this seq". Whatever the token, a reconnecting client gets either every tick it missed, in
order, or a ``reset`` carrying a fresh snapshot: when those ticks are no longer all held,
when the token names a seq not issued yet (a server that restarted), or when it is not a
token at all (other text, other digits, absurd lengths). A token never causes an error.

Pure functions of the hub's synchronous reads: no I/O, no ``await``.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from tickcast.hub.base import Hub
from tickcast.messages.message import Message, is_event, ticks_of
from tickcast.messages.stream import ALL_TICKERS
from tickcast.messages.tickers import Tickers

# A seq is a 64-bit count in practice; a longer "number" is no token of ours (and parsing
# thousands of digits is work for the server that the client chose).
MAX_TOKEN_DIGITS = 19


@dataclass(frozen=True)
class ResumePoint:
    """Where a reconnecting client says it stopped: after ``seq``; ``seq`` is None when
    its token is not one this server issues (the client gets a reset)."""

    seq: int | None


def parse_event_id(value: str | None) -> ResumePoint | None:
    """The resume point a ``Last-Event-ID`` names; None when there is none (absent or
    empty: a fresh start). Never raises, whatever the text."""
    if value is None:
        return None
    token = value.strip(" \t")
    if not token:
        return None
    # isascii first: str.isdigit() is also true of "²" and other non-ASCII digits.
    if token.isascii() and token.isdigit() and len(token) <= MAX_TOKEN_DIGITS:
        return ResumePoint(int(token))
    return ResumePoint(None)


def missed_ticks(
    hub: Hub, keys: Iterable[str], point: ResumePoint, served: AbstractSet[str] | None = None
) -> list[Message] | None:
    """Every message of the streams ``keys`` after ``point``, in seq order, or None when
    the client must reset instead (unknown token, a seq from the future, messages no longer
    held)."""
    if point.seq is None or point.seq > hub.last_seq():
        return None
    keys = list(keys)
    missed = hub.since([k for k in keys if k != ALL_TICKERS], point.seq)
    if missed is not None and ALL_TICKERS in keys:
        # Latest wins per symbol on this stream: what was missed is every symbol's latest.
        everything = latest_of(hub, ALL_TICKERS, served)
        if everything is not None and everything.seq > point.seq:
            missed.append(everything)
            missed.sort(key=lambda m: m.seq)
    return missed


def snapshot(
    hub: Hub, keys: Iterable[str], served: AbstractSet[str] | None = None
) -> list[Message]:
    """The latest message of each of the streams ``keys`` that has a state (a tick, the
    current candle; a trade is an event, with no latest to show), in seq order; for
    ``!tickers``, every symbol's latest tick as one message."""
    held = (m for k in keys if (m := latest_of(hub, k, served)) is not None and not is_event(m))
    return sorted(held, key=lambda m: m.seq)


def latest_of(hub: Hub, key: str, served: AbstractSet[str] | None = None) -> Message | None:
    """The snapshot of the stream ``key``: the hub's latest, or for ``!tickers`` every
    symbol's latest tick in one message (None before any), of the symbols in ``served``
    when given (a symbol delisted keeps its last tick in the hub, never served again)."""
    if key != ALL_TICKERS:
        return hub.latest(key)
    ticks = ticks_of(hub.snapshot().values())
    if served is not None:
        ticks = [t for t in ticks if t.symbol in served]
    return Tickers.of(ticks) if ticks else None


def reset_message(ticks: list[Message], last_seq: int) -> bytes:
    """``{"type":"reset","last_seq":N,"ticks":[...]}``: drop what you hold, here is now.
    ``ticks`` holds the snapshot of every stream the client follows, each message naming
    its own ``type`` (a tick, the current candle)."""
    body = b",".join(t.encode() for t in ticks)
    return b'{"type":"reset","last_seq":%d,"ticks":[%b]}' % (last_seq, body)
