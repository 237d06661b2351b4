"""One contract for every ``Hub``: the memory hub and the Redis hub (on a private Redis)
must behave the same to ingest, the edge and REST."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tickcast.hub.base import Hub
from tickcast.hub.memory import MemoryHub
from tickcast.hub.redis import RedisHub
from tickcast.hub.redis_script import RedisKeys
from tickcast.messages.tick import Tick

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
    (at once in memory; for Redis, once the script answered and the reader caught up).

    Seqs in the tests count from ``base``, the hub's last seq when the test starts: a
    memory hub starts from the clock (see ``MemoryHub``), a fresh Redis from 0."""

    hub: Hub
    sent: int = 0
    base: int = 0

    def tick(self, symbol: str, n: int, price: str = "1.5") -> Tick:
        return tick(symbol, self.base + n, price)

    def seqs(self, ticks: Iterable[Tick] | None) -> list[int]:
        assert ticks is not None
        return [t.seq - self.base for t in ticks]

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
        yield Harness(memory, base=memory.last_seq())
        await memory.stop()
        return
    with running_redis(tmp_path) as server:
        server.command("SET", RedisKeys().lease, "node-a:1")
        hub = RedisHub(server.url, history_size=HISTORY, socket_timeout=2.0, block_ms=200)
        await hub.start()
        hub.set_leadership("node-a", 1)
        try:
            yield Harness(hub, base=hub.last_seq())
        finally:
            await hub.stop()


async def test_published_ticks_are_readable_back(harness: Harness) -> None:
    """latest, snapshot, history, since and last_seq all reflect what was published."""
    hub, h = harness.hub, harness
    assert hub.connected
    assert hub.last_seq() == h.base
    await h.publish(h.tick("A", 1, "10"), h.tick("B", 2, "20"), h.tick("A", 3, "11"))
    latest = hub.latest("A")
    assert latest is not None and latest.seq == h.base + 3 and latest.last_price == "11"
    assert hub.latest("C") is None
    assert {s: t.seq - h.base for s, t in hub.snapshot().items()} == {"A": 3, "B": 2}
    assert h.seqs(hub.history("A", 10)) == [1, 3]
    assert h.seqs(hub.history("A", 1)) == [3]
    assert h.seqs(hub.since(["A", "B"], h.base + 1)) == [2, 3]
    assert hub.last_seq() == h.base + 3
    assert hub.latest("A") == h.tick("A", 3, "11")


async def test_listeners_get_every_tick_in_seq_order_until_unsubscribed(harness: Harness) -> None:
    """Each listener sees every tick once, in seq order; after unsubscribing, none."""
    hub, h = harness.hub, harness
    first: list[Tick] = []
    second: list[Tick] = []
    stop_first = hub.subscribe(first.append)
    hub.subscribe(second.append)
    await h.publish(*(h.tick("AB"[i % 2], i) for i in range(1, 21)))
    stop_first()
    await h.publish(h.tick("A", 21))
    assert h.seqs(first) == list(range(1, 21))
    assert h.seqs(second) == list(range(1, 22))


async def test_a_listener_that_raises_does_not_stop_the_others(harness: Harness) -> None:
    """A failing listener is logged; the next listener still gets the tick."""
    got: list[Tick] = []

    def broken(_: Tick) -> None:
        raise RuntimeError("listener bug")

    harness.hub.subscribe(broken)
    harness.hub.subscribe(got.append)
    await harness.publish(harness.tick("A", 1), harness.tick("A", 2))
    assert harness.seqs(got) == [1, 2]


async def test_a_seq_already_published_is_dropped(harness: Harness) -> None:
    """A tick whose seq is not above the last one is neither stored nor delivered."""
    hub, h = harness.hub, harness
    got: list[Tick] = []
    hub.subscribe(got.append)
    await h.publish(h.tick("A", 5, "1"), h.tick("A", 5, "2"), h.tick("B", 4, "3"))
    latest = hub.latest("A")
    assert latest is not None and latest.last_price == "1"
    assert hub.latest("B") is None
    assert h.seqs(got) == [5]
    assert h.seqs(hub.history("A", 10)) == [5]


async def test_since_tells_when_history_no_longer_holds_the_resume_point(harness: Harness) -> None:
    """Past the per-symbol history size, a resume from an evicted seq returns None."""
    hub, h = harness.hub, harness
    await h.publish(*(h.tick("A", n) for n in range(1, 6)))
    assert h.seqs(hub.history("A", 10)) == [3, 4, 5]
    assert hub.since(["A"], h.base + 1) is None
    assert h.seqs(hub.since(["A"], h.base + 3)) == [4, 5]
    assert hub.since(["A"], h.base + 5) == []


async def test_status_names_the_hub_and_its_state(harness: Harness) -> None:
    """status() says what kind of hub this is, whether it is connected, and the last seq."""
    await harness.publish(harness.tick("A", 7))
    status = harness.hub.status()
    assert status["kind"] in ("memory", "redis")
    assert status["connected"] is True
    assert status["last_seq"] == harness.base + 7
