"""One client's session: subscriptions, ops, conflation, throttling and limits.

No I/O and no ``await``: the session writes pre-encoded bytes to a ``Transport`` when it
can take them and otherwise keeps what it must deliver by the rule of each stream's kind
(SPEC §12): the latest tick per symbol (conflation), the latest update of each candle
(every closed candle kept), the latest top of a book, a book's diffs merged into one
(``HeldDepth``: exact, never dropped), and trades in a bounded queue whose oldest are
dropped with a ``gap`` message saying how many. A slow client thus costs bounded memory and never an
unbounded queue. Timers come from an injected scheduler.

The one exception to conflation is a resume: the ticks a reconnecting client missed must
all arrive, in order, and then live ones with no gap. They wait in a ``Backlog`` that the
transport's flow control drains like any other output, bounded in length.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from collections.abc import Set as AbstractSet

import orjson

from tickcast.edge.backlog import Backlog
from tickcast.edge.clientops import ClientOps
from tickcast.edge.contracts import (
    Cancellable,
    Coalescer,
    Limits,
    Scheduler,
    Transport,
    TransportKind,
)
from tickcast.edge.heldbook import HeldDepth
from tickcast.edge.ops import OpOutcome, OpRateLimit
from tickcast.edge.tokens import Grant
from tickcast.edge.wire import Wire, WireFormat, encode_message
from tickcast.errors import CloseReason
from tickcast.messages.book import Depth
from tickcast.messages.kline import Kline
from tickcast.messages.tickers import Tickers
from tickcast.messages.trade import Trade

__all__ = ["Backlog", "Limits", "OpOutcome", "Session", "Transport", "TransportKind"]

# Control replies wait here while the transport is paused; ops are rate limited, so
# reaching this means the client sends ops and never reads.
MAX_PENDING_CONTROL = 256
# The longest ``throttle_ms`` a client may ask for. Without a bound a client could pin its
# session (and, through a timer, its connection) for decades after it has gone.
MAX_THROTTLE_MS = 60_000
# A backlog is written in pieces of at most this many bytes (or a quarter of the client's
# buffer limit), so that one piece never carries the output past the limit.
BACKLOG_PIECE_BYTES = 32 * 1024


def _nothing_held() -> None:
    """``settle`` for a session with no fan-out holding messages for it."""


def slot_of(wire: Wire) -> Hashable:
    """What a held message replaces when a newer one comes (SPEC §12): a tick, the last
    tick of its symbol; a candle update, the last update of the same candle, so that a
    closed candle is never replaced by the next candle's first update."""
    message = wire.message
    if type(message) is Kline:
        return (message.key, message.open_time)
    return message.key


class Session(ClientOps):
    """The state of one connected client; its answers to ops are ``ClientOps``'."""

    # One per connection, tens of thousands per process: slots save a dict each.
    __slots__ = (
        "_acked",
        "_backlog",
        "_blocked_buffered",
        "_blocked_since",
        "_clock",
        "_coalescer",
        "_control",
        "_flush_due",
        "_flush_timer",
        "_last_sent",
        "_missed",
        "_op_rate",
        "_pending",
        "_schedule",
        "_settle",
        "_stuck_since",
        "_throttle",
        "_trades",
        "awaiting_auth",
        "closed",
        "conflated",
        "delivered",
        "direct",
        "dropped",
        "fmt",
        "grant",
        "id",
        "kind",
        "limits",
        "on_close",
        "opened_at",
        "outbuf",
        "ready",
        "served",
        "symbols",
        "transport",
        "wants_status",
    )

    def __init__(
        self,
        session_id: int,
        transport: Transport,
        served: AbstractSet[str],
        *,
        limits: Limits,
        clock: Callable[[], float],
        schedule: Scheduler,
        throttle_ms: float = 0.0,
        wants_status: bool = False,
        coalescer: Coalescer | None = None,
        settle: Callable[[], None] | None = None,
    ) -> None:
        """``settle``: the fan-out's, called before anything changes this session, so
        that the messages the fan-out still holds for it go first (``Edge.publish``)."""
        self.id = session_id
        self.transport = transport
        self.kind: TransportKind = transport.kind
        self.fmt: WireFormat = transport.wire_format
        self.served = served
        self.limits = limits
        self.symbols: set[str] = set()
        self.wants_status = wants_status
        # What the connection's token grants (None: no token, or the shared one), and
        # whether it still owes an ``auth`` op (see ``tickcast.edge.access``).
        self.grant: Grant | None = None
        self.awaiting_auth = False
        self.closed: CloseReason | None = None
        # Told of every close, whoever decided it (the edge counts them by reason).
        self.on_close: Callable[[Session, CloseReason], None] | None = None
        self.delivered = 0
        self.conflated = 0
        # Trades dropped from the queue of a client that could not take them.
        self.dropped = 0
        self._clock = clock
        self.opened_at = clock()  # on the session's clock: how long it lasted, at its end
        self._schedule = schedule
        self._throttle = throttle_ms / 1000.0
        # When each stream was last written, under a throttle alone.
        self._last_sent: dict[str, float] | None = {} if self._throttle else None
        self._pending: dict[Hashable, Wire] = {}
        # Trades waiting for the client (never conflated; bounded by ``trade_queue``) and
        # how many of each stream were dropped since its last ``gap`` message. Made on
        # first use: most clients never wait.
        self._trades: deque[Wire] | None = None
        self._missed: dict[str, int] | None = None
        self._control: list[bytes] = []
        self._flush_timer: Cancellable | None = None
        self._flush_due = math.inf
        self._backlog: Backlog | None = None
        self._blocked_since: float | None = None
        self._blocked_buffered = 0
        self._acked = -1
        self._stuck_since: float | None = None
        self._op_rate = OpRateLimit(limits.ops_per_second, limits.ops_burst, clock())
        # The fan-out's fast path (see Edge.publish): while ``ready``, a message's bytes go
        # with no further checks to ``direct``, the socket's own write. ``outbuf`` holds
        # what waits for the end of a coalescing window (made when needed).
        raw_write: Callable[[bytes], object] | None = getattr(transport, "raw_write", None)
        self.direct: Callable[[bytes], object] = raw_write or transport.write
        self.outbuf: list[bytes] | None = None
        self._coalescer = coalescer
        self._settle = settle if settle is not None else _nothing_held
        self.ready = False
        self._refresh_ready()

    # -- fan-out side -------------------------------------------------------------

    def _refresh_ready(self) -> None:
        self.ready = (
            self.closed is None
            and not self._throttle
            and not self._pending
            and not self._trades
            and not self._missed
            and not self._control
            and self._backlog is None
            and self.transport.writable
        )

    def _emit(self, data: bytes) -> None:
        """Write ``data`` in order with everything before it: behind the messages the
        fan-out still holds, behind its bytes in ``outbuf``, and coalesced when a window
        is set."""
        self._settle()
        if self.outbuf:
            self.outbuf.append(data)
        elif self._coalescer is None:
            self.transport.write(data)
        else:
            self._coalescer.add(self)
            self.outbuf = [data]

    def flush_out(self) -> None:
        """Write the bytes waiting in ``outbuf`` in one write (at the end of the fan-out's
        step, or of the coalescing window)."""
        outbuf = self.outbuf
        if not outbuf:
            return
        if self.fmt == "json":
            # A server that frames each write as one WebSocket message (generic ASGI):
            # one message per write, never two JSON documents in one message.
            self.outbuf = None
            for data in outbuf:
                if self.closed is None:
                    self.transport.write(data)
            return
        data = outbuf[0] if len(outbuf) == 1 else b"".join(outbuf)
        self.outbuf = None
        if self.closed is None:
            self.transport.write(data)

    def lost(self) -> None:
        """The connection is gone (the endpoint will detach us): stop writing to it, drop
        what is held and cancel the timers, which would otherwise keep this session (and
        through it the connection) alive until they fire."""
        self.ready = False
        if self.closed is None:
            self.closed = CloseReason.GONE
        self._drop_held()

    def _drop_held(self) -> None:
        self._pending.clear()
        self._trades = self._missed = None
        self._control.clear()
        self.outbuf = None
        self._backlog = None
        self._cancel_flush_timer()

    def _cancel_flush_timer(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
            self._flush_due = math.inf

    def offer(self, wire: Wire) -> None:
        """A new message for one of this session's streams: write it, or keep it by its
        kind's rule (see the module docstring) until the client can take it."""
        if self.ready:
            self._emit(wire.get(self.fmt))
            self.delivered += 1
            return
        if self.closed is not None:
            return
        if self._backlog is not None:
            self._queue_behind_backlog(wire)
            return
        if type(wire.message) is Trade:
            self._offer_trade(wire)
            return
        key = wire.message.key
        now = self._clock()
        if self._throttle and (due := self._due(key)) > now:
            self._hold(wire)
            self._arm_flush(due)
            return
        if (
            (self._pending or self._trades)
            and self._throttle
            and not self._control
            and self.transport.writable
        ):
            # Under a throttle, held ticks may only be waiting for their own window, which
            # must not hold this symbol back: whatever is due goes now, in seq order.
            self._hold(wire)
            self._flush_pending()
            return
        if self._pending or self._trades or self._control or not self.transport.writable:
            self._hold(wire)
            if not self.transport.writable:
                self._mark_blocked(now)
            self.ready = False
            return
        self._send_tick(wire, now)

    def _offer_trade(self, wire: Wire) -> None:
        """A trade is never throttled nor conflated: written now when nothing is held
        before it, else queued behind what is, up to ``trade_queue`` trades; past that the
        oldest is dropped and counted for the ``gap`` message its stream gets next."""
        blocked = not self.transport.writable
        if not (
            self._trades
            or self._missed
            or self._control
            or blocked
            or (self._pending and not self._throttle)
        ):
            self._send_tick(wire, self._clock())
            return
        trades = self._trades
        if trades is None:
            trades = self._trades = deque()
        trades.append(wire)
        if len(trades) > self.limits.trade_queue:
            lost = trades.popleft().message.key
            missed = self._missed
            if missed is None:
                missed = self._missed = {}
            missed[lost] = missed.get(lost, 0) + 1
            self.dropped += 1
        if blocked:
            self._mark_blocked(self._clock())
        self.ready = False
        if not blocked and not self._control and not self._pending:
            self._flush_pending()

    def _due(self, symbol: str) -> float:
        """When ``symbol`` may next be sent under the throttle; its first tick at once,
        however long the window (a sentinel "long ago" would not survive a huge one)."""
        last = None if self._last_sent is None else self._last_sent.get(symbol)
        return -math.inf if last is None else last + self._throttle

    def sent_now(self, symbols: Iterable[str]) -> None:
        """The latest ticks of ``symbols`` were just written outside ``offer`` (an SSE
        stream's opening snapshot, a ``reset``): under a throttle they are the symbols'
        last send, so their next tick waits out the window (latest value wins)."""
        if self._last_sent is not None:
            now = self._clock()
            for symbol in symbols:
                self._last_sent[symbol] = now

    def _hold(self, wire: Wire) -> None:
        slot = slot_of(wire)
        held = self._pending.get(slot)
        message = wire.message
        if held is not None and type(message) is Depth:
            # A book's diffs are merged behind what is held of it, never replaced.
            if type(held) is not HeldDepth:
                held = self._pending[slot] = HeldDepth(held)
            try:
                held.add(message)
            except ValueError:
                # The hub's diffs always follow each other; should one not, the client
                # gets it as it is and can tell the gap by its update ids.
                self._pending[slot] = wire
            return
        if held is not None:
            self.conflated += 1
            if type(message) is Tickers and type(held.message) is Tickers:
                # ``!tickers``: merged per symbol, the latest of each (SPEC §12).
                wire = Wire(held.message.merged(message))
        self._pending[slot] = wire

    def drop_held(self, keys: Iterable[str]) -> None:
        """Forget what is held of the streams ``keys`` (a book that broke: nothing more may
        be served from it)."""
        self._settle()
        gone = set(keys)
        for slot in [s for s, w in self._pending.items() if w.message.key in gone]:
            del self._pending[slot]

    def _send_tick(self, wire: Wire, now: float) -> None:
        self._emit(wire.get(self.fmt))
        self.delivered += 1
        if self._last_sent is not None:
            self._last_sent[wire.message.key] = now
        if self.transport.buffered() > self.limits.client_buffer_bytes:
            self.close(CloseReason.BUFFER_FULL)

    def flush(self) -> None:
        """Write what is held, oldest first, as far as the transport takes it.

        Called when the transport resumes and when the throttle timer fires; an armed
        timer stays armed (and cancellable) when the transport calls.
        """
        self._settle()
        if self.closed is not None or not self.transport.writable:
            return
        self._blocked_since = None
        while self._control and self.transport.writable:
            self._emit(self._control.pop(0))
        if self._backlog is not None:
            self._drain_backlog()
        # A gap still owed counts too: the trades it accounts for may all be gone (their
        # stream unsubscribed) while the dropped ones' stream goes on.
        if (self._pending or self._trades or self._missed) and self._backlog is None:
            self._flush_pending()
        if self.closed is None:
            self._refresh_ready()

    def replay(self, backlog: Backlog) -> None:
        """Send ``backlog`` (a resume's missed ticks) ahead of any live tick, paced by the
        transport; call before subscribing, so that live ticks queue behind it. Returns
        to the fast path once the client has caught up (see ``_drain_backlog``)."""
        self._settle()
        if self.closed is None and backlog:
            self._backlog = backlog
            self.ready = False
            self.flush()

    def _queue_behind_backlog(self, wire: Wire) -> None:
        assert self._backlog is not None
        if not self._backlog.add(wire):
            # It fell further behind than a resume can carry: it reads slower than ticks
            # arrive, and conflating would break the promise of every tick, in order.
            self.close(CloseReason.BUFFER_FULL)
            return
        if self.transport.writable and not self._control:
            self._drain_backlog()
            self._refresh_ready()

    def _drain_backlog(self) -> None:
        """Write backlog ticks while the transport takes them; the rest waits for its
        resume, the same flow control as live ticks (a resume written in one go would
        put the client over its buffer limit).

        The session returns to the fast path only once the client has caught up: the
        backlog is empty and nothing was pending in the transport before the last write.
        Leaving any earlier, with the buffers still full of backlog, the next live ticks
        would meet a paused socket and be conflated: a gap right after the resume.
        """
        backlog = self._backlog
        if backlog is None:
            return
        # Bytes waiting for the coalescer go first; the backlog bypasses the coalescer,
        # whose buffer the transport's flow control does not see.
        self.flush_out()
        # In "json" each write is one WebSocket message: one tick per write there.
        piece = 0 if self.fmt == "json" else BACKLOG_PIECE_BYTES
        piece = min(piece, self.limits.client_buffer_bytes // 4)
        last = 0
        while backlog and self.transport.writable and self.closed is None:
            data, count = backlog.take(self.fmt, piece)
            self.transport.write(data)
            self.delivered += count
            last = len(data)
        if not backlog and self._backlog is backlog and self.transport.buffered() <= last:
            self._backlog = None

    def _flush_pending(self) -> None:
        """Write what is held and due, in seq order: the ``gap`` messages of trades that
        were dropped (older than any trade still queued), then held ticks and candles
        merged with queued trades."""
        now = self._clock()
        if self._missed:
            missed, self._missed = self._missed, None
            for stream, count in missed.items():
                self._emit_gap(stream, count)
        later: float | None = None
        due: list[tuple[int, Hashable, Wire]] = []
        for slot, wire in self._pending.items():
            if self._throttle and (at := self._due(wire.message.key)) > now:
                later = at if later is None else min(later, at)
                continue
            due.append((wire.message.seq, slot, wire))
        due.sort(key=lambda item: item[0])
        trades = self._trades or deque()
        index = 0
        while (index < len(due) or trades) and self.transport.writable and self.closed is None:
            if trades and (index == len(due) or trades[0].message.seq < due[index][0]):
                self._send_tick(trades.popleft(), now)
                continue
            _, slot, wire = due[index]
            index += 1
            del self._pending[slot]
            self._send_tick(wire, now)
        if not trades:
            self._trades = None
        if later is not None and self.closed is None:  # a close cancelled the timer
            self._arm_flush(later)

    def _emit_gap(self, stream: str, missed: int) -> None:
        message = orjson.dumps({"type": "gap", "stream": stream, "missed": missed})
        self._emit(encode_message(self.fmt, message, "gap", None))

    def _arm_flush(self, due: float) -> None:
        """Make sure a flush runs at ``due``: a timer armed for later is moved earlier, so
        each held symbol goes out when its own window ends, not when another's does."""
        if self._flush_timer is not None:
            if self._flush_due <= due:
                return
            self._flush_timer.cancel()
        self._flush_due = due
        self._flush_timer = self._schedule(max(0.0, due - self._clock()), self._on_flush_timer)

    def _on_flush_timer(self) -> None:
        self._flush_timer = None
        self._flush_due = math.inf
        self.flush()

    def paused(self) -> None:
        """The transport's flow control stopped accepting writes."""
        self.ready = False
        self._mark_blocked(self._clock())

    def _mark_blocked(self, now: float) -> None:
        if self._blocked_since is None:
            self._blocked_since = now
            self._blocked_buffered = self.transport.buffered()

    def check(self, now: float) -> CloseReason | None:
        """The periodic slow-client verdict: close a client that accepted nothing for too
        long, or whose pending output passed the limit."""
        if self.closed is not None:
            return None
        if self.transport.writable:
            self._blocked_since = None
        else:
            buffered = self.transport.buffered()
            if self._blocked_since is None or buffered < self._blocked_buffered:
                # Still paused, but the peer took bytes since the last look: it reads
                # slowly (conflation serves it), it has not stopped.
                self._blocked_since = now
            self._blocked_buffered = buffered
            if now - self._blocked_since >= self.limits.slow_client_timeout:
                return CloseReason.SLOW_CLIENT
        if self.pending_bytes() > self.limits.client_buffer_bytes:
            return CloseReason.BUFFER_FULL
        return None

    def check_progress(self, now: float) -> CloseReason | None:
        """The kernel's verdict, for a client the fan-out still writes to: bytes are
        outstanding and the peer has acknowledged none of them for the timeout.

        Flow control alone notices a client that stopped reading only once the socket
        buffers are full, which at a few KB/s takes minutes; the acknowledged-bytes
        counter stops moving at once.
        """
        progress_of = getattr(self.transport, "progress", None)
        progress = None if progress_of is None else progress_of()
        if progress is None or self.closed is not None:
            return None
        acked, outstanding = progress
        if outstanding <= 0:
            self._stuck_since = now  # nothing to acknowledge is not a stall
            return None
        if acked != self._acked:
            # No acknowledgement since this check, at least: the clock starts here.
            self._acked = acked
            self._stuck_since = now
            return None
        if (
            self._stuck_since is not None
            and now - self._stuck_since >= self.limits.slow_client_timeout
        ):
            return CloseReason.SLOW_CLIENT
        return None

    def pending_bytes(self) -> int:
        held = sum(len(w.get(self.fmt)) for w in self._pending.values())
        if self._trades:
            held += sum(len(w.get(self.fmt)) for w in self._trades)
        return self.transport.buffered() + held + sum(map(len, self._control))

    @property
    def pending_count(self) -> int:
        return len(self._pending) + len(self._trades or ())

    def close(self, reason: CloseReason) -> None:
        if self.closed is not None:
            return
        self.closed = reason
        self.ready = False
        self._drop_held()
        self.transport.close(reason)
        if self.on_close is not None:
            self.on_close(self, reason)

    def unsubscribed(self, keys: Iterable[str]) -> None:
        """Forget the streams ``keys``, with anything still held for them: once the client
        has its unsubscribe ack it must not get another message of those streams."""
        self._settle()
        gone = set(keys)
        for key in gone:
            self.symbols.discard(key)
            if self._last_sent is not None:
                self._last_sent.pop(key, None)
        for slot in [s for s, w in self._pending.items() if w.message.key in gone]:
            del self._pending[slot]
        if self._trades:
            self._trades = deque(w for w in self._trades if w.message.key not in gone) or None
        if self._missed:
            self._missed = {k: n for k, n in self._missed.items() if k not in gone} or None
        if self._backlog is not None:
            self._backlog.discard(gone)
            if not self._backlog:
                self._backlog = None
        if not self._pending and not self._trades and not self._control and self.closed is None:
            self._refresh_ready()

    # -- control messages ---------------------------------------------------------

    def send_message(self, message: dict[str, object]) -> None:
        """Send a control message (ack, error, status, pong) in order with the ticks.

        Replies go ahead of held ticks: those are conflated values waiting for the client
        or for their throttle window, and a reply must not wait out a window. Ticks offered
        after the reply (a subscribe's snapshot) still come after it.
        """
        self.send_json(orjson.dumps(message), str(message["type"]))

    def send_json(self, data: bytes, kind: str, event_id: int | None = None) -> None:
        """``send_message`` for a message already encoded (``kind`` names its SSE event)."""
        if self.closed is not None:
            return
        self._settle()
        wire = encode_message(self.fmt, data, kind, event_id)
        if self._control or not self.transport.writable:
            if len(self._control) >= MAX_PENDING_CONTROL:
                self.close(CloseReason.BUFFER_FULL)
                return
            self._control.append(wire)
            self.ready = False
            return
        self._emit(wire)

    def reset(self, message: bytes, last_seq: int) -> None:
        """Replace what this client holds with ``message`` (a ``reset`` with a snapshot):
        ticks still held for it, and a resume still being sent, belong to history that is
        gone."""
        if self.closed is not None:
            return
        self._settle()
        self._pending.clear()
        self._trades = self._missed = None
        self._backlog = None
        self.send_json(message, "reset", last_seq)
        self._refresh_ready()

    def _listening(self) -> None:
        self.wants_status = True

    def send_status(self, status: dict[str, object]) -> None:
        if self.wants_status:
            self.send_message(status)
