"""Keeping CPython's full garbage-collection passes out of the fan-out.

A server holding 20,000 connections holds about 1.4 million objects the cyclic garbage
collector tracks (some 70 per connection: the protocol, its parser's generators, the
ASGI task's coroutines, the session). CPython runs a full pass over all of them whenever
the objects that survived younger collections since the last one pass a quarter of the
old ones. A fan-out that allocates a little per tick gets there every few seconds, and
each pass stops the event loop for 0.3-1 s at that size: the tail of every tick it
delays.

The policy here: after each pass of the oldest generation, everything that survived it
is frozen (``gc.freeze``, which moves it to the permanent generation in constant time),
so the next pass sees only what has been promoted since, and no pass walks the
connections. An object is frozen only once it has outlived three collections (young,
middle, old): per-tick garbage, cycles included, is collected before that, as usual.

What it must not do is leak: an object frozen and later part of an unreachable cycle
(a closed connection's objects, if they form one) is never collected while frozen. So
the frozen heap is watched: when it has grown by a quarter (plus a floor) since the last
full pass, it is thawed and CPython's next full pass walks everything, collects what
died, and the survivors are frozen again. The number of full passes is then set by how
fast the set of live objects grows (new connections, leaked cycles), not by how many
ticks go out; at a steady number of clients there are none.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any

# Grow the frozen heap by this share (and at least FLOOR objects) before a full pass.
GROWTH = 0.25
FLOOR = 100_000


@dataclass
class FrozenHeap:
    """The policy; ``install`` it once per server process (never in a library user's)."""

    growth: float = GROWTH
    floor: int = FLOOR
    installed: bool = False
    thawed: bool = False
    baseline: int = 0  # frozen objects after the last full pass
    # Frozen objects as counted at the last pass of the oldest generation: counting walks
    # all of them (1.4 million at 20,000 connections), which /status must not do per call.
    frozen: int = 0
    full_passes: int = 0
    last_full_pass_ms: float | None = None
    last_full_pass_collected: int | None = None
    _started: float = 0.0

    def install(self) -> None:
        if self.installed:
            return
        gc.collect()
        gc.freeze()
        self.baseline = self._count()
        gc.callbacks.append(self._on_collection)
        self.installed = True

    def uninstall(self) -> None:
        """Back to CPython's own policy (tests)."""
        if self.installed:
            gc.callbacks.remove(self._on_collection)
            gc.unfreeze()
            self.installed = self.thawed = False

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        if self.thawed:
            self.full_passes += 1
            self.last_full_pass_ms = round((time.perf_counter() - self._started) * 1000, 1)
            self.last_full_pass_collected = int(info["collected"])
            self.thawed = False
            gc.freeze()
            self.baseline = self._count()
            return
        gc.freeze()
        if self._count() > self.baseline * (1 + self.growth) + self.floor:
            # Thawed, the old generation holds everything again, and CPython's own rule
            # (survivors past a quarter of what the last pass left) soon makes the next
            # pass of the oldest generation a full one.
            gc.unfreeze()
            self.thawed = True

    def _count(self) -> int:
        self.frozen = gc.get_freeze_count()
        return self.frozen

    def status(self) -> dict[str, object]:
        return {
            "policy": "freeze" if self.installed else "default",
            # As counted at the last pass of the oldest generation.
            "frozen_objects": self.frozen if self.installed else gc.get_freeze_count(),
            "full_passes": self.full_passes,
            "last_full_pass_ms": self.last_full_pass_ms,
            "last_full_pass_collected": self.last_full_pass_collected,
        }


HEAP = FrozenHeap()
