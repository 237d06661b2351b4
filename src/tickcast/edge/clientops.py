"""A session's answers to its client's ops (SPEC §6, §12): subscribe, unsubscribe, list
and ping, with the rate limit, the errors and the acks. Pure, like the session it is part
of: replies go out through the session's ``send_message``, and what an op asks of the edge
(subscribing, unsubscribing, closing) comes back as an ``OpOutcome``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet

from tickcast.edge.contracts import Limits
from tickcast.edge.ops import (
    OpError,
    OpOutcome,
    OpRateLimit,
    op_id_of,
    parse_op,
    resolve,
    symbols_field,
    unknown_errors,
    with_id,
)
from tickcast.edge.tokens import Grant
from tickcast.errors import CloseReason, ErrorCode
from tickcast.messages.stream import is_ticker_key, stream_name

# Ops that carry a token, for the edge to check.
TOKEN_OPS = ("auth", "refresh")


class ClientOps:
    """The op handling of ``Session`` (its base): the state it reads is the session's."""

    __slots__ = ()

    symbols: set[str]
    served: AbstractSet[str]
    limits: Limits
    grant: Grant | None
    awaiting_auth: bool
    _op_rate: OpRateLimit
    _clock: Callable[[], float]
    # The session's methods: send a control message in order with the data; note that
    # the client sent an op (it gets control messages from now on).
    send_message: Callable[[dict[str, object]], None]
    _listening: Callable[[], None]

    def handle_text(self, text: str) -> OpOutcome:
        """Apply one client op; replies are sent here, subscription changes returned."""
        now = self._clock()
        self._listening()
        op_id: object = None
        verdict = self._op_rate.check(now)
        if verdict == "close":
            return OpOutcome(close=CloseReason.RATE_LIMITED)
        if verdict == "refuse":
            # The refusal names the op it refuses, as any reply does.
            self._error(op_id_of(text), ErrorCode.RATE_LIMITED, "too many ops; slow down")
            return OpOutcome()
        try:
            request = parse_op(text)
            op_id = request.get("id")
            return self._dispatch(request, op_id)
        except OpError as exc:
            self._error(exc.op_id if op_id is None else op_id, exc.code, exc.message)
            return OpOutcome()

    def handle_binary(self) -> None:
        self._error(None, ErrorCode.BINARY_NOT_SUPPORTED, "send ops as JSON text frames")

    def _dispatch(self, request: dict[str, object], op_id: object) -> OpOutcome:
        op = request["op"]
        if self.awaiting_auth and op != "auth":
            # SPEC §10: a client that offered no token at the handshake sends one first.
            self._error(op_id, ErrorCode.UNAUTHORIZED, 'send {"op":"auth","token":...} first')
            return OpOutcome(close=CloseReason.UNAUTHORIZED)
        if op in TOKEN_OPS:
            token = request.get("token")
            if not isinstance(token, str) or not token:
                raise OpError(ErrorCode.INVALID_OP, '"token" must be a non-empty string', op_id)
            return OpOutcome(token=token, token_op=str(op), op_id=op_id)
        if op == "ping":
            self.send_message(with_id({"type": "pong"}, op_id))
            return OpOutcome()
        # Replies list what an op named in the field it named it in: a client of
        # ``symbols`` (SPEC §6) sees the ack it always did.
        listed = "streams" if "streams" in request else "symbols"
        if op == "list":
            tickers = sorted(k for k in self.symbols if is_ticker_key(k))
            streams = sorted(stream_name(k) for k in self.symbols)
            self.send_message(
                with_id(
                    {"type": "ack", "op": "list", "symbols": tickers, "streams": streams}, op_id
                )
            )
            return OpOutcome()
        if op == "subscribe":
            wanted = self.choose(symbols_field(request), op_id)
            if not wanted:
                return OpOutcome()
            self.ack(op_id, "subscribe", wanted, listed)
            return OpOutcome(subscribe=[s for s in wanted if s not in self.symbols])
        if op == "unsubscribe":
            served, unknown = self.resolve(symbols_field(request))
            self._report_unknown(op_id, unknown)
            if not served:
                return OpOutcome()
            gone = [s for s in served if s in self.symbols]
            self.ack(op_id, "unsubscribe", gone, listed)
            return OpOutcome(unsubscribe=gone)
        raise OpError(
            ErrorCode.UNKNOWN_OP,
            f"unknown op {op!r}: use subscribe, unsubscribe, list, ping, auth or refresh",
        )

    def resolve(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """The served symbols ``names`` ask for and the names not served here (``ops.resolve``)."""
        return resolve(names, self.served)

    def choose(self, names: Iterable[str], op_id: object = None) -> list[str]:
        """What a subscribe to ``names`` (an op, or ``?symbols=`` at connect) subscribes.

        The rule (SPEC §6, §10): the served symbols are subscribed and the unknown names
        are reported in one ``unknown_symbol`` error that lists them; a request that would
        take the client past ``max_subscriptions`` subscribes nothing and gets
        ``too_many_subscriptions``. Returns the served symbols asked for ([] for none).
        """
        served, unknown = self.resolve(names)
        self._report_unknown(op_id, unknown)
        grant = self.grant
        limit = self.limits.max_subscriptions
        if grant is not None:
            limit = grant.subscription_limit(limit)
            if grant.scope is not None:
                served, forbidden = grant.scope.split(served)
                self.report_forbidden(op_id, forbidden)
        new = [s for s in served if s not in self.symbols]
        if len(self.symbols) + len(new) > limit:
            self._error(
                op_id, ErrorCode.TOO_MANY_SUBSCRIPTIONS, f"at most {limit} streams per client"
            )
            return []
        return served

    def may(self, key: str) -> bool:
        """Whether the connection's token allows the stream ``key``."""
        return self.grant is None or self.grant.allows(key)

    def report_forbidden(self, op_id: object, keys: list[str]) -> None:
        """One ``forbidden`` error naming the streams ``keys`` the token does not allow."""
        if keys:
            names = [stream_name(k) for k in keys]
            message = f"not allowed by your token: {', '.join(names)}"
            self._error(op_id, ErrorCode.FORBIDDEN, message, streams=names)

    def _report_unknown(self, op_id: object, unknown: list[str]) -> None:
        for error in unknown_errors(unknown, op_id):
            self.send_message(error)

    def ack(self, op_id: object, op: str, keys: list[str], listed: str = "symbols") -> None:
        """``{"type":"ack","op":...,"symbols":[...]}`` (or ``"streams"``, as the op named
        them, by their full names: ``BTCUSDT@ticker``), with the op's id when it had one."""
        if listed == "streams":
            keys = [stream_name(k) for k in keys]
        self.send_message(with_id({"type": "ack", "op": op, listed: keys}, op_id))

    def reply_ack(self, op_id: object, op: str, **extra: object) -> None:
        self.send_message(with_id({"type": "ack", "op": op, **extra}, op_id))

    def reply_error(self, op_id: object, code: ErrorCode, message: str, **extra: object) -> None:
        self._error(op_id, code, message, **extra)

    def _error(self, op_id: object, code: ErrorCode, message: str, **extra: object) -> None:
        error = {"type": "error", "code": code.value, "message": message, **extra}
        self.send_message(with_id(error, op_id))
