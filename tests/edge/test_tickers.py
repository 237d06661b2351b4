"""``!tickers`` (SPEC §12 "Every market"): every symbol's ticker as one stream. One message
per upstream batch with the ticks that changed, every symbol's latest on subscribe, merged
per symbol for a slow client, one subscription; plain calls and a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import websockets

from tickcast.edge.ops import resolve
from tickcast.edge.session import Limits, Session
from tickcast.edge.wire import Wire
from tickcast.messages.tick import Tick
from tickcast.messages.tickers import Tickers

from ..fakes import FakeTime, RecordingTransport, tick
from ..support import ServerProcess, running_server

SERVED = frozenset({"BTCUSDT", "ETHUSDT", "SOLUSDT", "!tickers", "BTCUSDT@trades"})


def batch(*pairs: tuple[str, int]) -> Tickers:
    held = [tick(symbol, seq).message for symbol, seq in pairs]
    return Tickers.of(t for t in held if isinstance(t, Tick))


def test_a_tickers_message_holds_the_newest_tick_of_each_symbol() -> None:
    message = batch(("BTCUSDT", 1), ("ETHUSDT", 2), ("BTCUSDT", 3))
    body = orjson.loads(message.encode())
    assert body["type"] == "tickers" and body["stream"] == "!tickers"
    assert [(t["symbol"], t["seq"]) for t in body["ticks"]] == [("BTCUSDT", 3), ("ETHUSDT", 2)]
    assert body["seq"] == 3 and message.key == "!tickers"


def test_a_paused_client_gets_its_tickers_merged_per_symbol() -> None:
    transport = RecordingTransport()
    clock = FakeTime()
    session = Session(1, transport, SERVED, limits=Limits(), clock=clock, schedule=clock.schedule)
    transport.on_pause, transport.on_resume = session.paused, session.flush
    session.symbols.add("!tickers")
    transport.writable = False
    session.offer(Wire(batch(("BTCUSDT", 1), ("ETHUSDT", 2))))
    session.offer(Wire(batch(("BTCUSDT", 3), ("SOLUSDT", 4))))
    transport.writable = True
    (only,) = transport.messages()
    ticks = only["ticks"]
    assert isinstance(ticks, list)
    assert sorted((t["symbol"], t["seq"]) for t in ticks) == [
        ("BTCUSDT", 3),
        ("ETHUSDT", 2),
        ("SOLUSDT", 4),
    ]
    assert only["seq"] == 4


def test_star_means_the_symbols_not_the_tickers_stream() -> None:
    keys, unknown = resolve(["*"], SERVED)
    assert keys == ["BTCUSDT", "ETHUSDT", "SOLUSDT"] and unknown == []
    assert resolve(["!tickers"], SERVED) == (["!tickers"], [])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"TICKCAST_SIM_RATE": "5", "TICKCAST_STREAM_KINDS": ""}
    with running_server(tmp_path_factory.mktemp("tickers"), ["--source", "sim"], env) as s:
        yield s


async def test_tickers_on_a_real_server(server: ServerProcess) -> None:
    """Every symbol's latest first, then one message per batch of changed ticks, with
    every tick the symbols' own streams carry, in order, none missed."""
    url = server.ws_base + "/ws?streams=!tickers&status=1"
    async with websockets.connect(url) as ws, websockets.connect(server.ws_base + "/ws") as own:
        got: list[dict[str, object]] = []
        mine: list[dict[str, object]] = []

        async def read(conn: websockets.ClientConnection, into: list[dict[str, object]]) -> None:
            while True:
                into.append(orjson.loads(await conn.recv()))

        readers = [asyncio.create_task(read(ws, got)), asyncio.create_task(read(own, mine))]
        await asyncio.sleep(2.0)
        for reader in readers:
            reader.cancel()
    batches = [m for m in got if m["type"] == "tickers"]
    first = batches[0]["ticks"]
    assert isinstance(first, list) and len(first) == 10  # every symbol's latest
    seen = {t["seq"] for b in batches[1:] for t in b["ticks"]}  # type: ignore[attr-defined]
    own_ticks = [m["seq"] for m in mine if m["type"] == "tick"][10:]  # past the snapshot
    newest = max(seen)
    assert {s for s in own_ticks if s <= newest} <= seen, "a tick the stream did not carry"
    assert len(batches) > 5
    acks = [m for m in got if m["type"] == "ack"]
    assert acks and acks[0]["streams"] == ["!tickers"]


def test_tickers_is_listed_among_the_streams(server: ServerProcess, tmp_path: Path) -> None:
    assert "!tickers" in server.get("/streams").json()["streams"]
