"""Who may connect, and for how long: the edge's side of tokens (SPEC §10).

``Access`` checks what a connecting client offers (``TICKCAST_TOKEN``, or a JWT verified
by ``tickcast.edge.tokens``), counts each subject's connections, and watches every
token's expiry: a connection is told ``token_expiring`` ``WARN_BEFORE`` seconds before its
token's ``exp``, and is closed at ``exp`` unless a refresh brings a new one. A WebSocket
that offered no token at the handshake has ``AUTH_TIMEOUT`` seconds to send an ``auth``
op. All these deadlines sit in one ``ExpiryWheel`` that the edge's periodic sweep turns:
nothing is checked per tick, and no timer is armed per connection.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from tickcast.edge.jwks import JwksFetcher, JwksKeys
from tickcast.edge.session import Session
from tickcast.edge.tokens import (
    WARN_BEFORE,
    AuthError,
    Grant,
    Refusal,
    SecretKey,
    Verifier,
    offered_token,
)
from tickcast.errors import CloseReason, ErrorCode
from tickcast.settings import Settings

# Seconds a WebSocket that offered no token at the handshake has to send ``auth``.
AUTH_TIMEOUT: Final = 5.0


@dataclass(frozen=True)
class Denial:
    """Why a connection is refused before it is accepted."""

    status: int
    code: str
    message: str
    close: CloseReason
    # The refusal of a token, named in the body (``reason``) and counted.
    reason: Refusal | None = None

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.reason is not None:
            body["reason"] = self.reason.value
        return body


@dataclass(frozen=True)
class Admission:
    """The token side of admitting a client: refused (``denial``), admitted with what its
    token grants (``grant``; None for no token needed, or the shared one), or admitted on
    condition that it authenticates with an ``auth`` op (``pending``, ``/ws`` only)."""

    denial: Denial | None = None
    grant: Grant | None = None
    pending: bool = False


class ExpiryWheel:
    """Deadlines by key in buckets of ``SLOT`` seconds; ``due`` pops those passed.

    Scheduling and cancelling are O(1); a sweep looks at the buckets that came due only.
    """

    SLOT: Final = 1.0

    def __init__(self) -> None:
        self._buckets: dict[int, set[int]] = {}
        self._at: dict[int, tuple[int, float]] = {}

    def __len__(self) -> int:
        return len(self._at)

    def schedule(self, key: int, at: float) -> None:
        """``key`` is due at ``at``, instead of whenever it was due before."""
        self.cancel(key)
        slot = math.floor(at / self.SLOT)
        self._buckets.setdefault(slot, set()).add(key)
        self._at[key] = (slot, at)

    def cancel(self, key: int) -> None:
        held = self._at.pop(key, None)
        if held is None:
            return
        bucket = self._buckets.get(held[0])
        if bucket is not None:
            bucket.discard(key)
            if not bucket:
                del self._buckets[held[0]]

    def due(self, now: float) -> list[int]:
        """The keys whose time has come by ``now``, soonest first; they are forgotten."""
        last = math.floor(now / self.SLOT)
        out: list[tuple[float, int]] = []
        for slot in sorted(s for s in self._buckets if s <= last):
            for key in tuple(self._buckets[slot]):
                at = self._at[key][1]
                if at <= now:
                    out.append((at, key))
                    self.cancel(key)
        out.sort()
        return [key for _, key in out]


Phase = Literal["auth", "warn", "expire"]


@dataclass
class _Watch:
    session: Session
    phase: Phase
    # What to do once a pending WebSocket has authenticated (its connect parameters).
    on_granted: Callable[[], None] | None = None


@dataclass
class Access:
    """The token checks and the per-subject and expiry bookkeeping of one edge."""

    settings: Settings
    unsubscribe: Callable[[Session, Iterable[str]], None]
    clock: Callable[[], float] = time.time
    warn_before: float = WARN_BEFORE
    auth_timeout: float = AUTH_TIMEOUT
    refused: Counter[str] = field(default_factory=Counter)
    verifier: Verifier | None = field(init=False, default=None)
    jwks: JwksKeys | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        s = self.settings
        self._subjects: Counter[str] = Counter()
        self._subject_of: dict[int, str] = {}
        self._watched: dict[int, _Watch] = {}
        self._wheel = ExpiryWheel()
        if s.jwt_jwks:
            self.jwks = JwksKeys(s.jwt_jwks, self.clock)
            keys: JwksKeys | SecretKey = self.jwks
        elif s.jwt_secret:
            keys = SecretKey(s.jwt_secret)
        else:
            return
        self.verifier = Verifier(
            keys,
            audience=s.jwt_audience,
            issuer=s.jwt_issuer,
            leeway=s.jwt_leeway,
            on_unknown_key=self.jwks.missed if self.jwks is not None else None,
        )

    def fetcher(self) -> JwksFetcher | None:
        """The task that keeps the JWKS loaded (None without one)."""
        return None if self.jwks is None else JwksFetcher(self.jwks)

    @property
    def mode(self) -> str:
        if self.jwks is not None:
            return "jwks"
        if self.verifier is not None:
            return "hs256"
        return "shared_token" if self.settings.token else "open"

    # -- the handshake ------------------------------------------------------------

    def admit(
        self, authorization: str | None, token_param: str | None, *, may_wait: bool = False
    ) -> Admission:
        """What a connecting client's credentials admit it to. ``may_wait``: it can still
        send an ``auth`` op (a WebSocket), so offering none is no refusal yet."""
        shared = self.settings.token
        try:
            offered = offered_token(authorization, token_param)
        except AuthError as exc:
            return self._refuse(exc)
        if shared and offered is not None and _same(offered, shared):
            return Admission()
        if self.verifier is None:
            if not shared:
                return Admission()
            reason = Refusal.MISSING if offered is None else Refusal.BAD_SIGNATURE
            return self._refuse(AuthError(reason, "a valid token is required"))
        if offered is None:
            if may_wait:
                return Admission(pending=True)
            return self._refuse(AuthError(Refusal.MISSING, "a token is required"))
        try:
            grant = self.verify(offered)
        except AuthError as exc:
            return self._refuse(exc)
        return Admission(grant=grant)

    def admit_read(
        self, authorization: str | None, token_param: str | None, stream: str | None
    ) -> Denial | None:
        """A REST read (``TICKCAST_JWT_REST``) of ``stream`` (None: of no one stream, a
        listing), by a client offering these credentials. Not a connection: no subject
        limit, nothing to watch."""
        shared = self.settings.token
        try:
            offered = offered_token(authorization, token_param)
            if offered is None:
                raise AuthError(Refusal.MISSING, "a token is required")
            if shared and _same(offered, shared):
                return None
            assert self.verifier is not None
            grant = self.verifier.verify(offered)
            if stream is not None and not grant.allows(stream):
                raise AuthError(Refusal.FORBIDDEN_STREAM, "your token does not allow this stream")
        except AuthError as exc:
            self.refused[exc.reason.value] += 1
            if exc.reason is Refusal.FORBIDDEN_STREAM:
                return Denial(403, "forbidden", exc.message, CloseReason.UNAUTHORIZED, exc.reason)
            return Denial(401, "unauthorized", exc.message, CloseReason.UNAUTHORIZED, exc.reason)
        return None

    def verify(self, token: str) -> Grant:
        """A token's grant, checked against the subject's connection limit too."""
        assert self.verifier is not None
        grant = self.verifier.verify(token)
        limit = self.settings.max_connections_per_subject
        if limit and self._subjects[grant.subject] >= limit:
            raise AuthError(Refusal.SUBJECT_LIMIT, f"at most {limit} connections per subject")
        return grant

    def _refuse(self, exc: AuthError) -> Admission:
        self.refused[exc.reason.value] += 1
        if exc.reason is Refusal.SUBJECT_LIMIT:
            denial = Denial(
                429, "too_many_connections", exc.message, CloseReason.TRY_AGAIN_LATER, exc.reason
            )
        else:
            denial = Denial(401, "unauthorized", exc.message, CloseReason.UNAUTHORIZED, exc.reason)
        return Admission(denial=denial)

    # -- connections --------------------------------------------------------------

    def attach(self, session: Session, admission: Admission) -> None:
        """Watch a newly opened session: its token's expiry, or its ``auth`` deadline."""
        grant = admission.grant
        if grant is not None:
            limit = self.settings.max_connections_per_subject
            if limit and self._subjects[grant.subject] >= limit:
                # Handshakes of one subject that were checked together, before any of
                # them was open: the ones past the limit go now.
                self.refused[Refusal.SUBJECT_LIMIT.value] += 1
                session.close(CloseReason.TRY_AGAIN_LATER)
                return
            self._granted(session, grant)
        elif admission.pending:
            session.awaiting_auth = True
            self._watched[session.id] = _Watch(session, "auth")
            self._wheel.schedule(session.id, self.clock() + self.auth_timeout)

    def when_granted(self, session: Session, start: Callable[[], None]) -> None:
        """Run ``start`` (subscribe the connect parameters) once ``session`` has a grant:
        now when it has, else after its ``auth`` op succeeds."""
        watch = self._watched.get(session.id)
        if watch is not None and watch.phase == "auth":
            watch.on_granted = start
        else:
            start()

    def _granted(self, session: Session, grant: Grant) -> None:
        session.grant = grant
        session.awaiting_auth = False
        subject = grant.subject
        if self._subject_of.get(session.id) != subject:
            self._subjects[subject] += 1
            self._subject_of[session.id] = subject
        watch = self._watched.get(session.id)
        if watch is None:
            watch = self._watched[session.id] = _Watch(session, "warn")
        watch.phase = "warn"
        self._wheel.schedule(session.id, grant.expires_at - self.warn_before)

    def detach(self, session: Session) -> None:
        self._wheel.cancel(session.id)
        self._watched.pop(session.id, None)
        subject = self._subject_of.pop(session.id, None)
        if subject is not None:
            self._subjects[subject] -= 1
            if self._subjects[subject] <= 0:
                del self._subjects[subject]

    def on_token(self, session: Session, op: str, token: str, op_id: object) -> None:
        """An ``auth`` or ``refresh`` op with ``token``."""
        if self.verifier is None:
            session.reply_error(op_id, ErrorCode.INVALID_OP, "this server takes no tokens")
            return
        if op == "auth" and not session.awaiting_auth:
            session.reply_error(op_id, ErrorCode.INVALID_OP, "already authenticated: use refresh")
            return
        if op == "refresh" and session.grant is None:
            session.reply_error(op_id, ErrorCode.INVALID_OP, "no token to refresh")
            return
        shared = self.settings.token
        if op == "auth" and shared and _same(token, shared):
            # The shared secret by op, as a browser that cannot set headers sends it.
            self._wheel.cancel(session.id)
            watch = self._watched.pop(session.id)
            session.awaiting_auth = False
            session.reply_ack(op_id, op)
            if watch.on_granted is not None:
                watch.on_granted()
            return
        try:
            grant = self._checked(session, token)
        except AuthError as exc:
            self.refused[exc.reason.value] += 1
            session.reply_error(op_id, ErrorCode.UNAUTHORIZED, exc.message, reason=exc.reason.value)
            if op == "auth":
                session.flush_out()
                session.close(CloseReason.UNAUTHORIZED)
            return
        watch = self._watched[session.id]
        start, watch.on_granted = watch.on_granted, None  # run once, then let it go
        self._granted(session, grant)
        session.reply_ack(op_id, op, expires_at=int(grant.expires_at))
        if op == "refresh":
            self._narrow(session, grant)
        elif start is not None:
            start()

    def _checked(self, session: Session, token: str) -> Grant:
        assert self.verifier is not None
        if session.grant is None:
            return self.verify(token)
        grant = self.verifier.verify(token)  # the connection already counts for its subject
        if grant.subject != session.grant.subject:
            raise AuthError(Refusal.SUBJECT_CHANGED, "a refresh keeps the connection's subject")
        return grant

    def _narrow(self, session: Session, grant: Grant) -> None:
        """A refreshed token may allow fewer streams: the others are unsubscribed, and the
        client is told which."""
        gone = sorted(k for k in session.symbols if not grant.allows(k))
        if gone:
            self.unsubscribe(session, gone)
            session.report_forbidden(None, gone)

    # -- the sweep ----------------------------------------------------------------

    def sweep(self) -> None:
        """Act on the deadlines passed: warn, expire, or end a wait for ``auth``."""
        if not self._wheel:
            return
        now = self.clock()
        for session_id in self._wheel.due(now):
            watch = self._watched.get(session_id)
            if watch is None:
                continue
            session = watch.session
            if watch.phase == "auth":
                self.refused[Refusal.MISSING.value] += 1
                session.close(CloseReason.UNAUTHORIZED)
            elif watch.phase == "warn" and session.grant is not None:
                expires_at = session.grant.expires_at
                in_ms = max(0, round((expires_at - now) * 1000))
                session.send_message({"type": "token_expiring", "in_ms": in_ms})
                watch.phase = "expire"
                self._wheel.schedule(session_id, expires_at)
            elif watch.phase == "expire":
                session.send_message(
                    {"type": "error", "code": "token_expired", "message": "token expired"}
                )
                # A coalescing window may hold the message in ``outbuf``, which a close
                # drops: it goes out first (an SSE client's only word of why).
                session.flush_out()
                session.close(CloseReason.TOKEN_EXPIRED)

    # -- observation --------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """The mode and counts; never a subject's name."""
        out: dict[str, object] = {
            "mode": self.mode,
            "shared_token": bool(self.settings.token),
            "subjects": len(self._subjects),
            "most_connections_of_a_subject": max(self._subjects.values(), default=0),
            "awaiting_auth": sum(w.phase == "auth" for w in self._watched.values()),
            "refused": dict(self.refused),
        }
        if self.jwks is not None:
            out["jwks"] = self.jwks.status()
        return out


def _same(offered: str, expected: str) -> bool:
    return hmac.compare_digest(offered.encode(), expected.encode())


def same_origin(origin: str, host: str | None) -> bool:
    """Whether ``origin`` (``http://h:p``) names ``host`` (``h:p``, the request's Host).

    A browser sends the Host of the URL it opened, so a page served by this server at
    its own address connects with an Origin naming that Host. A scheme's default port
    may be left out of either (RFC 6454 §6.2 drops it from the Origin).
    """
    if not host:
        return False
    scheme, sep, rest = origin.partition("://")
    default = {"http": "80", "https": "443"}.get(scheme.lower())
    if not sep or default is None:
        return False  # "null" (a file or a sandbox), or not a web origin at all
    return _host_port(rest, default) == _host_port(host, default)


def _host_port(authority: str, default_port: str) -> str:
    authority = authority.lower()
    # "[::1]" and "example.com" carry no port; "[::1]:80" and "example.com:80" do.
    if authority.endswith("]") or ":" not in authority:
        return f"{authority}:{default_port}"
    return authority


def shared_token_ok(token: str, authorization: str | None, token_param: str | None) -> bool:
    """Whether a request offers ``TICKCAST_TOKEN`` (a bearer credential wins over the query)."""
    offered = token_param
    if authorization and authorization.lower().startswith("bearer "):
        offered = authorization[7:].strip()
    return offered is not None and _same(offered, token)
