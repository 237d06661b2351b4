"""``*``: the edge follows the served set as the exchange's listing changes (SPEC §12). A
real ``Node`` with its memory hub (its source never started) and recording transports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tickcast.edge.fanout import Edge
from tickcast.messages.tick import Tick
from tickcast.node import Node
from tickcast.settings import Settings

from ..fakes import RecordingTransport


def settings() -> Settings:
    values: dict[str, object] = {
        "source": "binance",
        "symbols": "*,BTCUSDT,ETHUSDT",
        "stream_kinds": "trades",
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


async def publish(node: Node, symbol: str, seq: int) -> None:
    tick = Tick(symbol=symbol, seq=seq, timestamp_ms=seq, source="sim", last_price="1")
    node.hub.publish(tick)
    await asyncio.sleep(0)


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    node = Node(settings())
    edge = Edge(node.settings, node, node.served)
    await edge.start()
    try:
        yield edge
    finally:
        await edge.stop()


def node_of(edge: Edge) -> Node:
    node = edge.node
    assert isinstance(node, Node)
    return node


async def test_a_new_listing_can_be_subscribed_and_streams(edge: Edge) -> None:
    """A symbol listed while the server runs is a stream a client can subscribe, and its
    ticks reach it; before, its ticks reach no one."""
    node = node_of(edge)
    client = RecordingTransport()
    session = edge.open(client, "10.0.0.1", [])
    await publish(node, "NEWUSDT", 1)
    assert session.choose(["NEWUSDT"]) == [] and client.messages()[-1]["code"] == "unknown_symbol"
    node.served.replace(["BTCUSDT", "ETHUSDT", "NEWUSDT"])
    edge.subscribe(session, session.choose(["NEWUSDT"]))
    await publish(node, "NEWUSDT", 2)
    assert [m["seq"] for m in client.messages() if m.get("symbol") == "NEWUSDT"] == [1, 2]


async def test_a_delisted_symbol_tells_its_clients_once_and_ends_its_streams(
    edge: Edge,
) -> None:
    """The clients of a symbol that stopped trading get one ``delisted`` error naming it
    and the streams of it they held, and nothing of it after; other clients hear
    nothing of it."""
    node = node_of(edge)
    holder, other = RecordingTransport(), RecordingTransport()
    session = edge.open(holder, "10.0.0.1", ["ETHUSDT", "ETHUSDT@trades", "BTCUSDT"])
    edge.open(other, "10.0.0.2", ["BTCUSDT"])
    node.served.replace(["BTCUSDT", "SOLUSDT"])
    errors = [m for m in holder.messages() if m.get("type") == "error"]
    assert errors == [
        {
            "type": "error",
            "code": "delisted",
            "message": "ETHUSDT is no longer trading on the exchange: its streams ended",
            "symbol": "ETHUSDT",
            "streams": ["ETHUSDT@ticker", "ETHUSDT@trades"],
        }
    ]
    assert session.symbols == {"BTCUSDT"}
    assert not [m for m in other.messages() if m.get("type") == "error"]
    before = len(holder.messages())
    await publish(node, "ETHUSDT", 5)
    await publish(node, "BTCUSDT", 6)
    assert [m.get("symbol") for m in holder.messages()[before:]] == ["BTCUSDT"]
    assert edge.counters["delisted_unsubscribed"] == 2


async def test_every_tickers_stream_leaves_out_what_is_not_served(edge: Edge) -> None:
    """``!tickers`` carries served symbols alone: its snapshot and its live batches leave
    out a symbol delisted (its last tick still in the hub) or never listed."""
    node = node_of(edge)
    await publish(node, "BTCUSDT", 1)
    await publish(node, "ETHUSDT", 2)
    node.served.replace(["BTCUSDT"])
    client = RecordingTransport()
    edge.open(client, "10.0.0.1", ["!tickers"])
    await publish(node, "ETHUSDT", 3)
    await publish(node, "OTHERUSDT", 4)
    await publish(node, "BTCUSDT", 5)
    await asyncio.sleep(0)
    sent = [[t["symbol"] for t in m["ticks"]] for m in client.messages() if m["type"] == "tickers"]  # type: ignore[union-attr]
    assert sent == [["BTCUSDT"], ["BTCUSDT"]]


async def test_a_tickers_client_joining_mid_batch_gets_each_tick_once(edge: Edge) -> None:
    """A client that subscribes to ``!tickers`` while a batch is being gathered gets the
    batch's ticks in its snapshot, not a second time in the batch; the clients already
    there get the batch."""
    node = node_of(edge)
    before = RecordingTransport()
    edge.open(before, "10.0.0.1", ["!tickers"])
    tick = Tick(symbol="BTCUSDT", seq=7, timestamp_ms=7, source="sim", last_price="1")
    node.hub.publish(tick)  # gathered for this step's batch, sent at its end
    joiner = RecordingTransport()
    edge.open(joiner, "10.0.0.2", ["!tickers"])
    await asyncio.sleep(0)
    await asyncio.sleep(0)

    def seqs(transport: RecordingTransport) -> list[object]:
        return [t["seq"] for m in transport.messages() for t in m.get("ticks", [])]  # type: ignore[union-attr]

    assert seqs(joiner) == [7] and seqs(before) == [7]
