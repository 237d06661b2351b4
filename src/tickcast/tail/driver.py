"""The asyncio driver: ``run_tail``, and the reconnect loop with backoff around one
WebSocket or SSE connection at a time, which hands each message to a view (the table,
repainted on a timer, or the line printer).
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Callable
from typing import IO, Final

import httpx
import orjson
import rich.console
from rich.live import Live
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus, WebSocketException

from tickcast.tail.failures import Problem, ServerRefused, close_detail, describe_failure
from tickcast.tail.ladder import DEFAULT_LEVELS
from tickcast.tail.lines import LineView
from tickcast.tail.protocol import (
    CONNECT_TIMEOUT,
    SSE_READ_TIMEOUT,
    SseParser,
    decode_message,
    server_label,
    sse_message,
    sse_url,
    streams_url,
    symbols_url,
    websocket_url,
)
from tickcast.tail.subscription import (
    TOO_MANY_SUBSCRIPTIONS,
    UNKNOWN_STREAM,
    UNKNOWN_SYMBOL,
    Subscription,
    asked_names,
    named_symbols,
    refusal_code,
)
from tickcast.tail.table import TailState
from tickcast.tail.view import ConnectionState, OutputFormat, TailView
from tickcast.upstream.pacing import Backoff

# A token, or where to read the current one (a file a renewer rewrites, say).
Token = str | Callable[[], str | None] | None

REPAINT_SECONDS: Final = 0.25

# What a lost or refused connection raises; anything else is a bug and propagates.
_CONNECTION_ERRORS: Final = (
    OSError, TimeoutError, WebSocketException, httpx.HTTPError, ServerRefused,
)  # fmt: skip


async def run_tail(
    url: str,
    symbols: list[str],
    use_sse: bool,
    *,
    token: Token = None,
    output: OutputFormat = OutputFormat.TABLE,
    console: rich.console.Console | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    max_seconds: float | None = None,
    levels: int = DEFAULT_LEVELS,
) -> int:
    """Show ``symbols`` (the server's defaults when empty) from ``url``; returns an exit code.

    ``symbols`` may name streams too (``BTCUSDT@trades``, ``BTCUSDT@kline_1m``,
    ``BTCUSDT@book``, ``BTCUSDT@depth``; a bad stream name raises ``ValueError``). A table
    on ``console`` (with a trade tape, a candle table and book ladders of ``levels`` levels
    per side for those streams), or one line per tick, trade, candle or book update on
    ``out`` (problems on ``err``).
    Reconnects with backoff until cancelled (Ctrl-C under ``asyncio.run``) or, when
    ``max_seconds`` is given, until that much time has passed; returns 1 at once when the
    server refuses in a way a retry cannot fix. A closed ``out`` raises ``OutputClosed``.
    """
    wanted = asked_names(symbols)
    if output is OutputFormat.TABLE:
        state = TailState(wanted, levels=levels, clock=lambda: time.time() * 1000)
        return await _run_table(url, wanted, state, use_sse, token, console, err, max_seconds)
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
    state: TailState,
    use_sse: bool,
    token: Token,
    console: rich.console.Console | None,
    err: IO[str] | None,
    max_seconds: float | None,
) -> int:
    driver = _Driver(url, symbols, use_sse, token, state)
    code = 0
    with Live(console=console, auto_refresh=False) as live:

        def paint() -> None:
            # The width is read at each repaint, so a resized terminal gets its columns.
            width = live.console.width
            live.update(state.screen(width, now_ms=time.time() * 1000), refresh=True)

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
    if driver.ended is not None:
        # The table stays on screen with the reason in its caption; the same line goes to
        # stderr, where a script or the user's scrollback finds it after the table is gone.
        print(f"tickcast tail: {driver.ended.text}", file=err or sys.stderr, flush=True)
    return code


async def _repaint(paint: Callable[[], None]) -> None:
    # Repainting on a timer, not per message, keeps a fast feed from costing a redraw each.
    while True:
        paint()
        await asyncio.sleep(REPAINT_SECONDS)


class _Driver:
    """The reconnect loop around one WebSocket or SSE connection at a time."""

    def __init__(
        self, url: str, symbols: list[str], use_sse: bool, token: Token, view: TailView
    ) -> None:
        self.base = url
        self.where = server_label(url)
        self.subscription = Subscription(symbols, self.where)
        self.use_sse = use_sse
        self.view = view
        # A token that can change (read from a file each time) is sent again when the
        # server says the one in use is expiring.
        self._token: Callable[[], str | None] = token if callable(token) else lambda: token
        self._sent_token: str | None = None
        # The same full-jitter backoff as the upstream client, from 1 s up to 30 s.
        self.backoff = Backoff(initial=1.0, maximum=30.0)
        self.sse = SseParser()
        self._connected = False
        self.ended: Problem | None = None  # why the tail gave up, when it did

    @property
    def headers(self) -> dict[str, str]:
        token = self._token()
        self._sent_token = token
        return {"Authorization": f"Bearer {token}"} if token else {}

    @property
    def url(self) -> str:
        """Where the next connection goes: the names still asked for, none refused."""
        symbols, streams = self.subscription.symbols, self.subscription.streams
        if self.use_sse:
            return sse_url(self.base, symbols, streams)
        return websocket_url(self.base, symbols, streams)

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
            if problem is None:
                continue  # the server refused some symbols: ask again, at once, without them
            if problem.fatal:
                self.ended = problem
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

    async def _deliver(self, message: dict[str, object] | None) -> Problem | None:
        """Hand ``message`` to the view; a fatal Problem when it leaves nothing to show."""
        code = None if message is None else refusal_code(message)
        if message is not None and code is not None:
            if code == TOO_MANY_SUBSCRIPTIONS:
                return self.subscription.too_many(str(message.get("message") or ""))
            problem = await self._refused_symbols(named_symbols(message))
            if problem is None:
                self.view.apply(message)  # which symbols could not be learnt: say what it said
            elif problem.fatal:
                return problem
            else:
                self.view.note(problem.text)
            return None
        # A connection that delivers data is healthy: the next drop starts from 1 s again.
        self.backoff.reset()
        self.view.apply(message)
        return None

    async def _refused_symbols(self, named: list[str] | None) -> Problem | None:
        """Drop the names an ``unknown_symbol`` or ``unknown_stream`` refusal is about:
        those it names, else those not in the server's ``/symbols`` and ``/streams``. None
        when it is about none still asked for."""
        if named is None:
            named = await self._unserved()
        return self.subscription.drop(named)

    async def _unserved(self) -> list[str]:
        """The names still asked for that the server's ``/symbols`` (for symbols) and
        ``/streams`` (for streams) do not list; none judged by a list that cannot be had
        (the refusal is then shown as the server worded it)."""
        symbols = self.subscription.symbols
        streams = self.subscription.streams
        timeout = httpx.Timeout(CONNECT_TIMEOUT)
        async with httpx.AsyncClient(timeout=timeout) as client:
            served_symbols = served_streams = None
            if symbols or not streams:  # none asked: the server's defaults, all symbols
                served_symbols = await self._listing(client, symbols_url(self.base), "symbols")
            if streams:
                served_streams = await self._listing(client, streams_url(self.base), "streams")
        return self.subscription.unserved_among(served_symbols, served_streams)

    async def _listing(self, client: httpx.AsyncClient, url: str, key: str) -> list[object] | None:
        """The list under ``key`` of the server's ``url``; None when it cannot be had."""
        try:
            response = await client.get(url, headers=self.headers)
        except httpx.HTTPError:
            return None
        body = decode_message(response.content) if response.status_code == 200 else None
        listed = None if body is None else body.get(key)
        return listed if isinstance(listed, list) else None

    async def _follow_ws(self) -> Problem | None:
        try:
            async with ws_connect(
                self.url, open_timeout=CONNECT_TIMEOUT, additional_headers=self.headers
            ) as ws:
                self._connect()
                async for raw in ws:
                    message = decode_message(raw)
                    if message is not None and message.get("type") == "token_expiring":
                        await self._refresh(ws, message)
                        continue
                    ended = await self._deliver(message)
                    if ended is not None:
                        return ended
        except InvalidStatus as exc:
            response = exc.response
            raise ServerRefused(response.status_code, bytes(response.body or b"")) from exc
        detail = close_detail(ws.close_code, ws.close_reason or "")
        return Problem(f"{self.where} closed the connection{detail}")

    async def _refresh(self, ws: ClientConnection, message: dict[str, object]) -> None:
        """Send the token source's current token, when it is a new one (SPEC §10)."""
        token = self._token()
        if token and token != self._sent_token:
            self._sent_token = token
            await ws.send(orjson.dumps({"op": "refresh", "token": token}).decode())
            return
        in_ms = message.get("in_ms")
        seconds = round(in_ms / 1000) if isinstance(in_ms, int | float) else "a few"
        self.view.note(f"{self.where}: the token expires in {seconds} s and there is no new one")

    async def _follow_sse(self) -> Problem | None:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **self.headers}
        if self.sse.last_event_id is not None:
            headers["Last-Event-ID"] = self.sse.last_event_id
        timeout = httpx.Timeout(CONNECT_TIMEOUT, read=SSE_READ_TIMEOUT)
        async with (
            httpx.AsyncClient(timeout=timeout) as client,
            client.stream("GET", self.url, headers=headers) as response,
        ):
            if response.status_code != 200:
                return await self._sse_refused(
                    ServerRefused(response.status_code, await response.aread())
                )
            self.sse.restart()
            self._connect()
            async for line in response.aiter_lines():
                event = self.sse.feed_line(line)
                if event is not None:
                    ended = await self._deliver(sse_message(event))
                    if ended is not None:
                        return ended
        return Problem(f"{self.where} ended the stream")

    async def _sse_refused(self, refused: ServerRefused) -> Problem | None:
        """An HTTP refusal of ``/sse``: one of names is the subscription's to judge (None:
        ask again without the names it dropped); any other is raised for the retry loop."""
        if refused.code == TOO_MANY_SUBSCRIPTIONS:
            return self.subscription.too_many(refused.message)
        if refused.code in (UNKNOWN_SYMBOL, UNKNOWN_STREAM) and refused.status == 404:
            # The whole stream is refused when any name is unknown (or, on a server that
            # streams the others, when none is served); the body does not list them.
            problem = await self._refused_symbols(None)
            if problem is not None and not problem.fatal:
                self.view.note(problem.text)
                return None
            if problem is not None:
                return problem
        raise refused
