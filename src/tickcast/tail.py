"""``tickcast tail``: a live terminal table of a running server, over WebSocket or SSE."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import httpx
import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
COLUMNS = ("Symbol", "Last", "24h %", "High", "Low", "Volume", "Seq")


@dataclass
class TailState:
    """What the table shows; fed one decoded message at a time. No I/O."""

    ticks: dict[str, dict[str, object]] = field(default_factory=dict)
    direction: dict[str, int] = field(default_factory=dict)
    connection: str = "connecting"
    upstream: str = "unknown"
    source: str = "unknown"
    received: int = 0
    last_id: str | None = None
    error: str | None = None

    def apply(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        if kind == "tick" or (kind is None and "symbol" in message and "last_price" in message):
            self._tick(message)
        elif kind == "status":
            self.upstream = str(message.get("upstream", self.upstream))
            self.source = str(message.get("source", self.source))
        elif kind == "reset":
            ticks = message.get("ticks")
            if isinstance(ticks, list):
                for tick in ticks:
                    if isinstance(tick, dict):
                        self._tick(tick)
        elif kind == "error":
            self.error = f"{message.get('code')}: {message.get('message')}"

    def _tick(self, tick: dict[str, object]) -> None:
        symbol = str(tick.get("symbol"))
        old = self.ticks.get(symbol)
        if old is not None:
            before, after = _decimal(old.get("last_price")), _decimal(tick.get("last_price"))
            if before is not None and after is not None and after != before:
                self.direction[symbol] = 1 if after > before else -1
        self.ticks[symbol] = tick
        self.received += 1
        if "source" in tick:
            self.source = str(tick["source"])

    def render(self) -> Table:
        title = f"tickcast: {self.connection} | upstream {self.upstream} | source {self.source}"
        if self.source == "sim":
            title += " | SIMULATED DATA"
        table = Table(title=title, caption=f"{self.received} ticks", expand=False)
        for name in COLUMNS:
            table.add_column(name, justify="left" if name == "Symbol" else "right")
        for symbol in sorted(self.ticks):
            tick = self.ticks[symbol]
            move = self.direction.get(symbol, 0)
            price_style = "green" if move > 0 else "red" if move < 0 else ""
            change = _decimal(tick.get("change_percent"))
            change_style = "" if change is None else "green" if change >= 0 else "red"
            table.add_row(
                symbol,
                Text(_show(tick.get("last_price")), style=price_style),
                Text(_show(tick.get("change_percent")), style=change_style),
                _show(tick.get("high")),
                _show(tick.get("low")),
                _show(tick.get("volume")),
                _show(tick.get("seq")),
            )
        return table

    def view(self) -> Group | Table:
        if self.error is None:
            return self.render()
        return Group(self.render(), Text(self.error, style="yellow"))


def _decimal(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _show(value: object) -> str:
    return "-" if value is None else str(value)


def websocket_url(base: str, symbols: list[str]) -> str:
    url = base.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    query = "?status=1" + (f"&symbols={','.join(symbols)}" if symbols else "")
    return url + "/ws" + query


def sse_url(base: str, symbols: list[str]) -> str:
    query = f"?symbols={','.join(symbols)}" if symbols else ""
    return base.rstrip("/") + "/sse" + query


async def _ws_messages(url: str, state: TailState) -> AsyncIterator[dict[str, object]]:
    async with connect(url, proxy=None, open_timeout=10) as ws:
        state.connection = "connected"
        async for frame in ws:
            message = orjson.loads(frame)
            if isinstance(message, dict):
                yield message


async def _sse_messages(url: str, state: TailState) -> AsyncIterator[dict[str, object]]:
    headers = {"Accept": "text/event-stream"}
    if state.last_id is not None:
        headers["Last-Event-ID"] = state.last_id
    timeout = httpx.Timeout(10.0, read=60.0)
    async with (
        httpx.AsyncClient(timeout=timeout, trust_env=False) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        response.raise_for_status()
        state.connection = "connected"
        data: list[str] = []
        async for line in response.aiter_lines():
            if line.startswith("id:"):
                state.last_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                message = orjson.loads("\n".join(data))
                data = []
                if isinstance(message, dict):
                    yield message


async def run_tail(
    url: str,
    symbols: list[str],
    use_sse: bool,
    *,
    console: Console | None = None,
    max_seconds: float | None = None,
) -> None:
    """Show the live table until cancelled (Ctrl-C) or ``max_seconds``; reconnects by
    itself with exponential backoff and jitter."""
    state = TailState()
    with (
        Live(state.view(), console=console, refresh_per_second=4, transient=False) as live,
        contextlib.suppress(TimeoutError),
    ):
        async with asyncio.timeout(max_seconds):
            await _follow(url, symbols, use_sse, state, live)


async def _follow(
    url: str, symbols: list[str], use_sse: bool, state: TailState, live: Live
) -> None:
    attempt = 0
    while True:
        state.connection = "connecting"
        live.update(state.view())
        source = (
            _sse_messages(sse_url(url, symbols), state)
            if use_sse
            else (_ws_messages(websocket_url(url, symbols), state))
        )
        try:
            async for message in source:
                attempt = 0
                state.apply(message)
                live.update(state.view())
        except (OSError, WebSocketException, InvalidHandshake, InvalidURI, httpx.HTTPError) as exc:
            state.error = f"connection: {exc}"
        except orjson.JSONDecodeError as exc:
            state.error = f"bad message from server: {exc}"
        delay = random.uniform(0, min(BACKOFF_MAX, BACKOFF_INITIAL * 2**attempt))
        attempt += 1
        state.connection = f"reconnecting in {delay:.1f}s"
        live.update(state.view())
        await asyncio.sleep(delay)
