"""The leader lease: the pure state machine with a fake clock, then the driver against a
private Redis (racing candidates, renewal, release, a blackholed link, a killed leader, a
Redis that lost its data)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tickcast.hub.lease import (
    Lease,
    LeaseCore,
    LeaseTiming,
    Op,
    Role,
    StepDown,
    lease_keys,
    parse_value,
)

from ..fakes import FakeTime
from ..redis_support import LinkProxy, RedisServer, running_redis
from ..support import eventually

TTL = 1.0
TIMING = LeaseTiming.for_ttl(TTL)
LEASE_KEY, EPOCH_KEY = lease_keys("t")


def core(clock: FakeTime, rand: float = 0.5, timing: LeaseTiming = TIMING) -> LeaseCore:
    return LeaseCore("me", timing, clock(), lambda: rand)


def elected(clock: FakeTime, epoch: int = 7) -> LeaseCore:
    lease = core(clock)
    lease.acquired(clock(), clock(), epoch)
    return lease


# --- the pure core ---------------------------------------------------------------------


def test_defaults_renew_every_third_and_fence_at_two_thirds_of_the_ttl() -> None:
    """TICKCAST_LEASE_TTL 3 s: renew each 1 s, fence at 2 s, calls bounded well under that."""
    timing = LeaseTiming.for_ttl(3.0)
    assert (timing.renew_every, timing.fence_after) == (1.0, 2.0)
    assert timing.op_timeout < timing.retry_every * 2 < timing.renew_every


def test_inconsistent_margins_are_refused() -> None:
    """A fence at or past the TTL (or renewals slower than the fence) is a configuration error."""
    with pytest.raises(ValueError, match="fence_after < ttl"):
        LeaseTiming(3.0, 1.0, 3.0, 0.25, 0.5, 0.25, 0.3)
    with pytest.raises(ValueError, match="renew_every < fence_after"):
        LeaseTiming(3.0, 2.5, 2.0, 0.25, 0.5, 0.25, 0.3)


def test_a_new_core_tries_to_acquire_at_once() -> None:
    """A standby's first move is an acquisition, due immediately."""
    clock = FakeTime()
    lease = core(clock)
    assert (lease.role, lease.next_op(), lease.wake_at()) == (Role.STANDBY, Op.ACQUIRE, clock())
    assert not lease.is_leader(clock())


def test_a_leader_renews_on_schedule_and_fences_two_thirds_of_a_ttl_after_the_send() -> None:
    """The fence counts from when the last good renewal was sent, not when its reply came."""
    clock = FakeTime()
    lease = core(clock)
    sent = clock()
    clock.advance(0.2)  # a slow reply: Redis started the TTL somewhere in these 0.2 s
    assert lease.acquired(sent, clock(), 7) == 7
    assert (lease.role, lease.token, lease.next_op()) == (Role.LEADER, "me:7", Op.RENEW)
    assert lease.wake_at() == sent + TTL / 3
    assert lease.fence_deadline == sent + TTL * 2 / 3
    clock.advance(TTL / 3 - 0.2)
    lease.renewed(clock(), clock())
    fence = clock() + TTL * 2 / 3
    assert lease.fence_deadline == fence
    clock.now = fence - 0.001
    assert lease.check(clock()) is None and lease.is_leader(clock())
    clock.now = fence
    assert not lease.is_leader(clock())  # false even before the driver calls check()
    assert lease.check(clock()) is StepDown.FENCED
    assert (lease.role, lease.next_op(), lease.token) == (Role.DEPOSED, Op.RELEASE, "me:7")


def test_a_failed_renewal_is_retried_sooner_and_never_runs_past_the_fence() -> None:
    """After an error the next renewal comes in ttl/12; each call is cut at the fence deadline."""
    clock = FakeTime()
    lease = elected(clock)
    clock.advance(TTL / 3)
    lease.failed(Op.RENEW, clock())
    assert lease.wake_at() == pytest.approx(clock() + TTL / 12)
    assert lease.op_deadline(clock()) == clock() + TIMING.op_timeout
    clock.now = lease.fence_deadline - 0.05
    assert lease.op_deadline(clock()) == lease.fence_deadline
    lease.next_at = lease.fence_deadline + 1
    assert lease.wake_at() == lease.fence_deadline  # the fence wakes the driver


def test_standbys_poll_with_jitter_and_learn_the_holder() -> None:
    """A refused acquisition records the holder and its epoch; the next poll is ttl/6 ± 25 %."""
    clock = FakeTime()
    for rand, interval in ((0.0, TTL / 6 * 0.75), (0.5, TTL / 6), (0.999999, TTL / 6 * 1.25)):
        lease = core(clock, rand)
        lease.held(clock(), "other-node:12")
        assert (lease.leader_id, lease.epoch, lease.seen_epoch) == ("other-node", 12, 12)
        assert lease.wake_at() == pytest.approx(clock() + interval)
        assert lease.role is Role.STANDBY


def test_a_lost_lease_steps_down_and_competes_again_with_a_higher_floor() -> None:
    """A renewal that finds someone else's value (or none) deposes and goes straight to standby."""
    clock = FakeTime()
    lease = elected(clock, 7)
    assert lease.lost(clock()) is StepDown.LOST
    assert (lease.role, lease.token, lease.next_op(), lease.wake_at()) == (
        Role.STANDBY, None, Op.ACQUIRE, clock(),
    )  # fmt: skip
    assert lease.seen_epoch == 7  # sent as the floor: a Redis that lost its data cannot repeat 7


def test_our_own_unacknowledged_acquisition_is_released_not_led() -> None:
    """A value with our node id that we never got the reply for is deleted, then we compete."""
    clock = FakeTime()
    lease = core(clock)
    lease.held(clock(), "me:3")
    assert (lease.role, lease.token, lease.next_op()) == (Role.DEPOSED, "me:3", Op.RELEASE)
    assert not lease.is_leader(clock())
    lease.released(clock())
    assert (lease.role, lease.token) == (Role.STANDBY, None)


def test_a_deposed_core_stops_trying_to_release_once_its_value_has_expired() -> None:
    """Release errors are retried until the old lease has surely expired, then standby."""
    clock = FakeTime()
    lease = elected(clock)
    clock.advance(TTL * 2 / 3)
    assert lease.check(clock()) is StepDown.FENCED
    lease.failed(Op.RELEASE, clock())
    assert lease.role is Role.DEPOSED
    clock.advance(TTL / 3)
    lease.failed(Op.RELEASE, clock())
    assert (lease.role, lease.next_op()) == (Role.STANDBY, Op.ACQUIRE)


def test_lease_values_parse_only_in_their_own_shape() -> None:
    """``<node>:<epoch>``, with colons allowed in the node id; anything else is unknown."""
    assert parse_value("host-1:42") == ("host-1", 42)
    assert parse_value("a:b:3") == ("a:b", 3)
    assert [parse_value(v) for v in ("", "node", ":3", "node:", "node:x")] == [None] * 5


# --- the driver against a private Redis ------------------------------------------------


class Recorder:
    """The callbacks of one lease, with when (monotonic) each came."""

    def __init__(self, server: RedisServer | None = None) -> None:
        self.elected: list[tuple[float, int]] = []
        self.deposed: list[tuple[float, StepDown, bytes]] = []
        self.server = server

    def on_elected(self, epoch: int) -> None:
        self.elected.append((time.monotonic(), epoch))

    def on_deposed(self, reason: StepDown) -> None:
        # The lease's remaining TTL in Redis at the moment we stopped (read out of band).
        pttl = self.server.command("PTTL", LEASE_KEY) if self.server else b""
        self.deposed.append((time.monotonic(), reason, pttl))


@contextlib.asynccontextmanager
async def candidate(
    url: str, name: str, rec: Recorder | None = None, timing: LeaseTiming = TIMING
) -> AsyncIterator[tuple[Lease, asyncio.Task[None]]]:
    rec = rec or Recorder()
    lease = Lease(url, name, prefix="t", timing=timing, on_elected=rec.on_elected,
                  on_deposed=rec.on_deposed)  # fmt: skip
    async with lease:
        task = asyncio.create_task(lease.run())
        try:
            yield lease, task
        finally:
            task.cancel()
            await asyncio.wait([task])


def leader_of(leases: list[Lease]) -> Callable[[], list[str]]:
    return lambda: [lease.leader_id or "" for lease in leases if lease.is_leader]


async def test_exactly_one_of_racing_candidates_wins_and_the_epoch_rises_by_one(
    tmp_path: Path,
) -> None:
    """Five candidates start together on a free lease: one leads, the epoch goes 41 -> 42,
    and every other one reads the winner from Redis."""
    with running_redis(tmp_path) as server:
        server.command("SET", EPOCH_KEY, "41")
        async with contextlib.AsyncExitStack() as stack:
            leases = [
                (await stack.enter_async_context(candidate(server.url, f"n{i}")))[0]
                for i in range(5)
            ]
            await eventually(lambda: all(lease.leader_id for lease in leases), timeout=3)
            await asyncio.sleep(TTL)  # a few renewals and polls later, still one
            winners = [lease for lease in leases if lease.is_leader]
            assert len(winners) == 1 and winners[0].epoch == 42
            assert {(lease.leader_id, lease.epoch) for lease in leases} == {
                (winners[0].leader_id, 42)
            }
            assert server.command("GET", EPOCH_KEY) == b"$2\r\n42\r\n"
            value = f"{winners[0].leader_id}:42".encode()
            assert server.command("GET", LEASE_KEY) == b"$%d\r\n%s\r\n" % (len(value), value)


async def test_renewals_keep_the_lease_over_several_ttls(tmp_path: Path) -> None:
    """A healthy leader stays leader with the same epoch for 3 TTLs; its key never expires."""
    with running_redis(tmp_path) as server:
        rec = Recorder()
        async with candidate(server.url, "a", rec) as (lease, _):
            await eventually(lambda: lease.is_leader, timeout=2)
            for _ in range(6):
                await asyncio.sleep(TTL / 2)
                assert lease.is_leader and lease.epoch == 1 and lease.token == "a:1"
            assert server.command("EXISTS", LEASE_KEY) == b":1\r\n"
        assert [epoch for _, epoch in rec.elected] == [1] and len(rec.deposed) == 1
        assert rec.deposed[0][1] is StepDown.STOPPED


async def test_release_hands_over_at_the_next_poll_not_after_the_ttl(tmp_path: Path) -> None:
    """With a 10 s TTL and 0.1 s polls, a released lease is taken within a second, epoch +1."""
    slow = LeaseTiming(10.0, 3.0, 6.0, 0.5, 0.1, 0.25, 0.5)
    with running_redis(tmp_path) as server:
        rec_a = Recorder()
        async with candidate(server.url, "a", rec_a, slow) as (a, task_a):
            await eventually(lambda: a.is_leader, timeout=2)
            async with candidate(server.url, "b", timing=slow) as (b, _):
                await eventually(lambda: b.leader_id == "a", timeout=2)
                released = time.monotonic()
                await a.release()
                assert task_a.done() and not a.is_leader
                assert rec_a.deposed[-1][1] is StepDown.RELEASED
                await eventually(lambda: b.is_leader, timeout=1.5)
                assert time.monotonic() - released < slow.ttl / 4
                assert b.epoch == 2


async def test_a_blackholed_leader_steps_down_before_its_lease_expires(tmp_path: Path) -> None:
    """Link cut without a reset: the leader steps down (FENCED) while its key still has TTL
    left in Redis, within 2/3 TTL of the cut; a standby then leads with epoch +1."""
    with running_redis(tmp_path) as server:
        proxy = LinkProxy(server.port)
        await proxy.start()
        try:
            rec = Recorder(server)
            async with candidate(proxy.url, "a", rec) as (a, _):
                await eventually(lambda: a.is_leader, timeout=2)
                async with candidate(server.url, "b") as (b, _):
                    await eventually(lambda: b.leader_id == "a", timeout=2)
                    proxy.blackholed = True
                    cut = time.monotonic()
                    await eventually(lambda: rec.deposed, timeout=TTL * 2)
                    stopped, reason, pttl = rec.deposed[0]
                    assert reason is StepDown.FENCED and not a.is_leader
                    assert stopped - cut < TTL  # fenced within 2/3 TTL of its last renewal
                    remaining = int(pttl.strip().lstrip(b":"))
                    assert remaining > 0, "the lease had already expired in Redis"
                    await eventually(lambda: b.is_leader, timeout=TTL * 2)
                    assert b.epoch == 2
                    assert len(rec.elected) == 1  # a, still cut off, never led again
        finally:
            proxy.blackholed = False
            await proxy.stop()


async def test_a_killed_leader_is_replaced_within_ttl_plus_a_poll(tmp_path: Path) -> None:
    """The leader's task dies without releasing: its key outlives it, and the standby leads
    within TTL + the longest poll interval, with epoch +1."""
    with running_redis(tmp_path) as server:
        async with candidate(server.url, "a") as (a, task_a):
            await eventually(lambda: a.is_leader, timeout=2)
            async with candidate(server.url, "b") as (b, _):
                await eventually(lambda: b.leader_id == "a", timeout=2)
                task_a.cancel()
                await asyncio.wait([task_a])
                killed = time.monotonic()
                assert server.command("EXISTS", LEASE_KEY) == b":1\r\n"  # not released
                await eventually(lambda: b.is_leader, timeout=TTL * 3)
                # TTL + the longest poll + one call, plus 0.2 s for a busy test machine
                bound = TTL + TIMING.poll_every * (1 + TIMING.jitter) + TIMING.op_timeout + 0.2
                assert time.monotonic() - killed <= bound
                assert b.epoch == 2


async def test_a_redis_restart_without_data_deposes_and_reelects_with_a_higher_epoch(
    tmp_path: Path,
) -> None:
    """Redis loses the lease and the epoch counter: the leader's renewal fails, it steps down
    and re-acquires with epoch 6 (its last epoch was 5), never reusing an epoch."""
    with running_redis(tmp_path) as server:
        server.command("SET", EPOCH_KEY, "4")
        rec = Recorder()
        async with candidate(server.url, "a", rec) as (a, _):
            await eventually(lambda: a.epoch == 5 and a.is_leader, timeout=2)
            server.restart(keep_data=False)
            await eventually(lambda: len(rec.elected) == 2, timeout=TTL * 3)
            assert rec.deposed[0][1] in (StepDown.LOST, StepDown.FENCED)
            assert [epoch for _, epoch in rec.elected] == [5, 6] and a.is_leader
            assert server.command("GET", EPOCH_KEY) == b"$1\r\n6\r\n"


async def test_run_survives_an_unreachable_redis(tmp_path: Path) -> None:
    """Connection refused on every attempt: run() keeps polling, never leads, never raises."""
    server = RedisServer(tmp_path)  # a free port that nobody listens on
    async with candidate(server.url, "a") as (a, task):
        await asyncio.sleep(TTL)
        assert not task.done() and not a.is_leader and a.leader_id is None


@pytest.mark.parametrize("where", ["in a call", "asleep"])
async def test_a_cancelled_lease_task_ends_even_when_the_client_turns_it_into_an_error(
    where: str,
) -> None:
    """A cancel that reaches the lease while a Redis call is under way comes out of the
    client as a connection error (it drops the connection it was reading from); the lease
    must still stop, not count a failed call and carry on. Asleep, it stops as well."""
    lease = Lease("redis://127.0.0.1:1", "n0", prefix="t", timing=TIMING)
    in_call = asyncio.Event()

    async def call_cut_by_cancel(**_: object) -> object:
        in_call.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RedisConnectionError("Connection closed by server.") from None
        raise AssertionError("unreachable")

    async def answer_held(**_: object) -> object:
        in_call.set()
        return [0, "other:7"]  # someone else holds the lease: poll again later

    call = call_cut_by_cancel if where == "in a call" else answer_held
    lease._scripts = dict.fromkeys(lease._scripts, call)  # type: ignore[arg-type]
    async with lease:
        task = asyncio.create_task(lease.run())
        await asyncio.wait_for(in_call.wait(), 2)
        await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2)
    assert done == {task} and task.cancelled()
