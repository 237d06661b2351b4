"""What the server said of the symbols a tail asked for: ``Subscription`` narrows the asked
list by the symbols the server does not serve, and says when nothing is left to show.
Pure: no I/O.

The server refuses symbols in three shapes (SPEC §6, §10): on ``/ws`` an ``error`` message
(``unknown_symbol`` with the names in ``symbols``, or ``too_many_subscriptions``); on
``/sse`` an HTTP 404 or 400 with ``{"error": code, "message": ...}``, or an ``event: error``
in a stream that carries the symbols that are served. The driver turns each into a call
here; what comes back is the one line to show, and whether the tail can go on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from tickcast.tail.failures import Problem
from tickcast.tail.protocol import Message, message_kind

UNKNOWN_SYMBOL: Final = "unknown_symbol"
TOO_MANY_SUBSCRIPTIONS: Final = "too_many_subscriptions"


def refusal_code(message: Message) -> str | None:
    """``unknown_symbol`` or ``too_many_subscriptions`` when ``message`` is such an
    ``error``; None for any other message (other errors are the views' to show)."""
    if message_kind(message) != "error":
        return None
    code = message.get("code")
    return code if code in (UNKNOWN_SYMBOL, TOO_MANY_SUBSCRIPTIONS) else None


def named_symbols(message: Mapping[str, object]) -> list[str] | None:
    """The symbols an ``unknown_symbol`` error lists (``/ws`` names them in ``symbols``);
    None when it lists none, so the caller must ask the server what it serves."""
    names = message.get("symbols")
    if not isinstance(names, list) or not names:
        return None
    return [str(name).strip().upper() for name in names if str(name).strip()]


class Subscription:
    """The symbols this tail asks for (empty: the server's defaults), less those the server
    said it does not serve. Each connection asks for ``symbols``, so a reconnect does not
    ask again for what was refused, and each refusal is reported once."""

    def __init__(self, asked: Sequence[str], where: str) -> None:
        self.asked = list(dict.fromkeys(asked))
        self.where = where
        self.not_served: list[str] = []

    @property
    def symbols(self) -> list[str]:
        """What the next connection asks for."""
        return [symbol for symbol in self.asked if symbol not in self.not_served]

    def unserved_among(self, served: Iterable[object]) -> list[str]:
        """The symbols still asked for that are not in the server's list ``served``."""
        held = {str(symbol).upper() for symbol in served}
        return [symbol for symbol in self.symbols if symbol not in held]

    def drop(self, names: Iterable[str]) -> Problem | None:
        """Stop asking for ``names``, which the server does not serve.

        Returns the line to show: fatal when nothing is left to show, else a note naming
        what is not served and what is still shown; None when nothing new was dropped.
        """
        current = self.symbols
        new = [name for name in dict.fromkeys(names) if name in current]
        if not new:
            return None
        self.not_served.extend(new)
        listed = ", ".join(new)
        verb = "is" if len(new) == 1 else "are"
        left = self.symbols
        if not left:
            return Problem(
                f"{listed} {verb} not served by {self.where} (its list: {self.where}/symbols)",
                fatal=True,
            )
        return Problem(f"{listed} {verb} not served by {self.where}; showing {', '.join(left)}")

    def too_many(self, said: str) -> Problem:
        """The server took none of the symbols: more than its per-client limit."""
        detail = f": {said}" if said else ""
        return Problem(
            f"{self.where} refused the subscription (too_many_subscriptions{detail}): "
            "ask for fewer symbols",
            fatal=True,
        )
