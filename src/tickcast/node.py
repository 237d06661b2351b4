"""A tickcast node: the hub, the ingest and the upstream source, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from functools import partial

import redis.exceptions

from tickcast.hooks import Hooks
from tickcast.hub.base import Hub
from tickcast.hub.candles import CandleHistory
from tickcast.hub.lease import Lease, LeaseTiming
from tickcast.hub.memory import MemoryHub
from tickcast.hub.redis import RedisHub
from tickcast.ingest import BookIngest, Ingest
from tickcast.messages.book import BookSnapshot, DepthEvent
from tickcast.messages.kline import Kline
from tickcast.messages.message import Message, ticks_of
from tickcast.messages.tick import SourceLabel, Tick
from tickcast.served import Served, ServedChange
from tickcast.settings import Settings
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.backfill import KlineBackfill
from tickcast.upstream.books import BookEvent, BookKeeper
from tickcast.upstream.listingwatch import ListingWatch
from tickcast.upstream.normalize import MarketEvent, TradeEvent
from tickcast.upstream.rest import RestClient
from tickcast.upstream.snapshotpace import snapshot_limit
from tickcast.upstream.sources import ReplaySource, SupervisedSource, build_source
from tickcast.upstream.streams import settings_streams
from tickcast.upstream.tradefill import TradeFill
from tickcast.upstream.tradegaps import FillRequest

log = logging.getLogger(__name__)

# /readyz: the newest tick must be younger than this many stale-after periods.
READY_FRESHNESS_FACTOR = 3
# With ``*``: symbols the Redis stream is sized for beyond those named (about Binance
# spot's count), as the listing is read after the hub starts.
LISTING_HINT = 2000
# How often a node compares the state it announced with the one it derives now.
STATUS_CHECK_INTERVAL = 1.0
# What a ``status`` message is announced again for: not the ages and counts it carries.
_ANNOUNCED_KEYS = ("upstream", "source", "simulated", "hub", "via")
# What a ``status`` message carries of ``upstream_report`` besides the state.
_MESSAGE_KEYS = ("source", "since", "reconnects", "last_message_age", "simulated", "via")

UpstreamListener = Callable[[dict[str, object]], None]


class Node:
    """Owns the data path of one process: source -> ingest -> hub.

    With the memory hub the node always ingests. With Redis (SPEC §7) it ingests only while
    it holds the leader lease (``role`` ``all`` or ``ingest``; an ``edge`` node never
    competes): elected, it is given the epoch that fences its writes and starts its
    source; deposed, it stops the source at once, before its lease could expire.
    """

    def __init__(self, settings: Settings, hub: Hub | None = None, first_seq: int = 0) -> None:
        """``first_seq``: where the memory hub's seqs start (a server passes the clock,
        ``clock_seq()``, so that ids from a previous run are never taken for this one's)."""
        self.settings = settings
        # What is served: the named symbols, or with ``*`` the exchange's listing (SPEC §12).
        self.served = Served.of(settings)
        self.redis: RedisHub | None = None
        if hub is None and settings.redis_url:
            listing = LISTING_HINT if settings.every_market else 0
            hub = self.redis = RedisHub(
                settings.redis_url,
                history_size=settings.history_size,
                prefix=settings.redis_prefix,
                streams=len(self.served.keys) + listing,
            )
        self.hub: Hub = hub if hub is not None else MemoryHub(settings.history_size, first_seq)
        self.ingest = Ingest(self.hub, self.served.symbol_set, settings.carried_symbols)
        # Candles for /klines: the stream's, as the hub delivers them (on every node), and
        # before the first of them the upstream REST's, fetched once it came (SPEC §12).
        self.candles = CandleHistory(settings.kline_history)
        self.rest = RestClient()
        self.backfill = KlineBackfill(self.rest, settings.kline_history, self.candles.fill)
        self._backfill_task: asyncio.Task[None] | None = None
        # Trades a connection did not deliver (a reconnect, a takeover) are fetched from
        # the same REST and served in their place, before the live ones held meanwhile.
        self.trade_fill = TradeFill(self.rest, self._trades_fetched)
        self.ingest.on_fill = self._fetch_trades
        self._fill_task: asyncio.Task[None] | None = None
        # Order books: kept by the leader from the diffs and REST snapshots, published
        # through the hub, held by every node's hub from its messages.
        self.books: BookKeeper | None = None
        self.book_ingest: BookIngest | None = None
        self._book_source: SourceLabel = "binance"
        self._books_task: asyncio.Task[None] | None = None
        if settings.carries_books:
            self.books = BookKeeper(
                self.rest,
                lambda: self._rest_base(self._book_source),
                settings.carried_symbols,
                limit=settings.book_snapshot_limit or snapshot_limit(len(settings.carried_symbols)),
                on_event=self._book_event,
                seed=self._book_seed,
                min_known=settings.book_levels,
            )
            self.book_ingest = BookIngest(
                self.hub,
                self.ingest,
                self.books.view,
                levels=settings.book_levels,
                interval=settings.book_interval_ms / 1000,
            )
        # Supervised: a source that fails is restarted with backoff, and says so meanwhile.
        # Simulated data continues from the ticks the hub holds (a previous leader's).
        self.source: SupervisedSource = build_source(
            settings, self._take, self._upstream_changed, latest=self.latest_ticks
        )
        self.listing: ListingWatch | None = None
        self._listing_task: asyncio.Task[None] | None = None
        # On a follower: the digest of the leader's listing this node serves.
        self._listing_digest: str | None = None
        if settings.every_market:
            self.listing = ListingWatch(
                self.rest,
                self._listing_base,
                self._listing_read,
                quote_assets=settings.quote_assets,
                refresh=settings.listing_refresh_s,
            )
            self.served.on_change(self._served_changed)
        self.lease: Lease | None = None
        if self.redis is not None and settings.role != "edge":
            self.lease = Lease(
                settings.redis_url,
                settings.node_id,
                prefix=settings.redis_prefix,
                timing=LeaseTiming.for_ttl(settings.lease_ttl),
                on_elected=self._elected,
                on_deposed=self._deposed,
            )
        self.started_at = time.time()
        self._unhook: Callable[[], None] = _nothing
        # On a follower: (source, REST base) of the exchange the leader serves.
        self._leader_rest: tuple[str, str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._status_task: asyncio.Task[None] | None = None
        # The state clients were last told, compared by ``_check_status``.
        self._announced: tuple[object, ...] | None = None
        # A follower's view of the upstream, and since when it has held.
        self._derived: tuple[str, float] | None = None
        # Source tasks of a deposed term, cancelled at once and awaited in ``stop``.
        self._retired: list[asyncio.Task[None]] = []
        self._listeners: Hooks[dict[str, object]] = Hooks("upstream listener")
        # Lease changes seen by this node: "elected" and "deposed" (for /metrics).
        self.lease_changes: Counter[str] = Counter()

    @property
    def leading(self) -> bool:
        """Whether this node ingests: always with the memory hub, else while it leads."""
        if self.redis is None:
            return True
        return self.lease is not None and self.lease.is_leader

    async def start(self) -> None:
        if isinstance(self.source.inner, ReplaySource):
            # Fail at start-up, with the file's name, rather than serve nothing.
            await asyncio.to_thread(self.source.inner.load)
        self._unhook = self.hub.subscribe(self._keep_candle)
        self._backfill_task = asyncio.create_task(self.backfill.run(), name="kline-backfill")
        self._fill_task = asyncio.create_task(self.trade_fill.run(), name="trade-fill")
        if self.books is not None:
            self._books_task = asyncio.create_task(self._keep_books(), name="books")
        await self.hub.start()
        if self.listing is not None:
            if self.redis is not None:
                # A listing announced by a leader: served at once, and a new leader's start.
                await self._follow_listing()
            self._listing_task = asyncio.create_task(self.listing.run(), name="listing")
        if self.redis is not None:
            # Clients that asked for status hear when the hub's link drops and returns.
            self.redis.on_connection(lambda _connected: self._upstream_changed())
        if self.redis is None:
            self._start_source()
        elif self.lease is not None:
            self._lease_task = asyncio.create_task(self.lease.run(), name="lease")
        self._status_task = asyncio.create_task(self._watch_status(), name="status-watch")

    async def stop(self) -> None:
        if self._status_task is not None:
            await cancel_and_wait(self._status_task)
            self._status_task = None
        if self.lease is not None and self._lease_task is not None:
            # Stops the source (on_deposed) and hands the lease over at once.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.lease.release(), self.settings.lease_ttl)
            with contextlib.suppress(Exception):
                await cancel_and_wait(self._lease_task)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.lease.aclose(), self.settings.lease_ttl)
        tasks = [t for t in (self._task, *self._retired) if t is not None]
        self._task, self._retired = None, []
        with contextlib.suppress(Exception):  # already logged by _run_source
            await cancel_and_wait(*tasks)
        await self.hub.stop()
        self._unhook()
        tasks = [
            t
            for t in (self._backfill_task, self._fill_task, self._books_task, self._listing_task)
            if t is not None
        ]
        self._backfill_task = self._fill_task = self._books_task = self._listing_task = None
        await cancel_and_wait(*tasks)
        await self.rest.aclose()

    def _start_source(self) -> None:
        self._retired = [t for t in self._retired if not t.done()]
        self._task = asyncio.create_task(self._run_source(), name="source")

    def _elected(self, epoch: int) -> None:
        assert self.redis is not None
        log.info("node %s leads (epoch %d): starting the upstream", self.settings.node_id, epoch)
        self.redis.set_leadership(self.settings.node_id, epoch)
        self.lease_changes["elected"] += 1
        self._start_source()
        self._upstream_changed()

    def _deposed(self, reason: object) -> None:
        assert self.redis is not None
        # Released at shutdown: routine, INFO; lost (Redis gone, renewals late): WARNING.
        level = logging.INFO if getattr(reason, "value", None) == "released" else logging.WARNING
        log.log(
            level, "node %s no longer leads (%s): upstream stopped", self.settings.node_id, reason
        )
        # Refuse to publish first: nothing the source still hands over may be sent.
        self.redis.set_leadership(self.settings.node_id, None)
        self.lease_changes["deposed"] += 1
        if self.books is not None and self.book_ingest is not None:
            # The next term starts its books over: from the hub's, if its diffs continue them.
            self.books.forget()
            self.book_ingest.forget()
        if self._task is not None:
            self._task.cancel()
            self._retired.append(self._task)
            self._task = None
        self._upstream_changed()

    async def _run_source(self) -> None:
        # The supervisor restarts a failed source; only a bug of its own gets here.
        try:
            await self.source.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the upstream supervisor failed")
            raise

    def on_upstream_change(self, listener: UpstreamListener) -> Callable[[], None]:
        """Call ``listener`` with ``upstream_status()`` whenever the upstream state changes."""
        return self._listeners.add(listener)

    def _upstream_changed(self) -> None:
        self._announce(self.upstream_status())

    def _announce(self, status: dict[str, object]) -> None:
        self._announced = tuple(status.get(key) for key in _ANNOUNCED_KEYS)
        self._listeners(status)

    async def _watch_status(self) -> None:
        """Some states change with no event to announce them: a follower's view of the
        upstream follows the age of the newest tick, so it turns connected when ticks
        resume (after Redis came back empty, say) and stale when they stop."""
        while True:
            await asyncio.sleep(STATUS_CHECK_INTERVAL)
            self._check_status()
            if self.redis is not None:
                await self._share_rest()

    def _check_status(self) -> None:
        """Announce the upstream state if it is not the one clients were last told."""
        status = self.upstream_status()
        if tuple(status.get(key) for key in _ANNOUNCED_KEYS) != self._announced:
            self._announce(status)

    def upstream_status(self) -> dict[str, object]:
        """The short form sent to clients in ``status`` messages."""
        # Once a second and for every status client that connects: not the source's report.
        report = self.upstream_report(detailed=False)
        return {
            "type": "status",
            "upstream": report["state"],
            **{key: report[key] for key in _MESSAGE_KEYS},
            **self._hub_state(),
        }

    def upstream_report(self, *, detailed: bool = True) -> dict[str, object]:
        """``/status``'s ``upstream``: the same keys on every node, leader or follower,
        with either hub (README, "What /status says"). ``detail`` is the source's own
        report on the node that holds the upstream connection, None on the others;
        ``detailed=False`` leaves it and ``parse_errors`` empty (a ``status`` message
        carries neither)."""
        if not self.leading:
            return self._follower_report()
        brief, label = self.source.brief(), self.source.label
        return {
            "state": brief["state"],
            "source": label,
            "simulated": label == "sim",
            "since": brief.get("since"),
            "reconnects": brief.get("reconnects", 0),
            "restarts": self.source.restarts,
            "last_message_age": brief.get("last_message_age"),
            "last_error": brief.get("last_error"),
            "last_error_at": brief.get("last_error_at"),
            "parse_errors": self.source.parse_errors() if detailed else {},
            "via": "upstream",
            "detail": self.source.status() if detailed else None,
        }

    def _follower_report(self) -> dict[str, object]:
        """A node that does not lead sees the upstream through the hub: connected while
        the hub is and ticks are fresh; what the leader's connection does is its own."""
        age = self.newest_tick_age()
        if not self.hub.connected:
            state = "reconnecting"
        elif age is None or age > self.settings.stale_after:
            state = "stale"
        else:
            state = "connected"
        if self._derived is None or self._derived[0] != state:
            self._derived = (state, time.time())
        newest = self.hub.snapshot().values()
        source = max(newest, key=lambda t: t.seq).source if newest else None
        return {
            "state": state,
            "source": source,
            "simulated": source == "sim",
            "since": self._derived[1],
            "reconnects": 0,
            "restarts": 0,
            "last_message_age": None if age is None else round(age, 3),
            "last_error": None,
            "last_error_at": None,
            "parse_errors": {},
            "via": "hub",
            "detail": None,
        }

    def _hub_state(self) -> dict[str, object]:
        # The node a client is served by: useful behind a load balancer or with workers.
        if self.redis is None:
            return {"node": self.settings.node_id}
        return {
            "node": self.settings.node_id,
            "hub": "connected" if self.hub.connected else "disconnected",
        }

    def _take(self, event: MarketEvent, source: SourceLabel) -> object:
        """The source's sink: a book's diff goes to its keeper, anything else to ingest."""
        if type(event) is not DepthEvent:
            return self.ingest.apply(event, source)
        if self.books is None or self.book_ingest is None:
            self.ingest.counts["ignored_depth"] += 1
            return None
        self._book_source = source
        self.book_ingest.origin[event.symbol] = (source, event.history)
        self.books.on_depth(event)
        return None

    def _book_event(self, event: BookEvent) -> None:
        if self.book_ingest is not None and self.leading:
            self.book_ingest.on_event(event, asyncio.get_running_loop().time())

    def _book_seed(self, symbol: str) -> BookSnapshot | None:
        """A new leader's book may start from the hub's when the exchange is the one the
        previous leader served (its announced REST is this node's): ids then compare."""
        label, url = self.source.label, self.source.rest_url
        if self.redis is None or self._leader_rest is None or self._leader_rest != (label, url):
            return None
        held = self.hub.books().depth(symbol)
        if held is None or held.source != label:
            return None
        # What a hub holds of a side is what was served of it: maybe not all of it.
        return BookSnapshot(symbol, held.update_id, held.bids, held.asks, False, False)

    async def _keep_books(self) -> None:
        """Fetch the books' snapshots; publish their tops as their interval ends, and with
        Redis each whole book again every ``book_checkpoint_s`` when it moved on (SPEC §12):
        a node that reads the stream late starts from it, with no snapshot of its own."""
        assert self.books is not None
        assert self.book_ingest is not None
        books, feed = self.books, self.book_ingest
        loop = asyncio.get_running_loop()
        tick = max(0.02, self.settings.book_interval_ms / 1000 / 2)
        async with asyncio.TaskGroup() as group:
            group.create_task(books.run(), name="book-snapshots")
            every = self.settings.book_checkpoint_s
            next_checkpoint = loop.time() + every
            while True:
                await asyncio.sleep(tick)
                if not self.leading:
                    continue
                now = loop.time()
                feed.flush(now)
                if self.redis is not None and now >= next_checkpoint:
                    next_checkpoint = now + every
                    feed.checkpoint(books.symbols)

    def _keep_candle(self, message: Message) -> None:
        if type(message) is not Kline or self.candles.add(message) != "first":
            return
        # The first candle of its series, or the first of another source (a fallback to
        # simulated data, or back to live): its history ends just before it.
        self.backfill.cancel(message.symbol, message.interval)
        self.backfill.request(
            message.symbol,
            message.interval,
            message.source,
            partial(self._rest_base, message.source),
            message.open_time,
        )

    def _fetch_trades(self, request: FillRequest, source: SourceLabel) -> None:
        self.trade_fill.request(request, source, self._rest_base(source))

    def _trades_fetched(
        self, request: FillRequest, source: SourceLabel, trades: list[TradeEvent] | None
    ) -> None:
        if not self.leading:
            return  # deposed meanwhile: the trades are the new leader's to serve
        if trades is None:
            self.ingest.trades_unfilled(request, source)
        else:
            self.ingest.trades_filled(request, trades, source)

    def _rest_base(self, source: str) -> str:
        """The REST of the exchange whose candles these are: the leader's own source's
        (the simulator it runs, say), on another node the one the leader announces for
        that source (``_share_rest``), else the configured Binance REST."""
        own = self.source.rest_url
        if self.leading and own is not None and self.source.label == source:
            return own
        if self._leader_rest is not None and self._leader_rest[0] == source:
            return self._leader_rest[1]
        return self.settings.binance_rest_url

    async def _share_rest(self) -> None:
        """With Redis: the leader says where the exchange it serves answers REST, and the
        other nodes read it, for their candle history (a simulator runs on the leader
        alone). Refreshed every status check; it expires with a few missed ones."""
        assert self.redis is not None
        url, label = self.source.rest_url, self.source.label
        try:
            # Bounded: a Redis that does not answer must not hold up the status checks.
            async with asyncio.timeout(STATUS_CHECK_INTERVAL):
                if self.leading and url is not None and label is not None:
                    await self.redis.announce_rest(label, url, 5 * STATUS_CHECK_INTERVAL)
                elif not self.leading:
                    if self.listing is not None:
                        await self._follow_listing()
                    known, self._leader_rest = self._leader_rest, await self.redis.leader_rest()
                    if self._leader_rest != known and self._leader_rest is not None:
                        self.backfill.retry_now()
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            log.debug("leader REST note: %s", exc)

    def _listing_base(self) -> str | None:
        """Where the listing is read: the REST of the exchange served now, by the node
        that holds the upstream (the others serve the listing it announces)."""
        if not self.leading or self.source.label is None:
            return None
        return self.source.rest_url

    async def _listing_read(self, symbols: tuple[str, ...]) -> None:
        self.served.replace(symbols)
        if self.redis is None or not self.leading:
            return
        try:
            async with asyncio.timeout(self.settings.lease_ttl):
                await self.redis.announce_listing(self.served.symbols)
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            # The followers keep the previous one until the next read announces it.
            log.warning("the listing could not be announced to the other nodes: %s", exc)

    async def _follow_listing(self) -> None:
        """Serve the listing the leader announced, when it is not the one served."""
        assert self.redis is not None
        try:
            async with asyncio.timeout(STATUS_CHECK_INTERVAL):
                digest = await self.redis.listing_digest()
                if digest is None or digest == self._listing_digest:
                    return
                announced = await self.redis.listing()
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            log.debug("listing note: %s", exc)
            return
        if announced is not None:
            self._listing_digest = announced[0]
            self.served.replace(announced[1])

    def _served_changed(self, change: ServedChange) -> None:
        """A new listing: the upstream follows it (new symbols subscribed, delisted ones
        unsubscribed, paced; no reconnect)."""
        log.info(
            "serving %d symbols: %d listed%s, %d delisted%s",
            len(self.served),
            len(change.added),
            _sample(change.added),
            len(change.removed),
            _sample(change.removed),
        )
        self.source.set_streams(settings_streams(self.settings, self.served.symbols))

    def backfill_status(self) -> dict[str, object]:
        """Where the candle history stands: series still pending (their REST history not
        fetched yet: the REST failed, or is being paced), filled, errors by kind."""
        return self.backfill.status()

    def latest_ticks(self) -> dict[str, Tick]:
        """The latest tick of every symbol the hub holds."""
        return {t.symbol: t for t in ticks_of(self.hub.snapshot().values())}

    def newest_tick_age(self) -> float | None:
        ticks = ticks_of(self.hub.snapshot().values())
        if not ticks:
            return None
        newest = max(t.timestamp_ms for t in ticks)
        return max(0.0, time.time() - newest / 1000)

    def ready(self) -> tuple[bool, str]:
        """Fresh data and a connected hub: what a load balancer should check."""
        if not self.hub.connected:
            return False, "hub disconnected"
        age = self.newest_tick_age()
        if age is None:
            return False, "no data yet"
        if age > self.settings.stale_after * READY_FRESHNESS_FACTOR:
            return False, f"newest tick is {age:.1f}s old"
        return True, "ok"

    def cluster_status(self) -> dict[str, object]:
        """SPEC §7: role, leadership and epoch (the Redis state and reader lag are in
        ``hub``)."""
        lease = self.lease
        return {
            "role": self.settings.role,
            "hub": "redis" if self.redis is not None else "memory",
            "leader": self.leading,
            "leader_id": lease.leader_id if lease is not None else None,
            "epoch": lease.epoch if lease is not None else None,
            "incarnation": self.redis.incarnation if self.redis is not None else None,
        }

    def status(self) -> dict[str, object]:
        return {
            "node_id": self.settings.node_id,
            "cluster": self.cluster_status(),
            "uptime": round(time.time() - self.started_at, 3),
            "source": (upstream := self.upstream_report())["source"],
            "simulated": upstream["simulated"],
            "upstream": upstream,
            "ingest": dict(self.ingest.counts),
            "hub": self.hub.status(),
            "symbols": sorted(self.ingest.symbols),
            "listing": self.listing_status(),
            "klines": {"held": len(self.candles), "backfill": self.backfill_status()},
            "trade_fill": {
                **self.trade_fill.status(),
                **{k: v for k, v in self.ingest.gaps.counts.items()},
                "pending": [r.symbol for r in self.ingest.gaps.pending()],
            },
            "books": self.books_status(),
        }

    def listing_status(self) -> dict[str, object] | None:
        """With ``*``: how many symbols are served, how often that changed, and on the
        leader how its reads of the exchange's listing went; None otherwise."""
        if self.listing is None:
            return None
        report: dict[str, object] = {"served": len(self.served), "changes": self.served.changes}
        if self.leading:
            report.update(self.listing.status())
        return report

    def books_status(self) -> dict[str, object] | None:
        """Per book: its state as this node serves it (the hub's), and on the leader the
        keeper's account (snapshots, resyncs, REST weight); None when books are not
        carried."""
        if self.books is None or self.book_ingest is None:
            return None
        held = self.hub.books()
        served = {s: held.state(s) for s in self.books.symbols}
        report: dict[str, object] = {
            "served": served,
            "synced": sum(1 for state in served.values() if state == "synced"),
            "disconnected": held.disconnected,
        }
        if self.leading:
            report["keeper"] = self.books.status()
            report["published"] = dict(self.book_ingest.counts)
        return report


def _nothing() -> None:
    return None


def _sample(symbols: tuple[str, ...], most: int = 5) -> str:
    """A few of ``symbols`` for a log line."""
    if not symbols:
        return ""
    more = f", +{len(symbols) - most} more" if len(symbols) > most else ""
    return f" ({', '.join(symbols[:most])}{more})"
