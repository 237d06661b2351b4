"""Fetching the trades a connection did not deliver (see ``tradegaps``): the I/O driver.

Each ``FillRequest`` is fetched from ``GET /api/v3/aggTrades?fromId=`` in pages of up to
1000, retried (paced by ``Retry-After`` or a backoff) until it comes or ``deadline``
seconds have passed, since the live trades behind it are held meanwhile: a tape late by
a few seconds is better than one with a hole, one late for ever is worse. The answer, or
None when it was given up on, goes to ``on_done``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from tickcast.messages.tick import SourceLabel
from tickcast.upstream.normalize import TradeEvent
from tickcast.upstream.pacing import ErrorTally, RetryPacer
from tickcast.upstream.rest import MAX_TRADES_PER_REQUEST, RestClient, RestError
from tickcast.upstream.tradegaps import FillRequest

log = logging.getLogger(__name__)

# How long live trades may wait behind a fill.
FILL_DEADLINE: Final = 10.0

FillDone = Callable[[FillRequest, SourceLabel, list[TradeEvent] | None], object]


class TradeFill:
    """Runs fills; ``run`` owns their tasks (cancelling it stops them all)."""

    def __init__(
        self,
        client: RestClient,
        on_done: FillDone,
        *,
        deadline: float = FILL_DEADLINE,
        pacer: RetryPacer | None = None,
    ) -> None:
        self._client = client
        self._on_done = on_done
        self._deadline = deadline
        self._pacer = pacer or RetryPacer(initial=0.2, maximum=2.0)
        self._tally = ErrorTally()
        self._group: asyncio.TaskGroup | None = None
        self.filled = 0

    async def run(self) -> None:
        """Run the fills asked for, until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                await asyncio.Event().wait()
        finally:
            self._group = None

    def request(self, request: FillRequest, source: SourceLabel, base_url: str) -> None:
        """Fetch ``request`` from the REST at ``base_url``; answered through ``on_done``
        (at once with None when the fills are not running)."""
        if self._group is None:
            self._done(request, source, None)
            return
        name = f"trade-fill-{request.symbol}"
        self._group.create_task(self._fill(request, source, base_url), name=name)

    def status(self) -> dict[str, object]:
        return {
            "filled": self.filled,
            "errors": dict(self._tally.counts),
            "last_error": self._tally.last_error,
        }

    async def _fill(self, request: FillRequest, source: SourceLabel, base_url: str) -> None:
        try:
            trades = await asyncio.wait_for(self._fetch(request, base_url), self._deadline)
        except TimeoutError:
            log.warning(
                "%d trades of %s (ids %d to %d) could not be fetched from %s within %.0f s; "
                "serving the live trades without them",
                request.count,
                request.symbol,
                request.first_id,
                request.last_id,
                base_url,
                self._deadline,
            )
            trades = None
        if trades is not None:
            self.filled += len(trades)
        self._done(request, source, trades)

    def _done(
        self, request: FillRequest, source: SourceLabel, trades: list[TradeEvent] | None
    ) -> None:
        try:
            self._on_done(request, source, trades)
        except Exception:
            self._tally.counts["sink_error"] += 1
            log.exception("the fill of %s's trades was not taken", request.symbol)

    async def _fetch(self, request: FillRequest, base_url: str) -> list[TradeEvent]:
        """Pages from ``first_id`` until ``last_id`` or the exchange has no more."""
        out: list[TradeEvent] = []
        next_id = request.first_id
        while next_id <= request.last_id:
            limit = min(MAX_TRADES_PER_REQUEST, request.last_id - next_id + 1)
            page = await self._page(request.symbol, base_url, next_id, limit)
            out.extend(page)
            if len(page) < limit:
                break
            next_id += len(page)
        return out

    async def _page(self, symbol: str, base_url: str, from_id: int, limit: int) -> list[TradeEvent]:
        while True:
            try:
                page = await self._client.agg_trades(base_url, symbol, from_id=from_id, limit=limit)
            except RestError as error:
                delay = self._pacer.failed(error.retry_after)
                if self._tally.failed(error.kind.value, f"{symbol}: {error}"):
                    log.warning(
                        "missed trades: GET %s/api/v3/aggTrades?symbol=%s&fromId=%d failed "
                        "(%s); retrying in %.1fs (further %s failures are counted)",
                        base_url,
                        symbol,
                        from_id,
                        error,
                        delay,
                        error.kind.value,
                    )
                await asyncio.sleep(delay)
                continue
            self._pacer.succeeded()
            self._tally.succeeded()
            return page
