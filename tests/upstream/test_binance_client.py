"""The Binance client against the simulated exchange over loopback, fault by fault."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tickcast.hub.memory import MemoryHub
from tickcast.ingest import Ingest
from tickcast.messages.tick import Tick
from tickcast.sim.exchange import FaultKind, SimConfig, SimExchange
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.binance import BinanceClient, ClientOptions, UpstreamState
from tickcast.upstream.normalize import Update
from tickcast.upstream.streams import shard, stream_names

from ..support import eventually, free_port
from .scripted import ScriptedExchange

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
FAST = ClientOptions(
    stale_after=1.5,
    backoff_initial=0.1,
    backoff_max=0.5,
    backoff_reset_after=60,
    policy_close_floor=1.0,
)


@dataclass
class Feed:
    """A client feeding an ingest and a hub, and every tick that reached the hub."""

    sim: SimExchange
    client: BinanceClient
    ingest: Ingest
    ticks: list[Tick] = field(default_factory=list)

    def count(self) -> int:
        return len(self.ticks)

    async def more_ticks(self, n: int = 10, timeout: float = 10.0) -> None:
        target = self.count() + n
        await eventually(lambda: self.count() >= target, timeout)

    def assert_no_duplicates(self) -> None:
        """Per symbol, event times strictly increase: nothing published twice or backwards."""
        for symbol in SYMBOLS:
            times = [t.timestamp_ms for t in self.ticks if t.symbol == symbol]
            assert times == sorted(set(times)), f"{symbol} repeated or went backwards"

    def max_gap_ms(self, symbol: str, since_ms: int) -> int:
        times = [
            t.timestamp_ms for t in self.ticks if t.symbol == symbol and t.timestamp_ms >= since_ms
        ]
        return max(b - a for a, b in zip(times, times[1:], strict=False))


@contextlib.asynccontextmanager
async def feed(
    config: SimConfig | None = None,
    options: ClientOptions = FAST,
    symbols: list[str] = SYMBOLS,
    book: bool = False,
    on_frame: Callable[[str], None] | None = None,
) -> AsyncIterator[Feed]:
    sim = SimExchange(config or SimConfig(rate=10, ping_interval=0.5))
    await sim.start()
    hub = MemoryHub(history_size=100)
    ingest = Ingest(hub, symbols)
    client = BinanceClient(
        sim.url,
        stream_names(symbols, book),
        lambda update: ingest.apply(update, "binance"),
        options=options,
        on_frame=on_frame,
    )
    result = Feed(sim, client, ingest)
    hub.subscribe(result.ticks.append)
    task = asyncio.create_task(client.run())
    try:
        await result.more_ticks(len(symbols))
        yield result
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await result.sim.stop()


def test_streams_are_sharded_at_1024() -> None:
    """More than 1024 streams are split over connections of at most 1024."""
    names = stream_names([f"S{i}USDT" for i in range(600)], book=True)
    parts = shard(names)
    assert [len(p) for p in parts] == [1024, 176]
    assert names[:2] == ["s0usdt@ticker", "s0usdt@bookTicker"]


async def test_receives_and_answers_pings_with_their_payload() -> None:
    """Data flows, and every server ping gets a pong echoing its payload."""
    async with feed() as f:
        await eventually(lambda: f.sim.stats()["pongs_ok"] >= 2, timeout=5)
        assert f.client.state is UpstreamState.CONNECTED
        status = f.client.status()
        assert status["connections"] == 1
        assert status["reconnects"] == 0
        f.assert_no_duplicates()


async def test_tcp_reset_reconnects() -> None:
    """An abrupt TCP reset is counted as 1006 and followed by a reconnect and fresh data."""
    async with feed() as f:
        f.sim.inject(FaultKind.DROP)
        await eventually(lambda: f.client.counters["reconnects"] >= 1)
        await f.more_ticks(10)
        assert f.client.closes["1006"] == 1
        assert f.client.state is UpstreamState.CONNECTED
        f.assert_no_duplicates()


@pytest.mark.parametrize(
    ("kind", "code"), [(FaultKind.CLOSE1000, "1000"), (FaultKind.CLOSE1001, "1001")]
)
async def test_clean_closes_reconnect(kind: FaultKind, code: str) -> None:
    """A clean close (1000, 1001) is not the end: the client reconnects."""
    async with feed() as f:
        f.sim.inject(kind)
        await eventually(lambda: f.client.counters["reconnects"] >= 1)
        await f.more_ticks(10)
        assert f.client.closes[code] == 1
        f.assert_no_duplicates()


async def test_policy_close_is_not_followed_by_a_reconnect_storm() -> None:
    """Repeated 1008 closes: reconnects happen, but never sooner than the policy floor."""
    async with feed() as f:
        started = time.monotonic()
        attempts_before = f.client.counters["connect_attempts"]
        while time.monotonic() - started < 4.0:
            if f.sim.stats()["connections_open"]:
                f.sim.inject(FaultKind.CLOSE1008)
            await asyncio.sleep(0.02)
        attempts = f.client.counters["connect_attempts"] - attempts_before
        # With a 1 s floor at most ~4 attempts fit in 4 s; plain backoff would make ~10.
        assert 1 <= attempts <= 5
        assert f.client.closes["1008"] >= 1
        await f.more_ticks(10)


async def test_stall_is_detected_and_the_connection_replaced() -> None:
    """An open but silent connection goes stale, is replaced, and data resumes."""
    async with feed() as f:
        states: list[UpstreamState] = []
        f.client._on_state = states.append
        f.sim.inject(FaultKind.STALL, 2.5)
        await eventually(lambda: f.client.counters["stale"] >= 1, timeout=5)
        await f.more_ticks(10, timeout=10)
        assert UpstreamState.STALE in states
        assert f.client.state is UpstreamState.CONNECTED
        assert f.sim.stats()["pongs_ok"] >= 1  # pings were still answered during the stall
        f.assert_no_duplicates()


async def test_server_shutdown_rotates_make_before_break() -> None:
    """serverShutdown: a new connection is opened before the old closes; no gap, no dup."""
    async with feed() as f:
        await f.more_ticks(10)
        mark = max(t.timestamp_ms for t in f.ticks)
        f.sim.inject(FaultKind.SHUTDOWN, 2.0)
        await eventually(lambda: f.client.counters["rotations"] == 1)
        await f.more_ticks(40)
        assert f.client.counters["server_shutdowns"] == 1
        assert f.client.counters["reconnects"] == 0
        assert f.ingest.counts["duplicates"] > 0  # the overlap really happened
        f.assert_no_duplicates()
        for symbol in SYMBOLS:
            assert f.max_gap_ms(symbol, mark) < 400  # the sim ticks every 100 ms


async def test_rotation_by_age_has_no_gap_and_no_duplicate() -> None:
    """Connections are rotated at rotate_after, make-before-break, without loss."""
    options = ClientOptions(**{**FAST.__dict__, "rotate_after": 1.5})
    async with feed(options=options) as f:
        mark = max(t.timestamp_ms for t in f.ticks)
        await eventually(lambda: f.client.counters["rotations"] >= 2, timeout=8)
        await f.more_ticks(10)
        assert f.client.counters["reconnects"] == 0
        f.assert_no_duplicates()
        for symbol in SYMBOLS:
            assert f.max_gap_ms(symbol, mark) < 400


async def test_garbage_and_unknown_events_are_skipped_and_counted() -> None:
    """Malformed frames are counted by kind and skipped; the feed never stops."""
    async with feed() as f:
        f.sim.inject(FaultKind.GARBAGE, 1.0)
        errors = f.client.normalizer.errors
        await eventually(lambda: errors["invalid_json"] >= 1 and errors["unknown_event"] >= 1)
        await f.more_ticks(10)
        assert errors["invalid_json"] >= 1
        assert errors["unknown_event"] >= 1
        assert f.client.counters["reconnects"] == 0
        f.assert_no_duplicates()


async def test_burst_is_absorbed() -> None:
    """A burst of hundreds of messages at once is ingested in order, none lost."""
    async with feed() as f:
        before = f.count()
        f.sim.inject(FaultKind.BURST, 2)
        await eventually(lambda: f.count() >= before + 200, timeout=5)
        assert f.client.counters["reconnects"] == 0
        f.assert_no_duplicates()


async def test_latency_does_not_break_the_feed() -> None:
    """Delayed frames still arrive, in order."""
    async with feed() as f:
        f.sim.inject(FaultKind.LATENCY, 1.0)
        await f.more_ticks(10)
        assert f.client.counters["reconnects"] == 0
        f.assert_no_duplicates()


async def test_more_than_1024_streams_use_two_connections_within_limits() -> None:
    """1100 streams: two connections, every stream subscribed, no 5 msg/s violation."""
    symbols = [f"S{i}USDT" for i in range(550)]
    async with feed(SimConfig(rate=1, ping_interval=20), symbols=symbols, book=True) as f:
        await eventually(lambda: f.sim.stats()["streams"] == 1100, timeout=10)
        stats = f.sim.stats()
        assert stats["connections_open"] == 2
        assert stats["incoming_rate_violations"] == 0
        assert f.client.status()["shards"] == 2
        await eventually(lambda: {"S0USDT", "S549USDT"} <= {t.symbol for t in f.ticks})
        assert f.client.closes == {}


async def test_frame_hook_and_sink_errors_skip_the_frame_not_the_feed() -> None:
    """An OSError from the frame hook (a full disk under ``record``) and an error of the sink
    are counted by kind; the connection and the feed carry on."""
    calls = 0

    def failing_hook(_frame: str) -> None:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise OSError(28, "No space left on device")

    async with feed(on_frame=failing_hook) as f:
        deliver = f.client._on_update

        def flaky_sink(update: Update) -> None:
            if update.symbol == "ETHUSDT":
                raise RuntimeError("the ingest broke on this update")
            deliver(update)

        f.client._on_update = flaky_sink
        await f.more_ticks(20)
        assert f.client.errors["frame_hook_error"] >= 10
        assert f.client.errors["sink_error"] >= 1
        assert f.client.counters["reconnects"] == 0
        assert f.client.state is UpstreamState.CONNECTED
        assert f.client.status()["parse_errors"] == dict(f.client.errors)


async def test_rotation_switches_only_after_every_subscribe_is_acked() -> None:
    """A shard whose streams need several SUBSCRIBE batches loses no event of its later
    batches when rotating: the old connection stays until the new one confirmed them all."""
    symbols = [f"S{i}USDT" for i in range(12)]
    options = ClientOptions(**{**FAST.__dict__, "subscribe_batch": 4})
    async with feed(options=options, symbols=symbols) as f:
        await eventually(lambda: {t.symbol for t in f.ticks} == set(symbols))
        mark = max(t.timestamp_ms for t in f.ticks)
        f.sim.inject(FaultKind.SHUTDOWN, 3.0)
        await eventually(lambda: f.client.counters["rotations"] == 1)
        await eventually(lambda: f.sim.stats()["connections_open"] == 1, timeout=5)
        await f.more_ticks(60)
        assert f.client.counters["reconnects"] == 0
        steps = {
            s: {t.timestamp_ms for t in f.ticks if t.symbol == s and t.timestamp_ms > mark}
            for s in symbols
        }
        end = min(max(times) for times in steps.values())
        every_step = {e for e in steps[symbols[0]] if e <= end}
        for symbol in symbols[4:]:  # the streams of the second and third batches
            missed = every_step - steps[symbol]
            assert not missed, f"{symbol} missed {len(missed)} events during the rotation"


async def test_cancelling_during_a_rotation_closes_both_connections() -> None:
    """Cancelled while a rotation waits for its new connection, the client closes the new
    connection and its reader too, not only the current one."""
    exchange = ScriptedExchange(script=None)  # connections stay open and silent
    await exchange.start()
    try:
        options = ClientOptions(**{**FAST.__dict__, "rotate_after": 0.3, "stale_after": 30})
        client = BinanceClient(exchange.url, ["btcusdt@ticker"], lambda _u: None, options=options)
        task = asyncio.create_task(client.run())
        await eventually(lambda: exchange.connections_total == 2, timeout=5)
        await eventually(lambda: client.counters["rotations"] == 1)
        await asyncio.sleep(0.1)
        await cancel_and_wait(task)
        await eventually(lambda: exchange.open_connections == 0, timeout=5)
        readers = [t for t in asyncio.all_tasks() if t.get_name().startswith("binance-read")]
        assert readers == []
    finally:
        await exchange.stop()


async def test_a_restarted_exchange_is_not_taken_for_duplicates() -> None:
    """An exchange restarted from scratch (its bookTicker update ids start over) is a new
    history: its updates are published, not dropped as duplicates of the previous run."""
    async with feed(book=True) as f:
        await f.more_ticks(60)  # about 2 s: the update ids run well ahead of their start
        port = f.sim.port
        await f.sim.stop()
        f.sim = SimExchange(SimConfig(port=port, rate=10, ping_interval=0.5))
        await f.sim.start()
        await eventually(lambda: f.client.counters["reconnects"] >= 1, timeout=5)
        duplicates = f.ingest.counts["duplicates"]
        restarts = f.ingest.counts["dedupe_resets"]
        await f.more_ticks(60)
        assert f.ingest.counts["duplicates"] == duplicates
        assert f.ingest.counts["dedupe_resets"] > restarts


class _ReaderBreaksOnce(BinanceClient):
    """A client whose frame handling fails once, outside every per-frame guard: the way an
    unforeseen error of the connection itself reaches the reader."""

    broke = False

    def handle_frame(self, conn: Any, frame: str | bytes) -> None:
        if not self.broke:
            self.broke = True
            raise RuntimeError("the reader broke")
        super().handle_frame(conn, frame)


async def test_an_error_of_the_connection_ends_in_a_reconnect() -> None:
    """An exception that escapes the reader closes that connection and the client
    reconnects; it never stops the shard or the client."""
    sim = SimExchange(SimConfig(rate=10, ping_interval=0.5))
    await sim.start()
    updates: list[Update] = []
    client = _ReaderBreaksOnce(sim.url, ["btcusdt@ticker"], updates.append, options=FAST)
    task = asyncio.create_task(client.run())
    try:
        await eventually(lambda: len(updates) >= 10, timeout=10)
        assert client.broke
        assert client.counters["connection_errors"] == 1
        assert client.counters["reconnects"] == 1
        assert client.state is UpstreamState.CONNECTED
        assert not task.done()
    finally:
        await cancel_and_wait(task)
        await sim.stop()


async def test_failed_connect_attempts_count_as_reconnects_and_keep_the_last_error() -> None:
    """A server that refuses every connection: each attempt after the first is a
    reconnect, and the last error says what failed, also in ``status``."""
    client = BinanceClient(
        f"ws://127.0.0.1:{free_port()}", ["btcusdt@ticker"], lambda _update: None, options=FAST
    )
    task = asyncio.create_task(client.run())
    try:
        await eventually(lambda: client.counters["connect_failures"] >= 4)
        status = client.status()
        assert status["reconnects"] == client.counters["connect_failures"] - 1 >= 3, status
        assert "ConnectionRefusedError" in str(status["last_error"]), status
        assert isinstance(status["last_error_at"], float)
    finally:
        await cancel_and_wait(task)


@pytest.mark.parametrize("identify", [True, False])
async def test_a_simulator_says_so_and_a_plain_server_does_not(identify: bool) -> None:
    """The simulated exchange's handshake marks it simulated; a server that does not say
    so (as Binance never does) leaves the client's data live."""
    async with SimExchange(SimConfig(rate=10, identify=identify)) as sim:
        updates: list[Update] = []
        client = BinanceClient(sim.url, ["btcusdt@ticker"], updates.append, options=FAST)
        task = asyncio.create_task(client.run())
        try:
            await eventually(lambda: len(updates) >= 1)
            assert client.simulated is identify
            assert client.status()["simulated"] is identify
        finally:
            await cancel_and_wait(task)
