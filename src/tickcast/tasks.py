"""Stopping tasks we own without swallowing our own cancellation."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(*tasks: asyncio.Task[object] | asyncio.Task[None] | None) -> None:
    """Cancel ``tasks`` and wait until they have finished.

    ``with suppress(CancelledError): await task`` is wrong here: if the caller itself is
    cancelled during that await, its own CancelledError is swallowed too and it carries on
    as if nothing happened. ``asyncio.wait`` never raises the awaited tasks' errors, so a
    CancelledError reaching the caller is always the caller's own, and propagates.
    """
    pending = [t for t in tasks if t is not None]
    for task in pending:
        task.cancel()
    if not pending:
        return
    await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
