"""Binance's depth diffs and REST snapshots, parsed strictly: what is no diff or no book
is counted and skipped, or refused as a bad answer, never half taken."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tickcast.messages.book import DepthEvent
from tickcast.upstream.normalize import Normalizer
from tickcast.upstream.rest import (
    RestClient,
    RestError,
    RestErrorKind,
    depth_weight,
    parse_depth,
)

from .test_backfill import read_request, reply, tiny_server

NOW = 1_672_515_782_136


def frame(**overrides: object) -> bytes:
    data: dict[str, object] = {
        "e": "depthUpdate",
        "E": NOW,
        "s": "BNBBTC",
        "U": 157,
        "u": 160,
        "b": [["0.00240000", "10.000"], ["0.0023", "0.00000000"]],
        "a": [["0.0026", "100"]],
    }
    data.update(overrides)
    return orjson.dumps({"stream": "bnbbtc@depth@100ms", "data": data})


def test_a_depth_update_becomes_a_depth_event_with_canonical_levels() -> None:
    """The combined-stream depthUpdate gives U, u, the event time and canonical decimals;
    a quantity of 0 stays as the deletion it is."""
    normalizer = Normalizer(now_ms=lambda: NOW)
    assert normalizer.parse(frame()) == [
        DepthEvent(
            "BNBBTC", 157, 160, (("0.0024", "10"), ("0.0023", "0")), (("0.0026", "100"),), NOW
        )
    ]
    assert normalizer.errors == {}


@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ({"U": 161}, "invalid_depth"),  # U > u
        ({"U": -1}, "invalid_depth"),
        ({"b": [["0.0024", "-1"]]}, "invalid_depth"),
        ({"b": [["abc", "1"]]}, "invalid_depth"),
        ({"b": [["1e5", "1"]]}, "invalid_depth"),
        ({"a": [["0", "1"]]}, "invalid_depth"),
        ({"a": [["0.0026", "1"], ["0.0026", "2"]]}, "invalid_depth"),
        ({"a": [["0.0026"]]}, "invalid_depth"),
        ({"a": [[0.0026, 1]]}, "invalid_depth"),
        ({"a": [["1" * 41, "1"]]}, "invalid_depth"),
        ({"a": "0.0026"}, "invalid_depth"),
        ({"b": None}, "invalid_depth"),
        ({"u": None}, "missing_field"),
        ({"U": "157"}, "bad_value"),
        ({"s": "BNB/BTC"}, "bad_value"),
        ({"E": NOW * 1000}, "bad_value"),
    ],
)
def test_a_malformed_depth_update_is_counted_by_kind_and_skipped(
    overrides: dict[str, object], kind: str
) -> None:
    """Ids out of order, levels that are no decimals or negative, a price twice: no event,
    one count of its kind, and the next good frame still parses."""
    normalizer = Normalizer(now_ms=lambda: NOW)
    assert normalizer.parse(frame(**overrides)) == []
    assert normalizer.errors == {kind: 1}
    assert len(normalizer.parse(frame())) == 1


SNAPSHOT = {
    "lastUpdateId": 1027024,
    "bids": [["4.00000000", "431.00000000"], ["3.9", "1"]],
    "asks": [["4.00000200", "12.00000000"]],
}


def test_parse_depth_reads_a_snapshot_with_canonical_levels() -> None:
    """The documented answer becomes a BookSnapshot at lastUpdateId."""
    snapshot = parse_depth("BNBBTC", SNAPSHOT, limit=100)
    assert snapshot.last_update_id == 1027024
    assert snapshot.bids == (("4", "431"), ("3.9", "1"))
    assert snapshot.asks == (("4.000002", "12"),)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([], "is an object"),
        ({"bids": [], "asks": []}, "lastUpdateId"),
        ({**SNAPSHOT, "lastUpdateId": "1"}, "lastUpdateId"),
        ({**SNAPSHOT, "lastUpdateId": True}, "lastUpdateId"),
        ({**SNAPSHOT, "bids": None}, "bids is not a list"),
        ({**SNAPSHOT, "bids": [["4", "0"]]}, "quantity 0"),
        ({**SNAPSHOT, "bids": [["4", "-1"]]}, "negative"),
        ({**SNAPSHOT, "bids": [["x", "1"]]}, "decimal"),
        ({**SNAPSHOT, "bids": [[4, "1"]]}, "decimal"),
        ({**SNAPSHOT, "bids": [["4", "1", "2"]]}, "pair"),
        ({**SNAPSHOT, "bids": [["3", "1"], ["4", "1"]]}, "descending"),
        ({**SNAPSHOT, "asks": [["5", "1"], ["4.5", "1"]]}, "ascending"),
        ({**SNAPSHOT, "asks": [["3.95", "1"]]}, "crossed"),
        ({**SNAPSHOT, "asks": [["4.1", "1"], ["4.1", "2"]]}, "twice"),
        ({**SNAPSHOT, "bids": [["4", "1"], ["3", "1"], ["2", "1"]]}, "limit of 2"),
    ],
)
def test_parse_depth_refuses_what_is_no_book(body: object, says: str) -> None:
    """No update id, a level that is no positive decimal pair, sides out of order or
    crossed, more levels than asked: a ValueError saying which."""
    with pytest.raises(ValueError, match=says):
        parse_depth("BNBBTC", body, limit=2)


def test_depth_weights_follow_the_limit() -> None:
    """5 up to 100, 25 up to 500, 50 up to 1000, 250 up to 5000; other limits refused."""
    weights = [depth_weight(n) for n in (1, 100, 101, 500, 501, 1000, 1001, 5000)]
    assert weights == [5, 5, 25, 25, 50, 50, 250, 250]
    for bad in (0, 5001):
        with pytest.raises(ValueError):
            depth_weight(bad)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"<html>maintenance</html>", RestErrorKind.NOT_JSON),
        (b'{"bids":[],"asks":[]}', RestErrorKind.BAD_ANSWER),
        (b'{"lastUpdateId":5,"bids":[["1","x"]],"asks":[]}', RestErrorKind.BAD_ANSWER),
    ],
)
async def test_rest_depth_names_an_answer_that_is_no_snapshot(
    body: bytes, kind: RestErrorKind
) -> None:
    """GET /api/v3/depth over loopback: not JSON, no lastUpdateId or a bad level is a
    RestError of its kind, never a snapshot."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reply(writer, "200 OK", body)

    async with tiny_server(answer) as base, RestClient(timeout=2) as client:
        with pytest.raises(RestError) as caught:
            await client.depth(base, "BTCUSDT", limit=5000)
    assert caught.value.kind is kind


async def test_rest_depth_answers_a_snapshot() -> None:
    """A good answer is a BookSnapshot of the symbol asked for; a limit over 5000 is
    refused before any request."""
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readline())
        await read_request(reader)
        await reply(writer, "200 OK", orjson.dumps(SNAPSHOT))

    async with tiny_server(answer) as base, RestClient(timeout=2) as client:
        snapshot = await client.depth(base, "BNBBTC", limit=1000)
        with pytest.raises(ValueError):
            await client.depth(base, "BNBBTC", limit=5001)
    assert snapshot.symbol == "BNBBTC" and snapshot.last_update_id == 1027024
    assert seen == [b"GET /api/v3/depth?symbol=BNBBTC&limit=1000 HTTP/1.1\r\n"]
