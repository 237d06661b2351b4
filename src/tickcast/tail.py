"""`tickcast tail`: a terminal client that prints a live table of a tickcast server's ticks.

The pieces without I/O (``TailState``, ``SseParser`` and the URL helpers) are
plain objects tested with plain calls; ``run_tail`` is the thin asyncio driver around them:
it reads WebSocket messages or SSE events, feeds them to the state and repaints the table.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import rich.console
import rich.table
from rich.live import Live
from rich.text import Text
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import WebSocketException

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


@dataclass
class SymbolRow:
    """What the table shows for one symbol: its latest tick and recent prices."""

    symbol: str
    tick: dict[str, object] = field(default_factory=dict)
    price: Decimal | None = None
    previous_price: Decimal | None = None
    direction: int = 0  # sign of the last price change: the colour of the price
    history: deque[Decimal] = field(default_factory=lambda: deque(maxlen=SPARK_POINTS))


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

    def apply(self, message: Message) -> None:
        """Fold one server message into the state; unknown or malformed ones are counted."""
        kind = message.get("type")
        if kind is None and "symbol" in message and "last_price" in message:
            kind = "tick"  # the seed server's untyped shape
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

    def note_error(self, error: BaseException) -> None:
        """Remember why the last connection attempt failed, for the caption."""
        text = str(error) or type(error).__name__
        self.last_error = f"{type(error).__name__}: {text}"

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

    def render(self) -> rich.table.Table:
        """The live table: one row per symbol, the state line as title, counts as caption."""
        title, caption = self._title(), self._caption()
        table = rich.table.Table(
            title=title,
            caption=caption,
            title_justify="left",
            # Rich wraps the title to the table's width: keep a table with few (or no) rows
            # at least as wide as its state line.
            min_width=max(len(title.plain), len(caption.plain)),
        )
        table.add_column("Symbol", style="bold", no_wrap=True)
        table.add_column("Last price", justify="right", no_wrap=True)
        table.add_column("24h change", justify="right", no_wrap=True)
        table.add_column("24h high", justify="right", no_wrap=True)
        table.add_column("24h low", justify="right", no_wrap=True)
        table.add_column("Volume", justify="right", no_wrap=True)
        table.add_column("Trend", no_wrap=True)
        for row in self.rows.values():
            table.add_row(*self._cells(row))
        return table

    def _cells(self, row: SymbolRow) -> tuple[Text, ...]:
        tick = row.tick
        price_style = {1: UP_STYLE, -1: DOWN_STYLE}.get(row.direction, "")
        change = to_decimal(tick.get("change_percent"))
        change_style = (
            "" if change is None or change == 0 else (UP_STYLE if change > 0 else DOWN_STYLE)
        )
        return (
            Text(row.symbol),
            Text(format_price(tick.get("last_price")), style=price_style),
            Text(format_percent(tick.get("change_percent")), style=change_style),
            Text(format_price(tick.get("high"))),
            Text(format_price(tick.get("low"))),
            Text(format_volume(tick.get("volume"))),
            Text(sparkline(row.history), style=price_style or "dim"),
        )

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


def _fraction_digits(number: Decimal) -> int:
    exponent = number.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def format_price(value: object) -> str:
    """A price with grouping, at least 2 decimals (4 below 1) and every digit given, up to 8."""
    number = to_decimal(value)
    if number is None:
        return MISSING
    minimum = 2 if abs(number) >= 1 else 4
    digits = min(8, max(minimum, _fraction_digits(number)))
    return f"{number:,.{digits}f}"


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


# ---------------------------------------------------------------------- asyncio driver

# What a lost or refused connection raises; anything else is a bug and propagates.
_CONNECTION_ERRORS: Final = (OSError, TimeoutError, WebSocketException, httpx.HTTPError)


async def run_tail(
    url: str,
    symbols: list[str],
    use_sse: bool,
    *,
    console: rich.console.Console | None = None,
    max_seconds: float | None = None,
) -> None:
    """Show a live table of ``symbols`` (the server's defaults when empty) from ``url``.

    Reconnects with backoff until cancelled (Ctrl-C under ``asyncio.run``) or, when
    ``max_seconds`` is given, until that much time has passed.
    """
    wanted = [s.strip().upper() for s in symbols if s.strip()]
    state = TailState()
    driver = _Driver(url, wanted, use_sse, state)
    with Live(state.render(), console=console, auto_refresh=False) as live:
        deadline = asyncio.timeout(max_seconds)
        try:
            async with deadline, asyncio.TaskGroup() as tasks:
                tasks.create_task(_repaint(live, state))
                tasks.create_task(driver.run())
        except TimeoutError:
            if not deadline.expired():
                raise
        finally:
            live.update(state.render(), refresh=True)


async def _repaint(live: Live, state: TailState) -> None:
    # Repainting on a timer, not per message, keeps a fast feed from costing a redraw each.
    while True:
        live.update(state.render(), refresh=True)
        await asyncio.sleep(REPAINT_SECONDS)


class _Driver:
    """The reconnect loop around one WebSocket or SSE connection at a time."""

    def __init__(self, url: str, symbols: list[str], use_sse: bool, state: TailState) -> None:
        self.url = sse_url(url, symbols) if use_sse else websocket_url(url, symbols)
        self.use_sse = use_sse
        self.state = state
        # The same full-jitter backoff as the upstream client, from 1 s up to 30 s.
        self.backoff = Backoff(initial=1.0, maximum=30.0)
        self.sse = SseParser()

    async def run(self) -> None:
        while True:
            self.state.set_connection(ConnectionState.CONNECTING)
            try:
                if self.use_sse:
                    await self._follow_sse()
                else:
                    await self._follow_ws()
            except _CONNECTION_ERRORS as exc:
                self.state.note_error(exc)
            self.state.reconnects += 1
            await self._wait_before_retry(self.backoff.next_delay())

    async def _wait_before_retry(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while (left := deadline - loop.time()) > 0:
            self.state.set_connection(ConnectionState.RECONNECTING, retry_in=left)
            await asyncio.sleep(min(1.0, left))

    def _deliver(self, message: dict[str, object] | None) -> None:
        # A connection that delivers data is healthy: the next drop starts from 1 s again.
        self.backoff.reset()
        if message is not None:
            self.state.apply(message)
        else:
            self.state.ignored_count += 1

    async def _follow_ws(self) -> None:
        async with ws_connect(self.url, open_timeout=CONNECT_TIMEOUT) as ws:
            self.state.set_connection(ConnectionState.CONNECTED)
            async for raw in ws:
                self._deliver(decode_message(raw))

    async def _follow_sse(self) -> None:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.sse.last_event_id is not None:
            headers["Last-Event-ID"] = self.sse.last_event_id
        timeout = httpx.Timeout(CONNECT_TIMEOUT, read=SSE_READ_TIMEOUT)
        async with (
            httpx.AsyncClient(timeout=timeout) as client,
            client.stream("GET", self.url, headers=headers) as response,
        ):
            response.raise_for_status()
            self.sse.restart()
            self.state.set_connection(ConnectionState.CONNECTED)
            async for line in response.aiter_lines():
                event = self.sse.feed_line(line)
                if event is not None:
                    self._deliver(sse_message(event))
