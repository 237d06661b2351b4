"""The simulated exchange: pure parts by plain calls, then real connections over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from decimal import Decimal
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from tickcast.sim.control import (
    AttemptLimiter,
    ConnectTarget,
    Heartbeat,
    Session,
    SlidingWindowLimiter,
    TargetError,
    handle_control,
    parse_connect_target,
)
from tickcast.sim.exchange import (
    DEFAULT_SYMBOLS,
    Fault,
    FaultKind,
    SimConfig,
    SimExchange,
    parse_fault_schedule,
    serve_forever,
)
from tickcast.sim.faults import (
    DEFAULT_WINDOW,
    FaultRequest,
    burst_size,
    effective_duration,
    garbage_payload,
    parse_fault_query,
)
from tickcast.sim.market import (
    Carry,
    Market,
    StreamKind,
    StreamSpec,
    build_payload,
    format_percent,
    format_units,
    parse_stream,
)

FAST = 20.0  # events per second per stream in connection tests
DECIMAL_RE = re.compile(r"-?\d+\.\d{8}")
TICKER_KEYS = [
    *("e", "E", "s", "p", "P", "w", "x", "c", "Q", "b", "B", "a", "A"),
    *("o", "h", "l", "v", "q", "O", "C", "F", "L", "n"),
]
TICKER_DECIMALS = ("p", "w", "x", "c", "Q", "b", "B", "a", "A", "o", "h", "l", "v", "q")


def stepped_market(*symbols: str, steps: int = 3, seed: int = 1) -> Market:
    market = Market(seed, DEFAULT_SYMBOLS, 1.0)
    for i in range(steps):
        market.step(symbols, 1_700_000_000_000 + i * 1000)
    return market


def payload(market: Market, name: str, scale: int = 1) -> Any:
    spec = parse_stream(name)
    assert spec is not None
    return build_payload(spec, market, scale)


# Pure: fault schedule


def test_schedule_parses_kinds_times_and_durations() -> None:
    """A schedule string becomes Faults in the given order, duration 0 when omitted."""
    faults = parse_fault_schedule(" drop@5, stall@10+12 ,burst@20+3,latency@0.5+1.5")
    assert faults == (
        Fault(FaultKind.DROP, 5.0, 0.0),
        Fault(FaultKind.STALL, 10.0, 12.0),
        Fault(FaultKind.BURST, 20.0, 3.0),
        Fault(FaultKind.LATENCY, 0.5, 1.5),
    )
    assert parse_fault_schedule("") == ()


@pytest.mark.parametrize(
    ("text", "bad_item", "hint"),
    [
        ("drop@5,explode@6", "explode@6", "unknown kind"),
        ("drop", "drop", "KIND@SECONDS"),
        ("drop@soon", "drop@soon", "not a number"),
        ("stall@1+long", "stall@1+long", "not a number"),
        ("drop@-1", "drop@-1", ">= 0"),
        ("burst@nan", "burst@nan", ">= 0"),
    ],
)
def test_schedule_errors_name_the_bad_item(text: str, bad_item: str, hint: str) -> None:
    """A malformed schedule raises ValueError that quotes the offending item and says why."""
    with pytest.raises(ValueError, match=re.escape(repr(bad_item))) as info:
        parse_fault_schedule(text)
    assert hint in str(info.value)


def test_fault_durations_and_burst_sizes() -> None:
    """Stall/latency with no duration last the default window; bursts send >= 100."""
    assert effective_duration(FaultKind.STALL, 0) == DEFAULT_WINDOW
    assert effective_duration(FaultKind.LATENCY, 2.5) == 2.5
    assert effective_duration(FaultKind.SHUTDOWN, 0) == 0
    assert burst_size(0) == 100
    assert burst_size(3) == 300
    assert burst_size(0.5) == 100


def test_admin_fault_query() -> None:
    """The admin query gives kind, duration and latency ms; a bad kind is a ValueError."""
    assert parse_fault_query("kind=latency&duration=2&ms=400") == FaultRequest(
        FaultKind.LATENCY, 2.0, 400.0
    )
    assert parse_fault_query("kind=drop") == FaultRequest(FaultKind.DROP)
    with pytest.raises(ValueError, match="unknown kind"):
        parse_fault_query("kind=meteor")
    with pytest.raises(ValueError, match="missing parameter"):
        parse_fault_query("duration=1")


def test_garbage_payloads_are_all_unusable() -> None:
    """Each garbage shape is invalid JSON, an unknown event, or a ticker missing fields."""
    shapes = [garbage_payload(i, 1, None) for i in range(4)]
    assert len(set(shapes)) == 4
    for raw in shapes:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        assert value["e"] == "mystery" or "c" not in value
    wrapped = orjson.loads(garbage_payload(2, 1, "btcusdt@ticker"))
    assert wrapped == {"stream": "btcusdt@ticker", "data": {"e": "mystery", "E": 1}}


# Pure: market and payloads


def test_stream_names() -> None:
    """Known kinds map to specs; retired, unknown and uppercase names carry no data."""
    assert parse_stream("btcusdt@ticker") == StreamSpec(StreamKind.TICKER, "btcusdt")
    assert parse_stream("foobarusdt@aggTrade") == StreamSpec(StreamKind.AGG_TRADE, "foobarusdt")
    all_mini = StreamSpec(StreamKind.ALL_MINI_TICKERS, None)
    assert parse_stream("!miniTicker@arr") == all_mini
    assert parse_stream("!miniTicker@arr@1000ms") == all_mini
    for name in ("!ticker@arr", "BTCUSDT@ticker", "btcusdt@depth7", "btcusdt", "@ticker"):
        assert parse_stream(name) is None


def test_decimal_formatting() -> None:
    """Prices print with 8 decimals from integers; percent change with 3, signed."""
    assert format_units(6_050_051_000_000) == "60500.51000000"
    assert format_units(-12_345) == "-0.00012345"
    assert format_units(0) == "0.00000000"
    assert format_percent(-1_250, 100_000) == "-1.250"
    assert format_percent(1, 300_000_000) == "0.000"


def test_ticker_payload_matches_reference() -> None:
    """@ticker has every reference field, decimal strings and integer times/ids, consistent."""
    market = stepped_market("btcusdt")
    t = payload(market, "btcusdt@ticker")
    assert list(t) == TICKER_KEYS
    assert t["e"] == "24hrTicker"
    assert t["s"] == "BTCUSDT"
    for key in TICKER_DECIMALS:
        assert DECIMAL_RE.fullmatch(t[key]), key
    for key in ("E", "O", "C", "F", "L", "n"):
        assert type(t[key]) is int, key
    assert t["E"] == t["C"] == market.event_time
    assert t["C"] - t["O"] == 86_400_000
    assert t["n"] == t["L"] - t["F"] + 1
    c, o, h, low = (Decimal(t[k]) for k in ("c", "o", "h", "l"))
    assert Decimal(t["p"]) == c - o
    assert abs(Decimal(t["P"]) - (c - o) / o * 100) < Decimal("0.001")
    assert low <= c <= h
    assert low <= o <= h
    assert Decimal(t["b"]) < Decimal(t["a"])
    assert Decimal(t["v"]) > 0
    assert Decimal(t["q"]) > 0
    assert low <= Decimal(t["w"]) <= h * 2


def test_other_payloads_match_reference() -> None:
    """miniTicker, bookTicker (no e/E), trade and aggTrade have the reference fields and types."""
    market = stepped_market("ethusdt")
    mini = payload(market, "ethusdt@miniTicker")
    assert list(mini) == ["e", "E", "s", "c", "o", "h", "l", "v", "q"]
    assert mini["e"] == "24hrMiniTicker"
    book = payload(market, "ethusdt@bookTicker")
    assert list(book) == ["u", "s", "b", "B", "a", "A"]
    assert type(book["u"]) is int
    trade = payload(market, "ethusdt@trade")
    assert list(trade) == ["e", "E", "s", "t", "p", "q", "T", "m", "M"]
    agg = payload(market, "ethusdt@aggTrade")
    assert list(agg) == ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"]
    for event in (trade, agg):
        assert DECIMAL_RE.fullmatch(event["p"])
        assert DECIMAL_RE.fullmatch(event["q"])
        assert type(event["E"]) is int
        assert type(event["T"]) is int
        assert isinstance(event["m"], bool)
        assert event["M"] is True
    assert agg["f"] == agg["l"] == trade["t"]
    assert trade["p"] == mini["c"]


def test_steps_advance_ids_and_event_times() -> None:
    """Each step gives one new trade id, a larger book update id and a later event time."""
    market = Market(1, DEFAULT_SYMBOLS, 1.0)
    seen = []
    for _ in range(5):
        market.step(["solusdt"], 1_000)  # the clock does not move: E must still increase
        seen.append(
            (
                market.event_time,
                payload(market, "solusdt@trade")["t"],
                payload(market, "solusdt@bookTicker")["u"],
            )
        )
    for (e0, t0, u0), (e1, t1, u1) in itertools.pairwise(seen):
        assert e1 == e0 + 1
        assert t1 == t0 + 1
        assert u1 > u0


def test_all_mini_tickers_and_microseconds() -> None:
    """!miniTicker@arr lists every stepped symbol; scale 1000 turns times into microseconds."""
    market = Market(1, DEFAULT_SYMBOLS, 1.0)
    market.step(market.known_symbols, 1_700_000_000_000)
    arr = payload(market, "!miniTicker@arr")
    assert [m["s"] for m in arr] == list(DEFAULT_SYMBOLS)
    micro = payload(market, "btcusdt@ticker", 1000)
    assert micro["E"] == 1_700_000_000_000_000
    assert micro["C"] - micro["O"] == 86_400_000_000


def test_walk_is_seeded_and_starts_at_realistic_levels() -> None:
    """Same seed, same prices; another seed differs; known symbols start near real levels."""
    names = [s.lower() for s in DEFAULT_SYMBOLS]
    a = stepped_market(*names, steps=20, seed=7)
    b = stepped_market(*names, steps=20, seed=7)
    c = stepped_market(*names, steps=20, seed=8)
    assert payload(a, "btcusdt@ticker") == payload(b, "btcusdt@ticker")
    assert payload(a, "btcusdt@ticker")["c"] != payload(c, "btcusdt@ticker")["c"]
    levels = {"btcusdt": 60000, "ethusdt": 3000, "xrpusdt": 0.5, "dogeusdt": 0.12}
    for symbol, level in levels.items():
        price = float(payload(a, f"{symbol}@ticker")["c"])
        assert 0.9 * level < price < 1.1 * level, symbol
    odd = stepped_market("zzzusdt")
    assert Decimal(payload(odd, "zzzusdt@ticker")["c"]) > 0


def test_a_market_continues_from_where_it_is_carried() -> None:
    """Carried levels (the ticks last served) are where the walk goes on from: one step
    from the last price, the same 24h open, high and low kept, volume only growing."""
    market = Market(7, DEFAULT_SYMBOLS, 1.0)
    carry = Carry("71234.5", "70000", "72000.01", "69000", "1234.5", "88000000.25")
    market.continue_from({"BTCUSDT": carry})
    market.step(["btcusdt"], 1_700_000_000_000)
    ticker = payload(market, "btcusdt@ticker")
    assert abs(Decimal(ticker["c"]) / Decimal("71234.5") - 1) < Decimal("0.002"), ticker
    assert Decimal(ticker["o"]) == Decimal("70000")
    assert Decimal(ticker["h"]) >= Decimal("72000.01")
    assert Decimal(ticker["l"]) <= Decimal("69000")
    assert Decimal(ticker["v"]) > Decimal("1234.5")
    assert Decimal(ticker["q"]) > Decimal("88000000.25")
    assert Decimal(ticker["b"]) < Decimal(ticker["a"])


# Pure: URL forms, control messages, limits, heartbeat


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ws/btcusdt@ticker", ConnectTarget(False, ("btcusdt@ticker",))),
        ("/ws", ConnectTarget(False, ())),
        ("/ws/0", ConnectTarget(False, ())),
        ("/ws/%21miniTicker%40arr", ConnectTarget(False, ("!miniTicker@arr",))),
        (
            "/stream?streams=btcusdt@ticker/ethusdt@trade&timeUnit=MICROSECOND",
            ConnectTarget(True, ("btcusdt@ticker", "ethusdt@trade"), True),
        ),
        ("/stream", ConnectTarget(True, ())),
        ("/stream/?timeUnit=millisecond", ConnectTarget(True, ())),
    ],
)
def test_connect_targets(target: str, expected: ConnectTarget) -> None:
    """Raw, labelled-raw and combined URL forms give the right wrapping and subscriptions."""
    assert parse_connect_target(target) == expected


def test_connect_target_errors() -> None:
    """Unknown paths are 404; an unknown timeUnit is 400."""
    with pytest.raises(TargetError) as info:
        parse_connect_target("/api/v3/ticker")
    assert info.value.status == 404
    with pytest.raises(TargetError) as info:
        parse_connect_target("/ws/btcusdt@ticker?timeUnit=NANOSECOND")
    assert info.value.status == 400


def control(session: Session, request: object, max_streams: int = 1024) -> Any:
    raw = request if isinstance(request, str) else json.dumps(request)
    return handle_control(raw, session, max_streams)


def test_control_subscribe_list_unsubscribe() -> None:
    """SUBSCRIBE/UNSUBSCRIBE ack with the id echoed and change the list LIST_SUBSCRIPTIONS shows."""
    session = Session(combined=False)
    request_id = str(uuid.uuid4())
    out = control(session, {"method": "SUBSCRIBE", "params": ["a@trade", "b@trade"], "id": 1})
    assert out.reply == {"result": None, "id": 1}
    assert out.added == ("a@trade", "b@trade")
    out = control(session, {"method": "UNSUBSCRIBE", "params": ["a@trade"], "id": request_id})
    assert out.reply == {"result": None, "id": request_id}
    assert out.removed == ("a@trade",)
    out = control(session, {"method": "LIST_SUBSCRIPTIONS", "id": None})
    assert out.reply == {"result": ["b@trade"], "id": None}


def test_control_properties() -> None:
    """SET_PROPERTY combined toggles the wrapper; GET_PROPERTY reports it."""
    session = Session(combined=False)
    out = control(session, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 5})
    assert out.reply == {"result": None, "id": 5}
    assert session.combined
    out = control(session, {"method": "GET_PROPERTY", "params": ["combined"], "id": 2})
    assert out.reply == {"result": True, "id": 2}


@pytest.mark.parametrize(
    ("request_text", "code", "msg", "reply_id"),
    [
        ('{"method":"SUBSCRIBE",', 3, "Invalid JSON: expected value at line 1 column", None),
        ('{"method":"subscribe","params":[],"id":4}', 2, "unknown variant `subscribe`", 4),
        ('{"params":[],"id":4}', 2, "missing field `method`", 4),
        ('{"method":"LIST_SUBSCRIPTIONS","id":1.5}', 2, "request ID must be", None),
        ('{"method":"LIST_SUBSCRIPTIONS","id":true}', 2, "request ID must be", None),
        ('{"method":"LIST_SUBSCRIPTIONS","id":"' + "x" * 37 + '"}', 2, "request ID", None),
        ('{"method":"SET_PROPERTY","params":["speed",true],"id":3}', 0, "Unknown property", 3),
        ('{"method":"SET_PROPERTY","params":["combined","yes"],"id":3}', 1, "Boolean", 3),
        ('{"method":"GET_PROPERTY","params":[7],"id":3}', 2, "property name must be", 3),
        ('{"method":"GET_PROPERTY","params":["combined",1],"id":3}', 2, "too many", 3),
        ('{"method":"SUBSCRIBE","params":[42],"id":9}', 2, "invalid stream", 9),
    ],
)
def test_control_errors(request_text: str, code: int, msg: str, reply_id: object) -> None:
    """Bad requests get Binance's wrapped error with its code and message, state unchanged."""
    session = Session(combined=False)
    out = control(session, request_text)
    assert out.reply is not None
    assert out.reply["error"]["code"] == code
    assert msg in out.reply["error"]["msg"]
    assert out.reply["id"] == reply_id
    assert set(out.reply) == {"error", "id"}
    assert session == Session(combined=False)


def test_unknown_method_message_is_verbatim() -> None:
    """The unknown-variant message lists the five methods as Binance does."""
    out = control(Session(False), '{"method":"PING","id":1}')
    assert out.reply["error"]["msg"] == (
        "Invalid request: unknown variant `PING`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, "
        "`LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY` at line 1 column 16"
    )


def test_control_max_streams() -> None:
    """A SUBSCRIBE past max_streams changes nothing and asks for a close with a reason."""
    session = Session(False, {"a@trade": None, "b@trade": None})
    out = control(session, {"method": "SUBSCRIBE", "params": ["a@trade", "c@trade"], "id": 1}, 3)
    assert out.added == ("c@trade",)
    out = control(session, {"method": "SUBSCRIBE", "params": ["d@trade"], "id": 2}, 3)
    assert out.reply is None
    assert out.close_reason is not None
    assert "Too many streams" in out.close_reason
    assert list(session.streams) == ["a@trade", "b@trade", "c@trade"]


def test_sliding_window_limiter() -> None:
    """Five frames in a second pass, the sixth does not; the window slides."""
    limiter = SlidingWindowLimiter(5)
    assert all(limiter.allow(10.0 + i * 0.1) for i in range(5))
    assert not limiter.allow(10.5)
    assert limiter.allow(11.05)
    assert SlidingWindowLimiter(0).allow(0.0)


def test_attempt_limiter_is_per_address() -> None:
    """Connection attempts are counted per address over the window."""
    limiter = AttemptLimiter(2, window=300.0)
    assert limiter.allow("a", 0.0)
    assert limiter.allow("a", 1.0)
    assert not limiter.allow("a", 2.0)
    assert limiter.allow("b", 2.0)
    assert limiter.allow("a", 300.5)


def test_heartbeat_deadline_runs_from_oldest_unanswered_ping() -> None:
    """Only a pong echoing a ping in flight answers it; new pings do not postpone the deadline."""
    hb = Heartbeat(timeout=60.0)
    assert hb.deadline() is None
    hb.ping_sent(b"one", 0.0)
    hb.ping_sent(b"two", 20.0)
    assert not hb.pong_received(b"")
    assert hb.deadline() == 60.0
    assert hb.expired(60.0)
    assert not hb.expired(59.9)
    assert hb.pong_received(b"one")
    assert hb.deadline() == 80.0
    assert hb.pong_received(b"two")
    assert hb.deadline() is None


# Connections over loopback


SimFactory = Callable[..., Awaitable[SimExchange]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> SimExchange:
            config = SimConfig(**{"rate": FAST, **overrides})
            return await stack.enter_async_context(SimExchange(config))

        yield make


@pytest.fixture
async def sim(make_sim: SimFactory) -> SimExchange:
    return await make_sim()


def ws_connect(url: str) -> Any:
    return connect(url, ping_interval=None, open_timeout=5, close_timeout=2, max_queue=None)


async def recv_json(ws: ClientConnection) -> Any:
    async with asyncio.timeout(3):
        return orjson.loads(await ws.recv())


async def recv_where(ws: ClientConnection, predicate: Callable[[Any], bool]) -> Any:
    async with asyncio.timeout(3):
        while True:
            message = orjson.loads(await ws.recv())
            if predicate(message):
                return message


def is_reply(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and "id" in message
        and ("result" in message or "error" in message)
    )


async def drain(ws: ClientConnection, seconds: float) -> list[Any]:
    """Every message that arrives within the next ``seconds``."""
    messages = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                messages.append(orjson.loads(await ws.recv()))
    return messages


async def expect_closed(ws: ClientConnection) -> ConnectionClosed:
    """Read until the server closes the connection; the close as the client saw it."""
    async with asyncio.timeout(3):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            return exc


async def request(ws: ClientConnection, method: str, *params: object, id: object = 1) -> Any:
    body: dict[str, object] = {"method": method, "id": id}
    if params:
        body["params"] = list(params)
    await ws.send(json.dumps(body))
    return await recv_where(ws, is_reply)


async def test_raw_stream_url(sim: SimExchange) -> None:
    """/ws/<stream> delivers bare payloads of that stream, in event-time order."""
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        first, second = await recv_json(ws), await recv_json(ws)
    assert first["e"] == second["e"] == "24hrTicker"
    assert first["s"] == "BTCUSDT"
    assert second["E"] > first["E"]


async def test_combined_url_wraps_with_exact_names(sim: SimExchange) -> None:
    """/stream?streams= wraps each event as {"stream": <subscribed name>, "data": ...}."""
    names = {"ethusdt@bookTicker", "!miniTicker@arr@1000ms", "solusdt@aggTrade"}
    async with ws_connect(f"{sim.url}/stream?streams={'/'.join(sorted(names))}") as ws:
        seen: dict[str, Any] = {}
        async with asyncio.timeout(3):
            while len(seen) < len(names):
                message = await recv_json(ws)
                assert set(message) == {"stream", "data"}
                seen[message["stream"]] = message["data"]
    assert set(seen) == names
    assert "e" not in seen["ethusdt@bookTicker"]
    assert isinstance(seen["!miniTicker@arr@1000ms"], list)
    assert {m["s"] for m in seen["!miniTicker@arr@1000ms"]} >= set(DEFAULT_SYMBOLS)


async def test_microsecond_time_unit(sim: SimExchange) -> None:
    """timeUnit=MICROSECOND multiplies event times by 1000."""
    async with ws_connect(f"{sim.url}/ws/btcusdt@trade?timeUnit=MICROSECOND") as ws:
        trade = await recv_json(ws)
    assert abs(trade["E"] / 1000 - time.time() * 1000) < 5_000


async def test_labelled_ws_then_subscribe_with_int_ids(sim: SimExchange) -> None:
    """/ws/0 opens silently with no streams; SUBSCRIBE with an int id acks, then raw data flows."""
    async with ws_connect(f"{sim.url}/ws/0") as ws:
        assert await request(ws, "LIST_SUBSCRIPTIONS", id=1) == {"result": [], "id": 1}
        ack = await request(ws, "SUBSCRIBE", "btcusdt@miniTicker", id=2)
        assert ack == {"result": None, "id": 2}
        data = await recv_where(ws, lambda m: not is_reply(m))
        assert data["e"] == "24hrMiniTicker"


async def test_bare_stream_subscribe_and_properties_with_uuid_ids(sim: SimExchange) -> None:
    """Bare /stream + SUBSCRIBE (UUID ids echoed) is combined until SET_PROPERTY turns it off."""
    ids = [str(uuid.uuid4()) for _ in range(4)]
    async with ws_connect(f"{sim.url}/stream") as ws:
        assert await request(ws, "SUBSCRIBE", "xrpusdt@trade", id=ids[0]) == {
            "result": None,
            "id": ids[0],
        }
        wrapped = await recv_where(ws, lambda m: not is_reply(m))
        assert wrapped["stream"] == "xrpusdt@trade"
        assert wrapped["data"]["s"] == "XRPUSDT"
        assert await request(ws, "GET_PROPERTY", "combined", id=ids[1]) == {
            "result": True,
            "id": ids[1],
        }
        await ws.send(
            json.dumps({"method": "SET_PROPERTY", "params": ["combined", False], "id": ids[2]})
        )
        await recv_where(ws, lambda m: m.get("id") == ids[2])
        raw = await recv_json(ws)
        assert raw["e"] == "trade"
        await ws.send(
            json.dumps({"method": "UNSUBSCRIBE", "params": ["xrpusdt@trade"], "id": ids[3]})
        )
        await recv_where(ws, lambda m: m.get("id") == ids[3])
        assert await request(ws, "LIST_SUBSCRIPTIONS", id=9) == {"result": [], "id": 9}


async def test_error_replies_over_the_wire(sim: SimExchange) -> None:
    """Invalid JSON and unknown methods get wrapped errors; the connection stays open."""
    async with ws_connect(f"{sim.url}/ws") as ws:
        await ws.send("{nope")
        invalid = await recv_json(ws)
        assert invalid["error"]["code"] == 3
        assert invalid["id"] is None
        await ws.send('{"method":"FETCH","id":"abc-123"}')
        unknown = await recv_json(ws)
        assert unknown["error"]["code"] == 2
        assert unknown["id"] == "abc-123"
        assert "unknown variant `FETCH`" in unknown["error"]["msg"]
        assert await request(ws, "LIST_SUBSCRIPTIONS", id=3) == {"result": [], "id": 3}


async def test_retired_and_uppercase_streams_get_no_data(sim: SimExchange) -> None:
    """!ticker@arr and uppercase names are accepted and listed but never fed."""
    async with ws_connect(f"{sim.url}/stream?streams=!ticker@arr/BTCUSDT@ticker") as ws:
        assert (await request(ws, "LIST_SUBSCRIPTIONS"))["result"] == [
            "!ticker@arr",
            "BTCUSDT@ticker",
        ]
        assert await drain(ws, 0.4) == []


async def test_unknown_path_is_404(sim: SimExchange) -> None:
    """A handshake on a path that is not a stream endpoint is refused with HTTP 404."""
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(f"{sim.url}/v3/depth"):
            pass
    assert info.value.response.status_code == 404


async def test_connection_attempt_limit_is_429(make_sim: SimFactory) -> None:
    """Past max_connection_attempts from one address, the handshake gets HTTP 429."""
    sim = await make_sim(max_connection_attempts=2)
    for _ in range(2):
        async with ws_connect(f"{sim.url}/ws"):
            pass
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(f"{sim.url}/ws"):
            pass
    assert info.value.response.status_code == 429
    assert sim.stats()["connection_attempts"] == 3


async def test_five_messages_per_second_then_1008(sim: SimExchange) -> None:
    """Five incoming frames in a second are fine; the sixth (a ping counts) closes with 1008."""
    async with ws_connect(f"{sim.url}/ws") as ws:
        for i in range(4):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        await ws.ping(b"fifth")
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 99}))
        closed = await expect_closed(ws)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "Too many requests")
    assert sim.stats()["incoming_rate_violations"] == 1


async def test_max_streams_via_url_and_subscribe(make_sim: SimFactory) -> None:
    """More than max_streams, by URL or by SUBSCRIBE, closes the connection with 1008."""
    sim = await make_sim(max_streams=3)
    names = ["btcusdt@trade", "ethusdt@trade", "bnbusdt@trade", "solusdt@trade"]
    async with ws_connect(f"{sim.url}/stream?streams={'/'.join(names)}") as ws:
        closed = await expect_closed(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1008
    assert "Too many streams" in closed.rcvd.reason
    async with ws_connect(f"{sim.url}/ws/{names[0]}") as ws:
        assert await request(ws, "SUBSCRIBE", *names[1:3]) == {"result": None, "id": 1}
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": names[3:], "id": 2}))
        closed = await expect_closed(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1008


async def test_1024_streams_in_one_url(make_sim: SimFactory) -> None:
    """A 1024-stream combined URL (~20 KiB, as cryptofeed builds it) is served; one more is 1008."""
    sim = await make_sim(rate=2.0)
    kinds = ("ticker", "miniTicker", "bookTicker", "trade", "aggTrade")
    names = [f"sym{i:03d}usdt@{kind}" for i in range(205) for kind in kinds][:1024]
    async with ws_connect(f"{sim.url}/stream?streams={'/'.join(names)}") as ws:
        seen = set()
        async with asyncio.timeout(5):
            while len(seen) < 1024:
                seen.add((await recv_json(ws))["stream"])
        assert seen == set(names)
        assert sim.stats()["streams"] == 1024
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["one@trade"], "id": 2}))
        closed = await expect_closed(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1008


class RawClient:
    """A WebSocket client over asyncio streams that answers pings only as told."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol: ClientProtocol
        self.pending: list[Frame] = []

    @classmethod
    async def open(cls, url: str) -> RawClient:
        uri = parse_uri(url)
        reader, writer = await asyncio.open_connection(uri.host, uri.port)
        client = cls(reader, writer)
        client.protocol = ClientProtocol(uri)
        client.protocol.send_request(client.protocol.connect())
        client._write()
        async with asyncio.timeout(3):
            while True:
                events = await client._read()
                if any(isinstance(e, Response) for e in events):
                    return client

    async def _read(self) -> list[object]:
        data = await self.reader.read(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        return list(self.protocol.events_received())

    def _write(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.writer.write(chunk)

    async def next_frame(self, echo_pings: bool) -> Frame:
        """The next frame; the protocol's automatic pongs are sent only when ``echo_pings``."""
        async with asyncio.timeout(3):
            while not self.pending:
                events = await self._read()
                if echo_pings:
                    self._write()
                else:
                    self.protocol.data_to_send()
                self.pending.extend(e for e in events if isinstance(e, Frame))
        return self.pending.pop(0)

    def send_pong(self, payload: bytes) -> None:
        self.protocol.send_pong(payload)
        self._write()

    async def aclose(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def test_pings_carry_payloads_and_echoes_keep_the_connection(make_sim: SimFactory) -> None:
    """Server pings carry a random payload; a client echoing them outlives the pong timeout."""
    sim = await make_sim(ping_interval=0.1, pong_timeout=0.3, max_incoming_per_second=100)
    client = await RawClient.open(f"{sim.url}/ws")
    payloads = []
    try:
        while len(payloads) < 8:
            frame = await client.next_frame(echo_pings=True)
            assert frame.opcode is Opcode.PING
            payloads.append(bytes(frame.data))
    finally:
        await client.aclose()
    assert len(set(payloads)) == 8
    assert all(len(p) == 8 for p in payloads)
    assert sim.stats()["pongs_ok"] >= 7


@pytest.mark.parametrize("answer", [None, b"not-the-payload"])
async def test_unanswered_pings_close_1008(make_sim: SimFactory, answer: bytes | None) -> None:
    """A client that does not echo the ping payload is closed with 1008 after pong_timeout."""
    sim = await make_sim(ping_interval=0.1, pong_timeout=0.4, max_incoming_per_second=100)
    client = await RawClient.open(f"{sim.url}/ws")
    started = time.monotonic()
    try:
        while (frame := await client.next_frame(echo_pings=False)).opcode is not Opcode.CLOSE:
            if frame.opcode is Opcode.PING and answer is not None:
                client.send_pong(answer)
    finally:
        await client.aclose()
    assert time.monotonic() - started >= 0.35
    assert client.protocol.close_rcvd is not None
    assert client.protocol.close_rcvd.code == 1008
    assert client.protocol.close_rcvd.reason == "Pong timeout"
    assert sim.stats()["pongs_ok"] == 0


async def test_client_pings_are_echoed(sim: SimExchange) -> None:
    """A ping from the client is answered with a pong echoing its payload."""
    async with ws_connect(f"{sim.url}/ws") as ws:
        waiter = await ws.ping(b"hello-binance")
        async with asyncio.timeout(3):
            await waiter


async def test_same_event_same_bytes_on_two_connections(sim: SimExchange) -> None:
    """Two connections on the same stream receive byte-identical frames for each event."""
    url = f"{sim.url}/ws/btcusdt@bookTicker"
    async with ws_connect(url) as one, ws_connect(url) as two:

        async def collect(ws: ClientConnection) -> dict[int, bytes]:
            out = {}
            async with asyncio.timeout(3):
                while len(out) < 8:
                    raw = await ws.recv(decode=False)
                    out[orjson.loads(raw)["u"]] = raw
            return out

        first, second = await asyncio.gather(collect(one), collect(two))
    common = first.keys() & second.keys()
    assert len(common) >= 5
    assert all(first[u] == second[u] for u in common)


async def test_stop_closes_clients_with_1001(make_sim: SimFactory) -> None:
    """stop() closes every open connection with 1001 and stops the listener."""
    sim = await make_sim()
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        await recv_json(ws)
        stopper = asyncio.create_task(sim.stop())
        closed = await expect_closed(ws)
        await stopper
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    with pytest.raises(ConnectionRefusedError):
        async with ws_connect(f"{sim.url}/ws"):
            pass


async def test_restart_after_stop(make_sim: SimFactory) -> None:
    """An exchange can start again after stop(); the market carries on where it was."""
    sim = await make_sim()
    async with ws_connect(f"{sim.url}/ws/btcusdt@trade") as ws:
        before = await recv_json(ws)
    await sim.stop()
    await sim.start()
    async with ws_connect(f"{sim.url}/ws/btcusdt@trade") as ws:
        after = await recv_json(ws)
    assert after["t"] > before["t"]
    assert sim.stats()["connections_total"] == 2


def test_config_is_validated() -> None:
    """Nonsense settings fail at construction with the field named."""
    with pytest.raises(ValueError, match="rate"):
        SimConfig(rate=0)
    with pytest.raises(ValueError, match="max_streams"):
        SimConfig(max_streams=0)
    with pytest.raises(ValueError, match="duration"):
        Fault(FaultKind.STALL, 1.0, -2.0)


# Faults via inject()


async def test_drop_resets_without_close_frame(sim: SimExchange) -> None:
    """drop cuts every connection with a TCP reset and no close frame; new ones work."""
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        await recv_json(ws)
        sim.inject(FaultKind.DROP)
        closed = await expect_closed(ws)
    assert isinstance(closed, ConnectionClosedError)
    assert closed.rcvd is None
    assert sim.stats()["resets"] == 1
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        await recv_json(ws)


@pytest.mark.parametrize(
    ("kind", "code"),
    [(FaultKind.CLOSE1000, 1000), (FaultKind.CLOSE1001, 1001), (FaultKind.CLOSE1008, 1008)],
)
async def test_close_faults_send_that_code(sim: SimExchange, kind: FaultKind, code: int) -> None:
    """closeNNNN sends a close frame with that code and a reason to every connection."""
    async with (
        ws_connect(f"{sim.url}/ws/btcusdt@ticker") as a,
        ws_connect(f"{sim.url}/stream") as b,
    ):
        await recv_json(a)
        sim.inject(kind)
        closed = [await expect_closed(a), await expect_closed(b)]
    assert all(c.rcvd is not None and c.rcvd.code == code and c.rcvd.reason for c in closed)
    await asyncio.sleep(0.05)
    assert sim.stats()["closes"] == {str(code): 2}


async def test_stall_stops_data_but_not_control_or_heartbeat(make_sim: SimFactory) -> None:
    """stall: no data to anyone (even new connections); replies, pings and pongs continue."""
    sim = await make_sim(ping_interval=0.15, max_incoming_per_second=100)
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        await recv_json(ws)
        sim.inject(FaultKind.STALL, 1.2)
        stalled_at = time.time() * 1000
        pongs_before = sim.stats()["pongs_ok"]
        async with ws_connect(f"{sim.url}/ws/ethusdt@ticker") as late:
            assert await drain(late, 0.5) == []
        assert all(m["E"] <= stalled_at for m in await drain(ws, 0.05))
        assert await request(ws, "LIST_SUBSCRIPTIONS") == {"result": ["btcusdt@ticker"], "id": 1}
        assert sim.stats()["stalled"] is True
        assert sim.stats()["pongs_ok"] > pongs_before
        resumed = await recv_json(ws)
    assert resumed["E"] >= stalled_at + 1000


async def test_shutdown_event_then_1001(sim: SimExchange) -> None:
    """shutdown: serverShutdown (raw and combined shapes), then 1001 after the delay."""
    async with (
        ws_connect(f"{sim.url}/ws/btcusdt@ticker") as raw,
        ws_connect(f"{sim.url}/stream?streams=btcusdt@ticker") as combined,
    ):
        await recv_json(raw)
        sim.inject(FaultKind.SHUTDOWN, 0.5)
        started = time.monotonic()
        async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as newcomer:
            event = await recv_where(raw, lambda m: m.get("e") == "serverShutdown")
            assert set(event) == {"e", "E"}
            assert type(event["E"]) is int
            wrapped = await recv_where(combined, lambda m: m["stream"] == "!serverShutdown")
            assert wrapped["data"]["e"] == "serverShutdown"
            closed = await expect_closed(raw)
            assert time.monotonic() - started >= 0.4
            assert closed.rcvd is not None
            assert closed.rcvd.code == 1001
            await expect_closed(combined)
            await asyncio.sleep(0.1)
            assert (await recv_json(newcomer))["e"] == "24hrTicker"


def is_valid_ticker(raw: bytes) -> bool:
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return message.get("e") == "24hrTicker" and all(k in message for k in TICKER_KEYS)


async def test_garbage_interleaves_malformed_frames(sim: SimExchange) -> None:
    """garbage: malformed frames arrive among valid data while it lasts, then stop."""
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        await recv_json(ws)
        sim.inject(FaultKind.GARBAGE, 0.4)
        frames = []
        async with asyncio.timeout(3):
            while len(frames) < 30:
                frames.append(await ws.recv(decode=False))
    bad = [i for i, raw in enumerate(frames) if not is_valid_ticker(raw)]
    assert len(bad) >= 4
    assert any(is_valid_ticker(raw) for raw in frames[bad[0] : bad[-1]])
    assert all(is_valid_ticker(raw) for raw in frames[bad[-1] + 2 :])


async def test_garbage_with_zero_duration_sends_one_frame(sim: SimExchange) -> None:
    """garbage with duration 0 sends exactly one malformed frame per connection."""
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        await recv_json(ws)
        sim.inject(FaultKind.GARBAGE)
        frames = [await ws.recv(decode=False) for _ in range(8)]
    assert sum(not is_valid_ticker(raw) for raw in frames) == 1


async def test_burst_sends_distinct_ordered_events(sim: SimExchange) -> None:
    """burst: at least 100 valid events at once, strictly ordered, no duplicates."""
    async with ws_connect(f"{sim.url}/ws/btcusdt@trade") as ws:
        await recv_json(ws)
        sim.inject(FaultKind.BURST, 1.5)
        started = time.monotonic()
        trades = [await recv_json(ws) for _ in range(150)]
    assert time.monotonic() - started < 3.0  # 150 events at 20/s would take 7.5 s
    ids = [t["t"] for t in trades]
    times = [t["E"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + 150))
    assert all(b > a for a, b in itertools.pairwise(times))


async def test_latency_holds_data_back(sim: SimExchange) -> None:
    """latency: data frames arrive about 250 ms after their event time while it lasts."""
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        await recv_json(ws)
        sim.inject(FaultKind.LATENCY, 0.6)
        injected_ms = time.time() * 1000
        lags = []
        async with asyncio.timeout(3):
            while len(lags) < 4:
                event = await recv_json(ws)
                if event["E"] > injected_ms + 20:
                    lags.append(time.time() * 1000 - event["E"])
        assert min(lags) >= 200
        late = await recv_where(ws, lambda m: m["E"] > injected_ms + 900)
        assert time.time() * 1000 - late["E"] < 230  # held frames lag >= 250 ms


async def test_scheduled_fault_runs_at_its_time(make_sim: SimFactory) -> None:
    """A fault in the schedule fires `at` seconds after start()."""
    sim = await make_sim(fault_schedule=parse_fault_schedule("close1001@0.4"))
    started = time.monotonic()
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        closed = await expect_closed(ws)
    assert time.monotonic() - started >= 0.3
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    assert sim.stats()["faults"] == ["close1001"]


# Faults and stats over the admin endpoint


def http_call(method: str, url: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        finally:
            exc.close()


async def admin(sim: SimExchange, method: str, path: str) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{sim.port}{path}"
    return await asyncio.to_thread(http_call, method, url)


@pytest.mark.parametrize("kind", list(FaultKind))
async def test_admin_injects_every_kind(sim: SimExchange, kind: FaultKind) -> None:
    """POST /_sim/fault?kind=... answers 200 with the fault and records it in stats."""
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        await recv_json(ws)
        status, body = await admin(sim, "POST", f"/_sim/fault?kind={kind.value}&duration=0.2")
        assert status == 200
        assert body["ok"] is True
        assert body["kind"] == kind.value
        assert body["duration"] == 0.2
        assert sim.stats()["faults"] == [kind.value]


async def test_admin_drop_resets_clients(sim: SimExchange) -> None:
    """A drop injected over HTTP resets the open WebSocket connections."""
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        await recv_json(ws)
        status, _ = await admin(sim, "POST", "/_sim/fault?kind=drop")
        assert status == 200
        closed = await expect_closed(ws)
    assert closed.rcvd is None


async def test_admin_latency_ms(sim: SimExchange) -> None:
    """The admin latency fault takes &ms= for the hold-back."""
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        await recv_json(ws)
        status, body = await admin(sim, "POST", "/_sim/fault?kind=latency&duration=1&ms=500")
        assert status == 200
        assert body["ms"] == 500
        injected_ms = time.time() * 1000
        event = await recv_where(ws, lambda m: m["E"] > injected_ms + 20)
        assert time.time() * 1000 - event["E"] >= 450


async def test_admin_delete_ends_a_running_stall_at_once(sim: SimExchange) -> None:
    """DELETE /_sim/fault ends a long stall: data flows again long before it would have."""
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        await recv_json(ws)
        status, _ = await admin(sim, "POST", "/_sim/fault?kind=stall&duration=60")
        assert status == 200 and sim.stats()["stalled"] is True
        status, body = await admin(sim, "DELETE", "/_sim/fault")
        assert status == 200 and body == {"ok": True, "cleared": True}
        assert sim.stats()["stalled"] is False
        cleared_ms = time.time() * 1000
        event = await asyncio.wait_for(recv_where(ws, lambda m: m["E"] >= cleared_ms), 5)
        assert event["s"] == "BTCUSDT"


async def test_admin_errors_and_stats(sim: SimExchange) -> None:
    """Bad kinds are 400 JSON errors, wrong methods 405, unknown paths 404; stats is JSON."""
    status, body = await admin(sim, "POST", "/_sim/fault?kind=meteor")
    assert status == 400
    assert body["ok"] is False
    assert "meteor" in body["error"]
    assert (await admin(sim, "GET", "/_sim/fault?kind=drop"))[0] == 405
    assert (await admin(sim, "GET", "/_sim/nothing"))[0] == 404
    async with ws_connect(f"{sim.url}/ws/btcusdt@ticker") as ws:
        await recv_json(ws)
        status, stats = await admin(sim, "GET", "/_sim/stats")
    assert status == 200
    for key in (
        "connections_open",
        "connections_total",
        "connection_attempts",
        "closes",
        "resets",
        "messages_sent",
        "streams",
        "faults",
        "pings_sent",
        "pongs_ok",
        "incoming_rate_violations",
    ):
        assert key in stats, key
    assert stats["connections_open"] == 1
    assert stats["streams"] == 1
    assert stats["messages_sent"] >= 1
    assert stats["faults"] == []


class UrlCatcher(logging.Handler):
    """Catches the first ws:// URL logged."""

    def __init__(self) -> None:
        super().__init__()
        self.url = ""
        self.found = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        match = re.search(r"ws://[\d.]+:\d+", record.getMessage())
        if match and not self.url:
            self.url = match.group(0)
            self.found.set()


async def test_serve_forever_runs_until_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    """serve_forever logs its URL, serves, and on cancellation closes clients with 1001."""
    caplog.set_level(logging.INFO, logger="tickcast.sim.exchange")
    catcher = UrlCatcher()
    logging.getLogger("tickcast.sim.exchange").addHandler(catcher)
    try:
        task = asyncio.create_task(serve_forever(SimConfig(rate=FAST)))
        async with asyncio.timeout(3):
            await catcher.found.wait()
        async with ws_connect(f"{catcher.url}/ws/btcusdt@ticker") as ws:
            await recv_json(ws)
            task.cancel()
            closed = await expect_closed(ws)
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        logging.getLogger("tickcast.sim.exchange").removeHandler(catcher)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001


# REST market data on the WebSocket port


async def test_rest_klines_are_the_aggregation_of_the_trade_stream(make_sim: SimFactory) -> None:
    """Over loopback: every 1s candle that REST serves equals the aggregate of the trades
    the aggTrade stream sent in that second (open, high, low, close, volume, count)."""
    sim = await make_sim(rate=20)
    trades: list[Any] = []
    async with ws_connect(f"{sim.url}/ws/btcusdt@aggTrade") as ws:
        first = await recv_json(ws)
        start_second = first["T"] // 1000 + 1  # the first whole second seen
        while not trades or trades[-1]["T"] // 1000 < start_second + 3:
            trades.append(await recv_json(ws))
    whole = [t for t in trades if start_second <= t["T"] // 1000 < start_second + 3]
    status, rows = await admin(
        sim, "GET", f"/api/v3/klines?symbol=BTCUSDT&interval=1s&startTime={start_second * 1000}"
    )
    assert status == 200
    by_second: dict[int, list[Any]] = {}
    for t in whole:
        by_second.setdefault(t["T"] // 1000 * 1000, []).append(t)
    assert len(by_second) == 3
    served = {row[0]: row for row in rows}
    for open_time, group in by_second.items():
        prices = [Decimal(t["p"]) for t in group]
        row = served[open_time]
        assert Decimal(row[1]) == prices[0] and Decimal(row[4]) == prices[-1]
        assert Decimal(row[2]) == max(prices) and Decimal(row[3]) == min(prices)
        assert Decimal(row[5]) == sum(Decimal(t["q"]) for t in group)
        assert row[8] == len(group)
        assert row[6] == open_time + 999


async def test_rest_answers_carry_the_used_weight_header(sim: SimExchange) -> None:
    """Every REST answer says the weight used this minute, as Binance's do."""
    url = f"http://127.0.0.1:{sim.port}/api/v3/exchangeInfo"
    response = await asyncio.to_thread(urllib.request.urlopen, url, None, 5)
    with response:
        assert response.status == 200
        assert response.headers["X-MBX-USED-WEIGHT-1m"] == "20"
        info = json.loads(response.read())
    assert {s["symbol"] for s in info["symbols"]} >= {"BTCUSDT", "ETHUSDT"}


async def test_a_kline_stream_pushes_its_open_candle_and_each_close(make_sim: SimFactory) -> None:
    """``@kline_1s``: the open candle every second, then that candle once more with
    ``x`` true when it closes, its figures the aggregate of the aggTrade stream's trades."""
    sim = await make_sim(rate=20)
    trades: list[Any] = []
    klines: list[Any] = []
    async with ws_connect(f"{sim.url}/stream?streams=btcusdt@kline_1s/btcusdt@aggTrade") as ws:
        while len([k for k in klines if k["k"]["x"]]) < 2:
            message = await recv_json(ws)
            data = message["data"]
            (klines if message["stream"] == "btcusdt@kline_1s" else trades).append(data)
    closed = [k["k"] for k in klines if k["k"]["x"]]
    assert all(k["e"] == "kline" and k["s"] == "BTCUSDT" for k in klines)
    assert closed[1]["t"] == closed[0]["t"] + 1000 and closed[0]["T"] == closed[0]["t"] + 999
    last = closed[-1]
    group = [t for t in trades if last["t"] <= t["T"] <= last["T"]]
    prices = [Decimal(t["p"]) for t in group]
    assert last["n"] == len(group) > 0
    assert Decimal(last["o"]) == prices[0] and Decimal(last["c"]) == prices[-1]
    assert Decimal(last["h"]) == max(prices) and Decimal(last["l"]) == min(prices)
    assert Decimal(last["v"]) == sum(Decimal(t["q"]) for t in group)
    assert last["i"] == "1s"


def test_kline_stream_names_parse_to_their_interval() -> None:
    """``kline_<i>`` for each interval but the month; anything else carries no data."""
    spec = parse_stream("btcusdt@kline_15m")
    assert spec is not None and spec.kind is StreamKind.KLINE and spec.interval == "15m"
    assert parse_stream("btcusdt@kline_1M") is None
    assert parse_stream("btcusdt@kline_7m") is None
