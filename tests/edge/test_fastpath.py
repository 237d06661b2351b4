"""The lean receive queue and event that replace asyncio's in the WebSocket protocol."""

from __future__ import annotations

import asyncio

from tickcast.edge.fastpath import LeanEvent, LeanQueue


async def test_lean_queue_is_fifo_and_get_waits_for_a_put() -> None:
    """get returns items in put order, and waits while the queue is empty."""
    queue = LeanQueue()
    assert queue.empty()
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert await queue.get() == 1
    waiter = asyncio.create_task(queue.get())
    assert await queue.get() == 2
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.put_nowait(3)
    assert await asyncio.wait_for(waiter, 1) == 3
    assert queue.empty()


async def test_lean_event_wakes_every_waiter_and_can_be_cleared() -> None:
    """set wakes all waiters; after clear, wait blocks again until the next set."""
    event = LeanEvent()
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    event.set()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert event.is_set()
    event.clear()
    blocked = asyncio.create_task(event.wait())
    await asyncio.sleep(0.01)
    assert not blocked.done()
    event.set()
    await asyncio.wait_for(blocked, 1)
