"""The frozen-heap policy, with CPython's real collector: no full pass while the set of
live objects holds steady, however much short-lived garbage goes by; a full pass once
it has grown by a quarter, which also collects the cycles that died while frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tickcast.serve.gcpolicy import FrozenHeap


class Connection:
    """Stands for a connection's objects: a reference cycle, like a protocol and its
    transport, with a few containers hanging off it."""

    def __init__(self) -> None:
        self.me = self
        self.buffers: list[list[int]] = [[1], [2], [3]]


@pytest.fixture
def heap() -> Iterator[FrozenHeap]:
    policy = FrozenHeap(floor=5_000)
    policy.install()
    try:
        yield policy
    finally:
        policy.uninstall()


def churn(rounds: int) -> None:
    """Per-tick garbage: short-lived cycles, collected young."""
    pending = []
    for i in range(rounds):
        pending.append(Connection())
        if len(pending) > 500:
            pending.clear()
        _ = {"i": [i]}


def test_no_full_pass_while_live_objects_hold_steady(heap: FrozenHeap) -> None:
    live = [Connection() for _ in range(20_000)]
    churn(50_000)  # let the growth pass (if any) happen
    passes = heap.full_passes
    old_passes = gc.get_stats()[2]["collections"]
    churn(300_000)
    assert heap.full_passes == passes
    # CPython still runs passes of its oldest generation, but the live connections are
    # frozen out of them: each sees only what was promoted since the one before.
    assert gc.get_stats()[2]["collections"] > old_passes
    assert gc.get_freeze_count() >= len(live) * 4
    assert heap.status()["policy"] == "freeze"


def test_growth_brings_a_full_pass_that_collects_cycles_that_died_frozen(
    heap: FrozenHeap,
) -> None:
    live = [Connection() for _ in range(20_000)]
    churn(50_000)
    frozen = gc.get_freeze_count()
    live.clear()  # closed connections: cycles, now unreachable but frozen
    churn(50_000)
    assert gc.get_freeze_count() >= frozen - 1_000  # still held: this is the leak
    passes = heap.full_passes
    newer = [Connection() for _ in range(30_000)]  # the heap grows by more than a quarter
    churn(100_000)
    assert heap.full_passes > passes
    collected = heap.last_full_pass_collected
    assert collected is not None and collected >= 20_000 * 4
    assert heap.last_full_pass_ms is not None
    assert gc.get_freeze_count() < frozen + len(newer) * 5
    del newer


def test_status_reports_the_count_of_the_last_pass_without_walking_the_heap(
    heap: FrozenHeap,
) -> None:
    """/status reads the count the last pass of the oldest generation made (each count
    walks every frozen object): right after a pass, it is the heap's."""
    live = [Connection() for _ in range(10_000)]
    churn(50_000)
    gc.collect(2)
    assert heap.status()["frozen_objects"] == gc.get_freeze_count()
    assert heap.frozen >= len(live)


def test_uninstall_restores_cpythons_policy() -> None:
    policy = FrozenHeap()
    policy.install()
    assert gc.get_freeze_count() > 0
    policy.uninstall()
    assert gc.get_freeze_count() == 0
    assert policy._on_collection not in gc.callbacks
    assert policy.status()["policy"] == "default"
