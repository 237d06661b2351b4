"""Resume tokens and what a reconnecting client is sent, as plain calls on a memory hub."""

from __future__ import annotations

import pytest

from tickcast.edge.resume import (
    ResumePoint,
    missed_ticks,
    parse_event_id,
    reset_message,
    snapshot,
)
from tickcast.hub.memory import MemoryHub
from tickcast.messages.tick import Tick


def hub_with(history: int, ticks: list[tuple[str, int]]) -> MemoryHub:
    hub = MemoryHub(history)
    for symbol, seq in ticks:
        hub.publish(Tick(symbol=symbol, seq=seq, timestamp_ms=seq, source="sim", last_price="1"))
    return hub


@pytest.mark.parametrize(
    ("text", "seq"),
    [("0", 0), ("1234", 1234), (" 42 ", 42), ("9" * 19, int("9" * 19))],
)
def test_a_seq_in_ascii_digits_is_a_resume_point(text: str, seq: int) -> None:
    """The token the server issues (the seq, decimal) is read back as that seq."""
    assert parse_event_id(text) == ResumePoint(seq)


@pytest.mark.parametrize(
    "text",
    ["²", "Â²", "\u0663", "9" * 20, "9" * 5000, "-1", "+1", "1.5", "1e3", "abc", "12 34", "0x10"],
)
def test_any_other_token_is_unknown_and_never_an_error(text: str) -> None:
    """Non-ASCII digits (which int() rejects or str.isdigit() accepts), absurd lengths and
    other text are tokens the server never issued: a reset, not an exception."""
    assert parse_event_id(text) == ResumePoint(None)


@pytest.mark.parametrize("text", [None, "", "  "])
def test_no_token_is_a_fresh_start(text: str | None) -> None:
    """An absent or empty id is no resume at all."""
    assert parse_event_id(text) is None


def test_a_held_resume_point_gets_every_missed_tick_in_order() -> None:
    """The ticks of the client's symbols after its seq, in seq order, none other."""
    hub = hub_with(10, [("BTCUSDT", 1), ("ETHUSDT", 2), ("SOLUSDT", 3), ("BTCUSDT", 4)])
    missed = missed_ticks(hub, ["BTCUSDT", "ETHUSDT"], ResumePoint(1))
    assert missed is not None
    assert [(t.symbol, t.seq) for t in missed] == [("ETHUSDT", 2), ("BTCUSDT", 4)]


@pytest.mark.parametrize("point", [ResumePoint(None), ResumePoint(99), ResumePoint(1)])
def test_an_unknown_future_or_evicted_point_resets(point: ResumePoint) -> None:
    """No token, a seq not issued yet, and ticks no longer held all mean a reset."""
    hub = hub_with(2, [("BTCUSDT", 1), ("BTCUSDT", 2), ("BTCUSDT", 3), ("BTCUSDT", 4)])
    assert missed_ticks(hub, ["BTCUSDT"], point) is None


def test_a_reset_carries_the_snapshot_and_the_seq_it_covers() -> None:
    """The reset message is the latest tick of each symbol, in seq order, and last_seq."""
    hub = hub_with(5, [("ETHUSDT", 1), ("BTCUSDT", 2), ("ETHUSDT", 3)])
    ticks = snapshot(hub, ["ETHUSDT", "BTCUSDT", "SOLUSDT"])
    assert [(t.symbol, t.seq) for t in ticks] == [("BTCUSDT", 2), ("ETHUSDT", 3)]
    message = reset_message(ticks, hub.last_seq())
    assert message.startswith(b'{"type":"reset","last_seq":3,"ticks":[{"type":"tick"')
