"""Named errors: why a client is closed, and the codes of error replies."""

from __future__ import annotations

import re
from enum import Enum, StrEnum
from http import HTTPStatus


class CloseReason(Enum):
    """Why the server closes a client: the WebSocket close code and the reason text."""

    SHUTDOWN = (1001, "server shutting down")
    # Not sent: the connection was already gone when the server noticed.
    GONE = (1006, "connection lost")
    INVALID_UTF8 = (1007, "invalid UTF-8")
    SLOW_CLIENT = (1008, "slow client: accepted nothing for too long")
    BUFFER_FULL = (1008, "slow client: pending output over the limit")
    RATE_LIMITED = (1008, "too many requests")
    UNAUTHORIZED = (1008, "unauthorized")
    MESSAGE_TOO_BIG = (1009, "message too big")
    # The server failed handling the client's message (a fault of the server: logged).
    INTERNAL_ERROR = (1011, "internal error")
    TRY_AGAIN_LATER = (1013, "too many connections, try again later")
    # Private-use range (RFC 6455 §7.4.2): the token's exp passed with no refresh.
    TOKEN_EXPIRED = (4001, "token expired")

    @property
    def code(self) -> int:
        return self.value[0]

    @property
    def reason(self) -> str:
        return self.value[1]


class ErrorCode(StrEnum):
    """``code`` of ``{"type":"error"}`` replies to client ops."""

    INVALID_JSON = "invalid_json"
    INVALID_OP = "invalid_op"
    UNKNOWN_OP = "unknown_op"
    UNKNOWN_SYMBOL = "unknown_symbol"
    UNKNOWN_STREAM = "unknown_stream"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    RATE_LIMITED = "rate_limited"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    # Sent unasked: a symbol the client followed stopped trading (``*``, SPEC §12).
    DELISTED = "delisted"
    # A token refused (``auth``, ``refresh``): the reply's ``reason`` says why.
    UNAUTHORIZED = "unauthorized"
    # Streams the connection's token does not allow.
    FORBIDDEN = "forbidden"


def http_error_code(status: int) -> str:
    """The ``error`` code of an HTTP error response with no code of its own (a path or
    method that does not exist): its status phrase in snake case, as 404 ``not_found``,
    405 ``method_not_allowed``, 426 ``upgrade_required``."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "http_error"
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")
