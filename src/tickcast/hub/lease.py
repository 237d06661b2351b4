"""The leader lease: which node holds the upstream connection (SPEC §7).

``LeaseCore`` is the state machine (standby / leader / deposed) with every deadline computed
from times the driver passes in; ``Lease`` drives it against Redis with three Lua scripts.

Margins (defaults for ``ttl`` = 3 s): renew every ttl/3 (1 s), retry a failed renewal every
ttl/12, each Redis call bounded by ttl/10 (0.3 s) and never past the fence deadline, and
self-fence (step down) once the last successful renewal was *sent* 2/3 ttl (2 s) ago. Redis
starts a TTL when it executes the command, which is after we sent it, so timing from the send
leaves the leader at least ttl/3 (1 s) of lease after it has stopped: room for the callback to
stop the upstream, an event-loop stall, clock-rate drift between hosts and a small jump of the
Redis host's wall clock (Redis keeps expiry as wall-clock time). Anything worse (a frozen
process) is caught by ``is_leader`` re-checking the clock and by the epoch that the publish
script checks in Redis itself. Standbys poll every ttl/6 ± 25 %, so a ``kill -9``'d leader is
replaced within ttl + ttl/6·1.25 (≈3.6 s), leaving the rest of the 6 s for the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# KEYS: lease, epoch. ARGV: node id, ttl ms, highest epoch the caller has seen. SET NX PX is
# the arbiter between racing candidates; only the winner INCRs, so the epoch rises by exactly
# one per acquisition. The floor keeps it rising when Redis lost the counter (restart without
# persistence): the epoch fences writes and must never repeat.
_ACQUIRE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, redis.call('GET', KEYS[1]) or ''}
end
local epoch = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if epoch <= floor then
  epoch = floor + 1
  redis.call('SET', KEYS[2], epoch)
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch, 'XX', 'KEEPTTL')
return {1, epoch}
"""
# KEYS: lease. ARGV: our value "<node>:<epoch>", ttl ms. 1 when still ours and extended.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: lease. ARGV: our value. Deletes only our own lease, never a successor's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lease_keys(prefix: str) -> tuple[str, str]:
    """The lease and epoch keys; the ``{prefix}`` hash tag keeps them in the hub's slot."""
    return f"{{{prefix}}}:lease", f"{{{prefix}}}:epoch"


class Role(enum.Enum):
    STANDBY = "standby"
    LEADER = "leader"
    # Stepped down while our value may still be in Redis: release it before competing again.
    DEPOSED = "deposed"


class StepDown(enum.Enum):
    """Why a leader stopped leading (the argument of ``on_deposed``)."""

    FENCED = "no successful renewal within the fence margin"
    LOST = "the lease in Redis is no longer ours"
    RELEASED = "released"
    STOPPED = "lease driver stopped"


class Op(enum.Enum):
    ACQUIRE = "acquire"
    RENEW = "renew"
    RELEASE = "release"


@dataclass(frozen=True)
class LeaseTiming:
    """Seconds. ``for_ttl`` gives the documented margins."""

    ttl: float
    renew_every: float
    fence_after: float
    retry_every: float
    poll_every: float
    jitter: float
    op_timeout: float

    @classmethod
    def for_ttl(cls, ttl: float = 3.0) -> LeaseTiming:
        return cls(ttl, ttl / 3, ttl * 2 / 3, ttl / 12, ttl / 6, 0.25, ttl / 10)

    def __post_init__(self) -> None:
        if not 0 < self.op_timeout < self.renew_every < self.fence_after < self.ttl:
            raise ValueError(f"need 0 < op_timeout < renew_every < fence_after < ttl: {self}")
        if not 0 <= self.jitter < 1 or self.poll_every <= 0 or self.retry_every <= 0:
            raise ValueError(f"need 0 <= jitter < 1 and positive intervals: {self}")


def parse_value(value: str) -> tuple[str, int] | None:
    """``"<node>:<epoch>"`` -> (node, epoch); ``None`` for anything else."""
    node, _, epoch = value.rpartition(":")
    return (node, int(epoch)) if node and epoch.isdigit() else None


class LeaseCore:
    """The lease state machine. Pure: times come in as arguments (monotonic seconds)."""

    def __init__(
        self, node_id: str, timing: LeaseTiming, now: float, rand: Callable[[], float]
    ) -> None:
        self.node_id = node_id
        self.timing = timing
        self._rand = rand
        self.role = Role.STANDBY
        self.epoch: int | None = None  # ours when leading, else the holder's as last read
        self.leader_id: str | None = None
        self.token: str | None = None  # our value in Redis, while it may be there
        self.seen_epoch = 0
        self.next_at = now
        self._sent_at = now  # send time of the last successful acquire/renew
        self._expires_by = now  # when our value is surely gone from Redis

    @property
    def fence_deadline(self) -> float:
        return self._sent_at + self.timing.fence_after

    def is_leader(self, now: float) -> bool:
        return self.role is Role.LEADER and now < self.fence_deadline

    def next_op(self) -> Op:
        if self.role is Role.STANDBY:
            return Op.ACQUIRE
        return Op.RENEW if self.role is Role.LEADER else Op.RELEASE

    def wake_at(self) -> float:
        """When the driver must act next: the next call, or the fence if that comes first."""
        if self.role is Role.LEADER:
            return min(self.next_at, self.fence_deadline)
        return self.next_at

    def op_deadline(self, now: float) -> float:
        """A Redis call started now must be abandoned by this time."""
        end = now + self.timing.op_timeout
        return min(end, self.fence_deadline) if self.role is Role.LEADER else end

    def check(self, now: float) -> StepDown | None:
        """Self-fence: step down once the last good renewal is ``fence_after`` old."""
        if self.role is Role.LEADER and now >= self.fence_deadline:
            return self.step_down(now, StepDown.FENCED)
        return None

    def step_down(self, now: float, reason: StepDown) -> StepDown | None:
        """Stop leading (``None`` if we were not leading). Our value stays to be released."""
        if self.role is not Role.LEADER:
            return None
        self.role, self.next_at = Role.DEPOSED, now
        return reason

    def acquired(self, sent_at: float, now: float, epoch: int) -> int:
        self.role, self.epoch, self.leader_id = Role.LEADER, epoch, self.node_id
        self.seen_epoch = max(self.seen_epoch, epoch)
        self.token = f"{self.node_id}:{epoch}"
        self._confirmed(sent_at, now)
        return epoch

    def held(self, now: float, value: str) -> None:
        """Acquisition refused: ``value`` is the holder's (read in the same script)."""
        parsed = parse_value(value)
        self.leader_id, self.epoch = parsed if parsed else (None, None)
        if parsed:
            self.seen_epoch = max(self.seen_epoch, parsed[1])
        if parsed and parsed[0] == self.node_id:
            # Our own earlier acquisition whose reply we never got: not a lease we can lead
            # with (we do not know when it started), so release it and compete afresh.
            self.role, self.token, self._expires_by = Role.DEPOSED, value, now + self.timing.ttl
            self.next_at = now
            return
        self.next_at = now + self._poll_interval()

    def renewed(self, sent_at: float, now: float) -> None:
        self._confirmed(sent_at, now)

    def lost(self, now: float) -> StepDown | None:
        """The renewal found another value (or none): nothing of ours is left to release."""
        reason = self.step_down(now, StepDown.LOST)
        self._to_standby(now)
        return reason

    def released(self, now: float) -> None:
        self._to_standby(now)

    def failed(self, op: Op, now: float) -> None:
        """A Redis error or timeout: retry soon; the fence deadline still stands."""
        if op is Op.RENEW:
            self.next_at = now + self.timing.retry_every
        elif op is Op.RELEASE and now >= self._expires_by:
            self._to_standby(now)  # it has expired by now anyway
        else:
            if op is Op.ACQUIRE:
                self.leader_id = self.epoch = None
            self.next_at = now + self._poll_interval()

    def _confirmed(self, sent_at: float, now: float) -> None:
        self._sent_at = sent_at
        self._expires_by = now + self.timing.ttl
        self.next_at = sent_at + self.timing.renew_every

    def _to_standby(self, now: float) -> None:
        self.role, self.token = Role.STANDBY, None
        self.leader_id = self.epoch = None
        self.next_at = now

    def _poll_interval(self) -> float:
        # Jitter spreads the standbys' attempts so they do not arrive in lockstep.
        spread = self.timing.jitter * (2 * self._rand() - 1)
        return self.timing.poll_every * (1 + spread)


class Lease:
    """Competes for the lease in Redis and leads while it holds it.

    ``run()`` loops until ``release()`` (or cancellation); Redis errors and timeouts count
    as failed attempts and never end it. ``on_elected(epoch)`` and ``on_deposed(reason)``
    are called synchronously on every transition, so the owner can start or stop its
    upstream at once. ``node_id`` must be unique in the cluster. Use as ``async with``
    (or call ``aclose()``) to close the Redis connections.
    """

    def __init__(
        self,
        url: str,
        node_id: str,
        *,
        prefix: str = "tickcast",
        timing: LeaseTiming | None = None,
        on_elected: Callable[[int], None] | None = None,
        on_deposed: Callable[[StepDown], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._timing = timing or LeaseTiming.for_ttl()
        self._core = LeaseCore(
            node_id, self._timing, time.monotonic(), (rng or random.Random()).random
        )
        self._keys = list(lease_keys(prefix))
        self._on_elected = on_elected or (lambda epoch: None)
        self._on_deposed = on_deposed or (lambda reason: None)
        # No retry: a re-sent renewal could land after our fence deadline; the loop retries.
        self._redis: Redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=self._timing.op_timeout,
            socket_connect_timeout=self._timing.op_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        sources = zip(Op, (_ACQUIRE, _RENEW, _RELEASE), strict=True)
        self._scripts = {op: self._redis.register_script(src) for op, src in sources}
        self._wake = asyncio.Event()
        self._closing = False
        self._running: asyncio.Event | None = None  # set when run() has finished

    @property
    def is_leader(self) -> bool:
        """Leading right now: re-checks the fence deadline, so it turns false on time even
        before the driver task gets to run (after a stall)."""
        return self._core.is_leader(time.monotonic())

    @property
    def epoch(self) -> int | None:
        """Our epoch while leading, else the holder's as last read from Redis."""
        return self._core.epoch

    @property
    def leader_id(self) -> str | None:
        """This node while leading, else the holder as last read (``None``: free/unknown)."""
        return self._core.leader_id

    @property
    def token(self) -> str | None:
        """``"<node>:<epoch>"`` while leading: the value writes must find in the lease key."""
        return self._core.token if self.is_leader else None

    @property
    def role(self) -> Role:
        return self._core.role

    async def run(self) -> None:
        if self._running is not None:
            raise RuntimeError("Lease.run() is already running or has run")
        self._running = asyncio.Event()
        try:
            while not self._closing:
                if reason := self._core.check(time.monotonic()):
                    self._deposed(reason)
                wake = self._core.wake_at()
                if wake > time.monotonic():
                    await self._sleep_until(wake)
                else:
                    await self._step()
        finally:
            why = StepDown.RELEASED if self._closing else StepDown.STOPPED
            if reason := self._core.step_down(time.monotonic(), why):
                self._deposed(reason)
            self._running.set()

    async def release(self) -> None:
        """Stop competing, stop leading, then delete our value from Redis if it is still
        ours, so a standby takes over at its next poll instead of after the TTL."""
        self._closing = True
        self._wake.set()
        if self._running is not None:
            # run() ends after its current call, which is bounded by op_timeout.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timing.op_timeout * 2 + 0.1):
                    await self._running.wait()
        if reason := self._core.step_down(time.monotonic(), StepDown.RELEASED):
            self._deposed(reason)
        if self._core.role is Role.DEPOSED:
            await self._step()

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _sleep_until(self, when: float) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(when - time.monotonic()):
                await self._wake.wait()
        except TimeoutError:
            _raise_if_cancelling()  # a cancel that met the deadline must not be lost

    async def _step(self) -> None:
        """One Redis call for the current role, bounded, its outcome fed to the core."""
        core, op = self._core, self._core.next_op()
        sent_at = time.monotonic()
        args: list[Any] = [core.token]
        if op is Op.ACQUIRE:
            args = [core.node_id, self._ttl_ms(), core.seen_epoch]
        elif op is Op.RENEW:
            args.append(self._ttl_ms())
        try:
            async with asyncio.timeout(max(core.op_deadline(sent_at) - sent_at, 0.0)):
                reply = await self._scripts[op](keys=self._keys, args=args)
        except (RedisError, OSError) as exc:  # builtin TimeoutError is an OSError
            # A call cut short by our own cancellation can surface as a connection error
            # (the client drops the connection it was reading from): a stop, not a failure.
            _raise_if_cancelling()
            log.log(logging.WARNING if op is Op.RENEW else logging.DEBUG, "lease %s: %r", op, exc)
            core.failed(op, time.monotonic())
            return
        now = time.monotonic()
        if op is Op.ACQUIRE and reply[0] == 1:
            epoch = core.acquired(sent_at, now, int(reply[1]))
            log.info("lease acquired: %s epoch %d", core.node_id, epoch)
            self._on_elected(epoch)
        elif op is Op.ACQUIRE:
            core.held(now, str(reply[1]))
        elif op is Op.RENEW and reply == 1:
            core.renewed(sent_at, now)
        elif op is Op.RENEW:
            if reason := core.lost(now):
                self._deposed(reason)
        else:
            core.released(now)

    def _deposed(self, reason: StepDown) -> None:
        # A release (shutdown) is routine; losing the lease is what an operator must see.
        level = logging.INFO if reason is StepDown.RELEASED else logging.WARNING
        log.log(level, "lease: %s stepped down (%s)", self._core.node_id, reason.value)
        self._on_deposed(reason)

    def _ttl_ms(self) -> int:
        return round(self._timing.ttl * 1000)


def _raise_if_cancelling() -> None:
    """Re-raise a cancellation of the current task that an error in its place would hide:
    the task would otherwise go on running after its owner asked it to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
