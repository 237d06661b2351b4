"""The Redis hub: ticks published by the leader through one fenced script, and read back
by every node (leader included) from the stream, on one dedicated connection, in seq order.

- ``publish`` is synchronous and never blocks the ingest: it queues (bounded) to a publisher
  task that sends what has piled up as one script call per batch. When the queue is full the
  OLDEST queued tick is dropped and counted (``dropped_full``): every tick carries the full
  state of its symbol, so the newer one supersedes it, and the stream stays the truth of
  what was published.
- Reads (``latest``, ``snapshot``, ``history``, ``since``, ``last_seq``) come from a local
  ``TickStore`` that only the reader feeds, so a tick reaches the store, the listeners and
  every node in the same order: the stream's. The leader's own ticks come back that way too.
- The reader uses ``XREAD BLOCK`` from an explicit last id, with a block time well under the
  socket timeout and no retry (a re-sent XREAD is what skips entries), and checks every
  entry's predecessor and incarnation (see ``redis_follow``): a gap or a new incarnation
  rebuilds the store from Redis and calls the ``on_reset`` hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Final

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tickcast.hooks import Hooks
from tickcast.hub.base import Listener
from tickcast.hub.memory import tick_name
from tickcast.hub.redis_follow import (
    Entry,
    Follower,
    Loaded,
    Verdict,
    backoff_delay,
    load_state,
    parse_entry,
    stream_entries,
)
from tickcast.hub.redis_script import (
    PUBLISH_LUA,
    Origin,
    PublishResult,
    RedisKeys,
    fence_value,
    parse_result,
    script_args,
)
from tickcast.hub.store import TickStore
from tickcast.tasks import cancel_and_wait
from tickcast.tick import DEFAULT_SYMBOLS, Tick

log = logging.getLogger(__name__)

ResetHook = Callable[[str], None]

# What a lost or broken link looks like from redis-py: reconnect, never crash the reader.
# Seconds a client's close, and the hub's whole stop, may take before they are abandoned.
CLOSE_TIMEOUT: Final = 2.0
STOP_TIMEOUT: Final = 3.0
_LINK_ERRORS: Final = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class RedisHub:
    """A ``Hub`` over Redis (see the module docstring). ``set_leadership`` is called by
    whoever holds the lease; only then does ``publish`` send anything."""

    def __init__(
        self,
        url: str,
        *,
        history_size: int,
        prefix: str = "tickcast",
        symbols: int = len(DEFAULT_SYMBOLS),
        block_ms: int = 1000,
        socket_timeout: float = 5.0,
        queue_size: int = 10_000,
        batch_size: int = 256,
        read_count: int = 512,
        start_timeout: float = 2.0,
        seed: int | None = None,
    ) -> None:
        if block_ms / 1000 >= socket_timeout / 2:
            # A block near the socket timeout turns every idle read into a timeout.
            raise ValueError("block_ms must be well under socket_timeout")
        self._url = url
        self._keys = RedisKeys(prefix)
        self._history_size = history_size
        # SPEC §7: the stream holds history_size per symbol on average.
        self._maxlen = history_size * max(1, symbols)
        self._block_ms = block_ms
        self._socket_timeout = socket_timeout
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._read_count = read_count
        self._start_timeout = start_timeout
        self._rng = random.Random(seed)

        self._store = TickStore(history_size)
        self._floor = 0
        self._follower: Follower | None = None
        self._high_seq = 0
        self._listeners: Hooks[Tick] = Hooks("hub listener", tick_name)
        self._reset_hooks: Hooks[str] = Hooks("hub reset hook")
        self._connection_hooks: Hooks[bool] = Hooks("redis connection hook")
        self._queue: deque[tuple[Tick, Origin | None]] = deque()
        self._wake = asyncio.Event()
        self._synced = asyncio.Event()
        self._fence: str | None = None
        self._connected = False
        self._ever_connected = False
        self._lag_seq = 0
        self._lag_ms = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.counts: Counter[str] = Counter()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the reader and the publisher; wait (bounded) for the first load from Redis.
        An unreachable Redis does not fail the start: ``connected`` stays false meanwhile."""
        self._tasks = [
            asyncio.create_task(self._read_forever(), name="redis-hub-reader"),
            asyncio.create_task(self._publish_forever(), name="redis-hub-publisher"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), self._start_timeout)

    async def stop(self) -> None:
        # Bounded: a task caught in redis-py while its connection is being cut must not
        # hold up a shutdown (SPEC §9: out within 5 s); it is reported, not waited for.
        try:
            await asyncio.wait_for(cancel_and_wait(*self._tasks), STOP_TIMEOUT)
        except TimeoutError:
            stuck = [t.get_name() for t in self._tasks if not t.done()]
            log.error("redis hub tasks did not stop within %.0f s: %s", STOP_TIMEOUT, stuck)
        self._tasks = []
        self._connected = False
        self._listeners.clear()
        self._reset_hooks.clear()
        self._connection_hooks.clear()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def incarnation(self) -> str | None:
        return self._follower.incarnation if self._follower else None

    # -- publishing (leader) ---------------------------------------------------------------

    def set_leadership(self, node_id: str, epoch: int | None) -> None:
        """``epoch`` set: this node leads, and every write is fenced by Redis on
        ``<node_id>:<epoch>``. ``None``: it no longer does; what is still queued is dropped
        (Redis would refuse it anyway)."""
        if epoch is None:
            self._fence = None
            self.counts["not_leader"] += len(self._queue)
            self._queue.clear()
        else:
            self._fence = fence_value(node_id, epoch)

    @property
    def leading(self) -> bool:
        return self._fence is not None

    def publish(self, tick: Tick, origin: Origin | None = None) -> None:
        """Queue ``tick`` for the publish script. ``origin`` (upstream kind, history, order)
        lets Redis drop an update already applied; without it only the seq check guards."""
        if self._fence is None:
            self.counts["not_leader"] += 1
            return
        if len(self._queue) >= self._queue_size:
            self._queue.popleft()
            self.counts["dropped_full"] += 1
        self._queue.append((tick, origin))
        self._wake.set()

    async def _publish_forever(self) -> None:
        # redis-py's default retry re-sends a timed-out call: safe, the script is idempotent.
        client = aioredis.Redis.from_url(
            self._url,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._socket_timeout,
        )
        script = client.register_script(PUBLISH_LUA)
        batch: list[tuple[Tick, Origin | None]] = []
        attempt = 0
        try:
            while True:
                if self._fence is None:
                    self.counts["not_leader"] += len(batch)
                    batch = []
                if not batch:
                    if not self._queue:
                        self._wake.clear()
                        await self._wake.wait()
                        continue
                    count = min(self._batch_size, len(self._queue))
                    batch = [self._queue.popleft() for _ in range(count)]
                fence = self._fence
                if fence is None:
                    continue
                args = script_args(fence, self._maxlen, secrets.token_hex(8), batch)
                try:
                    # EVALSHA; on NOSCRIPT (Redis restarted) redis-py loads it and retries.
                    reply = await script(keys=self._keys.script_keys(), args=args)
                except _LINK_ERRORS as exc:
                    # Keep the batch and send it again: the script drops what was applied.
                    self.counts["publish_errors"] += 1
                    log.warning("redis publish failed (%s); retrying", exc)
                    await asyncio.sleep(backoff_delay(attempt, self._rng))
                    attempt += 1
                    continue
                except redis.exceptions.RedisError:
                    self.counts["publish_errors"] += 1
                    log.exception("redis publish script failed; batch of %d dropped", len(batch))
                    batch = []
                    continue
                attempt = 0
                self._account(parse_result(reply), len(batch))
                batch = []
        finally:
            await _close(client)

    def _account(self, result: PublishResult, sent: int) -> None:
        if result.fenced:
            self.counts["fenced"] += sent
            log.warning("redis refused %d ticks: the lease is not ours", sent)
            return
        self.counts["published"] += result.applied
        self.counts["duplicates"] += result.duplicates
        self.counts["stale"] += result.stale
        # The next seq the leader stamps must pass what Redis holds (ingest reads last_seq).
        self._high_seq = max(self._high_seq, result.meta_seq)

    # -- reading (every node) --------------------------------------------------------------

    def _reader_client(self) -> aioredis.Redis:
        # One connection, no retry: a timed-out XREAD must surface here and be re-issued
        # from our explicit last id, not re-sent blindly by redis-py.
        return aioredis.Redis.from_url(
            self._url,
            max_connections=1,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )

    async def _read_forever(self) -> None:
        attempt = 0
        while True:
            client = self._reader_client()
            try:
                await self._attach(client)
                attempt = 0
                while True:
                    await self._read_once(client)
            except _LINK_ERRORS as exc:
                if self._connected:
                    log.warning("redis reader lost its connection (%s); reconnecting", exc)
                self._set_connected(False)
            except (redis.exceptions.RedisError, ValueError):
                # A command error or data the hub cannot read (a key of the wrong type, a
                # foreign latest-hash value): report, stay down, and try again later
                # rather than lose the reader for good.
                log.exception("redis reader failed; retrying")
                self._set_connected(False)
            finally:
                await _close(client)
            await asyncio.sleep(backoff_delay(attempt, self._rng))
            attempt += 1

    async def _attach(self, client: aioredis.Redis) -> None:
        """After (re)connecting: load everything the first time; later, resume from the
        last id delivered unless Redis's incarnation changed meanwhile."""
        await client.hsetnx(self._keys.meta, "incarnation", secrets.token_hex(8))
        current = await client.hget(self._keys.meta, "incarnation")
        if self._follower is None:
            self._install(await self._fetch(client))
        elif _text(current) != self._follower.incarnation:
            await self._resync(client, Verdict.NEW_INCARNATION)
        if self._ever_connected:
            self.counts["reconnects"] += 1
        self._ever_connected = True
        self._set_connected(True)
        self._synced.set()

    async def _read_once(self, client: aioredis.Redis) -> None:
        follower = self._follower
        assert follower is not None
        pipe = client.pipeline(transaction=False)
        # The meta read rides along with the XREAD: it reveals a FLUSHALL even on an idle
        # stream, and the head seq gives the lag.
        pipe.hmget(self._keys.meta, ["incarnation", "seq"])
        pipe.xread({self._keys.stream: follower.last_id}, self._read_count, self._block_ms)
        (incarnation, head), reply = await pipe.execute()
        if incarnation is None or _text(incarnation) != follower.incarnation:
            # Gone (FLUSHALL, restart without persistence) even if nothing new was written.
            await self._resync(client, Verdict.NEW_INCARNATION)
            return
        for entry_id, fields in stream_entries(reply):
            try:
                entry = parse_entry(entry_id, fields)
            except (KeyError, ValueError):
                self.counts["bad_entries"] += 1
                log.exception("skipping a stream entry the hub did not write: %r", entry_id)
                continue
            verdict = follower.check(entry)
            if verdict is Verdict.DELIVER:
                follower.advance(entry)
                self._deliver(entry)
            elif verdict is not Verdict.SKIP:
                await self._resync(client, verdict)
                return
        self._lag_seq = max(0, int(head or 0) - follower.position)
        if self._lag_seq == 0:
            self._lag_ms = 0

    def _deliver(self, entry: Entry) -> None:
        tick = entry.tick
        if not self._store.add(tick):
            return
        self._high_seq = max(self._high_seq, tick.seq)
        self._lag_ms = max(0, int(time.time() * 1000) - entry.written_ms)
        self._listeners(tick)  # one listener's bug must not starve the others or the reader

    async def _resync(self, client: aioredis.Redis, reason: Verdict) -> None:
        """History this node relied on is gone: rebuild from Redis and tell the edge."""
        lost_after = self._high_seq if reason is Verdict.NEW_INCARNATION else 0
        self._install(await self._fetch(client, lost_after))
        self.counts["resyncs"] += 1
        log.warning("redis hub resynchronized (%s) at seq %d", reason.value, self._high_seq)
        self._reset_hooks(reason.value)

    async def _fetch(self, client: aioredis.Redis, lost_after: int = 0) -> Loaded:
        keys = self._keys
        pipe = client.pipeline(transaction=True)  # one consistent view: MULTI/EXEC
        pipe.hsetnx(keys.meta, "incarnation", secrets.token_hex(8))
        pipe.hmget(keys.meta, ["incarnation", "seq"])
        pipe.hvals(keys.latest)
        pipe.xrange(keys.stream, "-", "+")
        _, (incarnation, meta_seq), latest, raw = await pipe.execute()
        entries: list[Entry] = []
        for entry_id, fields in raw:
            try:
                entries.append(parse_entry(entry_id, fields))
            except (KeyError, ValueError):
                self.counts["bad_entries"] += 1
        return load_state(
            self._history_size,
            _text(incarnation),
            int(meta_seq or 0),
            latest,
            entries,
            lost_after,
        )

    def _install(self, loaded: Loaded) -> None:
        self._store = loaded.store
        self._floor = loaded.floor
        self._follower = Follower(loaded.position, loaded.incarnation)
        self._high_seq = max(self._high_seq, loaded.position, loaded.store.last_seq())

    # -- the Hub's reads -------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def on_connection(self, hook: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``hook(connected)`` whenever the reader's link to Redis goes down or up."""
        return self._connection_hooks.add(hook)

    def _set_connected(self, connected: bool) -> None:
        changed, self._connected = connected != self._connected, connected
        if changed:
            self._connection_hooks(connected)

    def on_reset(self, hook: ResetHook) -> Callable[[], None]:
        """Call ``hook(reason)`` after the local state was rebuilt because history was lost
        (``"incarnation"``: Redis lost its data; ``"trimmed"``: this node fell behind the
        stream's end): live clients need a ``reset`` and a snapshot."""
        return self._reset_hooks.add(hook)

    def latest(self, symbol: str) -> Tick | None:
        return self._store.latest(symbol)

    def snapshot(self) -> dict[str, Tick]:
        return self._store.snapshot()

    def history(self, symbol: str, limit: int) -> list[Tick]:
        return self._store.history(symbol, limit)

    def since(self, symbols: Iterable[str], after_seq: int) -> list[Tick] | None:
        if self._follower is None or after_seq < self._floor:
            # Not loaded yet, or before what this node holds completely (a resync, or
            # the stream's start when it loaded): the caller must reset, not assume.
            return None
        return self._store.since(symbols, after_seq)

    def last_seq(self) -> int:
        """The highest seq seen here, from the stream or the publish script; it survives a
        resync, so a new leader continues above it even after Redis lost its data."""
        return self._high_seq

    def status(self) -> dict[str, object]:
        follower = self._follower
        return {
            "kind": "redis",
            "connected": self._connected,
            "incarnation": self.incarnation,
            "leading": self.leading,
            "symbols": len(self._store),
            "last_seq": self._high_seq,
            "position": follower.position if follower else None,
            "lag_seq": self._lag_seq,
            "lag_ms": self._lag_ms,
            "queued": len(self._queue),
            **{
                name: self.counts[name]
                for name in (
                    "published",
                    "fenced",
                    "duplicates",
                    "stale",
                    "not_leader",
                    "dropped_full",
                    "publish_errors",
                    "resyncs",
                    "reconnects",
                    "bad_entries",
                )
            },
        }


async def _close(client: aioredis.Redis) -> None:
    """Close a client without ever hanging the task that owns it: a connection cut in the
    middle of a command (a cancellation, a restarted Redis) must not hold up a stop."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.aclose(), CLOSE_TIMEOUT)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
