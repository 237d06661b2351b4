"""The edge: every connected client's session, and the fan-out from the hub to them.

The hot path is ``publish``: for each message (a tick, a trade, a candle) it builds the wire
bytes once and hands them to each session subscribed to its stream, which writes them at
once or keeps them by the rule of the stream's kind (see ``tickcast.edge.session``).
No task and no ``await`` per client, so one slow client can delay nobody.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from tickcast.edge.access import Access, Admission, Denial, same_origin, shared_token_ok
from tickcast.edge.bookroute import BookRoutes, not_whole
from tickcast.edge.fastpath import RawTransport
from tickcast.edge.guard import HandshakeGuard, HeadLimits, trusted_networks
from tickcast.edge.ops import delisted_errors
from tickcast.edge.resume import ResumePoint, latest_of, missed_ticks, reset_message, snapshot
from tickcast.edge.session import Backlog, Limits, OpOutcome, Session, Transport
from tickcast.edge.wire import Wire, WireFormat, http_chunk
from tickcast.errors import CloseReason
from tickcast.hub.base import Hub
from tickcast.messages.book import BookStatus
from tickcast.messages.kline import Kline
from tickcast.messages.message import Message, is_event
from tickcast.messages.stream import ALL_TICKERS
from tickcast.messages.tick import Tick
from tickcast.messages.tickers import Tickers
from tickcast.messages.trade import Trade
from tickcast.served import Served, ServedChange
from tickcast.settings import Settings
from tickcast.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 0.5
_HEARTBEAT = b": heartbeat\n\n"
_HEARTBEAT_CHUNK = http_chunk(_HEARTBEAT)


class Feed(Protocol):
    """What the edge needs of its node: the hub it fans out from and the upstream state.

    A protocol, so the edge depends on the hub alone and never on the upstream package.
    """

    hub: Hub

    def on_upstream_change(
        self, listener: Callable[[dict[str, object]], None]
    ) -> Callable[[], None]: ...

    def upstream_status(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class ClientRequest:
    """What admission needs to know of a connecting client."""

    ip: str
    origin: str | None
    authorization: str | None
    token_param: str | None
    # The Host the request was sent to: an Origin naming it is the server's own page.
    host: str | None = None


class Edge:
    """Owns the sessions; subscribes to the hub and the upstream state."""

    def __init__(self, settings: Settings, node: Feed, served: Served | None = None) -> None:
        """``served``: what the node serves (with ``*``, the exchange's listing, which
        changes at run time); default what ``settings`` name."""
        self.settings = settings
        self.node = node
        self._served = Served.of(settings) if served is None else served
        # Every stream served, by key (SPEC §12): a symbol's ticker is its bare name. The
        # served set itself, changed in place by a new listing (sessions hold it too).
        self.served = self._served.keys
        self.limits = Limits(
            max_subscriptions=settings.max_subscriptions,
            ops_per_second=settings.ops_per_second,
            ops_burst=settings.ops_burst,
            client_buffer_bytes=settings.client_buffer_bytes,
            slow_client_timeout=settings.slow_client_timeout,
            trade_queue=settings.client_trade_queue,
        )
        self.sessions: dict[int, Session] = {}
        # The sessions again, by ``id % len``: the sweep visits one share per turn (see
        # ``_sweep``), without touching the others.
        shares = max(1, round(self.limits.slow_client_timeout / 4 / SWEEP_INTERVAL))
        self._sweep_shares: list[dict[int, Session]] = [{} for _ in range(shares)]
        # The request-head limits the server's HTTP protocol applies (see fastpath).
        self.guard = HandshakeGuard(
            HeadLimits(
                max_line_bytes=settings.max_header_line_bytes,
                max_head_bytes=settings.max_header_bytes,
                timeout=settings.handshake_timeout,
            ),
            max_per_ip=settings.max_connections_per_ip,
            trusted=trusted_networks(settings.trusted_proxies),
        )
        # stream key -> wire format -> sessions: each format is encoded once per message.
        self._by_key: dict[str, dict[WireFormat, dict[int, Session]]] = {s: {} for s in self.served}
        self.coalescer = (
            WriteCoalescer(settings.flush_ms / 1000, self._schedule) if settings.flush_ms else None
        )
        # Without a window, the messages of one event-loop step wait here, with the bytes
        # of each wire format and the sessions subscribed when it came, until
        # ``_end_step`` routes them (see publish).
        self._step: list[tuple[Wire, list[tuple[bytes, tuple[Session, ...]]], float]] = []
        self._step_scheduled = False
        self._direct_delivered = 0
        self._per_ip: Counter[str] = Counter()
        # Clients by kind ("ws", "sse"), on the fast path ("fast"), compressed ("ws_deflate").
        self._kinds: Counter[str] = Counter()
        self._session_ip: dict[int, str] = {}
        self._ids = itertools.count(1)
        # What every session is handed of the edge, bound once: a bound method made per
        # session would cost each one 60 bytes.
        self._callbacks = _Callbacks(self._schedule, self.settle, self._closed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: list[Callable[[], None]] = []
        self.closes: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self.fanout_seconds: list[float] = []
        self.on_fanout: Callable[[Message, float], None] | None = None
        self.books = BookRoutes()
        # Tokens: who may connect, each subject's connections, each token's expiry.
        self.access = Access(settings, self.unsubscribe)
        # ``!tickers``: the ticks of this step, sent as one message at its end.
        self._all_tickers = self._by_key[ALL_TICKERS]
        self._tickers_batch: list[Tick] = []

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._unsubscribe.append(self.node.hub.subscribe(self.publish))
        self._unsubscribe.append(self.node.hub.on_reset(self.reset_clients))
        self._unsubscribe.append(self.node.on_upstream_change(self.broadcast_status))
        self._unsubscribe.append(self._served.on_change(self.served_changed))
        # The node may have taken a listing since this edge was built (its start reads
        # the one a leader announced): no session can hold a stream yet.
        for key in self.served:
            self._by_key.setdefault(key, {})
        for key in [k for k in self._by_key if k not in self.served]:
            del self._by_key[key]
        self._tasks.append(asyncio.create_task(self._sweep(), name="edge-sweep"))
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="edge-heartbeat"))
        if (fetcher := self.access.fetcher()) is not None:
            self._tasks.append(asyncio.create_task(fetcher.run(), name="edge-jwks"))

    async def stop(self) -> None:
        """Close every client with 1001 and stop the timers."""
        for undo in self._unsubscribe:
            undo()
        self._unsubscribe.clear()
        for session in list(self.sessions.values()):
            session.close(CloseReason.SHUTDOWN)
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)

    # -- admission ----------------------------------------------------------------

    def admit_token(self, request: ClientRequest) -> Denial | None:
        """The bearer token check alone (``/status`` needs it too)."""
        if self.settings.token and not shared_token_ok(
            self.settings.token, request.authorization, request.token_param
        ):
            return Denial(
                401, "unauthorized", "a valid token is required", CloseReason.UNAUTHORIZED
            )
        return None

    def admit(self, request: ClientRequest) -> Denial | None:
        """``admission``'s refusal alone (None: admitted)."""
        return self.admission(request).denial

    def admission(self, request: ClientRequest, *, may_wait: bool = False) -> Admission:
        """Check token, origin and connection limits (SPEC §10); with a JWT, what it
        grants. ``may_wait``: the client may still authenticate by an op (``/ws``).

        With allowed origins set, a present Origin must be one of them or the server's
        own (the dashboard it serves: the Origin's host and port are the request's Host).
        An absent Origin is allowed: browsers always send one, so a request without it
        comes from a non-browser client, which an Origin check cannot protect against
        anyway (it could send any Origin); the token is what guards those.
        """
        s = self.settings
        if s.role == "ingest":
            # SPEC §7: an ingest node serves REST and health only; clients go to edges.
            return Admission(Denial(
                503, "ingest_only", "this node only ingests: connect to an edge node",
                CloseReason.TRY_AGAIN_LATER,
            ))  # fmt: skip
        admission = self.access.admit(request.authorization, request.token_param, may_wait=may_wait)
        if admission.denial is not None:
            return admission
        if (denial := self._limits(request)) is not None:
            return Admission(denial)
        return admission

    def _limits(self, request: ClientRequest) -> Denial | None:
        s = self.settings
        if (
            s.allowed_origins
            and request.origin is not None
            and request.origin not in s.allowed_origins
            and not same_origin(request.origin, request.host)
        ):
            return Denial(403, "forbidden_origin", "origin not allowed", CloseReason.UNAUTHORIZED)
        if len(self.sessions) >= s.max_connections:
            return Denial(503, "too_many_connections", "server full", CloseReason.TRY_AGAIN_LATER)
        # Connections from the same address whose request head is still arriving count
        # too: otherwise half-sent heads would hold descriptors outside the limit.
        held = self._per_ip[request.ip] + self.guard.in_handshake[request.ip]
        if s.max_connections_per_ip and held >= s.max_connections_per_ip:
            return Denial(
                429, "too_many_connections", "too many connections from your address",
                CloseReason.TRY_AGAIN_LATER,
            )  # fmt: skip
        return None

    # -- sessions -----------------------------------------------------------------

    def open(
        self,
        transport: Transport,
        ip: str,
        symbols: Iterable[str],
        *,
        throttle_ms: float = 0.0,
        wants_status: bool = False,
        snapshot: bool = True,
        replay: list[Message] | None = None,
        admission: Admission | None = None,
    ) -> Session:
        """Register a client; subscribe it to ``symbols`` and send their snapshot.

        ``replay`` (a resume's missed ticks, or a snapshot to pace) is sent first, in
        full and in order, as flow control allows; live ticks follow it with no gap.
        """
        symbols = list(symbols)
        session = Session(
            next(self._ids),
            transport,
            self.served,
            limits=self.limits,
            clock=time.monotonic,
            schedule=self._callbacks.schedule,
            throttle_ms=throttle_ms,
            wants_status=wants_status,
            coalescer=self.coalescer,
            settle=self._callbacks.settle,
        )
        self.sessions[session.id] = session
        self._sweep_shares[session.id % len(self._sweep_shares)][session.id] = session
        self._counted(session, 1)
        self._per_ip[ip] += 1
        self._session_ip[session.id] = ip
        transport.on_pause = session.paused
        transport.on_resume = session.flush
        session.on_close = self._callbacks.closed
        if admission is not None:
            self.access.attach(session, admission)
        self.counters["opened_" + session.kind] += 1
        if wants_status:
            session.send_message(self.node.upstream_status())
        if replay:
            session.replay(self._backlog(replay, symbols))
        # A replay (even an empty one) brings the client up to date: no snapshot on top.
        self.subscribe(session, symbols, snapshot=snapshot and replay is None)
        return session

    def apply(self, session: Session, outcome: OpOutcome) -> None:
        if outcome.close is not None:
            self.drop(session, outcome.close)
            return
        if outcome.token is not None:
            self.access.on_token(session, outcome.token_op, outcome.token, outcome.op_id)
            return
        if outcome.unsubscribe:
            self.unsubscribe(session, outcome.unsubscribe)
        if outcome.subscribe:
            self.subscribe(session, outcome.subscribe)

    def subscribe(self, session: Session, keys: Iterable[str], snapshot: bool = True) -> None:
        """Subscribe ``session`` to the streams ``keys``, each with its snapshot: the
        latest tick, the current candle (a trade stream has none: SPEC §12)."""
        latest: list[Message] = []
        hub = self.node.hub
        for key in keys:
            if key in session.symbols or key not in self.served:
                continue
            if key == ALL_TICKERS and self._tickers_batch:
                # The ticks of this step are in the hub's latest, so in the snapshot below:
                # the clients already subscribed get them now, the new one with its snapshot
                # alone (not twice).
                self._send_tickers()
            session.symbols.add(key)
            self._by_key[key].setdefault(session.fmt, {})[session.id] = session
            message = latest_of(hub, key, self.served) if snapshot else None
            if message is not None and not is_event(message):
                latest.append(message)
            elif snapshot and (status := not_whole(hub.books(), key)) is not None:
                session.send_message(status)
        # In seq order, like everything else a client receives: a client that tracks seq
        # can then tell a gap from the snapshot's order.
        for tick in sorted(latest, key=lambda t: t.seq):
            session.offer(Wire(tick))

    def resume(self, session: Session, symbols: list[str], point: ResumePoint) -> None:
        """Subscribe ``session`` to ``symbols`` as a client resuming after ``point``: it
        gets every tick it missed, paced, then live ticks; or, when it cannot resume, a
        ``reset`` message with a fresh snapshot (see ``tickcast.edge.resume``)."""
        hub = self.node.hub
        missed = missed_ticks(hub, symbols, point, self.served)
        if missed is None:
            self._reset(session, symbols)
        elif missed:
            session.replay(self._backlog(missed, symbols))
        self.subscribe(session, symbols, snapshot=False)

    def _backlog(self, replay: list[Message], symbols: list[str]) -> Backlog:
        # Room for what a resume can carry, again, of live ticks while it drains.
        limit = len(replay) + self.settings.history_size * max(1, len(symbols))
        return Backlog(replay, limit)

    def unsubscribe(self, session: Session, symbols: Iterable[str]) -> None:
        symbols = list(symbols)
        session.unsubscribed(symbols)
        for symbol in symbols:
            self._by_key.get(symbol, {}).get(session.fmt, {}).pop(session.id, None)

    def drop(self, session: Session, reason: CloseReason) -> None:
        """Close a client for ``reason`` (slow, rate limited, shutdown)."""
        session.close(reason)

    def _closed(self, session: Session, reason: CloseReason) -> None:
        # Every server-side close is counted here, including the ones a session decides
        # by itself mid-write (its output passing the buffer limit).
        self.closes[reason.name.lower()] += 1

    def detach(self, session: Session) -> None:
        """Forget a client whose connection has ended, however it ended."""
        if self.sessions.pop(session.id, None) is None:
            return
        del self._sweep_shares[session.id % len(self._sweep_shares)][session.id]
        self._counted(session, -1)
        self.access.detach(session)
        self.unsubscribe(session, list(session.symbols))
        ip = self._session_ip.pop(session.id, "")
        seconds = time.monotonic() - session.opened_at  # the clock the edge gave it
        if session.closed is not CloseReason.SHUTDOWN:  # not one line per client at shutdown
            # A stream's second line, for /ws and /sse alike; its first is the request's.
            # Who ended it is known only when the server did; the client, a lost network
            # or a protocol error below the session all look alike from here.
            closed = session.closed
            how = "disconnected"
            if closed is not None and closed is not CloseReason.GONE:
                how = f"closed by the server ({closed.code} {closed.reason})"
            log.info(
                "client %d (%s, %s) %s after %.1f s", session.id, session.kind, ip, how, seconds
            )
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
        self.counters["delivered"] += session.delivered
        self.counters["conflated"] += session.conflated
        self.counters["trades_dropped"] += session.dropped
        # Stop writing to it, cancel its timers and drop what it holds: a timer left armed
        # would keep the session, its transport and its protocol alive until it fired.
        session.lost()
        session.transport.on_pause = session.transport.on_resume = None

    # -- fan-out ------------------------------------------------------------------

    def publish(self, tick: Message) -> None:
        """The hub listener: one message to every session subscribed to its stream.

        Its bytes are encoded once per wire format, and the sessions subscribed now are
        noted; the writes wait for the end of the event loop's step (``_end_step``). When
        that step handed over one message, the usual case, each ready session (writable,
        nothing held, no throttle) gets one write of the shared bytes, straight to its
        socket, in one pass. When it handed over several (a burst read from the upstream
        in one go, a batch Redis confirmed), each session gets what is its in one write:
        one system call per client per step, not one per message. Anything that changes
        a session meanwhile (a write of its own, an unsubscribe, a reset) first routes
        what waits (``settle``), so a client sees everything in the order it happened.
        With a coalescing window set, messages wait for the window's end instead.
        """
        kind = type(tick)
        if isinstance(tick, Tick):
            if tick.symbol not in self.served:
                return  # held by the hub, not served here (not listed, or not yet)
            if any(self._all_tickers.values()):
                self._batch_ticker(tick)
        elif kind is not Trade and kind is not Kline:
            if not self.books.passes(tick):
                return
            if isinstance(tick, BookStatus):
                self.settle()
                self._book_lost(tick)
                return
        groups = self._by_key.get(tick.key)
        if not groups:
            return
        started = time.perf_counter()
        wire = Wire(tick)
        if self.coalescer is not None:
            self._route(wire, groups)
            if self.on_fanout is not None:
                self.on_fanout(tick, time.perf_counter() - started)
            return
        targets = [(wire.get(fmt), tuple(s.values())) for fmt, s in groups.items() if s]
        if not targets:
            return
        if not self._step_scheduled:
            self._step_scheduled = True
            assert self._loop is not None, "the edge is not started"
            self._loop.call_soon(self._end_step)
        self._step.append((wire, targets, time.perf_counter() - started))

    def _route(self, wire: Wire, groups: dict[WireFormat, dict[int, Session]]) -> None:
        """With a coalescing window: each ready session's bytes wait in its ``outbuf`` for
        the window's end (``WriteCoalescer``); the others keep them by their rules."""
        coalescer = self.coalescer
        assert coalescer is not None
        delivered = 0
        for fmt, sessions in groups.items():
            if not sessions:
                continue
            data = wire.get(fmt)
            for session in tuple(sessions.values()):
                if not session.ready:
                    session.offer(wire)
                    continue
                outbuf = session.outbuf
                if outbuf:
                    outbuf.append(data)
                else:
                    coalescer.add(session)
                    session.outbuf = [data]
                delivered += 1
        self._direct_delivered += delivered

    def settle(self) -> None:
        """Route the messages of this step now: something is about to change a session
        (see publish)."""
        if self._step:
            self._route_step()

    def _end_step(self) -> None:
        self._step_scheduled = False
        self.settle()

    def _route_step(self) -> None:
        """Write the step's messages to the sessions subscribed when each came, and tell
        ``on_fanout`` each one's time: its encoding plus its share of the writes.

        The loops below are the server's hot path, so ``Session.offer`` is inlined for a
        ready session: its socket's own write (``direct``). A session closed or lost
        since is not ready, and ``offer`` drops what it is given."""
        step, self._step = self._step, []
        started = time.perf_counter()
        if len(step) == 1:
            wire, targets, _ = step[0]
            held = total = 0
            for data, sessions in targets:
                total += len(sessions)
                for session in sessions:
                    if session.ready:
                        try:
                            session.direct(data)
                        except RuntimeError:
                            # The socket closed a moment before the protocol heard of it.
                            session.lost()
                    else:
                        held += 1
                        session.offer(wire)
            self._direct_delivered += total - held
        else:
            self._write_joined(step)
        if self.on_fanout is not None:
            share = (time.perf_counter() - started) / len(step)
            for wire, _, encoded in step:
                self.on_fanout(wire.message, encoded + share)

    def _write_joined(
        self, step: list[tuple[Wire, list[tuple[bytes, tuple[Session, ...]]], float]]
    ) -> None:
        """Several messages in one step: each ready session's bytes are gathered in order,
        then written in one go. Nothing else runs in between: a session ready for the
        first message is ready for the last."""
        joined: dict[Session, list[bytes]] = {}
        delivered = 0
        for wire, targets, _ in step:
            for data, sessions in targets:
                for session in sessions:
                    if not session.ready:
                        session.offer(wire)
                        continue
                    pieces = joined.get(session)
                    if pieces is None:
                        joined[session] = [data]
                    else:
                        pieces.append(data)
                    delivered += 1
        self._direct_delivered += delivered
        for session, pieces in joined.items():
            if session.closed is not None:
                continue  # closed by a write to another session (its on_close)
            try:
                if len(pieces) == 1:
                    session.direct(pieces[0])
                elif session.fmt == "json":
                    # One write is one WebSocket message there: never two in one.
                    for data in pieces:
                        session.direct(data)
                else:
                    session.direct(b"".join(pieces))
            except RuntimeError:
                session.lost()

    def _batch_ticker(self, tick: Tick) -> None:
        """Hold ``tick`` for this step's ``tickers`` message (one per upstream batch)."""
        if not self._tickers_batch:
            assert self._loop is not None, "the edge is not started"
            self._loop.call_soon(self._send_tickers)
        self._tickers_batch.append(tick)

    def _send_tickers(self) -> None:
        batch, self._tickers_batch = self._tickers_batch, []
        if batch:
            self.publish(Tickers.of(batch))

    def _book_lost(self, status: BookStatus) -> None:
        """A book is no longer whole: its clients drop what they hold of it and are told,
        once each, whichever of its streams they follow."""
        wire = Wire(status)
        told: set[int] = set()
        for key in status.streams:
            for sessions in self._by_key.get(key, {}).values():
                for session in tuple(sessions.values()):
                    if session.id not in told:
                        told.add(session.id)
                        session.drop_held(status.streams)
                        session.offer(wire)

    def reset_clients(self, reason: str) -> None:
        """The hub lost history (Redis lost its data, or this node fell behind the stream)
        and rebuilt its state: every client gets a ``reset`` with a snapshot of its
        symbols (SPEC §7), in place of whatever it still had waiting."""
        log.warning("hub reset (%s): resetting %d clients", reason, len(self.sessions))
        for session in tuple(self.sessions.values()):
            self._reset(session, session.symbols)

    def _reset(self, session: Session, symbols: Iterable[str]) -> None:
        """A ``reset`` with the snapshot of ``symbols`` for ``session``: it cannot resume,
        or the hub lost the history its ticks belonged to."""
        hub = self.node.hub
        last_seq = hub.last_seq()
        ticks = snapshot(hub, symbols, self.served)
        session.reset(reset_message(ticks, last_seq), last_seq)
        session.sent_now(t.key for t in ticks)

    def served_changed(self, change: ServedChange) -> None:
        """A new listing (``*``): new streams can be subscribed; the clients of a symbol
        that stopped trading get one ``error`` naming it and its streams they held, and
        are unsubscribed from them (SPEC §12)."""
        for key in change.added_keys:
            self._by_key.setdefault(key, {})
        lost: dict[Session, list[str]] = {}
        for key in change.removed_keys:
            for group in self._by_key.pop(key, {}).values():
                for session in group.values():
                    lost.setdefault(session, []).append(key)
        for session, keys in lost.items():
            session.unsubscribed(keys)
            for error in delisted_errors(keys):
                session.send_message(error)
        if lost:
            self.counters["delisted_unsubscribed"] += sum(len(k) for k in lost.values())

    def broadcast_status(self, status: dict[str, object]) -> None:
        for session in tuple(self.sessions.values()):
            session.send_status(status)

    def _schedule(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        assert self._loop is not None, "the edge is not started"
        return self._loop.call_later(delay, callback)

    async def _sweep(self) -> None:
        # Each client is looked at every timeout/4 seconds (every 2.5 s by default), a
        # share of them per sweep: the verdicts come within a quarter of the timeout, and
        # a sweep of 10,000 clients touches 2,000.
        shares = self._sweep_shares
        turn = 0
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.access.sweep()
            now = time.monotonic()
            turn = (turn + 1) % len(shares)
            for session in tuple(shares[turn].values()):
                # A ready session is writable with nothing held, and its socket pauses
                # below the buffer limit (server.py): only the kernel can say more.
                verdict = session.check_progress(now) if session.ready else session.check(now)
                if verdict is not None:
                    self.drop(session, verdict)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sse_heartbeat)
            for session in tuple(self.sessions.values()):
                if session.kind == "sse" and session.transport.writable:
                    session.transport.write(_heartbeat_bytes(session))

    # -- observation --------------------------------------------------------------

    # At 10,000 clients each pass over the sessions stops the event loop for a millisecond
    # or more: what the edge can count as clients come and go it counts (``_kinds``), and
    # what the sessions count themselves is summed in one pass (``session_totals``).

    def session_totals(self) -> Counter[str]:
        """The sessions' own counts summed, with those of the sessions gone: delivered
        (the fast path's writes included), conflated, trades dropped (each told by a
        ``gap``), subscriptions and messages held now."""
        totals: Counter[str] = Counter()
        delivered = conflated = dropped = subscriptions = held = 0
        for s in self.sessions.values():
            delivered += s.delivered
            conflated += s.conflated
            dropped += s.dropped
            subscriptions += len(s.symbols)
            held += s.pending_count
        counters = self.counters
        totals["delivered"] = self._direct_delivered + counters["delivered"] + delivered
        totals["conflated"] = counters["conflated"] + conflated
        totals["trades_dropped"] = counters["trades_dropped"] + dropped
        totals["subscriptions"] = subscriptions
        totals["pending_conflated"] = held
        return totals

    def delivered_total(self) -> int:
        return self.session_totals()["delivered"]

    def conflated_total(self) -> int:
        return self.session_totals()["conflated"]

    def clients_by_transport(self) -> dict[str, int]:
        return {"ws": self._kinds["ws"], "sse": self._kinds["sse"]}

    def write_paths(self) -> dict[str, int]:
        """Clients written to on the fast path (the socket itself) and on the portable,
        queued one: under the pinned uvicorn every client should be on the fast path."""
        fast = self._kinds["fast"]
        return {"fast": fast, "portable": len(self.sessions) - fast}

    def status(self) -> dict[str, object]:
        totals = self.session_totals()
        return {
            "clients": {**self.clients_by_transport(), "total": len(self.sessions)},
            "write_paths": self.write_paths(),
            # WebSocket clients that negotiated permessage-deflate (TICKCAST_WS_DEFLATE).
            "ws_deflate": self._kinds["ws_deflate"],
            "subscriptions": totals["subscriptions"],
            "pending_conflated": totals["pending_conflated"],
            "delivered": totals["delivered"],
            "conflated": totals["conflated"],
            "trades_dropped": totals["trades_dropped"],
            "closes": dict(self.closes),
            "auth": self.access.status(),
        }

    def _counted(self, session: Session, change: int) -> None:
        kinds = self._kinds
        kinds[session.kind] += change
        if isinstance(session.transport, RawTransport):
            kinds["fast"] += change
        if session.fmt == "ws_deflate":
            kinds["ws_deflate"] += change


@dataclass(frozen=True, slots=True)
class _Callbacks:
    schedule: Callable[[float, Callable[[], None]], asyncio.TimerHandle]
    settle: Callable[[], None]
    closed: Callable[[Session, CloseReason], None]


class WriteCoalescer:
    """Holds each session's frames for up to ``window`` seconds, then writes them in one
    ``write`` per session: still one WebSocket message (or SSE event) per tick, but one
    system call for all the ticks of the window, which is most of the cost of a delivery.
    """

    def __init__(
        self, window: float, schedule: Callable[[float, Callable[[], None]], object]
    ) -> None:
        self.window = window
        self._schedule = schedule
        self._dirty: list[Session] = []
        self._armed = False

    def add(self, session: Session) -> None:
        self._dirty.append(session)
        if not self._armed:
            self._armed = True
            self._schedule(self.window, self.flush)

    def flush(self) -> None:
        self._armed = False
        dirty, self._dirty = self._dirty, []
        for session in dirty:
            try:
                session.flush_out()
            except RuntimeError:
                session.lost()


def _heartbeat_bytes(session: Session) -> bytes:
    return _HEARTBEAT_CHUNK if session.fmt == "sse_chunk" else _HEARTBEAT
