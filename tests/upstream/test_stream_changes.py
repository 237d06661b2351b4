"""The upstream stream set changed at run time: listings added and delisted on the open
connections, by SUBSCRIBE and UNSUBSCRIBE, with no reconnect; against the simulated
exchange over loopback, which enforces Binance's 5 messages a second and 1024 streams."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tickcast.settings import Settings
from tickcast.sim.exchange import FaultKind, SimConfig, SimExchange
from tickcast.sim.listings import Listings
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.binance import BinanceClient, ClientOptions, UpstreamState
from tickcast.upstream.normalize import MarketEvent, Update
from tickcast.upstream.pacing import Backoff
from tickcast.upstream.replay import ReplaySource
from tickcast.upstream.sources import AutoSource, ExchangeSource, SimSource
from tickcast.upstream.streams import assign, next_request, shard
from tickcast.upstream.supervisor import SupervisedSource

from ..support import eventually, free_port
from .test_binance_client import FAST

SEED = 7
# Generated listings: plausible names, the trading ones stream (about 1.5 % do not).
SYMBOLS = tuple(s.upper() for s in Listings.build(SEED, (), 1400).trading)


def tickers(symbols: tuple[str, ...] | list[str]) -> list[str]:
    return [f"{s.lower()}@ticker" for s in symbols]


# Pure planning: which shard gets which streams, and which control message comes next


def test_assign_from_nothing_is_sharding() -> None:
    """With no shard yet, the streams are cut into shards of at most the size, in order."""
    names = [f"s{i}@ticker" for i in range(2100)]
    assert assign([], names) == shard(names)
    assert [len(p) for p in assign([], names)] == [1024, 1024, 52]


def test_assign_keeps_each_shards_streams_and_fills_the_first_with_room() -> None:
    """Removed streams leave their shard, kept ones stay in place and in order, and new
    ones fill the first shards with room before a new shard is made."""
    current = [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    parts = assign(current, ["g", "a", "c", "d", "f", "x", "y", "z", "w"], size=3)
    assert parts == [["a", "c", "x"], ["d", "f", "y"], ["g", "z", "w"]]
    assert assign(current, ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"], size=3) == [
        ["a", "b", "c"],
        ["d", "e", "f"],
        ["g", "h", "i"],
        ["j"],
    ]


def test_assign_leaves_an_emptied_shard_in_place_and_ignores_duplicates() -> None:
    """A shard whose streams all went keeps its place (empty), and a stream named twice
    is placed once."""
    assert assign([["a", "b"], ["c"]], ["c", "c", "a"], size=2) == [["a"], ["c"]]
    assert assign([["a"], ["b"]], ["b"], size=2) == [[], ["b"]]
    assert assign([], ["a", "a", "b"], size=5) == [["a", "b"]]


def test_assign_never_passes_binances_limit() -> None:
    """A size above 1024 is held to Binance's 1024 streams per connection."""
    assert [len(p) for p in assign([], [f"s{i}" for i in range(1500)], size=5000)] == [1024, 476]


def test_next_request_unsubscribes_first_then_subscribes_in_batches() -> None:
    """The difference goes out UNSUBSCRIBE first, each message at most a batch, the
    SUBSCRIBEs in the shard's order; nothing when the connection has what the shard has."""
    sent = dict.fromkeys(["a", "b", "c", "d"])
    wanted = ["d", "x", "y", "z"]
    assert next_request(wanted, sent, 2) == ("UNSUBSCRIBE", ["a", "b"])
    assert next_request(wanted, dict.fromkeys(["c", "d"]), 2) == ("UNSUBSCRIBE", ["c"])
    assert next_request(wanted, dict.fromkeys(["d"]), 2) == ("SUBSCRIBE", ["x", "y"])
    assert next_request(wanted, dict.fromkeys(["d", "x", "y"]), 2) == ("SUBSCRIBE", ["z"])
    assert next_request(wanted, dict.fromkeys(wanted), 2) is None
    assert next_request([], {}, 2) is None


def test_set_streams_before_run_reshards_and_counts() -> None:
    """Called before run, set_streams replans the shards and counts what it added and
    removed; status shows the streams of each shard; no streams at all is refused."""
    options = ClientOptions(streams_per_connection=3)
    client = BinanceClient(
        "ws://127.0.0.1:1", ["a", "b", "c", "d"], lambda _e: None, options=options
    )
    client.set_streams(["b", "c", "d", "e", "f", "b"])
    assert client.streams == ["b", "c", "e", "d", "f"]
    status = client.status()
    assert status["streams"] == [3, 2]
    counters = status["counters"]
    assert isinstance(counters, dict)
    assert counters["streams_added"] == 2 and counters["streams_removed"] == 1
    assert counters["subscribe_messages"] == counters["unsubscribe_messages"] == 0
    with pytest.raises(ValueError, match="at least one stream"):
        client.set_streams([])


# Against the simulated exchange


@dataclass
class Run:
    """A running client on a simulated exchange, and when each symbol last delivered."""

    sim: SimExchange
    client: BinanceClient
    seen: dict[str, float] = field(default_factory=dict)

    def record(self, event: MarketEvent) -> None:
        if isinstance(event, Update):
            self.seen[event.symbol] = time.monotonic()

    def delivered(self, symbols: list[str] | tuple[str, ...], since: float = 0.0) -> bool:
        return all(self.seen.get(s, -1.0) >= since for s in symbols)

    def delivering(self, since: float) -> set[str]:
        return {s for s, at in self.seen.items() if at >= since}

    def sim_stat(self, name: str) -> object:
        return self.sim.stats()[name]

    def healthy(self) -> None:
        """No reconnect, no 1008 (nor any other close), no message over the rate."""
        stats = self.sim.stats()
        assert stats["closes"] == {} and stats["incoming_rate_violations"] == 0, stats
        assert self.client.counters["reconnects"] == 0
        assert self.client.counters["control_errors"] == 0
        assert self.client.closes == {}


@contextlib.asynccontextmanager
async def running(
    streams: list[str], options: ClientOptions = FAST, rate: float = 4.0
) -> AsyncIterator[Run]:
    # Binance's ping every 20 s: pongs at a faster pace would take the room the pacing
    # leaves under 5 messages a second.
    sim = SimExchange(SimConfig(rate=rate, seed=SEED, symbol_count=1400))
    await sim.start()
    run = Run(sim, BinanceClient(sim.url, streams, lambda e: run.record(e), options=options))
    task = asyncio.create_task(run.client.run())
    try:
        yield run
    finally:
        await cancel_and_wait(task)
        await sim.stop()


async def test_added_streams_flow_on_the_open_connection() -> None:
    """300 streams added to a running client of 10 deliver on the same connection: no
    reconnect, no new connection, no 1008, the SUBSCRIBEs paced and counted."""
    first, more = list(SYMBOLS[:10]), list(SYMBOLS[10:310])
    async with running(tickers(first)) as run:
        await eventually(lambda: run.delivered(first), timeout=5)
        run.client.set_streams(tickers(first + more))
        await eventually(lambda: run.delivered(more), timeout=5)
        assert run.sim_stat("connections_total") == 1
        assert run.sim_stat("streams") == 310
        run.healthy()
        status = run.client.status()
        assert status["streams"] == [310] and status["connections"] == 1
        counters = status["counters"]
        assert isinstance(counters, dict)
        assert counters["subscribe_messages"] == 1 + 2  # 10, then 256 + 44
        assert counters["streams_added"] == 300 and counters["unsubscribe_messages"] == 0


async def test_removed_streams_stop_after_the_unsubscribe() -> None:
    """100 of 200 streams removed: once the exchange applied the UNSUBSCRIBE (and what
    was in flight arrived), none of them delivers; the others go on, on the same
    connection."""
    symbols = list(SYMBOLS[:200])
    kept, gone = symbols[:100], symbols[100:]
    async with running(tickers(symbols)) as run:
        await eventually(lambda: run.delivered(symbols), timeout=5)
        run.client.set_streams(tickers(kept))
        await eventually(lambda: run.sim_stat("streams") == 100, timeout=3)
        await asyncio.sleep(0.3)  # frames the exchange sent before it
        mark = time.monotonic()
        await eventually(lambda: run.delivered(kept, since=mark), timeout=5)
        assert not run.delivering(mark) & set(gone)
        assert run.client.counters["unsubscribe_messages"] == 1
        assert run.client.counters["streams_removed"] == 100
        assert run.sim_stat("connections_total") == 1
        run.healthy()


async def test_growing_past_1024_opens_a_second_connection() -> None:
    """1000 streams grown to 1100: the first connection takes 24 more and is otherwise
    left alone, a second connection carries the remaining 76, and both deliver."""
    symbols = list(SYMBOLS[:1100])
    async with running(tickers(symbols[:1000]), rate=1.0) as run:
        await eventually(lambda: run.delivered(symbols[:1000]), timeout=6)
        run.client.set_streams(tickers(symbols))
        await eventually(lambda: run.delivered(symbols[1000:]), timeout=6)
        assert run.client.status()["streams"] == [1024, 76]
        assert run.sim_stat("connections_open") == run.sim_stat("connections_total") == 2
        assert run.sim_stat("streams") == 1100
        assert run.client.state is UpstreamState.CONNECTED
        run.healthy()


async def test_a_change_during_the_first_subscribes_ends_with_the_set_asked_last() -> None:
    """set_streams while the first 1000 streams are still being paced out: the
    connection ends subscribed to exactly the newer set (300 removed, 200 added), within
    the rate limit."""
    start = list(SYMBOLS[:1000])
    desired = start[300:] + list(SYMBOLS[1000:1200])
    async with running(tickers(start), rate=1.0) as run:
        await eventually(lambda: run.client.counters["subscribe_messages"] >= 1, timeout=3)
        assert run.client.counters["subscribe_messages"] < 4  # still pacing the first set
        run.client.set_streams(tickers(desired))
        await eventually(lambda: run.delivered(desired), timeout=8)
        await eventually(lambda: run.sim_stat("streams") == len(desired), timeout=3)
        await asyncio.sleep(0.3)
        mark = time.monotonic()
        await asyncio.sleep(1.5)  # more than a step of every stream at rate 1
        assert run.delivering(mark) == set(desired)
        assert run.sim_stat("connections_total") == 1
        run.healthy()


async def test_a_refused_later_subscribe_is_counted_and_the_feed_goes_on() -> None:
    """A later SUBSCRIBE the exchange refuses (a name it calls invalid) is counted in
    control_errors; the connection stays and its other streams keep flowing."""
    symbols = list(SYMBOLS[:5])
    async with running(tickers(symbols)) as run:
        await eventually(lambda: run.delivered(symbols), timeout=5)
        run.client.set_streams([*tickers(symbols), "not a stream"])
        await eventually(lambda: run.client.counters["control_errors"] == 1, timeout=3)
        mark = time.monotonic()
        await eventually(lambda: run.delivered(symbols, since=mark), timeout=5)
        assert run.client.counters["reconnects"] == 0
        assert run.sim_stat("connections_total") == 1


async def test_a_reconnect_subscribes_the_current_set() -> None:
    """After the exchange drops the connection, the new one subscribes the streams set
    last, not those the client started with."""
    start, later = list(SYMBOLS[:10]), list(SYMBOLS[5:25])
    async with running(tickers(start)) as run:
        await eventually(lambda: run.delivered(start), timeout=5)
        run.client.set_streams(tickers(later))
        await eventually(lambda: run.sim_stat("streams") == 20, timeout=3)
        run.sim.inject(FaultKind.DROP)
        await eventually(lambda: run.client.counters["reconnects"] == 1, timeout=5)
        await eventually(lambda: run.sim_stat("connections_open") == 1, timeout=5)
        await asyncio.sleep(0.3)
        mark = time.monotonic()
        await eventually(lambda: run.delivered(later, since=mark), timeout=5)
        assert run.delivering(mark) == set(later)
        assert run.sim_stat("streams") == 20


async def test_a_rotation_subscribes_the_current_set() -> None:
    """A make-before-break rotation (serverShutdown) opens its replacement with the
    streams set last, and switches without a reconnect."""
    start, later = list(SYMBOLS[:10]), list(SYMBOLS[20:30])
    async with running(tickers(start)) as run:
        await eventually(lambda: run.delivered(start), timeout=5)
        run.client.set_streams(tickers(later))
        run.sim.inject(FaultKind.SHUTDOWN, 3.0)
        await eventually(lambda: run.client.counters["rotations"] == 1, timeout=5)
        await eventually(lambda: run.sim_stat("connections_open") == 1, timeout=6)
        mark = time.monotonic()
        await eventually(lambda: run.delivered(later, since=mark), timeout=5)
        assert run.delivering(mark) == set(later)
        assert run.client.counters["reconnects"] == 0
        assert run.client.counters["rotation_failures"] == 0


async def test_a_shard_emptied_closes_quietly_and_reopens_when_streams_return() -> None:
    """A shard left with no streams closes its connection and stays idle: no stale, no
    reconnect, the client still connected; streams added later open it again."""
    options = ClientOptions(**{**FAST.__dict__, "stale_after": 0.8, "streams_per_connection": 10})
    symbols = list(SYMBOLS[:25])
    async with running(tickers(symbols[:20]), options) as run:
        await eventually(lambda: run.delivered(symbols[:20]), timeout=5)
        assert run.sim_stat("connections_open") == 2
        run.client.set_streams(tickers(symbols[:10]))
        await eventually(lambda: run.sim_stat("connections_open") == 1, timeout=3)
        await asyncio.sleep(2.5)  # three times stale_after
        assert run.client.counters["stale"] == 0
        assert run.client.counters["connect_attempts"] == 2
        assert run.client.state is UpstreamState.CONNECTED
        assert run.client.status()["streams"] == [10, 0]
        assert run.client.last_message_age is not None
        run.client.set_streams(tickers(symbols[:10] + symbols[20:25]))
        await eventually(lambda: run.delivered(symbols[20:25]), timeout=5)
        assert run.client.status()["streams"] == [10, 5]
        assert run.sim_stat("connections_open") == 2
        assert run.client.counters["reconnects"] == 0
        assert run.sim.stats()["closes"] == {"1000": 1}


async def test_a_shard_added_while_running_belongs_to_the_run() -> None:
    """A shard that set_streams adds to a running client runs in the client's task
    group: cancelling run() closes its connection too."""
    options = ClientOptions(**{**FAST.__dict__, "streams_per_connection": 5})
    symbols = list(SYMBOLS[:10])
    sim = SimExchange(SimConfig(rate=4.0, seed=SEED))
    await sim.start()
    try:
        client = BinanceClient(sim.url, tickers(symbols[:5]), lambda _e: None, options=options)
        task = asyncio.create_task(client.run())
        await eventually(lambda: client.connected, timeout=5)
        client.set_streams(tickers(symbols))
        await eventually(lambda: sim.stats()["connections_open"] == 2, timeout=5)
        await cancel_and_wait(task)
        await eventually(lambda: sim.stats()["connections_open"] == 0, timeout=5)
        shards = [t for t in asyncio.all_tasks() if t.get_name().startswith("binance-")]
        assert shards == []
    finally:
        await sim.stop()


# The sources


def sim_settings(port: int | None = None) -> Settings:
    return Settings(
        source="sim",
        sim_rate=10,
        symbols=["BTCUSDT", "ETHUSDT"],
        binance_url=f"ws://127.0.0.1:{port or free_port()}",
        auto_grace=0.5,
        backoff_initial=0.1,
        backoff_max=0.5,
    )


async def test_sim_source_uses_the_latest_set_now_and_in_later_runs() -> None:
    """SimSource: a set given before run is what its client starts with, one given
    during the run reaches the running client, and a second run starts with the latest."""
    events: list[str] = []
    source = SimSource(sim_settings(), lambda e, _label: events.append(e.symbol))
    source.set_streams(["solusdt@ticker"])
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: "SOLUSDT" in events, timeout=5)
        assert source.inner is not None
        assert source.inner.client.streams == ["solusdt@ticker"]
        source.set_streams(["solusdt@ticker", "bnbusdt@ticker"])
        await eventually(lambda: "BNBUSDT" in events, timeout=5)
        assert set(events) == {"SOLUSDT", "BNBUSDT"}
    finally:
        await cancel_and_wait(task)
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: source.inner is not None and source.inner.client.connected, 5)
        assert source.inner is not None
        assert source.inner.client.streams == ["solusdt@ticker", "bnbusdt@ticker"]
    finally:
        await cancel_and_wait(task)


async def test_auto_source_forwards_to_live_and_to_a_simulator_started_later() -> None:
    """AutoSource: live's client takes the set at once, and the simulator of a fallback
    that starts after it subscribes the same set."""
    events: list[str] = []
    source = AutoSource(sim_settings(), lambda e, _label: events.append(e.symbol))
    source.set_streams(["xrpusdt@ticker"])
    assert source.live.client.streams == ["xrpusdt@ticker"]
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: "XRPUSDT" in events, timeout=8)
        assert set(events) == {"XRPUSDT"}
        source.set_streams(["xrpusdt@ticker", "adausdt@ticker"])
        await eventually(lambda: "ADAUSDT" in events, timeout=5)
    finally:
        await cancel_and_wait(task)


def test_supervised_exchange_source_forwards_and_replay_ignores(tmp_path: Path) -> None:
    """A supervised ExchangeSource hands the set to its client; a replay accepts any set
    and changes nothing."""
    settings = sim_settings()
    source = ExchangeSource(
        settings.binance_url,
        ["btcusdt@ticker"],
        "binance",
        lambda _e, _label: None,
        FAST,
        rest_url=None,
    )
    supervised = SupervisedSource(source, Backoff(0.1, 0.5))
    supervised.set_streams(["ethusdt@ticker", "btcusdt@ticker"])
    assert source.client.streams == ["btcusdt@ticker", "ethusdt@ticker"]
    replay = SupervisedSource(ReplaySource(tmp_path / "none.jsonl", print), Backoff())
    replay.set_streams(["ethusdt@ticker"])
