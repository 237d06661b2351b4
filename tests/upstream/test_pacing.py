"""Backoff, connection-attempt budget, send pacing and the connect-failure log, driven with
a fake clock."""

from __future__ import annotations

import random

from tickcast.upstream.pacing import AttemptBudget, Backoff, FailureLog, SendPacer


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


def test_backoff_steps_count_the_ceilings_up_to_the_cap() -> None:
    """0.5 s to 30 s goes through 7 ceilings (0.5, 1, 2, 4, 8, 16, 30); a cap at or below
    the first delay is 1."""
    assert Backoff(0.5, 30.0).steps == 7
    assert Backoff(0.5, 32.0).steps == 7
    assert Backoff(0.5, 32.1).steps == 8
    assert Backoff(1.0, 1.0).steps == 1
    assert Backoff(2.0, 1.0).steps == 1


def test_failure_log_writes_each_first_failure_then_one_count_a_minute() -> None:
    """The first ``first`` failures get a line each; after them, at most one line per
    interval, counting every failure since the last line; success starts over."""
    log = FailureLog(first=3, interval=60.0)
    now = 1000.0
    assert [log.failed(now + i) for i in range(3)] == [1, 1, 1]
    assert not log.summarizing
    # Every 30 s (the backoff's cap) for five minutes: one line a minute, each counting 2.
    lines = []
    for i in range(1, 11):
        covered = log.failed(now + 2 + 30 * i)
        if covered:
            lines.append((30 * i, covered))
    assert log.summarizing
    assert lines == [(60, 2), (120, 2), (180, 2), (240, 2), (300, 2)]
    assert log.succeeded() == 13
    assert log.failed(now + 400) == 1 and not log.summarizing


def test_failure_log_counts_a_burst_in_the_next_line() -> None:
    """Failures in quick succession past the first are held and counted, never dropped."""
    log = FailureLog(first=1, interval=60.0)
    assert log.failed(0.0) == 1
    assert [log.failed(0.1 * i) for i in range(1, 100)] == [0] * 99
    assert log.failed(60.0) == 100
    assert log.failed(60.5) == 0
