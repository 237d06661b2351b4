"""The Redis hub's keys and its one publish script: fencing, dedupe, seq and XADD in a single
atomic call. Pure: building the call's arguments and reading its reply need no I/O.

Every key carries the hash tag ``{prefix}`` so they all live in one slot (Redis Cluster runs
the script, which touches all of them, only if they do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tickcast.hub.base import Origin
from tickcast.messages.message import Message

__all__ = ["Origin", "RedisKeys"]


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """The hub's keys under ``prefix``. ``lease`` is owned by the lease module: the hub only
    reads it, inside the publish script, to fence writes."""

    prefix: str = "tickcast"

    def _key(self, name: str) -> str:
        return f"{{{self.prefix}}}:{name}"

    @property
    def stream(self) -> str:
        return self._key("stream")

    @property
    def latest(self) -> str:
        return self._key("latest")

    @property
    def meta(self) -> str:
        return self._key("meta")

    @property
    def lease(self) -> str:
        return self._key("lease")

    @property
    def dedupe(self) -> str:
        return self._key("dedupe")

    @property
    def listing(self) -> str:
        return self._key("listing")

    @property
    def leader_rest(self) -> str:
        """The REST base of the exchange the leader serves (``<source> <url>``), for the
        other nodes' candle history when that is a simulator only the leader runs."""
        return self._key("leader-rest")

    def script_keys(self) -> list[str]:
        """KEYS of the publish script, in the order the script reads them."""
        return [self.stream, self.latest, self.meta, self.lease, self.dedupe]


# Fields of a stream entry.
F_TICK: Final = b"t"  # the tick's JSON, encoded once by the publisher
F_SYMBOL: Final = b"s"
F_INCARNATION: Final = b"i"  # the meta incarnation the entry was written under
F_PREV: Final = b"p"  # the seq of the entry written just before it: gap detection
F_TIME: Final = b"w"  # Redis's clock (ms) at XADD: reader lag in ms

# ARGV: fence, maxlen, incarnation candidate, then ARGS_PER_TICK values per tick.
ARGS_PER_TICK: Final = 5

# Why each part is here:
# - Fencing: the lease must hold this node's id AND epoch, checked by Redis in the same
#   atomic call as the write, so a deposed leader's late batch is refused (Kleppmann).
# - Seq: the publisher stamps seq (it is inside the JSON, encoded once in Python); the
#   script accepts it only above meta.seq, so a write retried after a timeout that had in
#   fact been applied is dropped ("stale"), and the stream id "<seq>-0" always increases.
# - Dedupe by upstream order: absorbs the same update published twice (overlap, retry).
# - "p" (the previous entry's seq) lets every reader prove it missed nothing: an entry
#   whose "p" is not the reader's position means entries were trimmed away or lost.
# - The incarnation is created here too when missing (FLUSHALL while running), so every
#   entry names the history it belongs to. XADD is pcall'ed: a script error does not roll
#   back what it already wrote, so it must not fail halfway through a batch.
# - Numbers are compared as Lua doubles: exact for seqs and orders below 2^53.
# - The reply names what became of each tick ("a" applied, "d" duplicate, "s" stale), the
#   seq the first applied entry follows and the entries' time: enough for the leader to
#   know exactly which stream entries this call wrote, and deliver them without reading
#   them back (``redis_publish.confirmed_entries``).
PUBLISH_LUA: Final = """
if redis.call('GET', KEYS[4]) ~= ARGV[1] then
  return {-1, 0, 0, 0, redis.call('HGET', KEYS[3], 'seq') or '0', '', '0', '0', ''}
end
local inc = redis.call('HGET', KEYS[3], 'incarnation')
if not inc then
  inc = ARGV[3]
  redis.call('HSET', KEYS[3], 'incarnation', inc)
end
local last = redis.call('HGET', KEYS[3], 'seq') or '0'
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local applied, dup, stale = 0, 0, 0
local first, fates = last, {}
for i = 4, #ARGV, 5 do
  local seq, symbol, field, order, payload = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
  local seen = false
  if field ~= '' then
    local prev = redis.call('HGET', KEYS[5], field)
    seen = prev and tonumber(prev) >= tonumber(order)
  end
  if seen then
    dup = dup + 1
    fates[#fates + 1] = 'd'
  elseif tonumber(seq) <= tonumber(last) then
    stale = stale + 1
    fates[#fates + 1] = 's'
  else
    local r = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], seq .. '-0',
      't', payload, 's', symbol, 'i', inc, 'p', last, 'w', now)
    if type(r) == 'table' and r.err then
      stale = stale + 1
      fates[#fates + 1] = 's'
    else
      fates[#fates + 1] = 'a'
      redis.call('HSET', KEYS[2], symbol, payload)
      redis.call('HSET', KEYS[3], 'seq', seq)
      if field ~= '' then
        redis.call('HSET', KEYS[5], field, order)
      end
      last = seq
      applied = applied + 1
    end
  end
end
return {1, applied, dup, stale, last, inc, first, now, table.concat(fates)}
"""


APPLIED: Final = "a"  # a tick's fate in ``PublishResult.fates``; "d" duplicate, "s" stale


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What the script did with one batch: counts, the stream's head after it, and for
    each tick in order its fate (``APPLIED``, "d", "s"). The applied ticks were written as
    consecutive entries, the first following ``first_prev``, all at ``written_ms``."""

    fenced: bool
    applied: int
    duplicates: int
    stale: int
    meta_seq: int
    incarnation: str
    first_prev: int = 0
    written_ms: int = 0
    fates: str = ""


def script_args(
    fence: str, maxlen: int, candidate: str, batch: Sequence[tuple[Message, Origin | None]]
) -> list[bytes | str | int]:
    """ARGV for one batch: each message is encoded once, here, and the same bytes are
    stored. The latest hash and the dedupe fields are keyed by the message's stream."""
    args: list[bytes | str | int] = [fence, maxlen, candidate]
    for message, origin in batch:
        key = message.key
        if origin is None:
            args += [message.seq, key, "", 0, message.encode()]
        else:
            args += [message.seq, key, origin.field(key), origin.order, message.encode()]
    return args


def parse_result(reply: object) -> PublishResult:
    """Read the script's reply ``{status, applied, dup, stale, meta_seq, incarnation,
    first_prev, written_ms, fates}``."""
    if not isinstance(reply, list) or len(reply) != 9:
        raise ValueError(f"unexpected publish script reply: {reply!r}")
    status, applied, dup, stale, meta_seq, incarnation, first_prev, written, fates = reply
    return PublishResult(
        fenced=int(status) < 0,
        applied=int(applied),
        duplicates=int(dup),
        stale=int(stale),
        meta_seq=int(meta_seq),
        incarnation=_text(incarnation),
        first_prev=int(first_prev),
        written_ms=int(written),
        fates=_text(fates),
    )


def fence_value(node_id: str, epoch: int) -> str:
    """The lease key's value while ``node_id`` holds it at ``epoch``."""
    return f"{node_id}:{epoch}"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
