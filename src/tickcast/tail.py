"""`tickcast tail`: a terminal client for a tickcast server's ticks.

On a terminal it draws a live table; in a pipe or a file it prints one line per tick,
plain or JSON. The pieces without I/O (``TailState``, ``TickLines``, ``SseParser``,
``describe_failure`` and the URL helpers) are plain objects tested with plain calls;
``run_tail`` is the thin asyncio driver around them: it reads WebSocket messages or SSE
events and hands them to a view (the table, or the line printer).
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import IO, Final, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson
import rich.console
import rich.table
from rich.cells import cell_len
from rich.live import Live
from rich.text import Text
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from tickcast.upstream.pacing import Backoff

SPARK_POINTS: Final = 30
SPARK_BARS: Final = "▁▂▃▄▅▆▇█"
MISSING: Final = "\N{EN DASH}"  # a value the server has not sent yet
REPAINT_SECONDS: Final = 0.25
# The server sends an SSE comment every 15 s; three missed heartbeats mean the stream is dead.
SSE_READ_TIMEOUT: Final = 45.0
CONNECT_TIMEOUT: Final = 10.0

UP_STYLE: Final = "bold green"
DOWN_STYLE: Final = "bold red"
WARN_STYLE: Final = "bold yellow"
SIMULATED_STYLE: Final = "bold black on yellow"

Message = Mapping[str, object]


class ConnectionState(StrEnum):
    """This client's connection to the tickcast server (not the server's upstream)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


class OutputFormat(StrEnum):
    """How ticks are shown: a live table, or one line per tick (for pipes and files)."""

    TABLE = "table"
    PLAIN = "plain"
    JSON = "json"


def message_kind(message: Message) -> object:
    """The message's ``type``; the seed server's untyped ``{symbol, last_price}`` is a tick."""
    kind = message.get("type")
    if kind is None and "symbol" in message and "last_price" in message:
        return "tick"
    return kind


@dataclass(frozen=True)
class Problem:
    """Why the connection failed or ended, in one line; ``fatal`` when retrying cannot help."""

    text: str
    fatal: bool = False

    def line(self, retry_in: float | None) -> str:
        """The text with the retry delay: ``... is it running? retrying in 2s``."""
        if retry_in is None:
            return self.text
        joint = " " if self.text.endswith("?") else "; "
        return f"{self.text}{joint}retrying in {math.ceil(retry_in)}s"


class TailView(Protocol):
    """What the driver reports to: the table's state, or the line printer."""

    def apply(self, message: Message | None) -> None:
        """One decoded server message (None: one that could not be decoded)."""

    def set_connection(self, state: ConnectionState, *, retry_in: float | None = None) -> None:
        """The client's own connection state (and the seconds left before a retry)."""

    def note_problem(self, problem: Problem, retry_in: float | None) -> None:
        """A connection failed or ended; a retry follows in ``retry_in`` s unless fatal."""


# ---------------------------------------------------------------------- the table


@dataclass
class SymbolRow:
    """What the table shows for one symbol: its latest tick and recent prices."""

    symbol: str
    tick: dict[str, object] = field(default_factory=dict)
    price: Decimal | None = None
    previous_price: Decimal | None = None
    direction: int = 0  # sign of the last price change: the colour of the price
    history: deque[Decimal] = field(default_factory=lambda: deque(maxlen=SPARK_POINTS))


# Columns in the order a narrower terminal drops them (from the end); the first
# ``ESSENTIAL`` are shown even when they do not fit.
COLUMNS: Final = (
    "Symbol", "Price", "Change", "Bid", "Ask", "Spread", "High", "Low", "Volume", "Age", "Trend",
)  # fmt: skip
ESSENTIAL: Final = 3
_LEFT: Final = frozenset({"Symbol", "Trend"})


def fit_columns(widths: Sequence[int], available: int | None) -> int:
    """How many leading columns of ``widths`` cells fit in ``available`` cells.

    Rich's default box draws a border before each column and after the last, and pads
    each cell with a space on both sides: a column costs its width plus 3, the table 1 more.
    The first ``ESSENTIAL`` columns count as fitting whatever the width.
    """
    if available is None:
        return len(widths)
    used, count = 1, 0
    for width in widths:
        used += width + 3
        if used > available and count >= ESSENTIAL:
            break
        count += 1
    return count


class TailState:
    """Everything the terminal table shows; updated by ``apply``, drawn by ``render``.

    Pure: no I/O, no clock. Messages are the decoded JSON objects of SPEC §6 (WebSocket
    messages, or SSE event data, see ``sse_message``).
    """

    def __init__(self) -> None:
        self.rows: dict[str, SymbolRow] = {}
        self.connection = ConnectionState.CONNECTING
        self.retry_in: float | None = None
        self.upstream: str | None = None
        self.source: str | None = None
        self.tick_count = 0
        self.ignored_count = 0
        self.reconnects = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------------ input

    def apply(self, message: Message | None) -> None:
        """Fold one server message into the state; unknown or malformed ones are counted."""
        if message is None:
            self.ignored_count += 1
            return
        kind = message_kind(message)
        if kind == "tick":
            self._apply_tick(message)
        elif kind == "status":
            self._apply_status(message)
        elif kind == "reset":
            self._apply_reset(message)
        elif kind == "error":
            detail = message.get("message") or message.get("code") or "unknown error"
            self.last_error = f"server: {detail}"
        elif kind not in ("ack", "pong"):
            self.ignored_count += 1

    def set_connection(self, state: ConnectionState, *, retry_in: float | None = None) -> None:
        """Record the client's own connection state (and the seconds left before a retry)."""
        if state is ConnectionState.CONNECTED:
            self.last_error = None
        if state is not ConnectionState.CONNECTED:
            # What the server said about its upstream is stale once we lost the server.
            self.upstream = None
        self.connection = state
        self.retry_in = retry_in if state is ConnectionState.RECONNECTING else None

    def note_problem(self, problem: Problem, retry_in: float | None) -> None:
        """Show why the last connection failed; the title counts down to the retry."""
        self.last_error = problem.text
        if retry_in is not None:
            self.reconnects += 1

    def _apply_tick(self, message: Message) -> None:
        symbol = message.get("symbol")
        price = to_decimal(message.get("last_price"))
        if not isinstance(symbol, str) or not symbol or price is None:
            self.ignored_count += 1
            return
        symbol = symbol.upper()
        row = self.rows.get(symbol)
        if row is None:
            row = self.rows[symbol] = SymbolRow(symbol)
        if row.price is not None and price != row.price:
            row.previous_price = row.price
            row.direction = 1 if price > row.price else -1
        row.price = price
        row.history.append(price)
        row.tick = dict(message)
        source = message.get("source")
        if isinstance(source, str):
            self.source = source
        self.tick_count += 1

    def _apply_status(self, message: Message) -> None:
        upstream = message.get("upstream")
        source = message.get("source")
        if isinstance(upstream, str):
            self.upstream = upstream
        if isinstance(source, str):
            self.source = source

    def _apply_reset(self, message: Message) -> None:
        ticks = message.get("ticks")
        if not isinstance(ticks, list):
            self.ignored_count += 1
            return
        for tick in ticks:
            if isinstance(tick, Mapping):
                self._apply_tick(tick)
            else:
                self.ignored_count += 1

    # ------------------------------------------------------------------ output

    def render(self, width: int | None = None, now_ms: float | None = None) -> rich.table.Table:
        """The live table: one row per symbol, the state line as title, counts as caption.

        ``width`` is the terminal's: columns that do not fit are dropped from the end of
        ``COLUMNS``, never shortened, since a cut price is a wrong price. The Age column
        (time since the tick's exchange timestamp) needs ``now_ms``.
        """
        title, caption = self._title(), self._caption()
        headers = [name for name in COLUMNS if name != "Age" or now_ms is not None]
        rows = [self._cells(row, now_ms) for row in self.rows.values()]
        widths = [max([cell_len(h), *(row[h].cell_len for row in rows)]) for h in headers]
        shown = fit_columns(widths, width)
        # Rich wraps the title to the table's width: keep a table with few (or no) rows
        # at least as wide as its state line, as far as the terminal allows.
        min_width = max(len(title.plain), len(caption.plain))
        table = rich.table.Table(
            title=title,
            caption=caption,
            title_justify="left",
            min_width=min_width if width is None else min(min_width, width),
        )
        for header, cells in zip(headers[:shown], widths, strict=False):
            table.add_column(
                header,
                justify="left" if header in _LEFT else "right",
                style="bold" if header == "Symbol" else None,
                no_wrap=True,
                min_width=cells,  # rich may not shrink a column below what its cells need
                overflow="fold",
            )
        for row in rows:
            table.add_row(*(row[header] for header in headers[:shown]))
        return table

    def _cells(self, row: SymbolRow, now_ms: float | None) -> dict[str, Text]:
        tick = row.tick
        price_style = {1: UP_STYLE, -1: DOWN_STYLE}.get(row.direction, "")
        change = to_decimal(tick.get("change_percent"))
        change_style = (
            "" if change is None or change == 0 else (UP_STYLE if change > 0 else DOWN_STYLE)
        )
        bid, ask = to_decimal(tick.get("bid")), to_decimal(tick.get("ask"))
        cells = {
            "Symbol": Text(row.symbol),
            "Price": Text(format_price(tick.get("last_price")), style=price_style),
            "Change": Text(format_percent(tick.get("change_percent")), style=change_style),
            "Bid": Text(format_price(bid)),
            "Ask": Text(format_price(ask)),
            "Spread": Text(format_spread(bid, ask)),
            "High": Text(format_price(tick.get("high"))),
            "Low": Text(format_price(tick.get("low"))),
            "Volume": Text(format_volume(tick.get("volume"))),
            "Trend": Text(sparkline(row.history), style=price_style or "dim"),
        }
        if now_ms is not None:
            cells["Age"] = Text(format_age(tick.get("timestamp_ms"), now_ms), style="dim")
        return cells

    def _title(self) -> Text:
        title = Text("tickcast  ", style="bold")
        connection_style = {
            ConnectionState.CONNECTED: "green",
            ConnectionState.CONNECTING: "yellow",
            ConnectionState.RECONNECTING: "yellow",
        }[self.connection]
        label = str(self.connection)
        if self.connection is ConnectionState.RECONNECTING and self.retry_in is not None:
            label += f" in {max(0, math.ceil(self.retry_in))}s"
        title.append(f"● {label}", style=connection_style)
        if self.upstream is not None:
            upstream_style = "green" if self.upstream == "connected" else WARN_STYLE
            title.append("  upstream: ")
            title.append(self.upstream, style=upstream_style)
        if self.source is not None:
            title.append(f"  source: {self.source}")
            if self.source == "sim":
                title.append("  ")
                title.append(" SIMULATED DATA ", style=SIMULATED_STYLE)
            elif self.source == "replay":
                title.append("  ")
                title.append(" REPLAYED DATA ", style=SIMULATED_STYLE)
        return title

    def _caption(self) -> Text:
        caption = Text(f"{self.tick_count} ticks", style="dim")
        if self.reconnects:
            caption.append(f" · {self.reconnects} reconnects", style="dim")
        if not self.rows:
            caption.append(" · waiting for ticks…", style="dim")
        if self.last_error:
            caption.append(f" · {self.last_error}", style="yellow")
        return caption


# ---------------------------------------------------------------------- one line per tick


class TickLines:
    """Turns server messages into output lines: one per tick, plain text or JSON.

    Pure. A tick whose ``seq`` is the one last printed for its symbol is skipped: the
    snapshot a reconnect starts with repeats the last tick when nothing changed meanwhile.
    """

    def __init__(self, output: OutputFormat) -> None:
        self.output = output
        self._last_seq: dict[str, object] = {}

    def lines(self, message: Message) -> list[str]:
        """The lines for one server message: one per new tick it carries (a reset: several)."""
        kind = message_kind(message)
        carried = message.get("ticks") if kind == "reset" else None
        ticks = [message] if kind == "tick" else carried if isinstance(carried, list) else []
        out = []
        for tick in ticks:
            if not isinstance(tick, Mapping) or not self._is_new(tick):
                continue
            out.append(json_line(tick) if self.output is OutputFormat.JSON else plain_line(tick))
        return out

    def _is_new(self, tick: Message) -> bool:
        symbol = tick.get("symbol")
        if not isinstance(symbol, str) or to_decimal(tick.get("last_price")) is None:
            return False
        seq = tick.get("seq")
        if seq is not None and self._last_seq.get(symbol.upper()) == seq:
            return False
        self._last_seq[symbol.upper()] = seq
        return True


def plain_line(tick: Message) -> str:
    """``2026-11-28T12:00:00.123Z BTCUSDT 59945.22 +0.81% bid 59945.1 ask 59945.3``.

    Fixed fields, space separated, ``-`` for a missing value; prices with every digit the
    server sent and no grouping, so ``awk``, ``cut`` and ``grep`` read them as they are.
    """
    change = to_decimal(tick.get("change_percent"))
    fields = [
        format_timestamp(tick.get("timestamp_ms")),
        str(tick.get("symbol", "-")).upper(),
        _decimal_text(to_decimal(tick.get("last_price")), grouping=False, missing="-"),
        "-" if change is None else f"{change:+.2f}%",
        "bid",
        _decimal_text(to_decimal(tick.get("bid")), grouping=False, missing="-"),
        "ask",
        _decimal_text(to_decimal(tick.get("ask")), grouping=False, missing="-"),
    ]
    return " ".join(fields)


def json_line(tick: Message) -> str:
    """The tick as one compact JSON object, numbers with the exact digits received."""
    return orjson.dumps(dict(tick), default=_json_number).decode()


def _json_number(value: object) -> orjson.Fragment:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(format(value, "f").encode())
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


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

    def apply(self, message: Message | None) -> None:
        if message is None:
            return
        if message_kind(message) == "error":
            # Such as unknown_symbol: the connection stays open for the symbols that exist.
            detail = message.get("message") or message.get("code") or "unknown error"
            self._say(f"{self.where} says: {detail}")
        try:
            for line in self.lines.lines(message):
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

    def _say(self, text: str) -> None:
        self.err.write(f"tickcast tail: {text}\n")
        self.err.flush()


# ---------------------------------------------------------------------- formatting


def to_decimal(value: object) -> Decimal | None:
    """The exact decimal of a JSON number or decimal string; None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float | str):
        try:
            # str() of a float is its shortest round-trip form: the digits the server sent.
            number = Decimal(str(value))
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def _decimal_text(number: Decimal | None, *, grouping: bool, missing: str) -> str:
    if number is None:
        return missing
    exponent = number.as_tuple().exponent
    given = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    digits = max(2 if abs(number) >= 1 else 4, given)
    return f"{number:{',' if grouping else ''}.{digits}f}"


def format_price(value: object) -> str:
    """A price with grouping, every digit given and at least 2 decimals (4 below 1)."""
    return _decimal_text(to_decimal(value), grouping=True, missing=MISSING)


def format_spread(bid: Decimal | None, ask: Decimal | None) -> str:
    """Ask minus bid with the digits of the prices themselves: ``0.01``, not ``0.0100``."""
    if bid is None or ask is None:
        return MISSING
    return f"{ask - bid:,f}"


def format_percent(value: object) -> str:
    """A signed percentage with 2 decimals: ``+1.25%``."""
    number = to_decimal(value)
    if number is None:
        return MISSING
    return f"{number:+,.2f}%"


_COMPACT_UNITS: Final = (
    (Decimal(10) ** 12, "T"),
    (Decimal(10) ** 9, "B"),
    (Decimal(10) ** 6, "M"),
    (Decimal(10) ** 3, "K"),
)


def format_volume(value: object) -> str:
    """A volume in compact form: ``12.35K``, ``745.00M``."""
    number = to_decimal(value)
    if number is None:
        return MISSING
    for scale, unit in _COMPACT_UNITS:
        if abs(number) >= scale:
            return f"{number / scale:,.2f}{unit}"
    return f"{number:,.2f}"


def format_timestamp(value: object) -> str:
    """Unix milliseconds as UTC ISO 8601 with milliseconds: ``2026-11-28T12:00:00.123Z``."""
    number = to_decimal(value)
    if number is None:
        return "-"
    try:
        moment = datetime.fromtimestamp(float(number) / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return "-"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_age(timestamp_ms: object, now_ms: float) -> str:
    """How old a tick is: ``0.4s``, ``12s``, ``3m``, ``2h`` (a clock ahead of ours: 0)."""
    stamp = to_decimal(timestamp_ms)
    if stamp is None:
        return MISSING
    seconds = max(0.0, (now_ms - float(stamp)) / 1000)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    return f"{seconds // 3600:.0f}h"


def sparkline(prices: Iterable[Decimal]) -> str:
    """Recent prices as a row of block characters, lowest ▁ to highest █."""
    values = list(prices)
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    if low == high:
        return SPARK_BARS[len(SPARK_BARS) // 2 - 1] * len(values)
    top = len(SPARK_BARS) - 1
    return "".join(SPARK_BARS[round((v - low) / (high - low) * top)] for v in values)


# ---------------------------------------------------------------------- protocol helpers


def websocket_url(base: str, symbols: Sequence[str]) -> str:
    """The ``/ws`` URL (asking for status messages) for a base such as ``http://host:8000``.

    Query parameters already on the base (``?token=...``) are kept.
    """
    return _endpoint(base, "/ws", {"http": "ws", "https": "wss"}, [("status", "1")], symbols)


def sse_url(base: str, symbols: Sequence[str]) -> str:
    """The ``/sse`` URL for a base such as ``http://host:8000`` (``ws://`` bases work too)."""
    return _endpoint(base, "/sse", {"ws": "http", "wss": "https"}, [], symbols)


def server_label(base: str) -> str:
    """The base URL as messages name it: ``http://host:8000``, without its query (a token)."""
    parts = urlsplit(base if "://" in base else f"http://{base}")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), "", ""))


def _endpoint(
    base: str,
    path: str,
    schemes: Mapping[str, str],
    params: list[tuple[str, str]],
    symbols: Sequence[str],
) -> str:
    parts = urlsplit(base if "://" in base else f"http://{base}")
    scheme = parts.scheme.lower()
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params]
    if symbols:
        query.append(("symbols", ",".join(symbols)))
    return urlunsplit(
        (
            schemes.get(scheme, scheme),
            parts.netloc,
            parts.path.rstrip("/") + path,
            urlencode(query, safe=","),
            "",
        )
    )


def decode_message(raw: str | bytes) -> dict[str, object] | None:
    """One JSON object from the server, numbers as exact decimals; None if not an object."""
    try:
        value = json.loads(raw, parse_float=Decimal)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class SseEvent:
    """One dispatched Server-Sent Event."""

    event: str
    data: str
    id: str | None


class SseParser:
    """The line-level SSE parser of the HTML standard, fed one line at a time.

    An ``id:`` line only fills the last event ID buffer; "If the line is empty (a blank
    line): dispatch the event", and dispatching is what sets "the last event ID string of
    the event source to the value of the last event ID buffer". So an event cut off by a
    dropped connection never becomes the resume point that ``Last-Event-ID`` resends.
    """

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self._event = ""
        self._data: list[str] = []
        self._id_buffer: str | None = None

    def restart(self) -> None:
        """Drop a half-received event and the id it carried, as when a new connection starts.

        The buffer restarts from the last dispatched id (as Chromium's parser does), not
        empty as the standard has it: an id-less event (the opening ``retry:``, a status
        event) on the new connection must not erase the resume point.
        """
        self._event = ""
        self._data = []
        self._id_buffer = self.last_event_id

    def feed_line(self, line: str) -> SseEvent | None:
        """Process one line (without its line ending); return an event on a blank line."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment: the server's heartbeat
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id_buffer = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        # The event is complete: its id (even one without data) is now the resume point.
        self.last_event_id = self._id_buffer
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return SseEvent(event=event, data="\n".join(data), id=self.last_event_id)


def sse_message(event: SseEvent) -> dict[str, object] | None:
    """The message an SSE event carries, typed by its event name when the data is untyped.

    Ticks are unnamed events (type ``message``) whose JSON says ``"type":"tick"`` (SPEC §6);
    servers before that named them ``tick``, which reads the same. ``status`` and ``reset``
    stay named.
    """
    message = decode_message(event.data)
    if message is not None and "type" not in message and event.event != "message":
        message["type"] = event.event
    return message


# ---------------------------------------------------------------------- failures


class ServerRefused(Exception):
    """The server answered the connection request with an HTTP error status."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        decoded = decode_message(body) or {}
        # The server's denials are {"error": code, "message": text} (SPEC §10).
        self.code = str(decoded.get("error") or decoded.get("code") or "")
        self.message = str(decoded.get("message") or "")


def describe_failure(
    exc: BaseException, where: str, *, was_connected: bool, has_token: bool
) -> Problem:
    """One line saying why a connection to ``where`` failed, without the exception's noise."""
    if isinstance(exc, ServerRefused):
        return _refusal(exc, where, has_token)
    if isinstance(exc, httpx.ReadTimeout):
        return Problem(f"{where} sent nothing for {SSE_READ_TIMEOUT:g}s, not even a heartbeat")
    if was_connected:
        detail = ""
        if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
            detail = _close_detail(exc.rcvd.code, exc.rcvd.reason)
        return Problem(f"lost the connection to {where}{detail}")
    if _caused_by(exc, socket.gaierror):
        return Problem(f"cannot resolve the host of {where}: check --url")
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return Problem(f"{where} did not answer within {CONNECT_TIMEOUT:g}s")
    if isinstance(exc, OSError | httpx.ConnectError):
        return Problem(f"server unreachable at {where}: is it running?")
    return Problem(f"{where} did not answer like a tickcast server ({type(exc).__name__})")


def _refusal(exc: ServerRefused, where: str, has_token: bool) -> Problem:
    status, code = exc.status, exc.code
    said = f": {exc.message}" if exc.message else ""
    if status == 401:
        if has_token:
            return Problem(f"{where} refused the token (401): check --token", fatal=True)
        return Problem(
            f"{where} requires a token (401): pass --token or set TICKCAST_TOKEN", fatal=True
        )
    if status in (403, 404) and not code:
        # Not the server's own JSON denial: a path with no route (a WebSocket to one gets a
        # bare 403 from the server's framework), so --url is probably wrong.
        return Problem(
            f"{where} has no tickcast stream ({status}): --url takes the server's base URL, "
            "e.g. http://localhost:8000",
            fatal=True,
        )
    if status == 403:
        return Problem(f"{where} refused this client (403 {code}{said})", fatal=True)
    if status == 503 and code == "ingest_only":
        return Problem(
            f"{where} is an ingest-only node (503): point --url at an edge node", fatal=True
        )
    if status in (429, 503) or status >= 500:
        return Problem(f"{where} cannot take the connection now ({status} {code or 'busy'})")
    return Problem(f"{where} refused the request ({status} {code or 'error'}{said})", fatal=True)


def _close_detail(code: int | None, reason: str) -> str:
    """`` (1001 going away)`` for a close frame's code and reason; empty without them."""
    detail = " ".join(str(part) for part in (code, reason) if part)
    return f" ({detail})" if detail else ""


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):  # httpx and websockets wrap the socket's error once or twice
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# ---------------------------------------------------------------------- asyncio driver

# What a lost or refused connection raises; anything else is a bug and propagates.
_CONNECTION_ERRORS: Final = (
    OSError, TimeoutError, WebSocketException, httpx.HTTPError, ServerRefused,
)  # fmt: skip


async def run_tail(
    url: str,
    symbols: list[str],
    use_sse: bool,
    *,
    token: str | None = None,
    output: OutputFormat = OutputFormat.TABLE,
    console: rich.console.Console | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    max_seconds: float | None = None,
) -> int:
    """Show ``symbols`` (the server's defaults when empty) from ``url``; returns an exit code.

    A table on ``console``, or one line per tick on ``out`` (problems on ``err``).
    Reconnects with backoff until cancelled (Ctrl-C under ``asyncio.run``) or, when
    ``max_seconds`` is given, until that much time has passed; returns 1 at once when the
    server refuses in a way a retry cannot fix. A closed ``out`` raises ``OutputClosed``.
    """
    wanted = [s.strip().upper() for s in symbols if s.strip()]
    if output is OutputFormat.TABLE:
        return await _run_table(url, wanted, use_sse, token, console, max_seconds)
    view = LineView(output, server_label(url), out or sys.stdout, err or sys.stderr)
    driver = _Driver(url, wanted, use_sse, token, view)
    try:
        async with asyncio.timeout(max_seconds):
            return await driver.run()
    except TimeoutError:
        return 0


async def _run_table(
    url: str,
    symbols: list[str],
    use_sse: bool,
    token: str | None,
    console: rich.console.Console | None,
    max_seconds: float | None,
) -> int:
    state = TailState()
    driver = _Driver(url, symbols, use_sse, token, state)
    code = 0
    with Live(console=console, auto_refresh=False) as live:

        def paint() -> None:
            # The width is read at each repaint, so a resized terminal gets its columns.
            width = live.console.width
            live.update(state.render(width, now_ms=time.time() * 1000), refresh=True)

        deadline = asyncio.timeout(max_seconds)
        try:
            async with deadline, asyncio.TaskGroup() as tasks:
                repaint = tasks.create_task(_repaint(paint))
                code = await driver.run()
                repaint.cancel()
        except TimeoutError:
            if not deadline.expired():
                raise
        finally:
            paint()
    return code


async def _repaint(paint: Callable[[], None]) -> None:
    # Repainting on a timer, not per message, keeps a fast feed from costing a redraw each.
    while True:
        paint()
        await asyncio.sleep(REPAINT_SECONDS)


class _Driver:
    """The reconnect loop around one WebSocket or SSE connection at a time."""

    def __init__(
        self, url: str, symbols: list[str], use_sse: bool, token: str | None, view: TailView
    ) -> None:
        self.url = sse_url(url, symbols) if use_sse else websocket_url(url, symbols)
        self.where = server_label(url)
        self.use_sse = use_sse
        self.view = view
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        # The same full-jitter backoff as the upstream client, from 1 s up to 30 s.
        self.backoff = Backoff(initial=1.0, maximum=30.0)
        self.sse = SseParser()
        self._connected = False

    async def run(self) -> int:
        """Follow the stream, reconnecting, until cancelled; 1 on a refusal a retry cannot fix."""
        while True:
            self.view.set_connection(ConnectionState.CONNECTING)
            self._connected = False
            try:
                if self.use_sse:
                    problem = await self._follow_sse()
                else:
                    problem = await self._follow_ws()
            except _CONNECTION_ERRORS as exc:
                problem = describe_failure(
                    exc, self.where, was_connected=self._connected, has_token=bool(self.headers)
                )
            if problem.fatal:
                self.view.note_problem(problem, None)
                return 1
            # Whole seconds, at least one: what the message says is what happens.
            delay = float(max(1, math.ceil(self.backoff.next_delay())))
            self.view.note_problem(problem, delay)
            await self._wait_before_retry(delay)

    async def _wait_before_retry(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while (left := deadline - loop.time()) > 0:
            self.view.set_connection(ConnectionState.RECONNECTING, retry_in=left)
            await asyncio.sleep(min(1.0, left))

    def _connect(self) -> None:
        self._connected = True
        self.view.set_connection(ConnectionState.CONNECTED)

    def _deliver(self, message: dict[str, object] | None) -> None:
        # A connection that delivers data is healthy: the next drop starts from 1 s again.
        self.backoff.reset()
        self.view.apply(message)

    async def _follow_ws(self) -> Problem:
        try:
            async with ws_connect(
                self.url, open_timeout=CONNECT_TIMEOUT, additional_headers=self.headers
            ) as ws:
                self._connect()
                async for raw in ws:
                    self._deliver(decode_message(raw))
        except InvalidStatus as exc:
            response = exc.response
            raise ServerRefused(response.status_code, bytes(response.body or b"")) from exc
        detail = _close_detail(ws.close_code, ws.close_reason or "")
        return Problem(f"{self.where} closed the connection{detail}")

    async def _follow_sse(self) -> Problem:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **self.headers}
        if self.sse.last_event_id is not None:
            headers["Last-Event-ID"] = self.sse.last_event_id
        timeout = httpx.Timeout(CONNECT_TIMEOUT, read=SSE_READ_TIMEOUT)
        async with (
            httpx.AsyncClient(timeout=timeout) as client,
            client.stream("GET", self.url, headers=headers) as response,
        ):
            if response.status_code != 200:
                raise ServerRefused(response.status_code, await response.aread())
            self.sse.restart()
            self._connect()
            async for line in response.aiter_lines():
                event = self.sse.feed_line(line)
                if event is not None:
                    self._deliver(sse_message(event))
        return Problem(f"{self.where} ended the stream")
