"""Backoff, connection-attempt budget and send pacing, driven with a fake clock."""

from __future__ import annotations

import random

from tickcast.upstream.pacing import AttemptBudget, Backoff, SendPacer


def test_backoff_full_jitter_grows_to_the_cap_and_resets() -> None:
    """Delays stay within [0, min(cap, initial*2^n)] and start over after reset."""
    backoff = Backoff(0.5, 30.0, random.Random(7))
    ceilings = [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    delays = [backoff.next_delay() for _ in ceilings]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[5:]) > 4  # the ceiling really grew
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_attempt_budget_waits_past_the_window() -> None:
    """The 301st attempt in 5 minutes waits until the oldest leaves the window."""
    budget = AttemptBudget(limit=300, window=300.0)
    for i in range(300):
        assert budget.wait_time(i * 0.1) == 0
        budget.record(i * 0.1)
    assert budget.wait_time(30.0) == 270.0
    assert budget.wait_time(300.05) == 0


def test_send_pacer_spaces_messages_without_burst() -> None:
    """Back-to-back reservations are 0.25 s apart: never more than 4 in one second."""
    pacer = SendPacer(per_second=4)
    waits = [pacer.reserve(10.0) for _ in range(5)]
    assert waits == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert pacer.reserve(20.0) == 0.0
