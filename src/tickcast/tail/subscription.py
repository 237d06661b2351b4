"""What the server said of the symbols and streams a tail asked for: ``asked_name`` reads a
name from the command line, ``Subscription`` narrows the asked list by the names the server
does not serve, and says when nothing is left to show. Pure: no I/O.

A name is a bare symbol (``BTCUSDT``, the ticker as it always was) or a stream
(``BTCUSDT@trades``, ``BTCUSDT@kline_1m``; SPEC §12). The server refuses names in three
shapes (SPEC §6, §10, §12): on ``/ws`` an ``error`` message (``unknown_symbol`` with the
names in ``symbols``, ``unknown_stream`` with them in ``streams``, or
``too_many_subscriptions``); on ``/sse`` an HTTP 404 or 400 with ``{"error": code,
"message": ...}``, or an ``event: error`` in a stream that carries the names that are
served. The driver turns each into a call here; what comes back is the one line to show,
and whether the tail can go on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from tickcast.messages.stream import StreamKind, StreamNameError, parse_stream
from tickcast.tail.failures import Problem
from tickcast.tail.protocol import Message, message_kind

UNKNOWN_SYMBOL: Final = "unknown_symbol"
UNKNOWN_STREAM: Final = "unknown_stream"
TOO_MANY_SUBSCRIPTIONS: Final = "too_many_subscriptions"
_REFUSALS: Final = (UNKNOWN_SYMBOL, UNKNOWN_STREAM, TOO_MANY_SUBSCRIPTIONS)


def is_stream(name: str) -> bool:
    """Whether ``name`` is a stream name (``BTCUSDT@trades``, ``!tickers``), not a symbol."""
    return "@" in name or name.startswith("!")


def asked_name(text: str) -> str:
    """A name from the command line as the server keys it: a symbol uppercased, as
    ``tail`` always did (``BTCUSDT@ticker`` is the symbol too); a stream by its canonical
    name, the symbol uppercased and the kind kept as given, since ``kline_1m`` (a minute)
    and ``kline_1M`` (a month) differ by case alone.

    Raises ``ValueError`` (``StreamNameError``), saying what is wrong, for a stream name
    that is no stream at all (``BTCUSDT@trade``); a bare symbol is the server's to judge.
    """
    name = text.strip()
    if not is_stream(name):
        return name.upper()
    stream = parse_stream(name)
    if stream.kind is StreamKind.TICKER and stream.symbol is not None:
        return stream.symbol
    return stream.name


def asked_names(texts: Iterable[str]) -> list[str]:
    """``asked_name`` of each non-blank text, each name once, in the order given; the
    ``ValueError`` of a bad one names it: ``BTCUSDT@trade: 'trade' is not a stream kind``."""
    names = []
    for text in texts:
        if text.strip():
            try:
                names.append(asked_name(text))
            except ValueError as exc:
                raise StreamNameError(f"{text.strip()}: {exc}") from exc
    return list(dict.fromkeys(names))


def refusal_code(message: Message) -> str | None:
    """``unknown_symbol``, ``unknown_stream`` or ``too_many_subscriptions`` when
    ``message`` is such an ``error``; None for any other message (other errors are the
    views' to show)."""
    if message_kind(message) != "error":
        return None
    code = message.get("code")
    return code if isinstance(code, str) and code in _REFUSALS else None


def named_symbols(message: Mapping[str, object]) -> list[str] | None:
    """The names an ``unknown_symbol`` or ``unknown_stream`` error lists (``/ws`` names
    them in ``symbols`` or ``streams``), as ``asked_name`` keys them; None when it lists
    none, so the caller must ask the server what it serves."""
    names: list[str] = []
    for field in ("symbols", "streams"):
        listed = message.get(field)
        if isinstance(listed, list):
            names.extend(str(name) for name in listed if str(name).strip())
    keyed = []
    for name in names:
        try:
            keyed.append(asked_name(name))
        except ValueError:
            keyed.append(name.strip())
    return keyed or None


class Subscription:
    """The symbols and streams this tail asks for (none: the server's default symbols),
    less those the server said it does not serve. Each connection asks for ``names``, so a
    reconnect does not ask again for what was refused, and each refusal is reported once."""

    def __init__(self, asked: Sequence[str], where: str) -> None:
        self.asked = list(dict.fromkeys(asked))
        self.where = where
        self.not_served: list[str] = []

    @property
    def names(self) -> list[str]:
        """What the next connection asks for."""
        return [name for name in self.asked if name not in self.not_served]

    @property
    def symbols(self) -> list[str]:
        """The bare symbols of ``names``: ``?symbols=``, as before streams existed."""
        return [name for name in self.names if not is_stream(name)]

    @property
    def streams(self) -> list[str]:
        """The stream names of ``names``: ``?streams=``."""
        return [name for name in self.names if is_stream(name)]

    def unserved_among(
        self, served_symbols: Iterable[object] | None, served_streams: Iterable[object] | None
    ) -> list[str]:
        """The names still asked for that the server's lists do not hold: symbols judged by
        its ``/symbols``, streams by its ``/streams`` (canonical names, the ticker as
        ``BTCUSDT@ticker``). A list that is None could not be had: none is judged by it."""
        out: list[str] = []
        if served_symbols is not None:
            held = {str(symbol).upper() for symbol in served_symbols}
            out.extend(symbol for symbol in self.symbols if symbol not in held)
        if served_streams is not None:
            held = {str(stream) for stream in served_streams}
            out.extend(stream for stream in self.streams if stream not in held)
        return out

    def drop(self, names: Iterable[str]) -> Problem | None:
        """Stop asking for ``names``, which the server does not serve.

        Returns the line to show: fatal when nothing is left to show, else a note naming
        what is not served and what is still shown; None when nothing new was dropped.
        """
        current = self.names
        new = [name for name in dict.fromkeys(names) if name in current]
        if not new:
            return None
        self.not_served.extend(new)
        listed = ", ".join(new)
        verb = "is" if len(new) == 1 else "are"
        left = self.names
        if not left:
            text = f"{listed} {verb} not served by {self.where} ({self._lists(new)})"
            return Problem(text, fatal=True)
        return Problem(f"{listed} {verb} not served by {self.where}; showing {', '.join(left)}")

    def too_many(self, said: str) -> Problem:
        """The server took none of the names: more than its per-client limit."""
        detail = f": {said}" if said else ""
        fewer = "streams" if any(is_stream(name) for name in self.asked) else "symbols"
        return Problem(
            f"{self.where} refused the subscription (too_many_subscriptions{detail}): "
            f"ask for fewer {fewer}",
            fatal=True,
        )

    def _lists(self, refused: Sequence[str]) -> str:
        """Where the server lists what it serves: ``/symbols``, ``/streams``, or both."""
        paths = [
            f"{self.where}/{path}"
            for path, wanted in (("symbols", False), ("streams", True))
            if any(is_stream(name) == wanted for name in refused)
        ]
        return f"its list: {paths[0]}" if len(paths) == 1 else f"its lists: {' and '.join(paths)}"
