"""One line per tick, trade, candle or book update, for pipes and files: ``TickLines``
turns server messages into plain or JSON lines (pure); ``LineView`` writes each one flushed
and reports problems (the trades a slow client missed, a book that is not whole) on stderr.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import IO

import orjson

from tickcast.tail.candles import CandleLines, kline_line, kline_symbol
from tickcast.tail.failures import Problem
from tickcast.tail.formatting import PriceDecimals, decimal_text, format_timestamp, to_decimal
from tickcast.tail.ladder import book_line
from tickcast.tail.localbook import BookFeed, is_book_status
from tickcast.tail.protocol import Message, error_detail, message_kind
from tickcast.tail.tape import gap_text, trade_line, trade_stream, trade_symbol
from tickcast.tail.view import ConnectionState, OutputFormat


class TickLines:
    """Turns server messages into output lines: one per tick, trade, candle or book update,
    plain text or JSON.

    Pure. A tick or trade whose ``seq`` is the one last printed for its symbol or stream
    is skipped: the snapshot a reconnect starts with repeats the last tick when nothing
    changed meanwhile. Candles follow ``CandleLines``: each closed candle, and each update
    of the open one that changes its line. Books follow ``BookFeed``: a line for each
    update that leaves a whole book (JSON: each book and diff message that does, as
    received), nothing while it is not whole; what is wrong with it is a note for stderr
    (``take_notes``). Plain lines show each symbol's prices with the same decimals
    (``PriceDecimals``).
    """

    def __init__(self, output: OutputFormat) -> None:
        self.output = output
        self._last_seq: dict[str, object] = {}
        self._decimals = PriceDecimals()
        self._candles = CandleLines()
        self._books = BookFeed()
        self._notes: list[str] = []

    def take_notes(self) -> list[str]:
        """What the messages given so far said that is no line of output: a book not
        whole, a hole in a book's diffs. Each once."""
        notes, self._notes = self._notes, []
        return notes

    def lines(self, message: Message) -> list[str]:
        """The lines for one server message: one per new tick it carries (a reset: several),
        or one for a new trade or candle update."""
        kind = message_kind(message)
        if kind == "trade":
            return self._trade(message)
        if kind == "kline":
            return self._kline(message)
        if kind in ("book", "depth") or (kind == "status" and is_book_status(message)):
            return self._book(message)
        carried = message.get("ticks") if kind == "reset" else None
        ticks = [message] if kind == "tick" else carried if isinstance(carried, list) else []
        out = []
        for tick in ticks:
            if not isinstance(tick, Mapping) or not self._is_new(tick):
                continue
            if self.output is OutputFormat.JSON:
                out.append(json_line(tick))
            else:
                places = self._decimals.learn(str(tick.get("symbol")).upper(), tick)
                out.append(plain_line(tick, places))
        return out

    def _trade(self, trade: Message) -> list[str]:
        if to_decimal(trade.get("price")) is None:
            return []
        stream, seq = trade_stream(trade), trade.get("seq")
        if seq is not None and self._last_seq.get(stream) == seq:
            return []
        self._last_seq[stream] = seq
        if self.output is OutputFormat.JSON:
            return [json_line(trade)]
        places = self._decimals.learn_prices(trade_symbol(trade), [trade.get("price")])
        return [trade_line(trade, places)]

    def _kline(self, kline: Message) -> list[str]:
        if not self._candles.is_new(kline):
            return []
        if self.output is OutputFormat.JSON:
            return [json_line(kline)]
        prices = [kline.get(name) for name in ("open", "high", "low", "close")]
        places = self._decimals.learn_prices(kline_symbol(kline), prices)
        return [kline_line(kline, places)]

    def _book(self, message: Message) -> list[str]:
        fed = self._books.add(message)
        if fed.note is not None:
            self._notes.append(fed.note)
        followed = fed.changed
        if followed is None or not followed.whole:
            return []
        if self.output is OutputFormat.JSON:
            return [json_line(message)]
        book = followed.book
        prices = [price for price, _ in [*book.bids(1), *book.asks(1)]]
        places = self._decimals.learn_prices(followed.symbol, prices)
        return [book_line(followed, message.get("timestamp_ms"), places)]

    def _is_new(self, tick: Message) -> bool:
        symbol = tick.get("symbol")
        if not isinstance(symbol, str) or to_decimal(tick.get("last_price")) is None:
            return False
        seq = tick.get("seq")
        if seq is not None and self._last_seq.get(symbol.upper()) == seq:
            return False
        self._last_seq[symbol.upper()] = seq
        return True


def plain_line(tick: Message, places: int | None = None) -> str:
    """``2026-11-28T12:00:00.123Z BTCUSDT 59945.22 +0.81% bid 59945.10 ask 59945.30``.

    Fixed fields, space separated, ``-`` for a missing value; prices at ``places``
    decimals (the symbol's; else every digit the server sent) and no grouping, so
    ``awk``, ``cut`` and ``grep`` read them as they are.
    """
    change = to_decimal(tick.get("change_percent"))

    def price(name: str) -> str:
        return decimal_text(to_decimal(tick.get(name)), grouping=False, missing="-", places=places)

    fields = [
        format_timestamp(tick.get("timestamp_ms")),
        str(tick.get("symbol", "-")).upper(),
        price("last_price"),
        "-" if change is None else f"{change:+.2f}%",
        "bid",
        price("bid"),
        "ask",
        price("ask"),
    ]
    return " ".join(fields)


def json_line(message: Message) -> str:
    """The message (a tick, trade or candle) as one compact JSON object, numbers with the
    exact digits received."""
    return orjson.dumps(dict(message), default=_json_number).decode()


def _json_number(value: object) -> orjson.Fragment:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(format(value, "f").encode())
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def simulated_data(message: Message) -> bool | None:
    """Whether ``message`` says the served data is simulated: a tick's (or a reset's first
    tick's) ``source``, a status's ``simulated`` flag or ``source``; None when it does not say."""
    kind = message_kind(message)
    if kind == "status" and isinstance(message.get("simulated"), bool):
        return bool(message["simulated"])
    if kind == "reset":
        ticks = message.get("ticks")
        first = ticks[0] if isinstance(ticks, list) and ticks else None
        return simulated_data(first) if isinstance(first, Mapping) else None
    if kind not in ("tick", "status", "trade", "kline", "book", "depth"):
        return None
    source = message.get("source")
    return source == "sim" if isinstance(source, str) else None


SIMULATED_NOTICE = "the server is serving simulated prices, not live data"
LIVE_AGAIN_NOTICE = "the server is serving live prices again"


class OutputClosed(Exception):
    """Whoever read the tick lines has gone (``tickcast tail | head -3``)."""


class LineView:
    """The line-per-tick view: ticks to ``out``, one flushed line each; problems to ``err``."""

    def __init__(self, output: OutputFormat, where: str, out: IO[str], err: IO[str]) -> None:
        self.lines = TickLines(output)
        self.where = where
        self.out = out
        self.err = err
        self._in_trouble = False
        self._simulated = False  # what the server last said of its data
        self._said_simulated = False  # what this view last told the user

    def apply(self, message: Message | None) -> None:
        if message is None:
            return
        simulated = simulated_data(message)
        if simulated is not None:
            self._simulated = simulated
        kind = message_kind(message)
        if kind == "error":
            # Such as unknown_symbol: the connection stays open for the symbols that exist.
            detail = error_detail(message)
            self._say(f"{self.where} says: {detail}")
        elif kind == "gap":
            # On stderr: stdout stays one line per trade, and a script reading it is not
            # handed a line of another shape; a person watching sees both.
            self._say(gap_text(message))
        lines = self.lines.lines(message)
        for note in self.lines.take_notes():
            # Like a gap, on stderr: a book that is not whole has no line on stdout.
            self._say(note)
        if lines and self._simulated != self._said_simulated:
            # Said on stderr, once per switch and before the first tick it is true of: the
            # lines on stdout stay one per tick, and are never taken for live prices.
            self._said_simulated = self._simulated
            self._say(SIMULATED_NOTICE if self._simulated else LIVE_AGAIN_NOTICE)
        try:
            for line in lines:
                self.out.write(line + "\n")
                # Flushed per line: `| grep --line-buffered` sees each tick as it arrives.
                self.out.flush()
        except BrokenPipeError as exc:
            raise OutputClosed from exc

    def set_connection(self, state: ConnectionState, *, retry_in: float | None = None) -> None:
        if state is ConnectionState.CONNECTED and self._in_trouble:
            self._in_trouble = False
            self._say(f"connected to {self.where}")

    def note_problem(self, problem: Problem, retry_in: float | None) -> None:
        self._in_trouble = True
        self._say(problem.line(retry_in))

    def note(self, text: str) -> None:
        self._say(text)

    def _say(self, text: str) -> None:
        self.err.write(f"tickcast tail: {text}\n")
        self.err.flush()
