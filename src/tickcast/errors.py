"""Named errors: why a client is closed, and the codes of error replies."""

from __future__ import annotations

from enum import Enum, StrEnum


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
    TRY_AGAIN_LATER = (1013, "too many connections, try again later")

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
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    RATE_LIMITED = "rate_limited"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
