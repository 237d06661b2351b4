"""Candle history from the upstream's REST: what ``/klines`` holds before the stream's
first candle.

``KlineBackfill`` fills one series (a symbol at an interval) per ``request``: up to
``history`` candles opened before the first candle the stream delivered, paged backwards
through ``GET /api/v3/klines`` (at most 1000 a request), until it has them all or the
exchange has no older ones. A failed request is retried, paced by the server's
``Retry-After`` or a backoff, until it succeeds or the series is cancelled: a backfill
never gives up silently and never takes the server down with it. At most two requests
are in flight at once, so that a start with many series stays within the weight budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from tickcast.messages.kline import Kline
from tickcast.messages.tick import SourceLabel
from tickcast.upstream.pacing import ErrorTally, RetryPacer
from tickcast.upstream.rest import MAX_KLINES_PER_REQUEST, RestClient, RestError, RestKline

log = logging.getLogger(__name__)

# Requests in flight at once, over every series.
MAX_CONCURRENT_REQUESTS: Final = 2

CandleSink = Callable[[str, str, list[Kline]], object]


@dataclass
class _Series:
    """One requested series and the task filling it."""

    symbol: str
    interval: str
    label: SourceLabel
    # Asked again at each attempt: a follower may learn the leader's REST only later.
    rest: Callable[[], str]
    before: int
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"{self.symbol}@kline_{self.interval}"


class KlineBackfill:
    """Fills candle history per (symbol, interval), delivering it to ``on_candles``.

    ``on_candles(symbol, interval, candles)`` is called once per filled series with its
    candles oldest first (possibly none), each closed, with ``seq`` 0 and the source
    label given to ``request``. ``run`` owns every request's task: cancelling it stops them
    all; the series not filled yet stay pending and resume when ``run`` is called again.
    """

    def __init__(
        self,
        client: RestClient,
        history: int,
        on_candles: CandleSink,
        *,
        pacer: RetryPacer | None = None,
        concurrency: int = MAX_CONCURRENT_REQUESTS,
    ) -> None:
        if history < 1:
            raise ValueError(f"history must be at least 1 candle, got {history}")
        self._client = client
        self._history = history
        self._on_candles = on_candles
        self._pacer = pacer or RetryPacer()
        self._tally = ErrorTally()
        self._slots = asyncio.Semaphore(concurrency)
        self._resume_at = 0.0
        self._pending: dict[tuple[str, str], _Series] = {}
        self._filled: set[tuple[str, str]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._nudged = asyncio.Event()
        self.candles = 0

    def request(
        self,
        symbol: str,
        interval: str,
        source_label: SourceLabel,
        base_url: str | Callable[[], str],
        before_open_time: int,
    ) -> None:
        """Fill ``symbol`` at ``interval`` with the candles opened before
        ``before_open_time`` (the first candle the stream delivered), from the REST at
        ``base_url``. A series pending or filled already is left as it is."""
        key = (symbol, interval)
        if key in self._pending or key in self._filled:
            return
        rest = base_url if callable(base_url) else (lambda: base_url)
        series = _Series(symbol, interval, source_label, rest, before_open_time)
        self._pending[key] = series
        self._start(series)

    def cancel(self, symbol: str, interval: str) -> None:
        """Forget the series: stop filling it, and let a later ``request`` fill it again."""
        key = (symbol, interval)
        self._filled.discard(key)
        series = self._pending.pop(key, None)
        if series is not None and series.task is not None:
            series.task.cancel()

    def reset(self) -> None:
        """Forget every series (the source changed: its history is another exchange's)."""
        for symbol, interval in [*self._pending, *self._filled]:
            self.cancel(symbol, interval)

    async def run(self) -> None:
        """Fill what is requested, until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for series in list(self._pending.values()):
                    self._start(series)
                await asyncio.Event().wait()
        finally:
            # The group has cancelled and awaited every task; a later run starts over.
            self._group = None

    def retry_now(self) -> None:
        """Try the pending series again at once, with the backoff started over: where
        their REST is has just changed (a follower learned the leader's)."""
        self._pacer.succeeded()
        self._resume_at = 0.0
        nudged, self._nudged = self._nudged, asyncio.Event()
        nudged.set()

    def status(self) -> dict[str, object]:
        return {
            "pending": sorted(s.name for s in self._pending.values()),
            "filled": len(self._filled),
            "candles": self.candles,
            "errors": dict(self._tally.counts),
            "last_error": self._tally.last_error,
            "used_weight": self._client.used_weight,
        }

    def _start(self, series: _Series) -> None:
        if self._group is None or (series.task is not None and not series.task.done()):
            return  # ``run`` starts it
        series.task = self._group.create_task(self._fill(series), name=f"backfill-{series.name}")

    async def _fill(self, series: _Series) -> None:
        try:
            candles = await self._history_of(series)
        except Exception:
            # A bug of ours: this series stays pending (status says so), the others go on.
            self._tally.counts["internal"] += 1
            log.exception("candle history of %s failed", series.name)
            return
        key = (series.symbol, series.interval)
        if self._pending.get(key) is not series:
            return  # cancelled while the last answer was parsed
        del self._pending[key]
        self._filled.add(key)
        self.candles += len(candles)
        try:
            self._on_candles(series.symbol, series.interval, candles)
        except Exception:
            # The history is lost for this series, not the backfill of every other one.
            self._tally.counts["sink_error"] += 1
            if self._tally.counts["sink_error"] == 1:
                log.exception("candle history of %s not taken (sink_error)", series.name)

    async def _history_of(self, series: _Series) -> list[Kline]:
        """Page backwards from ``series.before`` until ``history`` candles or the oldest."""
        pages: list[list[RestKline]] = []
        wanted, end = self._history, series.before - 1
        while wanted > 0:
            limit = min(MAX_KLINES_PER_REQUEST, wanted)
            page = [k for k in await self._request(series, limit, end) if k.open_time <= end]
            if page:
                pages.append(page)
                wanted -= len(page)
                end = page[0].open_time - 1
            if len(page) < limit:
                break  # the exchange has nothing older
        return [
            Kline.of(k, closed=True, seq=0, source=series.label)
            for page in reversed(pages)
            for k in page
        ]

    async def _request(self, series: _Series, limit: int, end: int) -> list[RestKline]:
        """One page, retried until it comes."""
        loop = asyncio.get_running_loop()
        while True:
            async with self._slots:
                # Every series waits out a Retry-After: the budget is the address's. The wait
                # may have grown meanwhile (another request failed): look again after it.
                if (wait := self._resume_at - loop.time()) > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._nudged.wait(), wait)
                    continue
                base_url = series.rest()
                try:
                    page = await self._client.klines(
                        base_url, series.symbol, series.interval, limit=limit, end_ms=end
                    )
                except RestError as error:
                    self._failed(series, limit, end, error.kind.value, error)
                    continue
                except Exception as error:
                    # A bug of ours must not end the backfill of every series: retried too.
                    self._failed(series, limit, end, "internal", error)
                    continue
            self._succeeded(base_url)
            return page

    def _failed(self, series: _Series, limit: int, end: int, kind: str, error: Exception) -> None:
        wait = error.retry_after if isinstance(error, RestError) else None
        delay = self._pacer.failed(wait)
        loop = asyncio.get_running_loop()
        self._resume_at = max(self._resume_at, loop.time() + delay)
        if self._tally.failed(kind, f"{series.name}: {error}"):
            params = {"symbol": series.symbol, "interval": series.interval, "limit": limit}
            query = urlencode({**params, "endTime": end})
            log.warning(
                "candle history: GET %s/api/v3/klines?%s failed (%s); retrying in %.1fs "
                "(further %s failures are counted, not logged)",
                series.rest(),
                query,
                error,
                delay,
                kind,
                exc_info=not isinstance(error, RestError),
            )

    def _succeeded(self, base_url: str) -> None:
        self._pacer.succeeded()
        failures = self._tally.succeeded()
        if failures:
            log.info("candle history: %s answers again after %d failures", base_url, failures)
