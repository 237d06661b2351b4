"""Write coalescing over real sockets: TICKCAST_FLUSH_MS batches writes, loses nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
from websockets.asyncio.client import connect

from ..support import running_server

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


async def collect_ws(url: str, seconds: float) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    async with connect(url) as ws:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                out.append(orjson.loads(await asyncio.wait_for(ws.recv(), left)))
            except TimeoutError:
                break
    return out


async def collect_sse(url: str, seconds: float) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    async with httpx.AsyncClient(timeout=None) as client, client.stream("GET", url) as stream:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        lines = stream.aiter_lines()
        while (left := end - loop.time()) > 0:
            try:
                line = await asyncio.wait_for(anext(lines), left)
            except TimeoutError:
                break
            if line.startswith("data: ") and '"type":"tick"' in line:
                out.append(orjson.loads(line[6:]))
    return out


def assert_complete(ticks: list[dict[str, object]], history: dict[str, list[int]]) -> None:
    """Per symbol: strictly increasing seqs, and every tick the server published between
    the first and last one seen (per /history) is present."""
    for symbol in SYMBOLS:
        seqs = [int(str(t["seq"])) for t in ticks if t["symbol"] == symbol]
        assert seqs == sorted(set(seqs)), f"{symbol}: out of order or duplicated"
        expected = [s for s in history[symbol] if seqs[0] <= s <= seqs[-1]]
        assert seqs == expected, f"{symbol}: gaps"


async def test_coalesced_server_delivers_every_tick_in_order(tmp_path: Path) -> None:
    """With TICKCAST_FLUSH_MS=10, WebSocket and SSE clients get every tick, in order."""
    env = {"TICKCAST_FLUSH_MS": "10", "TICKCAST_SIM_RATE": "25", "TICKCAST_HISTORY_SIZE": "500"}
    with running_server(tmp_path, ["--source", "sim", "--symbols", ",".join(SYMBOLS)], env) as s:
        query = "symbols=" + ",".join(SYMBOLS)
        results = await asyncio.gather(
            *(collect_ws(f"{s.ws_base}/ws?{query}", 2.0) for _ in range(3)),
            collect_sse(f"{s.base}/sse?{query}", 2.0),
        )
        history = {
            symbol: [t["seq"] for t in s.get(f"/history/{symbol}?limit=500").json()]
            for symbol in SYMBOLS
        }
    for ticks in results:
        assert len(ticks) >= 40
        assert_complete(ticks, history)
