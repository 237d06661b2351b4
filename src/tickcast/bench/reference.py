"""The exchange's own account of the measured window, for counting gaps.

A client of the simulated exchange itself (not of the server under test) records, per
symbol, every distinct ticker event time in the window. A client of the server that saw
fewer distinct events for a symbol has gaps, whatever the server did: dropped them,
conflated them, or missed them upstream. With ``trades`` it records each symbol's
aggregate trade ids whose trade time is in the window instead: every one of them is a
trade each client must get.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from tickcast.bench.scan import NEVER_MS
from tickcast.bench.upstream import combined_url, ticker_event, trade_event

log = logging.getLogger(__name__)

STREAMS_PER_CONNECTION = 200  # well under Binance's 1024 and any URL length limit


class ReferenceFeed:
    """Ticker event times (or trade ids, with ``trades``) per symbol in ``[start_ms,
    end_ms)``, straight from the exchange."""

    def __init__(self, base_url: str, symbols: Sequence[str], trades: bool = False) -> None:
        self.base_url = base_url
        self.symbols = list(symbols)
        self.trades = trades
        self.start_ms = self.end_ms = NEVER_MS  # nothing is recorded before set_window
        self.events: dict[str, set[int]] = {s: set() for s in self.symbols}
        self.shards = [
            self.symbols[i : i + STREAMS_PER_CONNECTION]
            for i in range(0, len(self.symbols), STREAMS_PER_CONNECTION)
        ]
        self.connections = 0
        self.open = 0
        self._ready = asyncio.Event()

    def set_window(self, start_ms: int, end_ms: int) -> None:
        self.start_ms, self.end_ms = start_ms, end_ms

    def on_frame(self, frame: bytes | str) -> None:
        event = trade_event(frame) if self.trades else ticker_event(frame)
        if event is None:
            return
        stamp = int(event.get("T" if self.trades else "E", 0))
        events = self.events.get(event["s"])
        if events is not None and self.start_ms <= stamp < self.end_ms:
            events.add(int(event["a"]) if self.trades else stamp)

    def expected(self) -> dict[str, int]:
        """Distinct exchange events (trades) per symbol in the window."""
        return {symbol: len(stamps) for symbol, stamps in self.events.items()}

    @property
    def reconnected(self) -> bool:
        """True when a shard had to reconnect: the reference may have missed events."""
        return self.connections > len(self.shards)

    async def wait_ready(self) -> None:
        """Until every shard is connected."""
        await self._ready.wait()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for shard in self.shards:
                kind = "aggTrade" if self.trades else "ticker"
                tasks.create_task(self._follow(combined_url(self.base_url, shard, kind)))

    async def _follow(self, url: str) -> None:
        while True:
            try:
                async with connect(url, max_size=None, compression=None) as ws:
                    self.connections += 1
                    self.open += 1
                    if self.open == len(self.shards):
                        self._ready.set()
                    try:
                        async for frame in ws:
                            self.on_frame(frame)
                    finally:
                        self.open -= 1
            except (OSError, WebSocketException, TimeoutError) as exc:
                log.warning("reference feed: %s; reconnecting", exc)
            await asyncio.sleep(0.2)
