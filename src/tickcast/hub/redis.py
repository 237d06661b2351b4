"""The Redis hub: ticks published by the leader through one fenced script, and read back
by every node from the stream, on one dedicated connection, in seq order.

- ``publish`` is synchronous and never blocks the ingest: it queues the tick (bounded:
  ``redis_publish.Outbox``) and wakes the publisher task, which sends what was published
  in that turn of the event loop as one batch. Batches are pipelined on one redis-py
  connection: none waits for the answers to those before it (one connection keeps them in
  order), and a task of its own reads the answers as they come. A lost connection, an
  answer missing for the socket timeout, or a "not now" error (NOSCRIPT, LOADING, BUSY...)
  makes the publisher reconnect (loading the script again) and send again, in order, what
  was left unanswered.
- Reads (``latest``, ``snapshot``, ``history``, ``since``, ``last_seq``) come from a local
  ``MessageStore`` fed in stream order only, so a tick reaches the store, the listeners and
  every node in the same order: the stream's.
- The leader delivers its own ticks when the script's answer proves which stream entries it
  wrote, under the same rule as the reader (each entry must follow this node's position):
  a round trip sooner than reading them back, and nothing Redis refused (fenced) or did
  not write (duplicate, stale) ever reaches a client. Entries already delivered are
  skipped by whichever of the two comes second.
- The reader uses ``XREAD BLOCK`` from an explicit last id, with a block time well under the
  socket timeout and no retry (a re-sent XREAD is what skips entries), and checks every
  entry's predecessor and incarnation (see ``redis_follow``): a gap or a new incarnation
  rebuilds the store from Redis and calls the ``on_reset`` hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import orjson
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.utils import HIREDIS_AVAILABLE

from tickcast.hooks import Hooks
from tickcast.hub.base import Listener
from tickcast.hub.books import HeldBooks
from tickcast.hub.memory import message_name
from tickcast.hub.redis_follow import (
    Entry,
    Follower,
    Loaded,
    Verdict,
    backoff_delay,
    entry_seq,
    load_state,
    parse_entry,
    stream_entries,
)
from tickcast.hub.redis_publish import Batch, Outbox, confirmed_entries
from tickcast.hub.redis_script import (
    PUBLISH_LUA,
    Origin,
    PublishResult,
    RedisKeys,
    fence_value,
    parse_result,
    script_args,
)
from tickcast.hub.store import MessageStore
from tickcast.messages.message import Message
from tickcast.messages.tick import DEFAULT_SYMBOLS
from tickcast.tasks import cancel_and_wait

log = logging.getLogger(__name__)

ResetHook = Callable[[str], None]

# What a lost or broken link looks like from redis-py: reconnect, never crash the reader.
# Seconds a client's close, and the hub's whole stop, may take before they are abandoned.
CLOSE_TIMEOUT: Final = 2.0
STOP_TIMEOUT: Final = 3.0
_LINK_ERRORS: Final = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
# Error replies to a batch that say "not now" rather than "never": the publishing connection
# is dropped and the batch sent again on a new one (which loads the script first). LOADING
# is a ConnectionError to redis-py, hence a lost connection already.
_RETRY_LATER: Final = (
    redis.exceptions.NoScriptError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    redis.exceptions.ReadOnlyError,
)


class RedisHub:
    """A ``Hub`` over Redis (see the module docstring). ``set_leadership`` is called by
    whoever holds the lease; only then does ``publish`` send anything."""

    def __init__(
        self,
        url: str,
        *,
        history_size: int,
        prefix: str = "tickcast",
        streams: int = len(DEFAULT_SYMBOLS),
        block_ms: int = 1000,
        socket_timeout: float = 5.0,
        queue_size: int = 10_000,
        batch_size: int = 256,
        max_in_flight: int = 16,
        read_count: int = 512,
        start_timeout: float = 2.0,
        seed: int | None = None,
    ) -> None:
        if block_ms / 1000 >= socket_timeout / 2:
            # A block near the socket timeout turns every idle read into a timeout.
            raise ValueError("block_ms must be well under socket_timeout")
        self._url = url
        # The publishing connection's settings: URL, AUTH, SELECT and TLS read by redis-py.
        self._pool = aioredis.ConnectionPool.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        try:
            self._new_connection()  # an option redis-py does not know fails here
        except TypeError as exc:
            raise ValueError(f"invalid option in the Redis URL: {exc}") from None
        self._keys = RedisKeys(prefix)
        self._history_size = history_size
        # SPEC §7: the stream holds history_size per stream (each symbol's ticker, trades
        # and candles) on average.
        self._maxlen = history_size * max(1, streams)
        self._block_ms = block_ms
        self._socket_timeout = socket_timeout
        self._read_count = read_count
        self._start_timeout = start_timeout
        self._rng = random.Random(seed)

        self._store = MessageStore(history_size)
        self._floor = 0
        self._follower: Follower | None = None
        # True while the reader rebuilds the state from Redis: answers wait for the reader.
        self._loading = False
        self._high_seq = 0
        self._listeners: Hooks[Message] = Hooks("hub listener", message_name)
        self._reset_hooks: Hooks[str] = Hooks("hub reset hook")
        self._connection_hooks: Hooks[bool] = Hooks("redis connection hook")
        self._outbox = Outbox(queue_size, batch_size, max_in_flight)
        self._wake = asyncio.Event()  # for the publisher: something to send, or to check
        self._sent = asyncio.Event()  # for the answer reader: batches on the wire
        self._sha = ""
        self._synced = asyncio.Event()
        self._fence: str | None = None
        self._connected = False
        self._ever_connected = False
        self._lag_seq = 0
        self._lag_ms = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._notes_client: aioredis.Redis | None = None
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
        if self._notes_client is not None:
            await _close(self._notes_client)
            self._notes_client = None
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
            self.counts["not_leader"] += self._outbox.drop_all()
        else:
            self._fence = fence_value(node_id, epoch)

    @property
    def leading(self) -> bool:
        return self._fence is not None

    def publish(self, message: Message, origin: Origin | None = None) -> None:
        """Queue ``message`` for the publish script. ``origin`` (upstream kind, history, order)
        lets Redis drop an update already applied; without it only the seq check guards.

        Sent by the publisher task with whatever else is published in this turn of the
        event loop (a burst from the upstream), as one batch."""
        if self._fence is None:
            self.counts["not_leader"] += 1
            return
        if not self._outbox.add(message, origin):
            self.counts["dropped_full"] += 1
        self._wake.set()

    async def _publish_forever(self) -> None:
        attempt = 0
        while True:
            while not self._outbox.waiting:
                self._wake.clear()
                await self._wake.wait()
            conn = self._new_connection()
            try:
                async with asyncio.timeout(self._socket_timeout):
                    await conn.connect()  # type: ignore[no-untyped-call]
                    await conn.send_command("SCRIPT", "LOAD", PUBLISH_LUA, check_health=False)
                    self._sha = _text(await conn.read_response())
                attempt = 0
                await self._pipeline(conn)
            except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
                self.counts["publish_errors"] += 1
                log.warning("redis publishing connection failed (%s); retrying", exc)
            finally:
                await _disconnect(conn)
                # What was on the wire is sent again (the script drops what it had in fact
                # applied), unless this node no longer leads.
                self._outbox.link_lost()
                if self._fence is None:
                    self.counts["not_leader"] += self._outbox.drop_all()
            await asyncio.sleep(backoff_delay(attempt, self._rng))
            attempt += 1

    def _new_connection(self) -> AbstractConnection:
        """A connection of the pool's class and settings, owned here (never pooled)."""
        conn: AbstractConnection = self._pool.connection_class(**self._pool.connection_kwargs)
        return conn

    async def _pipeline(self, conn: AbstractConnection) -> None:
        """Send batches as soon as they are ready while a task reads the answers; return
        when that task ends: the connection must be dropped."""
        answers = asyncio.create_task(self._read_answers(conn), name="redis-hub-answers")
        answers.add_done_callback(lambda _: self._wake.set())
        try:
            while not answers.done():
                self._wake.clear()
                if not await self._send_ready(conn):
                    return
                await self._wake.wait()
            answers.result()  # a bug in it surfaces here
        finally:
            await cancel_and_wait(answers)

    async def _send_ready(self, conn: AbstractConnection) -> bool:
        """Send every batch that can go now, in one write; false if the connection broke."""
        now = asyncio.get_running_loop().time()
        commands = []
        while (batch := self._outbox.next_to_send(self._fence, now)) is not None:
            commands.append(self._command(batch))
        if not commands:
            return True
        self._sent.set()
        if not conn.is_connected:  # never let redis-py reconnect it behind our back
            return False
        try:
            await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        except _LINK_ERRORS as exc:
            log.warning("redis publishing connection lost while sending (%s)", exc)
            return False
        return True

    def _command(self, batch: Batch) -> tuple[bytes | str | int, ...]:
        keys = self._keys.script_keys()
        args = script_args(batch.fence, self._maxlen, secrets.token_hex(8), batch.ticks)
        return ("EVALSHA", self._sha, len(keys), *keys, *args)

    async def _read_answers(self, conn: AbstractConnection) -> None:
        """Read the answers to the batches on the wire, in order, as they arrive. Return
        when the connection must be dropped: lost, an answer missing for the socket
        timeout (a half-open link, a Redis that stopped), or a "not now" error."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._outbox.in_flight:
                self._sent.clear()
                await self._sent.wait()
            sent_at = self._outbox.oldest_sent_at
            assert sent_at is not None
            left = max(sent_at + self._socket_timeout - loop.time(), 0.001)
            try:
                # With an explicit timeout redis-py returns None when it passes.
                reply = await conn.read_response(timeout=left, disconnect_on_error=False)
            except redis.exceptions.ResponseError as exc:
                if isinstance(exc, _RETRY_LATER) or str(exc).startswith("BUSY"):
                    # The batch stays unanswered: sent again on a new connection.
                    log.warning("redis answered a publish with %r; reconnecting", exc)
                    return
                batch = self._outbox.answered()
                self.counts["publish_errors"] += 1
                log.error("redis publish script failed (%s); batch of %d dropped",
                          exc, len(batch.ticks))  # fmt: skip
                self._wake.set()
                continue
            except _LINK_ERRORS as exc:
                log.warning("redis publishing connection lost (%s); reconnecting", exc)
                return
            if reply is None:
                self.counts["publish_errors"] += 1
                log.warning("redis did not answer a publish for %.1f s", self._socket_timeout)
                return
            try:
                result = parse_result(reply)
            except ValueError:
                log.exception("unexpected answer to a publish; reconnecting")
                return
            batch = self._outbox.answered()
            self._account(result, len(batch.ticks))
            if self._outbox.waiting:
                self._wake.set()
            self._deliver_confirmed(batch, result)

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

    def _deliver_confirmed(self, batch: Batch, result: PublishResult) -> None:
        """Deliver the entries the answer proves were written, as the reader would: only
        those that follow this node's position (a new leader whose reader has not caught
        up with its predecessor's last entries leaves them all to the reader)."""
        follower = self._follower
        if follower is None or self._loading:
            return
        try:
            entries = confirmed_entries(batch, result)
        except ValueError:
            log.exception("an answer that does not match its batch; left to the reader")
            return
        for entry in entries:
            verdict = follower.check(entry)
            if verdict is Verdict.SKIP:
                continue  # the reader was first
            if verdict is not Verdict.DELIVER:
                return  # the reader reads them back, and resynchronizes if it must
            follower.advance(entry)
            self.counts["delivered_on_answer"] += 1
            self._deliver(entry)

    # -- reading (every node) --------------------------------------------------------------

    async def announce_rest(self, source: str, url: str, ttl: float) -> None:
        """Say, for ``ttl`` seconds, that the exchange served is ``source`` at ``url``."""
        await self._notes().set(self._keys.leader_rest, f"{source} {url}", px=int(ttl * 1000))

    async def leader_rest(self) -> tuple[str, str] | None:
        """The leader's last ``announce_rest``: (source, url), None when there is none."""
        value = await self._notes().get(self._keys.leader_rest)
        source, _, url = _text(value).partition(" ") if value else ("", "", "")
        return (source, url) if url else None

    async def announce_listing(self, symbols: Sequence[str]) -> None:
        """Say which symbols are served (``TICKCAST_SYMBOLS=*``): every node serves the
        leader's listing, and a new leader starts from it. Kept with no expiry."""
        body = orjson.dumps(list(symbols))
        digest = hashlib.blake2b(body, digest_size=12).hexdigest()
        await self._notes().hset(self._keys.listing, mapping={"digest": digest, "symbols": body})

    async def listing_digest(self) -> str | None:
        """The digest of the announced listing (cheap to poll), None when there is none."""
        value = await self._notes().hget(self._keys.listing, "digest")
        return _text(value) if value else None

    async def listing(self) -> tuple[str, tuple[str, ...]] | None:
        """The announced listing and its digest; None when there is none or it is not a
        list of names (a key written by something else is ignored, never served)."""
        digest, body = await self._notes().hmget(self._keys.listing, ["digest", "symbols"])
        if not digest or not body:
            return None
        try:
            symbols = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(symbols, list) or not symbols:
            return None
        if not all(isinstance(s, str) and s.isascii() and s.isalnum() for s in symbols):
            return None
        return _text(digest), tuple(symbols)

    def _notes(self) -> aioredis.Redis:
        # A small client of its own: the reader's connection blocks in XREAD.
        if self._notes_client is None:
            self._notes_client = aioredis.Redis.from_url(
                self._url,
                max_connections=1,
                socket_timeout=self._socket_timeout,
                socket_connect_timeout=self._socket_timeout,
            )
        return self._notes_client

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
                if entry_seq(entry_id) <= follower.position:
                    continue  # delivered already, on the publish script's answer
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
        message = entry.message
        if not self._store.add(message):
            return
        self._high_seq = max(self._high_seq, message.seq)
        self._lag_ms = max(0, int(time.time() * 1000) - entry.written_ms)
        self._listeners(message)  # one listener's bug must not starve the others or the reader

    async def _resync(self, client: aioredis.Redis, reason: Verdict) -> None:
        """History this node relied on is gone: rebuild from Redis and tell the edge."""
        lost_after = self._high_seq if reason is Verdict.NEW_INCARNATION else 0
        self._loading = True
        try:
            loaded = await self._fetch(client, lost_after)
        finally:
            self._loading = False
        self._install(loaded)
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

    def latest(self, key: str) -> Message | None:
        return self._store.latest(key)

    def snapshot(self) -> dict[str, Message]:
        return self._store.snapshot()

    def history(self, key: str, limit: int) -> list[Message]:
        return self._store.history(key, limit)

    def books(self) -> HeldBooks:
        return self._store.books

    def since(self, keys: Iterable[str], after_seq: int) -> list[Message] | None:
        if self._follower is None or after_seq < self._floor:
            # Not loaded yet, or before what this node holds completely (a resync, or
            # the stream's start when it loaded): the caller must reset, not assume.
            return None
        return self._store.since(keys, after_seq)

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
            "symbols": self._store.symbols(),
            "streams": len(self._store),
            "last_seq": self._high_seq,
            "position": follower.position if follower else None,
            "lag_seq": self._lag_seq,
            "lag_ms": self._lag_ms,
            "queued": len(self._outbox),
            # hiredis parses Redis's answers in C: this hub's CPU over the memory hub's
            # is less than half what it is with redis-py's Python parser ("python").
            "parser": "hiredis" if HIREDIS_AVAILABLE else "python",
            **{
                name: self.counts[name]
                for name in (
                    "published",
                    "delivered_on_answer",
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


async def _disconnect(conn: AbstractConnection) -> None:
    """Drop a publishing connection, bounded in time like ``_close``."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.disconnect(nowait=True), CLOSE_TIMEOUT)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
