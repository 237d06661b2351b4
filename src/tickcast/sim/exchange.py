"""A local Binance-compatible market-data WebSocket server with fault injection.

Binance's own client libraries connect to it as to ``wss://data-stream.binance.vision``:
``/ws/<stream>``, ``/ws`` + SUBSCRIBE, ``/stream?streams=...``, ``/stream``; the control
messages, payloads, limits and heartbeat of the real service. Faults (drop, closes,
stall, serverShutdown, garbage, burst, latency, a depth gap, REST refusals) run from a
schedule or on demand, for tests of the client's recovery. ``/_sim/...`` on the same port
is the admin interface (``admin``: stats, faults, trade bursts, the true book, listing and
delisting symbols, spoilt exchangeInfo answers); ``/api/v3/...`` is Binance's market-data
REST (``rest``) over the same market, its candles (``candles``) and books (``book``).

Layout: ``listings`` (the symbols listed: levels, status, exchangeInfo), ``market``
(prices and payloads), ``plan`` (which streams carry data), ``book`` (a symbol's full
order book), ``depth`` (the depth streams' 100 ms clock and payloads), ``control`` (URL
forms, control messages, limits, heartbeat bookkeeping), ``faults`` (fault kinds and
schedule) and ``trades`` (the trade clock, bursts) are pure; ``connection`` drives one
connection; this module owns the listener, the market clock, the stream index that fans
events out, and the faults.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from types import TracebackType
from typing import Final

from tickcast.messages.tick import DEFAULT_SYMBOLS
from tickcast.sim.admin import answer_admin
from tickcast.sim.candles import CandleBook
from tickcast.sim.config import SimConfig
from tickcast.sim.connection import (
    ConnectionLimits,
    SimConnection,
    SimStats,
    close_all,
    garbage_round,
    shut_down,
    start_garbage,
)
from tickcast.sim.control import AttemptLimiter
from tickcast.sim.depth import TICK_SECONDS, DepthFeed, snapshot_payload
from tickcast.sim.faults import (
    DEFAULT_LATENCY_MS,
    Fault,
    FaultKind,
    burst_size,
    effective_duration,
    parse_fault_schedule,
)
from tickcast.sim.frames import Encoded
from tickcast.sim.listings import Listings
from tickcast.sim.market import (
    STEP_KINDS,
    Carry,
    Market,
    StreamKind,
    agg_trade_payload,
    build_payload,
    trade_payload,
)
from tickcast.sim.plan import TRADE_KINDS, Plan, build_plan
from tickcast.sim.rest import RestAnswer, RestApi
from tickcast.sim.tape import TradeTape
from tickcast.sim.trades import BurstRequest, TradePace

__all__ = [
    "DEFAULT_SYMBOLS",
    "Fault",
    "FaultKind",
    "SimConfig",
    "SimExchange",
    "parse_fault_schedule",
    "serve_forever",
]

log = logging.getLogger(__name__)
_STOP_GRACE: Final = 1.0
# A pause with no trade closes flat candles by the hundred; a client needs only the last.
_KLINE_CLOSES_PER_PUSH: Final = 3
_CLOSE_REASONS: Final = {
    FaultKind.CLOSE1000: (1000, "Normal closure (simulated fault)"),
    FaultKind.CLOSE1001: (1001, "Going away (simulated fault)"),
    FaultKind.CLOSE1008: (1008, "Policy violation (simulated fault)"),
}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SimExchange:
    """A simulated Binance market-data server on ``config.host:config.port``.

    One market state serves every connection: each step produces one event per
    subscribed stream, and the same bytes go to every subscriber, so a client holding
    two connections (make-before-break) sees identical events on both. ``start`` may
    follow ``stop`` again; the market and the statistics carry over.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._listings = Listings.build(config.seed, config.symbols, config.symbol_count)
        self._market = Market(config.seed, self._listings, config.trade_rate or config.rate)
        self._candles = CandleBook(config.seed)
        self._tape = TradeTape()
        self._depth = DepthFeed(self._market)
        # Kline stream -> open time just before the next closed candle to push.
        self._kline_pushed: dict[str, int] = {}
        self._rest = RestApi(
            self._market,
            self._candles,
            _now_ms,
            config.rest_weight_limit,
            max(1, round(config.rest_weight_window * 1000)),
            self._tape,
        )
        self._stats = SimStats()
        self._attempts = AttemptLimiter(config.max_connection_attempts)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._port = config.port
        self._conns: set[SimConnection] = set()
        self._open: set[SimConnection] = set()
        self._garbage: set[SimConnection] = set()
        self._subscribers: dict[str, set[SimConnection]] = {}
        self._plan: Plan | None = None
        # Replaced in start(): an Event binds to the loop that first waits on it.
        self._has_streams = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._started_at = 0.0
        self._stall_until = 0.0

    # Lifecycle

    async def start(self) -> None:
        """Bind the listener and start the market clock and the fault schedule."""
        if self._server is not None:
            raise RuntimeError("SimExchange is already running")
        loop = self._loop = asyncio.get_running_loop()
        config = self.config
        limits = ConnectionLimits(
            config.ping_interval,
            config.pong_timeout,
            config.max_streams,
            config.max_incoming_per_second,
            config.identify,
        )
        self._server = await loop.create_server(
            lambda: SimConnection(self, loop, limits, self._stats),
            self.config.host,
            self.config.port,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._started_at = loop.time()
        self._stall_until = 0.0
        self._has_streams = asyncio.Event()
        self._spawn(self._tick_loop(), "sim-market")
        self._spawn(self._kline_loop(), "sim-klines")
        self._spawn(self._depth_loop(), "sim-depth")
        if config.trade_rate is not None:
            self._spawn(self._trade_loop(config.trade_rate), "sim-trades")
        if self.config.fault_schedule:
            self._spawn(self._run_schedule(), "sim-faults")
        log.debug("simulated exchange listening on %s", self.url)

    async def stop(self) -> None:
        """Close every connection (1001) and the listener; cancel and await own tasks."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        conns = list(self._conns)
        for conn in conns:
            conn.close_for_stop()
        await self._wait_closed(conns)
        for conn in conns:
            conn.abort()
        await self._wait_closed(conns)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        await server.wait_closed()

    async def __aenter__(self) -> SimExchange:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @staticmethod
    async def _wait_closed(conns: list[SimConnection]) -> None:
        pending = [c.closed for c in conns if not c.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=_STOP_GRACE)

    def _spawn(self, coro: Coroutine[object, object, None], name: str) -> None:
        task = self._require_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulator task %s failed", task.get_name(), exc_info=task.exception())

    def _call_later(self, delay: float, callback: Callable[[], None]) -> None:
        loop = self._require_loop()

        def fire() -> None:
            self._timers.discard(handle)
            callback()

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._server is None:
            raise RuntimeError("SimExchange is not running; call start() first")
        return self._loop

    @property
    def port(self) -> int:
        """The bound port (the configured one before ``start``)."""
        return self._port

    @property
    def url(self) -> str:
        """The base URL clients connect to, e.g. ``ws://127.0.0.1:9443``."""
        host = self.config.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self._port}"

    @property
    def listings(self) -> Listings:
        """The symbols it lists (changed at run time by the admin calls)."""
        return self._listings

    def continue_from(self, carried: Mapping[str, Carry]) -> None:
        """Continue each symbol's market from where ``carried`` says it stood."""
        self._market.continue_from(carried)

    def stats(self) -> dict[str, object]:
        """Counters for tests and the admin endpoint (``closes`` keyed by code as text)."""
        loop = self._loop
        return {
            "url": self.url,
            "connections_open": len(self._open),
            "streams": len(self._subscribers),
            **self._stats.as_dict(),
            "rest_requests": dict(self._rest.requests),
            "depth_snapshots": dict(self._rest.depth_snapshots),
            "symbols": self._listings.counts(),
            "exchange_info_mode": self._listings.info_mode.value,
            "stalled": loop is not None and loop.time() < self._stall_until,
        }

    # Market clock

    async def _tick_loop(self) -> None:
        loop = self._require_loop()
        period = 1.0 / self.config.rate
        next_at = loop.time()
        while True:
            if not self._subscribers:
                await self._has_streams.wait()
                next_at = loop.time()
            next_at += period
            delay = next_at - loop.time()
            if delay < -period:
                # Far behind (a busy or suspended host): skip the missed ticks instead
                # of catching up with a burst nobody asked for.
                next_at, delay = loop.time(), 0.0
            await asyncio.sleep(max(0.0, delay))
            self._tick()

    def _tick(self) -> None:
        now = self._require_loop().time()
        if now < self._stall_until:
            return
        self._publish(_now_ms())
        if self._garbage:
            garbage_round(self._garbage, now, _now_ms())

    def _publish(self, now_ms: int) -> None:
        plan = self._current_plan()
        if not plan.streams:
            return
        paced = self.config.trade_rate is not None
        if paced:
            self._market.mark(plan.symbols, now_ms)  # the trades come from _trade_loop
        else:
            self._market.step(plan.symbols, now_ms)
            self._candles.record(self._market.stepped, self._market.event_time)
            self._tape.record(self._market.stepped, self._market.event_time)
        for name, spec in plan.streams:
            if spec.kind in STEP_KINDS and not (paced and spec.kind in TRADE_KINDS):
                self._send(name, Encoded(name, partial(build_payload, spec, self._market)))

    # Trades paced apart from the ticker (--trade-rate), and trade bursts

    async def _trade_loop(self, rate: float) -> None:
        loop = self._require_loop()
        pace = TradePace(rate, loop.time())
        while True:
            if not self._subscribers:
                await self._has_streams.wait()  # the pace then restarts (MAX_LAG)
            await asyncio.sleep(pace.wake_at(loop.time()) - loop.time())
            count = pace.due(loop.time())
            for symbol in self._current_plan().symbols:
                self._publish_trades(symbol, count)

    async def _burst_trades(self, request: BurstRequest) -> None:
        loop = self._require_loop()
        pace = request.pace(loop.time())
        while not pace.done:
            await asyncio.sleep(pace.wake_at(loop.time()) - loop.time())
            self._publish_trades(request.symbol, pace.due(loop.time()))

    def _publish_trades(self, symbol: str, count: int) -> None:
        """``count`` trades of ``symbol`` now, each sent on its trade streams; none
        while the exchange is stalled (a stalled exchange makes no trades)."""
        if count <= 0 or self._require_loop().time() < self._stall_until:
            return
        streams = self._current_plan().trades.get(symbol, ())
        now_ms = _now_ms()
        for _ in range(count):
            state, time_ms = self._market.trade(symbol, now_ms)
            self._candles.record((state,), time_ms)
            self._tape.record((state,), time_ms)
            for name, spec in streams:
                build = agg_trade_payload if spec.kind is StreamKind.AGG_TRADE else trade_payload
                self._send(name, Encoded(name, partial(build, state, time_ms)))

    def burst(self, request: BurstRequest) -> None:
        """Start ``request.count`` extra trades of its symbol over its seconds, beside
        the steady ones. Raises RuntimeError unless the exchange is running."""
        self._stats.faults.append("trade_burst")
        log.info("trade burst: %d %s trades over %g s", request.count, request.symbol,
                 request.seconds)  # fmt: skip
        self._spawn(self._burst_trades(request), f"sim-burst-{request.symbol}")

    def _send(self, name: str, encoded: Encoded) -> None:
        # Safe to iterate: sending never unsubscribes synchronously (connection_lost runs
        # later, from the loop).
        for conn in self._subscribers.get(name, ()):
            conn.send_data(encoded.frame(conn.session.combined, conn.micro))

    # Kline streams: the open candle every 2 s (every second for 1s), and each candle once
    # more when it closes, as Binance pushes them.

    async def _kline_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0 - (time.time() % 1.0) + 0.001)  # just past a second
            if self._require_loop().time() >= self._stall_until:
                self._push_klines(_now_ms())

    def _push_klines(self, now_ms: int) -> None:
        for name, spec in self._current_plan().streams:
            if spec.kind is StreamKind.KLINE and spec.symbol is not None:
                self._push_kline(name, spec.symbol, str(spec.interval), now_ms)

    def _push_kline(self, name: str, symbol: str, interval: str, now_ms: int) -> None:
        state = self._market.state(symbol)
        series = self._candles.series(state.symbol, interval, state.tick, state.lot)
        series.open_flat(now_ms, state.last)
        series.advance_to(now_ms)
        current = series.current
        assert current is not None
        # Candles closed since the last push, whether a trade or the clock closed them;
        # a stream's first push starts with the open candle.
        pushed = self._kline_pushed.get(name, current.open_time - 1)
        for candle in series.closed_after(pushed)[-_KLINE_CLOSES_PER_PUSH:]:
            build = partial(candle.stream_payload, state.symbol, interval, now_ms, True)
            self._send(name, Encoded(name, build))
        self._kline_pushed[name] = current.open_time - 1
        every = 1 if interval == "1s" else 2
        if (now_ms // 1000) % every == 0:
            build = partial(current.stream_payload, state.symbol, interval, now_ms, False)
            self._send(name, Encoded(name, build))

    # Order books: churned every 100 ms, their diffs and partial books sent (``depth``).

    async def _depth_loop(self) -> None:
        loop = self._require_loop()
        next_at = loop.time()
        while True:
            next_at = max(next_at + TICK_SECONDS, loop.time())
            await asyncio.sleep(next_at - loop.time())
            if loop.time() >= self._stall_until:
                for name, build in self._depth.tick(self._current_plan().depth, _now_ms()):
                    self._send(name, Encoded(name, build))

    def book(self, symbol: str) -> dict[str, object]:
        """The true full book of a lowercase symbol and its update id (``/_sim/book``)."""
        return {"symbol": symbol.upper(), **snapshot_payload(self._market.book(symbol))}

    def _current_plan(self) -> Plan:
        plan = self._plan
        if plan is None or plan.version != self._listings.version:
            plan = self._plan = build_plan(self._subscribers, self._listings)
        return plan

    # ConnectionOwner: called by SimConnection

    def on_subscribe(self, conn: SimConnection, names: tuple[str, ...]) -> None:
        """Add ``conn`` to the fan-out of each stream."""
        for name in names:
            conns = self._subscribers.get(name)
            if conns is None:
                conns = self._subscribers[name] = set()
                self._plan = None
            conns.add(conn)
        if self._subscribers:
            self._has_streams.set()

    def on_unsubscribe(self, conn: SimConnection, names: tuple[str, ...]) -> None:
        """Remove ``conn`` from the fan-out of each stream."""
        for name in names:
            conns = self._subscribers.get(name)
            if conns is None:
                continue
            conns.discard(conn)
            if not conns:
                del self._subscribers[name]
                self._kline_pushed.pop(name, None)
                self._plan = None
        if not self._subscribers:
            self._has_streams.clear()

    def on_connection_made(self, conn: SimConnection) -> None:
        self._conns.add(conn)

    def on_rest(self, method: str, target: str, peer: str) -> RestAnswer:
        """Answer Binance's market-data REST (``/api/v3/...``) on the WebSocket port."""
        return self._rest.answer(method, target, peer)

    def on_attempt(self, peer: str) -> bool:
        """Count a handshake attempt; False once ``peer`` is over its budget (HTTP 429)."""
        self._stats.connection_attempts += 1
        allowed = self._attempts.allow(peer, self._require_loop().time())
        if not allowed:
            self._stats.connections_rejected += 1
        return allowed

    def on_opened(self, conn: SimConnection) -> None:
        self._open.add(conn)
        self._stats.connections_total += 1

    def on_connection_lost(self, conn: SimConnection) -> None:
        self._conns.discard(conn)
        if conn not in self._open:
            return
        self._open.discard(conn)
        self._garbage.discard(conn)
        self.on_unsubscribe(conn, tuple(conn.session.streams))
        if conn.was_reset:
            self._stats.resets += 1
        else:
            self._stats.closes[str(conn.close_code())] += 1

    # Faults

    def inject(
        self,
        kind: FaultKind,
        duration: float = 0.0,
        *,
        latency_ms: float = DEFAULT_LATENCY_MS,
        symbol: str | None = None,
    ) -> str | None:
        """Apply a fault now to every open connection (same effect as a scheduled one).

        ``duration`` as in ``Fault``; ``latency_ms`` is the hold-back of a latency fault;
        ``symbol`` (lowercase) the symbol whose next depth diff a depth_gap skips (None:
        the first with a diff stream). Returns that symbol for a depth_gap, else None.
        Raises RuntimeError unless the exchange is running.
        """
        loop = self._require_loop()
        kind = FaultKind(kind)
        if not math.isfinite(duration) or duration < 0:
            raise ValueError(f"fault duration must be a finite number >= 0, got {duration!r}")
        self._stats.faults.append(kind.value)
        log.info("simulated fault: %s (duration %g s)", kind.value, duration)
        now = loop.time()
        targets = list(self._open)
        if kind is FaultKind.DROP:
            for conn in targets:
                conn.reset()
        elif kind in _CLOSE_REASONS:
            code, reason = _CLOSE_REASONS[kind]
            for conn in targets:
                conn.close(code, reason)
        elif kind is FaultKind.STALL:
            self._stall_until = max(self._stall_until, now + effective_duration(kind, duration))
        elif kind is FaultKind.SHUTDOWN:
            shut_down(targets, _now_ms())
            self._call_later(duration, partial(close_all, targets, 1001, "Server shutdown"))
        elif kind is FaultKind.GARBAGE:
            start_garbage(targets, _now_ms(), now + duration)
            self._garbage.update(targets)
        elif kind is FaultKind.BURST:
            self._burst(targets, burst_size(duration))
        elif kind is FaultKind.DEPTH_GAP:
            return self._depth.skip_next(symbol)
        elif kind in (FaultKind.REST_429, FaultKind.REST_DOWN):
            status = 429 if kind is FaultKind.REST_429 else 503
            self._rest.refuse(status, _now_ms() + round(effective_duration(kind, duration) * 1000))
        else:
            until = now + effective_duration(kind, duration)
            for conn in targets:
                conn.latency_until = until
                conn.latency = latency_ms / 1000.0
        return None

    def clear_faults(self) -> None:
        """End every fault window still running (stall, latency, garbage, REST) now, so a test
        holds a fault exactly as long as it needs instead of guessing a duration."""
        loop = self._require_loop()
        now = loop.time()
        self._stall_until = 0.0
        self._rest.end_refusals()
        for conn in self._open:
            conn.latency_until = min(conn.latency_until, now)
            conn.garbage_until = min(conn.garbage_until, now)
        log.info("simulated faults cleared")

    def _burst(self, targets: list[SimConnection], messages: int) -> None:
        if self._require_loop().time() < self._stall_until:
            log.info("burst skipped: the exchange is stalled")
            return
        counts = [k for k in (c.data_stream_count() for c in targets) if k > 0]
        if not counts:
            return
        # Enough steps that every connection gets at least `messages` events, without
        # multiplying a 1000-stream connection's share by the burst size.
        now_ms = _now_ms()
        for _ in range(math.ceil(messages / min(counts))):
            self._publish(now_ms)

    async def _run_schedule(self) -> None:
        loop = self._require_loop()
        for fault in sorted(self.config.fault_schedule, key=lambda f: f.at):
            await asyncio.sleep(max(0.0, self._started_at + fault.at - loop.time()))
            self.inject(fault.kind, fault.duration)

    # Admin

    def on_admin(self, method: str, target: str) -> tuple[int, dict[str, object]]:
        """Answer ``/_sim/...`` (see ``admin``): an HTTP status and a JSON body."""
        return answer_admin(self, method, target)


async def serve_forever(config: SimConfig) -> None:
    """Run a simulated exchange until cancelled, then stop it cleanly."""
    async with SimExchange(config) as exchange:
        trades = "" if config.trade_rate is None else f", {config.trade_rate:g} trades/s"
        log.info(
            "simulated exchange listening on %s (seed %d, %g events/s per stream%s)",
            exchange.url,
            config.seed,
            config.rate,
            trades,
        )
        await asyncio.get_running_loop().create_future()
