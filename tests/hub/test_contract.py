"""One contract for every ``Hub``: the memory hub and the Redis hub (on a private Redis)
must behave the same to ingest, the edge and REST."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tickcast.hub.base import Hub
from tickcast.hub.memory import MemoryHub
from tickcast.hub.redis import RedisHub
from tickcast.hub.redis_script import RedisKeys
from tickcast.tick import Tick

from ..redis_support import running_redis
from ..support import eventually

HISTORY = 3


def tick(symbol: str, seq: int, price: str = "1.5") -> Tick:
    return Tick(
        symbol=symbol,
        seq=seq,
        timestamp_ms=1_700_000_000_000 + seq,
        source="sim",
        last_price=price,
        change_percent="0.1",
    )


@dataclass
class Harness:
    """A hub plus ``publish`` that returns once the hub has taken in what was published
    (at once in memory; for Redis, once the script answered and the reader caught up)."""

    hub: Hub
    sent: int = 0

    async def publish(self, *ticks: Tick) -> None:
        for one in ticks:
            self.hub.publish(one)
        self.sent += len(ticks)
        if isinstance(self.hub, RedisHub):
            hub = self.hub
            done = ("published", "duplicates", "stale", "fenced")
            await eventually(lambda: sum(hub.counts[k] for k in done) == self.sent, timeout=5)
            await eventually(lambda: hub.status()["position"] == hub.last_seq(), timeout=5)


@pytest.fixture(params=["memory", "redis"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    if request.param == "memory":
        memory = MemoryHub(HISTORY)
        await memory.start()
        yield Harness(memory)
        await memory.stop()
        return
    with running_redis(tmp_path) as server:
        server.command("SET", RedisKeys().lease, "node-a:1")
        hub = RedisHub(server.url, history_size=HISTORY, socket_timeout=2.0, block_ms=200)
        await hub.start()
        hub.set_leadership("node-a", 1)
        try:
            yield Harness(hub)
        finally:
            await hub.stop()


async def test_published_ticks_are_readable_back(harness: Harness) -> None:
    """latest, snapshot, history, since and last_seq all reflect what was published."""
    hub = harness.hub
    assert hub.connected
    assert hub.last_seq() == 0
    await harness.publish(tick("A", 1, "10"), tick("B", 2, "20"), tick("A", 3, "11"))
    latest = hub.latest("A")
    assert latest is not None and latest.seq == 3 and latest.last_price == "11"
    assert hub.latest("C") is None
    assert {s: t.seq for s, t in hub.snapshot().items()} == {"A": 3, "B": 2}
    assert [t.seq for t in hub.history("A", 10)] == [1, 3]
    assert [t.seq for t in hub.history("A", 1)] == [3]
    missed = hub.since(["A", "B"], 1)
    assert missed is not None and [t.seq for t in missed] == [2, 3]
    assert hub.last_seq() == 3
    assert hub.latest("A") == tick("A", 3, "11")


async def test_listeners_get_every_tick_in_seq_order_until_unsubscribed(harness: Harness) -> None:
    """Each listener sees every tick once, in seq order; after unsubscribing, none."""
    hub = harness.hub
    first: list[int] = []
    second: list[int] = []
    stop_first = hub.subscribe(lambda t: first.append(t.seq))
    hub.subscribe(lambda t: second.append(t.seq))
    await harness.publish(*(tick("AB"[i % 2], i) for i in range(1, 21)))
    stop_first()
    await harness.publish(tick("A", 21))
    assert first == list(range(1, 21))
    assert second == list(range(1, 22))


async def test_a_listener_that_raises_does_not_stop_the_others(harness: Harness) -> None:
    """A failing listener is logged; the next listener still gets the tick."""
    got: list[int] = []

    def broken(_: Tick) -> None:
        raise RuntimeError("listener bug")

    harness.hub.subscribe(broken)
    harness.hub.subscribe(lambda t: got.append(t.seq))
    await harness.publish(tick("A", 1), tick("A", 2))
    assert got == [1, 2]


async def test_a_seq_already_published_is_dropped(harness: Harness) -> None:
    """A tick whose seq is not above the last one is neither stored nor delivered."""
    hub = harness.hub
    got: list[int] = []
    hub.subscribe(lambda t: got.append(t.seq))
    await harness.publish(tick("A", 5, "1"), tick("A", 5, "2"), tick("B", 4, "3"))
    latest = hub.latest("A")
    assert latest is not None and latest.last_price == "1"
    assert hub.latest("B") is None
    assert got == [5]
    assert [t.seq for t in hub.history("A", 10)] == [5]


async def test_since_tells_when_history_no_longer_holds_the_resume_point(harness: Harness) -> None:
    """Past the per-symbol history size, a resume from an evicted seq returns None."""
    hub = harness.hub
    await harness.publish(*(tick("A", seq) for seq in range(1, 6)))
    assert [t.seq for t in hub.history("A", 10)] == [3, 4, 5]
    assert hub.since(["A"], 1) is None
    missed = hub.since(["A"], 3)
    assert missed is not None and [t.seq for t in missed] == [4, 5]
    assert hub.since(["A"], 5) == []


async def test_status_names_the_hub_and_its_state(harness: Harness) -> None:
    """status() says what kind of hub this is, whether it is connected, and the last seq."""
    await harness.publish(tick("A", 7))
    status = harness.hub.status()
    assert status["kind"] in ("memory", "redis")
    assert status["connected"] is True
    assert status["last_seq"] == 7
