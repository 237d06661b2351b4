"""The Redis hub against a real private Redis: fencing, idempotent publish, dedupe, a
leader that delivers its own ticks on the script's answer, and a reader that never skips or
repeats an entry across kills, restarts, idleness and trimming."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tickcast.hub.redis import RedisHub
from tickcast.hub.redis_follow import (
    Entry,
    Follower,
    Verdict,
    entry_seq,
    load_state,
    stream_entries,
)
from tickcast.hub.redis_script import PUBLISH_LUA, Origin, RedisKeys, parse_result, script_args
from tickcast.ingest import Ingest
from tickcast.messages.tick import Tick
from tickcast.upstream.normalize import Update

from ..redis_support import LinkProxy, RedisServer, running_redis
from ..support import eventually

KEYS = RedisKeys()


def tick(symbol: str, seq: int, price: str = "1.5") -> Tick:
    return Tick(symbol=symbol, seq=seq, timestamp_ms=1_700_000_000_000 + seq, source="sim",
                last_price=price, change_percent="0.1")  # fmt: skip


def make_hub(url: str, **kwargs: object) -> RedisHub:
    options: dict[str, object] = {"history_size": 100, "socket_timeout": 1.0, "block_ms": 200}
    options.update(kwargs)
    return RedisHub(url, **options)  # type: ignore[arg-type]


async def leader(
    server: RedisServer, node: str = "node-a", epoch: int = 1, **kw: object
) -> RedisHub:
    """A started hub that holds the lease (set by hand, as the lease module would)."""
    server.command("SET", KEYS.lease, f"{node}:{epoch}")
    hub = make_hub(server.url, **kw)
    await hub.start()
    hub.set_leadership(node, epoch)
    return hub


async def settled(hub: RedisHub, sent: int) -> None:
    """Wait until the script has answered for ``sent`` ticks and the reader caught up."""
    done = ("published", "duplicates", "stale", "fenced")
    await eventually(lambda: sum(hub.counts[k] for k in done) >= sent, timeout=8)
    await eventually(lambda: hub.status()["position"] == hub.last_seq(), timeout=8)


async def stream_ids(server: RedisServer) -> list[int]:
    async with aioredis.Redis.from_url(server.url) as client:
        entries = await client.xrange(KEYS.stream)
        return [entry_seq(eid) for eid, _ in entries or []]  # type: ignore[arg-type]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis", appendonly=True) as server:
        yield server


async def test_another_node_receives_the_same_ticks_in_seq_order(server: RedisServer) -> None:
    """A second node (not leading) gets every published tick once, in seq order, in bursts."""
    a = await leader(server)
    b = make_hub(server.url)
    await b.start()
    got_a: list[int] = []
    got_b: list[int] = []
    a.subscribe(lambda t: got_a.append(t.seq))
    b.subscribe(lambda t: got_b.append(t.seq))
    try:
        seq = 0
        for _burst in range(5):
            for _ in range(300):
                seq += 1
                a.publish(tick("ABC"[seq % 3], seq))
            await eventually(lambda: b.last_seq() == seq, timeout=8)  # noqa: B023
        assert got_b == list(range(1, seq + 1))
        assert got_a == got_b
        assert b.snapshot() == a.snapshot()
        assert b.incarnation == a.incarnation is not None
        b.publish(tick("A", seq + 1))  # b does not lead: refused locally
        assert b.counts["not_leader"] == 1
    finally:
        await a.stop()
        await b.stop()


async def test_a_publish_not_matching_the_lease_is_refused_by_redis(server: RedisServer) -> None:
    """With the lease held by another node:epoch, Redis refuses the batch and it is counted."""
    hub = await leader(server, "node-a", 1)
    got: list[Tick] = []
    hub.subscribe(got.append)
    try:
        server.command("SET", KEYS.lease, "node-a:2")  # same node, newer epoch: ours is stale
        hub.publish(tick("A", 1))
        await eventually(lambda: hub.counts["fenced"] == 1, timeout=5)
        server.command("SET", KEYS.lease, "node-b:1")
        hub.publish(tick("A", 2))
        await eventually(lambda: hub.counts["fenced"] == 2, timeout=5)
        assert await stream_ids(server) == []
        assert hub.counts["published"] == 0
        assert hub.latest("A") is None
        assert got == []
    finally:
        await hub.stop()


async def test_a_retried_publish_produces_one_stream_entry(server: RedisServer) -> None:
    """The same script call sent twice (a retry of an applied write) adds one entry."""
    server.command("SET", KEYS.lease, "node-a:1")
    async with aioredis.Redis.from_url(server.url) as client:
        script = client.register_script(PUBLISH_LUA)
        for origin in (None, Origin("ticker", 7, 100)):
            seq = 1 if origin is None else 2
            args = script_args("node-a:1", 1000, "inc", [(tick("A", seq), origin)])
            first = parse_result(await script(keys=KEYS.script_keys(), args=args))
            again = parse_result(await script(keys=KEYS.script_keys(), args=args))
            assert (first.applied, again.applied) == (1, 0)
            assert again.stale + again.duplicates == 1
        assert await stream_ids(server) == [1, 2]
        assert await client.hget(KEYS.meta, "seq") == b"2"
        assert await client.hget(KEYS.latest, "A") == tick("A", 2).encode()


async def test_updates_are_deduplicated_by_symbol_kind_history_and_order(
    server: RedisServer,
) -> None:
    """An update whose (symbol, kind, history) already reached its order is dropped; another
    kind, history or symbol is not."""
    hub = await leader(server)
    try:
        cases = [
            ("A", Origin("ticker", 1, 10), True),
            ("A", Origin("ticker", 1, 10), False),  # same order: overlap or retry
            ("A", Origin("ticker", 1, 9), False),  # older
            ("A", Origin("bookTicker", 1, 5), True),  # another kind
            ("A", Origin("ticker", 2, 1), True),  # another history (a fresh connection)
            ("B", Origin("ticker", 1, 10), True),  # another symbol
            ("A", Origin("ticker", 1, 11), True),  # newer
        ]
        for seq, (symbol, origin, _) in enumerate(cases, 1):
            hub.publish(tick(symbol, seq), origin)
        await settled(hub, len(cases))
        expected = [seq for seq, (_, _, kept) in enumerate(cases, 1) if kept]
        assert await stream_ids(server) == expected
        assert hub.counts["duplicates"] == 2
        assert [t.seq for t in hub.since(["A", "B"], 0) or []] == expected
    finally:
        await hub.stop()


async def test_the_reader_survives_client_kill_without_skipping(server: RedisServer) -> None:
    """Every connection killed mid-stream: the reader reconnects and resumes from its last
    id; the other node still receives every tick exactly once."""
    a = await leader(server)
    b = make_hub(server.url)
    await b.start()
    got: list[int] = []
    own: list[int] = []
    b.subscribe(lambda t: got.append(t.seq))
    a.subscribe(lambda t: own.append(t.seq))
    try:
        for seq in range(1, 101):
            a.publish(tick("A", seq))
            if seq % 25 == 0:
                await eventually(lambda: b.last_seq() >= seq - 10, timeout=5)  # noqa: B023
                server.command("CLIENT", "KILL", "TYPE", "normal")
        await eventually(lambda: b.last_seq() == 100, timeout=20)
        await eventually(lambda: a.status()["position"] == 100, timeout=20)
        assert got == list(range(1, 101))
        assert own == got  # the leader's own: batches cut mid-flight, sent again, once
        assert b.counts["reconnects"] >= 1
        assert b.counts["resyncs"] == 0
        assert b.connected
    finally:
        await a.stop()
        await b.stop()


async def test_an_idle_stream_longer_than_the_socket_timeout_skips_nothing(
    server: RedisServer,
) -> None:
    """Idle for three socket timeouts, the reader neither times out nor misses the next tick."""
    a = await leader(server, socket_timeout=0.4, block_ms=100)
    b = make_hub(server.url, socket_timeout=0.4, block_ms=100)
    await b.start()
    got: list[int] = []
    b.subscribe(lambda t: got.append(t.seq))
    try:
        a.publish(tick("A", 1))
        await eventually(lambda: got == [1], timeout=5)
        await asyncio.sleep(1.2)
        a.publish(tick("A", 2))
        a.publish(tick("B", 3))
        await eventually(lambda: got == [1, 2, 3], timeout=5)
        assert b.counts["reconnects"] == 0
    finally:
        await a.stop()
        await b.stop()


async def test_a_redis_restart_with_aof_leaves_no_gap(server: RedisServer) -> None:
    """Across a restart that keeps the data, the reader resumes with no gap, no duplicate and
    no reset, and the publisher reloads its script (NOSCRIPT)."""
    a = await leader(server)
    b = make_hub(server.url)
    await b.start()
    got: list[int] = []
    resets: list[str] = []
    b.subscribe(lambda t: got.append(t.seq))
    b.on_reset(resets.append)
    try:
        for seq in range(1, 51):
            a.publish(tick("A", seq))
        await eventually(lambda: b.last_seq() == 50, timeout=5)
        incarnation = b.incarnation
        server.restart()
        await eventually(lambda: b.connected and b.counts["reconnects"] >= 1, timeout=20)
        for seq in range(51, 101):
            a.publish(tick("A", seq))
        await eventually(lambda: b.last_seq() == 100, timeout=20)
        assert got == list(range(1, 101))
        assert resets == []
        assert b.incarnation == incarnation
        missed = b.since(["A"], 40)
        assert missed is not None and [t.seq for t in missed] == list(range(41, 101))
    finally:
        await a.stop()
        await b.stop()


async def test_redis_losing_its_data_resets_and_seq_keeps_increasing(tmp_path: Path) -> None:
    """Restarted without persistence: a new incarnation, the reset hook fires, old resume
    points get None, and a new leader's ingest stamps seqs above everything seen before."""
    with running_redis(tmp_path, appendonly=False) as server:
        a = await leader(server)
        b = make_hub(server.url)
        await b.start()
        resets: list[str] = []
        b.on_reset(resets.append)
        try:
            for seq in range(1, 31):
                a.publish(tick("A", seq))
            await eventually(lambda: b.last_seq() == 30, timeout=5)
            before = b.incarnation
            await a.stop()
            server.restart(keep_data=False)
            await eventually(lambda: resets == ["incarnation"], timeout=8)
            assert b.incarnation not in (None, before)
            assert b.last_seq() == 30
            assert b.since(["A"], 25) is None  # that history is gone: clients must reset
            # b takes over (the lease module would set the key) and ingests.
            server.command("SET", KEYS.lease, "node-b:2")
            b.set_leadership("node-b", 2)
            ingest = Ingest(b, ["A"])
            update = Update("A", "ticker", 1, 1_700_000_000_000, {"last_price": "2"}, 1)
            published = ingest.apply(update, "sim")
            assert published is not None and published.seq == 31
            await eventually(lambda: b.latest("A") == published, timeout=5)
            assert await stream_ids(server) == [31]
            missed = b.since(["A"], 30)
            assert missed is not None and [t.seq for t in missed] == [31]
        finally:
            await b.stop()


async def test_flushall_while_running_is_detected_even_when_idle(server: RedisServer) -> None:
    """FLUSHALL with no publish after it: the reader still notices the data is gone."""
    a = await leader(server)
    resets: list[str] = []
    a.on_reset(resets.append)
    try:
        a.publish(tick("A", 1))
        await settled(a, 1)
        before = a.incarnation
        server.command("FLUSHALL")
        await eventually(lambda: resets == ["incarnation"], timeout=5)
        assert a.incarnation != before
        assert a.counts["resyncs"] == 1
    finally:
        await a.stop()


async def test_a_reader_trimmed_past_resynchronizes(server: RedisServer) -> None:
    """A node cut off while the stream is trimmed past its position rebuilds its state from
    Redis and fires the reset hook instead of skipping silently."""
    server.command("CONFIG", "SET", "stream-node-max-entries", "2")
    a = await leader(server, history_size=2, streams=1)
    proxy = LinkProxy(server.port)
    await proxy.start()
    b = make_hub(proxy.url, history_size=2, streams=1, socket_timeout=0.4, block_ms=100)
    await b.start()
    got: list[int] = []
    resets: list[str] = []
    b.subscribe(lambda t: got.append(t.seq))
    b.on_reset(resets.append)
    try:
        a.publish(tick("A", 1))
        await eventually(lambda: got == [1], timeout=5)
        proxy.blackholed = True  # b's link goes dead: no reply, no reset
        for seq in range(2, 41):
            a.publish(tick("A" if seq % 2 else "B", seq))
        await settled(a, 40)
        assert (await stream_ids(server))[0] > 2  # trimmed past b's position
        await eventually(lambda: not b.connected, timeout=5)
        proxy.blackholed = False
        proxy.reset_all()
        await eventually(lambda: resets == ["trimmed"], timeout=8)
        assert got == [1]  # nothing delivered across the gap
        assert b.snapshot() == a.snapshot()
        assert b.since(["A", "B"], 1) is None
        a.publish(tick("A", 41))
        await eventually(lambda: got == [1, 41], timeout=5)
    finally:
        await a.stop()
        await b.stop()
        await proxy.stop()


async def test_the_publisher_reloads_its_script_after_script_flush(server: RedisServer) -> None:
    """After SCRIPT FLUSH (what a Redis restart does to the cache) publishing still works."""
    a = await leader(server)
    try:
        a.publish(tick("A", 1))
        await settled(a, 1)
        server.command("SCRIPT", "FLUSH")
        a.publish(tick("A", 2))
        await settled(a, 2)
        assert await stream_ids(server) == [1, 2]
        assert a.counts["publish_errors"] == 0
    finally:
        await a.stop()


async def test_status_reports_connection_incarnation_lag_and_counters(server: RedisServer) -> None:
    """status() exposes what operators need: connected, incarnation, lag and counters."""
    a = await leader(server)
    try:
        a.publish(tick("A", 1))
        await settled(a, 1)
        status = a.status()
        assert status["connected"] is True and status["leading"] is True
        assert status["incarnation"] == a.incarnation
        assert status["lag_seq"] == 0 and isinstance(status["lag_ms"], int)
        for name in ("fenced", "duplicates", "resyncs", "reconnects", "dropped_full"):
            assert status[name] == 0
        assert status["published"] == 1
        # The project's own dependencies bring the C parser: "python" would cost 3x the CPU.
        assert status["parser"] == "hiredis"
    finally:
        await a.stop()


async def test_the_leader_delivers_its_own_ticks_on_the_answer_not_via_its_reader(
    server: RedisServer,
) -> None:
    """With its reader's connection dead, the leader's listeners still get every tick it
    publishes, once, in order; the reader, back, skips them; another node gets the same."""
    proxy = LinkProxy(server.port)
    await proxy.start()
    server.command("SET", KEYS.lease, "node-a:1")
    a = make_hub(proxy.url)
    b = make_hub(server.url)
    own: list[int] = []
    got: list[int] = []
    try:
        await a.start()
        await b.start()
        a.subscribe(lambda t: own.append(t.seq))
        b.subscribe(lambda t: got.append(t.seq))
        proxy.cut(0)  # a's reader: its XREAD never answers
        a.set_leadership("node-a", 1)
        for seq in range(1, 31):
            a.publish(tick("ABC"[seq % 3], seq))
            if seq % 10 == 0:
                await asyncio.sleep(0.02)
        await eventually(lambda: own == list(range(1, 31)), timeout=5)
        assert a.counts["delivered_on_answer"] == 30
        assert a.counts["reconnects"] == 0  # the reader had no part in it
        await eventually(lambda: a.counts["reconnects"] >= 1, timeout=8)
        a.publish(tick("A", 31))
        await eventually(lambda: got == list(range(1, 32)), timeout=5)
        await eventually(lambda: a.status()["position"] == 31, timeout=5)
        assert own == got
        assert a.snapshot() == b.snapshot()
    finally:
        await a.stop()
        await b.stop()
        await proxy.stop()


async def test_a_new_leader_behind_its_reader_leaves_its_entries_to_the_reader(
    server: RedisServer,
) -> None:
    """Elected before its reader read its predecessor's last entries, a node does not
    deliver its own first entries ahead of them: its clients see the stream's order."""
    a = await leader(server, "node-a", 1)
    proxy = LinkProxy(server.port)
    await proxy.start()
    b = make_hub(proxy.url)
    got: list[int] = []
    try:
        await b.start()
        b.subscribe(lambda t: got.append(t.seq))
        proxy.cut(0)  # b's reader sees nothing more
        for seq in range(1, 6):
            a.publish(tick("A", seq))
        await settled(a, 5)
        a.set_leadership("node-a", None)
        server.command("SET", KEYS.lease, "node-b:2")
        b.set_leadership("node-b", 2)
        b.publish(tick("B", 6))
        await eventually(lambda: b.counts["published"] == 1, timeout=5)
        assert got == [] and b.counts["delivered_on_answer"] == 0
        await eventually(lambda: got == [1, 2, 3, 4, 5, 6], timeout=8)  # the reader, back
        assert proxy.accepted == 3  # b's reader, b's publisher, b's reader again
        proxy.cut(2)  # only the answer can deliver now
        b.publish(tick("B", 7))
        await eventually(lambda: got == [1, 2, 3, 4, 5, 6, 7], timeout=5)
        assert b.counts["delivered_on_answer"] == 1  # caught up: on the answer again
    finally:
        await a.stop()
        await b.stop()
        await proxy.stop()


async def test_a_publish_whose_answer_is_lost_is_sent_again_and_delivered_once(
    server: RedisServer,
) -> None:
    """Redis applied the batch but the answer never came: after the socket timeout the
    publisher reconnects and sends it again, Redis drops it as already applied, and the
    leader's reader delivers it: once, in order."""
    proxy = LinkProxy(server.port)
    await proxy.start()
    server.command("SET", KEYS.lease, "node-a:1")
    a = make_hub(proxy.url, socket_timeout=0.5, block_ms=100)
    own: list[int] = []
    try:
        await a.start()
        a.subscribe(lambda t: own.append(t.seq))
        a.set_leadership("node-a", 1)
        a.publish(tick("A", 1))
        await eventually(lambda: own == [1], timeout=5)
        assert proxy.accepted == 2  # the reader's connection, then the publisher's
        proxy.cut(1, answers_only=True)
        a.publish(tick("A", 2))
        a.publish(tick("B", 3))
        await eventually(lambda: own == [1, 2, 3], timeout=5)
        await eventually(lambda: a.counts["publish_errors"] >= 1, timeout=5)
        await eventually(lambda: a.counts["stale"] + a.counts["duplicates"] == 2, timeout=5)
        assert await stream_ids(server) == [1, 2, 3]
        assert a.counts["published"] == 1
        a.publish(tick("A", 4))
        await eventually(lambda: own == [1, 2, 3, 4], timeout=5)
    finally:
        await a.stop()
        await proxy.stop()


def test_a_block_time_near_the_socket_timeout_is_refused() -> None:
    """XREAD BLOCK must stay well under the socket timeout, or idle reads time out."""
    with pytest.raises(ValueError, match="block_ms"):
        RedisHub("redis://127.0.0.1:1/0", history_size=10, socket_timeout=1.0, block_ms=900)


async def test_a_reader_that_hits_a_command_error_retries_and_recovers(
    server: RedisServer,
) -> None:
    """A stream key of the wrong type fails XREAD: the reader reports not connected and
    keeps trying instead of dying, and reads again once the key is fixed."""
    server.command("SET", KEYS.stream, "not a stream")
    b = make_hub(server.url, start_timeout=0.5)
    await b.start()
    got: list[int] = []
    b.subscribe(lambda t: got.append(t.seq))
    a: RedisHub | None = None
    try:
        await asyncio.sleep(0.3)
        assert not b.connected
        assert b.since(["A"], 0) is None  # nothing loaded: a resume must reset
        server.command("DEL", KEYS.stream)
        await eventually(lambda: b.connected, timeout=8)
        a = await leader(server)
        a.publish(tick("A", 1))
        await eventually(lambda: got == [1], timeout=5)
    finally:
        if a is not None:
            await a.stop()
        await b.stop()


def entry(seq: int, prev: int, incarnation: str = "i1") -> Entry:
    return Entry(seq=seq, prev=prev, incarnation=incarnation, written_ms=0, message=tick("A", seq))


def test_the_follower_delivers_only_the_entry_that_follows_its_position() -> None:
    """Pure core: next entry delivered; a gap, a new incarnation or a repeat is told apart."""
    follower = Follower(position=5, incarnation="i1")
    assert follower.check(entry(6, 5)) is Verdict.DELIVER
    assert follower.check(entry(8, 7)) is Verdict.GAP
    assert follower.check(entry(6, 5, "i2")) is Verdict.NEW_INCARNATION
    assert follower.check(entry(5, 4)) is Verdict.SKIP
    follower.advance(entry(6, 5))
    assert follower.last_id == "6-0"


def test_loading_state_sets_the_floor_below_which_resume_is_refused() -> None:
    """Pure core: trimmed latest-hash ticks are kept, and the floor covers lost history."""
    latest = [tick("B", 2).encode(), tick("A", 9).encode()]
    loaded = load_state(10, "i1", 9, latest, [entry(7, 6), entry(9, 7)])
    assert (loaded.position, loaded.floor) == (9, 6)
    assert [t.seq for t in loaded.store.history("A", 10)] == [7, 9]
    assert loaded.store.latest("B") == tick("B", 2)
    lost = load_state(10, "i2", 0, [], [], lost_after=40)
    assert (lost.position, lost.floor) == (0, 40)


def test_xread_replies_of_both_protocols_give_the_same_entries() -> None:
    """Pure core: RESP2 (list) and RESP3 (dict) shaped XREAD replies parse alike."""
    fields = {b"t": b"{}"}
    assert stream_entries([[b"s", [(b"1-0", fields)]]]) == [(b"1-0", fields)]
    assert stream_entries({b"s": [[b"1-0", fields]]}) == [(b"1-0", fields)]
    assert stream_entries(None) == []


async def test_the_url_gives_password_and_database_to_publisher_and_reader(tmp_path: Path) -> None:
    """AUTH and SELECT come from the URL, read by redis-py, for both connections."""
    with running_redis(tmp_path / "auth") as server:
        server.command("CONFIG", "SET", "requirepass", "s3cret")
        url = f"redis://:s3cret@127.0.0.1:{server.port}/3"
        async with aioredis.Redis.from_url(url) as client:
            await client.set(KEYS.lease, "node-a:1")
        hub = make_hub(url)
        got: list[int] = []
        try:
            await hub.start()
            hub.subscribe(lambda t: got.append(t.seq))
            hub.set_leadership("node-a", 1)
            hub.publish(tick("A", 1))
            hub.publish(tick("B", 2))
            await eventually(lambda: got == [1, 2], timeout=5)
            assert hub.connected and hub.counts["published"] == 2
            async with aioredis.Redis.from_url(url) as client:
                assert await client.xlen(KEYS.stream) == 2
            async with aioredis.Redis.from_url(url.replace("/3", "/0")) as client:
                assert await client.xlen(KEYS.stream) == 0
        finally:
            await hub.stop()


def test_a_url_redis_py_cannot_read_is_refused_at_construction() -> None:
    """A wrong scheme or an unknown option fails at start-up, not in the publisher later."""
    with pytest.raises(ValueError, match="scheme"):
        make_hub("http://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="ssl_ciphers_typo"):
        make_hub("rediss://127.0.0.1:1/0?ssl_ciphers_typo=HIGH")
