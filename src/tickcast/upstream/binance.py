"""The Binance market-data client: sharded combined streams that never give up.

The streams are spread over shards of at most 1024 (``shard``), each one connection at a
time that reconnects, replaces a silent connection and rotates make-before-break. The
stream set may change while the client runs (``set_streams``: new listings, delistings):
streams are added to the shards with room, or to a new shard, and removed where they are,
by SUBSCRIBE and UNSUBSCRIBE on the open connections, without a reconnect. Duplicates
during a rotation's overlap are dropped by the ingest.

A frame that fails to parse or to be handed on is counted in ``errors`` by kind and
skipped; an error of a connection ends in a reconnect. Nothing one frame holds can stop
the feed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from tickcast.messages.book import DepthEvent
from tickcast.upstream.normalize import (
    ControlReply,
    KlineEvent,
    MarketEvent,
    Normalizer,
    ServerShutdown,
    TradeEvent,
    Update,
)
from tickcast.upstream.pacing import AttemptBudget, Backoff, FailureLog
from tickcast.upstream.shard import ClientOptions, Conn, Shard, UpstreamState, never_connected
from tickcast.upstream.streams import assign, combined_url

# The client's options and states are defined beside the shard that uses them; the
# client is where the rest of tickcast finds them.
__all__ = ["BinanceClient", "ClientOptions", "UpstreamState", "never_connected"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")
# Stream-set counters that status() shows from the start, at 0 before any change.
_STREAM_COUNTERS = (
    "subscribe_messages",
    "unsubscribe_messages",
    "streams_added",
    "streams_removed",
)


class BinanceClient:
    """Holds the upstream connections for ``streams`` and feeds every market-data event
    (ticker and book updates, trades, candles) to ``on_update``."""

    def __init__(
        self,
        base_url: str,
        streams: Sequence[str],
        on_update: Callable[[MarketEvent], None],
        *,
        options: ClientOptions | None = None,
        on_frame: Callable[[str], None] | None = None,
        on_state: Callable[[UpstreamState], None] | None = None,
        errors: Counter[str] | None = None,
    ) -> None:
        if not streams:
            raise ValueError("the Binance client needs at least one stream")
        self.url = combined_url(base_url)
        self.options = options or ClientOptions()
        self._on_update = on_update
        self._on_frame = on_frame
        self._on_state = on_state
        # Frames skipped, by kind: the parser's kinds, plus ``frame_hook_error`` (the frame
        # hook raised; the frame is still parsed) and ``sink_error`` (the sink raised on an
        # event). A counter given by the owner outlives this client (restarts add up).
        self.errors: Counter[str] = Counter() if errors is None else errors
        self.normalizer = Normalizer(errors=self.errors)
        self.budget = AttemptBudget()
        # One log for every shard: they fail together, at the same address. A line for the
        # first attempt and for each backoff step while the delay grows, then a count.
        backoff = Backoff(self.options.backoff_initial, self.options.backoff_max)
        self.failure_log = FailureLog(backoff.steps + 1, self.options.failure_log_interval)
        self.counters: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self._conn_numbers = itertools.count(1)
        self._shards = [
            Shard(self, i, part)
            for i, part in enumerate(assign([], streams, self.options.streams_per_connection))
        ]
        # The task group of the running run(): where a shard added by set_streams starts.
        self._group: asyncio.TaskGroup | None = None
        self._state = UpstreamState.CONNECTING
        self.state_since = time.time()
        # The server's handshake said it is a simulator (``SIMULATED_HEADER``).
        self.simulated = False
        # The newest failed connect attempt or connection error, kept after a recovery
        # (when it happened says whether it still matters).
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    @property
    def shards(self) -> int:
        return len(self._shards)

    @property
    def streams(self) -> list[str]:
        """Every stream the client holds now, shard by shard."""
        return [name for part in self._shards for name in part.streams]

    @property
    def state(self) -> UpstreamState:
        return self._state

    @property
    def connected(self) -> bool:
        """Whether some connection to the upstream is open."""
        return any(s.connected for s in self._shards)

    @property
    def unreachable(self) -> bool:
        """Whether no connection is open and every shard's last connect attempt reached
        no server (see ``never_connected``): the upstream cannot be reached at all, as
        opposed to being reached and slow or silent."""
        return all(s.unreachable and not s.connected for s in self._active())

    @property
    def last_connect_error(self) -> str | None:
        return next((s.last_error for s in self._shards if s.last_error), None)

    @property
    def last_message_age(self) -> float | None:
        ages = [s.last_data_age() for s in self._active()]
        known = [a for a in ages if a is not None]
        return max(known) if known and len(known) == len(ages) else None

    def _active(self) -> list[Shard]:
        """The shards with streams: an idle one (see ``Shard._idle``) has no connection
        and is not waiting for one, so it speaks neither for nor against the upstream."""
        return [s for s in self._shards if not s.idle]

    def set_streams(self, streams: Sequence[str]) -> None:
        """Make ``streams`` the client's, before or while it runs, without a reconnect.

        Streams no longer named are unsubscribed on the connection that holds them; new
        ones go to the first shards with room and are subscribed on their connections,
        and past the last full shard to a new shard, which starts at once when the client
        runs (else with the next ``run``). Each shard keeps its streams' order; a stream
        named twice counts once. Raises ValueError for no streams at all, as the
        constructor does. Call it from the event loop's thread, as any of the client.
        """
        if not streams:
            raise ValueError("the Binance client needs at least one stream")
        held = set(self.streams)
        size = self.options.streams_per_connection
        parts = assign([s.streams for s in self._shards], streams, size)
        wanted = {name for part in parts for name in part}
        self.counters["streams_added"] += len(wanted - held)
        self.counters["streams_removed"] += len(held - wanted)
        for part, names in zip(self._shards, parts, strict=False):
            part.set_streams(names)
        for index in range(len(self._shards), len(parts)):
            self._add_shard(Shard(self, index, parts[index]))
        self.refresh_state()

    def _add_shard(self, part: Shard) -> None:
        self._shards.append(part)
        log.info("upstream shard %d added (%d streams)", part.index, len(part.streams))
        if self._group is None:
            return  # the next run() starts it with the others
        run = part.run()
        try:
            self._group.create_task(run, name=f"binance-shard-{part.index}")
        except RuntimeError:
            # The group is shutting down (another shard failed): run() ends with that
            # failure, and the run() that follows starts every shard, this one too.
            run.close()

    async def run(self) -> None:
        """Run every shard until cancelled. May be called again after it failed."""
        self._set_all(UpstreamState.CONNECTING)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for part in self._shards:
                    group.create_task(part.run(), name=f"binance-shard-{part.index}")
        except Exception:
            # Whoever restarts us reports the failure; until then, never claim "connected".
            self._set_all(UpstreamState.RECONNECTING)
            raise
        finally:
            self._group = None

    def _set_all(self, state: UpstreamState) -> None:
        for part in self._shards:
            part.state = state
        self.refresh_state()

    def status(self) -> dict[str, object]:
        age = self.last_message_age
        return {
            "state": self._state.value,
            "since": self.state_since,
            "url": self.url,
            "simulated": self.simulated,
            "connections": sum(1 for s in self._shards if s.connected),
            "shards": len(self._shards),
            # Streams per shard, in shard order (0: an idle shard, with no connection).
            "streams": [len(s.streams) for s in self._shards],
            "reconnects": self.counters["reconnects"],
            "last_message_age": None if age is None else round(age, 3),
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "counters": {**dict.fromkeys(_STREAM_COUNTERS, 0), **self.counters},
            "closes": dict(self.closes),
            "parse_errors": dict(self.errors),
        }

    def next_conn_number(self) -> int:
        return next(self._conn_numbers)

    def refresh_state(self) -> None:
        # The worst shard with streams speaks for the whole upstream.
        order = [UpstreamState.STALE, UpstreamState.RECONNECTING, UpstreamState.CONNECTING]
        states = {s.state for s in self._active()}
        new = next((s for s in order if s in states), UpstreamState.CONNECTED)
        if new != self._state:
            log.info("upstream %s -> %s", self._state.value, new.value)
            self._state = new
            self.state_since = time.time()
            if self._on_state is not None:
                self._on_state(new)

    def handle_frame(self, conn: Conn, frame: str | bytes) -> None:
        self.counters["frames"] += 1
        if self._on_frame is not None:
            text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            self._guarded("frame_hook_error", self._on_frame, text)
        for event in self.normalizer.parse(frame):
            if isinstance(event, Update | TradeEvent | KlineEvent | DepthEvent):
                # Any market data shows the connection alive, not only tickers: a shard
                # may carry nothing but trades and candles.
                conn.last_data = time.monotonic()
                if not conn.first_data.is_set():
                    conn.first_data.set()
                market: MarketEvent
                if type(event) is Update:
                    # Built directly: the common case (every ticker), where the generic
                    # ``replace`` was a tenth of the cost of parsing the frame.
                    market = Update(
                        event.symbol,
                        event.kind,
                        event.order,
                        event.event_time_ms,
                        event.values,
                        conn.history,
                    )
                elif type(event) is DepthEvent:  # checked as it was parsed
                    market = replace(event, history=conn.history, checked=False)
                else:
                    market = replace(event, history=conn.history)
                self._guarded("sink_error", self._on_update, market)
            elif isinstance(event, ServerShutdown):
                self.counters["server_shutdowns"] += 1
                log.info("upstream connection %d: serverShutdown notice", conn.number)
                conn.shutdown_notice = True
                conn.wake.set()
            elif isinstance(event, ControlReply):
                self._control_reply(conn, event)

    def record_error(self, text: str) -> None:
        self.last_error, self.last_error_at = text, time.time()

    def connect_failed(self, exc: Exception) -> None:
        self.counters["connect_failures"] += 1
        self.record_error(f"connect: {type(exc).__name__}: {exc}")
        failures = self.failure_log.failed(time.monotonic())
        if not failures:
            return
        if not self.failure_log.summarizing:
            log.warning("upstream connect to %s failed: %s", self.url, exc)
            return
        log.warning(
            "upstream connect to %s still failing: %d failed attempts since the last line "
            "(%d in a row), the last: %s",
            self.url,
            failures,
            self.failure_log.streak,
            exc,
        )

    def connect_succeeded(self) -> None:
        failures = self.failure_log.succeeded()
        if failures:
            log.info(
                "upstream connect to %s succeeded after %d failed attempts", self.url, failures
            )

    def _guarded(self, kind: str, call: Callable[[_T], None], arg: _T) -> None:
        """``call(arg)``; an error is counted under ``kind`` and logged once per kind."""
        try:
            call(arg)
        except Exception:
            self.errors[kind] += 1
            if self.errors[kind] == 1:
                log.exception("upstream frame skipped (%s)", kind)

    def _control_reply(self, conn: Conn, reply: ControlReply) -> None:
        ok = reply.error_code is None
        if not ok:
            self.counters["control_errors"] += 1
            log.warning(
                "upstream rejected request %r: %s %s", reply.id, reply.error_code, reply.error_msg
            )
        # Our ids are ints; anything else (a string, a list from a broken server) is not ours.
        if type(reply.id) is int and reply.id in conn.pending_acks:
            conn.acked(reply.id, ok)
