"""``TICKCAST_SYMBOLS=*``: the served symbols kept to the exchange's listing (SPEC §12).

The listing is read from the REST of the exchange served now (``base``: live Binance, or
the simulator ``auto`` fell back to), as soon as there is one, then every ``refresh``
seconds, and at once when the exchange served changes. A read that fails (unreachable,
429, not JSON, truncated, listing nothing) keeps what is served, is logged with its
reason and retried with backoff: the server never goes empty, and never drops every
symbol for one bad answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from tickcast.upstream.listing import Listing
from tickcast.upstream.pacing import Backoff
from tickcast.upstream.rest import RestClient, RestError

log = logging.getLogger(__name__)

# How often the exchange served is looked at, while waiting for the next read.
POLL = 0.5


class ListingWatch:
    """Reads the listing from ``base()`` (None while no exchange is served, or while this
    node does not lead) and hands each good one to ``apply``."""

    def __init__(
        self,
        rest: RestClient,
        base: Callable[[], str | None],
        apply: Callable[[tuple[str, ...]], Awaitable[None]],
        *,
        quote_assets: Sequence[str] = (),
        refresh: float = 3600.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._rest = rest
        self._base = base
        self._apply = apply
        self._quotes = tuple(quote_assets)
        self._refresh = refresh
        self._backoff = backoff if backoff is not None else Backoff(1.0, 300.0)
        self.reads = 0
        self.failures: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.last_error: str | None = None
        self.last_read_at: float | None = None
        self.listed = 0
        self._read_from: str | None = None

    async def run(self) -> None:
        """Read and apply the listing until cancelled."""
        due = 0.0
        while True:
            base = self._base()
            now = time.monotonic()
            if base is None or (now < due and base == self._read_from):
                await asyncio.sleep(POLL)
                continue
            listing = await self._read(base)
            if listing is None:
                due = time.monotonic() + self._retry_delay()
                self._read_from = base
                continue
            self._backoff.reset()
            self._read_from, due = base, time.monotonic() + self._refresh
            await self._apply(listing.symbols)

    async def _read(self, base: str) -> Listing | None:
        self.reads += 1
        try:
            listing = await self._rest.exchange_info(base, self._quotes)
        except RestError as exc:
            self.failures[exc.kind.value] += 1
            self.last_error = str(exc)
            log.warning(
                "the exchange's listing (%s/api/v3/exchangeInfo) could not be read (%s): "
                "serving the symbols served so far; trying again",
                base,
                exc,
            )
            return None
        if listing.skipped.get("bad_name"):
            log.info(
                "the exchange's listing: %d symbols whose names no stream can carry skipped",
                listing.skipped["bad_name"],
            )
        self.skipped = listing.skipped
        self.last_error = None
        self.last_read_at = time.time()
        self.listed = len(listing.symbols)
        return listing

    def _retry_delay(self) -> float:
        # A floor, so a refusal that answers at once is not asked again in a tight loop.
        return max(1.0, self._backoff.next_delay())

    def status(self) -> dict[str, object]:
        return {
            "listed": self.listed,
            "reads": self.reads,
            "last_read_at": self.last_read_at,
            "failures": dict(self.failures),
            "skipped": dict(self.skipped),
            "last_error": self.last_error,
            "quote_assets": list(self._quotes),
            "refresh_s": self._refresh,
        }
