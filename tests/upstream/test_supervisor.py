"""The source supervisor: a failed source is restarted with backoff, the reason is logged,
and the reported state is true while it is down."""

from __future__ import annotations

import asyncio
import decimal
import logging
import random

import pytest

from tickcast.messages.tick import SourceLabel
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.binance import UpstreamState
from tickcast.upstream.pacing import Backoff
from tickcast.upstream.supervisor import SupervisedSource

from ..support import eventually


class LongestDelay(random.Random):
    """Full jitter at its ceiling, so the test knows how long the source stays down."""

    def uniform(self, a: float, b: float) -> float:
        return b


class FlakySource:
    """A source whose first ``failures`` runs fail the way poison once made them fail."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0
        self.running = False

    @property
    def label(self) -> SourceLabel:
        return "sim"

    @property
    def state(self) -> UpstreamState:
        # What a crashed client keeps saying: the state it had when it died.
        return UpstreamState.CONNECTED

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            await asyncio.sleep(0.01)
            raise decimal.InvalidOperation([decimal.InvalidOperation])
        self.running = True
        try:
            await asyncio.Event().wait()
        finally:
            self.running = False

    def brief(self) -> dict[str, object]:
        return {"state": self.state.value, "since": 1.0, "reconnects": 0}

    def status(self) -> dict[str, object]:
        return {"source": "sim", "state": self.state.value}

    def parse_errors(self) -> dict[str, int]:
        return {"bad_value": 3}


async def test_a_failed_source_is_restarted_with_backoff_and_reported_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each failure is logged with its reason; meanwhile state, brief and status say
    reconnecting (not the dead client's connected); the restarted source serves again."""
    caplog.set_level(logging.ERROR)
    inner = FlakySource(failures=2)
    seen: list[str] = []
    supervised: SupervisedSource

    def on_state() -> None:
        seen.append(supervised.brief()["state"])  # type: ignore[arg-type]

    supervised = SupervisedSource(inner, Backoff(0.3, 0.3, rng=LongestDelay()), on_state)
    task = asyncio.create_task(supervised.run())
    try:
        await eventually(lambda: supervised.restarts == 1, timeout=2)
        assert supervised.state is UpstreamState.RECONNECTING
        assert supervised.status()["state"] == "reconnecting"
        assert "InvalidOperation" in str(supervised.status()["last_error"])
        await eventually(lambda: inner.running, timeout=5)
        assert inner.runs == 3
        assert supervised.restarts == 2
        assert supervised.state is UpstreamState.CONNECTED
        assert supervised.brief()["restarts"] == 2
        assert supervised.parse_errors() == {"bad_value": 3}
        assert supervised.status()["parse_errors"] == {"bad_value": 3}
    finally:
        await cancel_and_wait(task)
    assert seen[:2] == ["reconnecting", "connected"]
    failures = [r for r in caplog.records if "restarting" in r.getMessage()]
    assert len(failures) == 2
    assert all("InvalidOperation" in r.getMessage() for r in failures)
    assert all(r.exc_info is not None for r in failures)


async def test_a_cancelled_supervisor_stops_its_source() -> None:
    """Cancelling the supervisor cancels the source it runs; it is not restarted."""
    inner = FlakySource(failures=0)
    supervised = SupervisedSource(inner, Backoff(0.01, 0.01))
    task = asyncio.create_task(supervised.run())
    await eventually(lambda: inner.running, timeout=2)
    await cancel_and_wait(task)
    assert not inner.running
    assert inner.runs == 1
    assert supervised.restarts == 0
