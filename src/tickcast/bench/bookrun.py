"""The end of a ``--streams book|depth`` run: the server's books at the update ids its
clients stopped at.

The server's book moves on every 100 ms while the clients read behind it, so the clients
and the server are compared at a common point: ``GET /book/{symbol}`` is asked over and
over (several requests a symbol in flight, each answer kept by its update id) while the
clients still read; then every client stops reading (``freeze``) and says which update
id its book of each symbol is at; the asking goes on until the server has answered at
or past each of them (bounded); and each client's book is compared with the answer at
its own id. A client whose id no answer has is counted as not compared, apart from the
books that differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from typing import Any

from tickcast.bench.processes import HOST
from tickcast.bench.rawhttp import http_get
from tickcast.bench.run import Run
from tickcast.bench.wsbytes import BadHead

LEAD_SECONDS = 2.0  # asking before the freeze: a client this far behind is still covered
COVER_SECONDS = 3.0  # at most this long after the freeze for the server to pass every id
PAUSE_SECONDS = 0.02  # between one requester's requests
REQUESTERS = 4  # per symbol, so an answer slowed by a busy server leaves no hole
_UPDATE_ID = re.compile(rb'"update_id":(\d+),')


class BookAnswers:
    """``GET /book/{symbol}?limit=N`` answers per symbol, by update id."""

    def __init__(self, port: int, symbols: Sequence[str], limit: int) -> None:
        self.port = port
        self.symbols = list(symbols)
        self.limit = limit
        self.by_id: dict[str, dict[int, bytes]] = {s: {} for s in self.symbols}
        self.requests = 0
        self.refused = 0
        self.answered = asyncio.Event()  # set on each new update id answered

    async def ask(self, symbol: str) -> None:
        target = f"/book/{symbol}?limit={self.limit}"
        while True:
            self.requests += 1
            with contextlib.suppress(OSError, TimeoutError, BadHead):
                async with asyncio.timeout(5.0):
                    status, body = await http_get(HOST, self.port, target)
                found = _UPDATE_ID.search(body) if status == 200 else None
                if found is None:
                    self.refused += 1
                else:
                    self.by_id[symbol].setdefault(int(found.group(1)), body)
                    self.answered.set()
            await asyncio.sleep(PAUSE_SECONDS)

    def covers(self, needed: dict[str, list[int]]) -> bool:
        """Whether the server has answered at or past each needed id."""
        return all(
            self.by_id.get(symbol) and max(self.by_id[symbol]) >= max(ids)
            for symbol, ids in needed.items()
            if ids
        )

    def answers_for(self, needed: dict[str, list[int]]) -> dict[str, dict[int, bytes]]:
        """The answers at the needed ids (every symbol named, even with none)."""
        out: dict[str, dict[int, bytes]] = {s: {} for s in self.symbols}
        for symbol, ids in needed.items():
            held = self.by_id.get(symbol, {})
            out[symbol] = {i: held[i] for i in ids if i in held}
        return out

    def summary(self, needed: dict[str, list[int]], seconds: float) -> dict[str, Any]:
        ids = sum(len(v) for v in needed.values())
        answered = sum(len(v) for v in self.answers_for(needed).values())
        return {
            "limit": self.limit,
            "requests": self.requests,
            "refused": self.refused,
            "distinct_update_ids_answered": sum(len(v) for v in self.by_id.values()),
            "client_update_ids": ids,
            "client_update_ids_answered": answered,
            "seconds": round(seconds, 3),
        }


def merge_needed(replies: Sequence[dict[str, list[int]]]) -> dict[str, list[int]]:
    out: dict[str, set[int]] = {}
    for reply in replies:
        for symbol, ids in reply.items():
            out.setdefault(symbol, set()).update(ids)
    return {symbol: sorted(ids) for symbol, ids in out.items()}


async def settle(run: Run, port: int, limit: int) -> dict[str, Any]:
    """Freeze the clients of ``run`` and hand each load generator the
    server's answers at its clients' update ids; what was asked and answered."""
    answers = BookAnswers(port, run.symbols, limit)
    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(answers.ask(symbol))
            for symbol in run.symbols
            for _ in range(REQUESTERS)
        ]
        try:
            await asyncio.sleep(LEAD_SECONDS)
            run.tell(("freeze",))
            needed = merge_needed(await run.gather())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(COVER_SECONDS):
                    while not answers.covers(needed):
                        answers.answered.clear()
                        await answers.answered.wait()
        finally:
            for task in tasks:
                task.cancel()
    run.tell(("answers", answers.answers_for(needed)))
    return answers.summary(needed, time.monotonic() - started)
