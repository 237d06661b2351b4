"""``/ws`` against a real ``tickcast serve`` process with simulated data, over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from tickcast.settings import DEFAULT_SYMBOLS

from ..rawclient import RawWebSocket
from ..support import TICKERS_ONLY, ServerProcess, eventually, newest_seq, running_server

Message = dict[str, object]
SIM = ["--source", "sim"]
TOKEN = "s3cret"
GOOD_ORIGIN = Origin("http://good.example")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("ws"), SIM, {"TICKCAST_SIM_RATE": "10", **TICKERS_ONLY}
    ) as s:
        yield s


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "TICKCAST_SIM_RATE": "10",
        "TICKCAST_TOKEN": TOKEN,
        "TICKCAST_ALLOWED_ORIGINS": GOOD_ORIGIN,
        "TICKCAST_MAX_CONNECTIONS": "3",
        "TICKCAST_MAX_SUBSCRIPTIONS": "3",
    }
    with running_server(tmp_path_factory.mktemp("guarded"), SIM, env) as s:
        yield s


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Message:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    message = orjson.loads(raw)
    assert isinstance(message, dict), message
    return message


async def collect(ws: ClientConnection, seconds: float) -> list[Message]:
    """Every message received in the next ``seconds``."""
    out: list[Message] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(await recv_json(ws, left))
        except TimeoutError:
            break
    return out


async def next_of_type(
    ws: ClientConnection, kind: str, skipped: list[Message] | None = None, timeout: float = 5.0
) -> Message:
    """The next message of type ``kind``; what comes before it goes to ``skipped``."""
    deadline = time.monotonic() + timeout
    while True:
        message = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        if message["type"] == kind:
            return message
        if skipped is not None:
            skipped.append(message)


async def send_op(ws: ClientConnection, op: Message) -> None:
    """An op as a JSON text frame."""
    await ws.send(orjson.dumps(op).decode())


def assert_seq_increasing(messages: list[Message]) -> None:
    """Per symbol, every tick's seq is higher than the one before."""
    last: dict[object, int] = {}
    for m in messages:
        if m["type"] != "tick":
            continue
        seq = m["seq"]
        assert isinstance(seq, int)
        assert seq > last.get(m["symbol"], -1), f"{m['symbol']}: seq {seq} after {last}"
        last[m["symbol"]] = seq


def tick_symbols(messages: list[Message]) -> list[str]:
    return [str(m["symbol"]) for m in messages if m["type"] == "tick"]


async def test_a_default_client_gets_a_snapshot_then_live_ticks_only(server: ServerProcess) -> None:
    """No params: one tick per default symbol, then live ticks, and tick objects only."""
    async with connect(server.ws_base + "/ws") as ws:
        snapshot = [await recv_json(ws) for _ in DEFAULT_SYMBOLS]
        live = await collect(ws, 1.5)
    assert sorted(tick_symbols(snapshot)) == sorted(DEFAULT_SYMBOLS)
    messages = snapshot + live
    assert {m["type"] for m in messages} == {"tick"}
    for m in messages:
        assert isinstance(m["symbol"], str)
        assert isinstance(m["last_price"], int | float)
        assert isinstance(m["change_percent"], int | float)
        assert isinstance(m["timestamp_ms"], int)
        assert m["source"] == "sim"
    assert_seq_increasing(messages)
    assert set(tick_symbols(live)) == set(DEFAULT_SYMBOLS)
    newest = {m["symbol"]: m["seq"] for m in snapshot}
    assert all(m["seq"] > newest[m["symbol"]] for m in live)  # type: ignore[operator]


async def test_symbols_parameter_chooses_the_symbols(server: ServerProcess) -> None:
    """``?symbols=BTCUSDT,ETHUSDT`` gets exactly those two, snapshot first."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT,ethusdt") as ws:
        first = [await recv_json(ws), await recv_json(ws)]
        live = await collect(ws, 1.0)
    assert sorted(tick_symbols(first)) == ["BTCUSDT", "ETHUSDT"]
    assert set(tick_symbols(live)) == {"BTCUSDT", "ETHUSDT"}
    assert_seq_increasing(first + live)


async def test_symbols_star_means_every_symbol(server: ServerProcess) -> None:
    """``?symbols=*`` subscribes to every served symbol."""
    async with connect(server.ws_base + "/ws?symbols=*") as ws:
        snapshot = [await recv_json(ws) for _ in DEFAULT_SYMBOLS]
    assert sorted(tick_symbols(snapshot)) == sorted(DEFAULT_SYMBOLS)


async def test_unknown_symbols_at_connect_get_an_error_and_the_rest_are_served(
    server: ServerProcess,
) -> None:
    """Unknown names in ``?symbols=`` are reported in an error; known ones still flow."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT,NOPEUSDT") as ws:
        messages = await collect(ws, 1.0)
    errors = [m for m in messages if m["type"] == "error"]
    assert len(errors) == 1
    assert errors[0]["code"] == "unknown_symbol"
    assert "NOPEUSDT" in str(errors[0]["message"])
    assert set(tick_symbols(messages)) == {"BTCUSDT"}


async def test_a_subscribe_naming_unknown_symbols_serves_the_known_ones(
    server: ServerProcess,
) -> None:
    """A subscribe naming known and unknown symbols: one error names the unknown ones, the
    ack the subscribed ones, then their snapshot, and their ticks flow."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws:
        await send_op(ws, {"op": "subscribe", "symbols": ["ETHUSDT", "NOPEUSDT"], "id": 3})
        error = await next_of_type(ws, "error")
        assert error["id"] == 3
        assert error["code"] == "unknown_symbol"
        assert error["symbols"] == ["NOPEUSDT"]
        assert "NOPEUSDT" in str(error["message"]) and "ETHUSDT" not in str(error["message"])
        ack = await recv_json(ws)
        assert ack == {"type": "ack", "id": 3, "op": "subscribe", "symbols": ["ETHUSDT"]}
        snapshot = await recv_json(ws)
        assert (snapshot["type"], snapshot["symbol"]) == ("tick", "ETHUSDT")
        later = await collect(ws, 1.0)
    assert set(tick_symbols(later)) == {"BTCUSDT", "ETHUSDT"}


async def test_a_status_client_gets_an_ack_of_its_connect_symbols(server: ServerProcess) -> None:
    """``?status=1&symbols=`` is answered like a subscribe op with no id: the error for the
    unknown names, then an ``ack`` of what was subscribed, then its snapshot."""
    async with connect(server.ws_base + "/ws?status=1&symbols=BTCUSDT,NOPEUSDT,ethusdt") as ws:
        assert (await recv_json(ws))["type"] == "status"
        error = await recv_json(ws)
        ack = await recv_json(ws)
        snapshot = [await recv_json(ws), await recv_json(ws)]
    assert error["code"] == "unknown_symbol" and "id" not in error
    assert ack == {"type": "ack", "op": "subscribe", "symbols": ["BTCUSDT", "ETHUSDT"]}
    assert sorted(tick_symbols(snapshot)) == ["BTCUSDT", "ETHUSDT"]


async def test_a_client_that_asked_for_no_control_messages_gets_no_ack(
    server: ServerProcess,
) -> None:
    """Without ``?status=1``, a connect with ``?symbols=`` (or none) that sends nothing
    receives ticks only: no ack, no status."""
    for query in ("?symbols=BTCUSDT,ETHUSDT", "?throttle_ms=0", ""):
        async with connect(server.ws_base + "/ws" + query) as ws:
            messages = await collect(ws, 0.5)
        assert messages and {m["type"] for m in messages} == {"tick"}, query


@pytest.mark.parametrize("value", ["1e12", "60001", "-5", "nan", "fast"])
async def test_a_throttle_out_of_bounds_is_refused_at_the_handshake(
    server: ServerProcess, value: str
) -> None:
    """``throttle_ms`` outside 0 to 60000 (or not a number) is HTTP 422 with the common
    error body, before any session exists."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{server.ws_base}/ws?symbols=BTCUSDT&throttle_ms={value}"):
            pass
    response = refused.value.response
    assert response.status_code == 422
    body = orjson.loads(response.body or b"{}")
    assert body["error"] == "invalid_request"
    assert "throttle_ms" in body["message"]


async def test_a_websocket_client_resumes_with_last_event_id(server: ServerProcess) -> None:
    """``?last_event_id=<seq>`` on /ws: every tick missed since, in order, then live ticks,
    with no gap and no duplicate against /history (SPEC §6)."""
    url = server.ws_base + "/ws?symbols=BTCUSDT,ETHUSDT"
    async with connect(url) as ws:
        before = await collect(ws, 0.3)  # only its last seq matters
    last = max(int(str(m["seq"])) for m in before)
    # A second missed while away: 10 symbols at 10 ticks/s.
    await eventually(lambda: newest_seq(server) > last + 100)
    async with connect(f"{url}&last_event_id={last}") as ws:
        after = await collect(ws, 1.0)
    assert {m["type"] for m in after} == {"tick"}
    for symbol in ("BTCUSDT", "ETHUSDT"):
        got = [int(str(m["seq"])) for m in after if m["symbol"] == symbol]
        history = [int(t["seq"]) for t in server.get(f"/history/{symbol}?limit=1000").json()]
        assert got == [s for s in history if last < s <= got[-1]], f"{symbol}: gap or duplicate"
    assert len(after) >= 30, "a second missed and a second live, at 10 ticks/s per symbol"


async def test_a_websocket_resume_from_an_unknown_id_gets_a_reset(server: ServerProcess) -> None:
    """An id the server never issued gets ``{"type":"reset"}`` with a snapshot of the
    client's symbols, then live ticks newer than it."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT&last_event_id=%C2%B2") as ws:
        reset = await recv_json(ws)
        live = await collect(ws, 0.5)
    assert reset["type"] == "reset"
    ticks = reset["ticks"]
    assert isinstance(ticks, list) and [t["symbol"] for t in ticks] == ["BTCUSDT"]
    assert live and all(int(str(m["seq"])) > int(str(reset["last_seq"])) for m in live)


async def test_subscribe_and_unsubscribe_change_what_the_client_gets(
    server: ServerProcess,
) -> None:
    """Ops: ack then a snapshot per new symbol; after unsubscribe only the rest; list."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws:
        seen = await collect(ws, 0.3)
        await send_op(ws, {"op": "subscribe", "symbols": ["ETHUSDT", "SOLUSDT"], "id": 1})
        m = await next_of_type(ws, "ack", seen)
        assert m == {"type": "ack", "id": 1, "op": "subscribe", "symbols": ["ETHUSDT", "SOLUSDT"]}
        snapshot = [await recv_json(ws), await recv_json(ws)]
        assert tick_symbols(snapshot) == ["ETHUSDT", "SOLUSDT"]
        seen += snapshot + await collect(ws, 0.8)
        assert set(tick_symbols(seen)) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}

        await send_op(ws, {"op": "unsubscribe", "symbols": ["BTCUSDT", "ETHUSDT"], "id": 2})
        m = await next_of_type(ws, "ack", seen)
        assert m == {"type": "ack", "id": 2, "op": "unsubscribe", "symbols": ["BTCUSDT", "ETHUSDT"]}
        after = await collect(ws, 1.0)
        assert set(tick_symbols(after)) == {"SOLUSDT"}

        await send_op(ws, {"op": "list", "id": "l"})
        assert await next_of_type(ws, "ack") == {
            "type": "ack",
            "id": "l",
            "op": "list",
            "symbols": ["SOLUSDT"],
            "streams": ["SOLUSDT@ticker"],
        }
    assert_seq_increasing(seen + after)


async def test_an_unsubscribed_symbol_stops_even_when_ticks_are_held(
    server: ServerProcess,
) -> None:
    """After the unsubscribe ack no tick of that symbol arrives, even a throttle-held one."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT,ETHUSDT&throttle_ms=1000") as ws:
        await collect(ws, 1.3)
        await send_op(ws, {"op": "unsubscribe", "symbols": ["ETHUSDT"], "id": 1})
        await next_of_type(ws, "ack")
        after = await collect(ws, 1.5)
    assert set(tick_symbols(after)) == {"BTCUSDT"}


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2, 3]", "invalid_op"),
        ('{"symbols": ["BTCUSDT"]}', "invalid_op"),
        ('{"op": "dance"}', "unknown_op"),
        ('{"op": "subscribe", "symbols": ["NOPEUSDT"]}', "unknown_symbol"),
        ('{"op": "subscribe", "symbols": "BTCUSDT"}', "invalid_op"),
        ('{"op": "ping", "id": {"x": 1}}', "invalid_op"),
        (b"\x00\x01binary", "binary_not_supported"),
    ],
)
async def test_bad_input_gets_an_error_and_the_connection_stays_usable(
    server: ServerProcess, message: str | bytes, code: str
) -> None:
    """Bad ops, JSON, symbols and binary frames get an error; the connection stays usable."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws:
        await ws.send(message)
        error = await next_of_type(ws, "error")
        assert error["code"] == code
        assert isinstance(error["message"], str)
        assert "Traceback" not in error["message"]
        await send_op(ws, {"op": "ping", "id": 42})
        assert await next_of_type(ws, "pong") == {"type": "pong", "id": 42}
        assert "BTCUSDT" in tick_symbols(await collect(ws, 0.5))


async def test_a_message_over_the_size_limit_closes_with_1009(server: ServerProcess) -> None:
    """An inbound message larger than TICKCAST_MAX_MESSAGE_BYTES (4096) closes 1009."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT", max_size=None) as ws:
        await ws.send('{"op":"ping","pad":"' + "x" * 5000 + '"}')
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1009


async def test_a_message_at_the_size_limit_is_accepted(server: ServerProcess) -> None:
    """A message just under the limit is an ordinary op."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws:
        padding = "x" * (4096 - len('{"op":"ping","id":1,"pad":""}'))
        await ws.send('{"op":"ping","id":1,"pad":"' + padding + '"}')
        assert await next_of_type(ws, "pong") == {"type": "pong", "id": 1}


async def test_invalid_utf8_closes_with_1007(server: ServerProcess) -> None:
    """A text frame that is not UTF-8 closes the connection with 1007."""
    ws = await RawWebSocket.connect(server.ws_base + "/ws?symbols=BTCUSDT")
    try:
        assert ws.response is not None and ws.response.status_code == 101
        await ws.send_raw_text(b'{"op":"ping","x":"\xff\xfe"}')
        assert await ws.close_code() == 1007
    finally:
        ws.close()


async def test_invalid_utf8_is_one_log_line_without_a_traceback(server: ServerProcess) -> None:
    """Clients sending text that is not UTF-8 are closed with 1007, and the server logs a
    line for it, not a traceback per message."""
    before = len(server.log_path.read_bytes())
    for _ in range(8):
        ws = await RawWebSocket.connect(server.ws_base + "/ws?symbols=BTCUSDT")
        try:
            await ws.send_raw_text(b"\xc3\x28 not UTF-8")
            assert await ws.close_code() == 1007
        finally:
            ws.close()

    def logged() -> str:
        return server.log_path.read_bytes()[before:].decode(errors="replace")

    await eventually(lambda: "UTF-8" in logged())
    written = logged()
    assert "Traceback" not in written
    lines = [line for line in written.splitlines() if "UTF-8" in line]
    assert 1 <= len(lines) <= 5, lines  # one line each, at most a burst (logs.RateLimit)
    assert all("1007" in line for line in lines), lines


async def test_ops_sustained_over_the_rate_limit_close_with_1008(server: ServerProcess) -> None:
    """Ops flooding past the rate get rate_limited, then after 5 s close 1008 (counted)."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws:

        async def flood() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await send_op(ws, {"op": "ping"})
                    await asyncio.sleep(0.01)

        flooding = asyncio.create_task(flood())
        errors: list[Message] = []
        started = time.monotonic()
        try:
            with pytest.raises(ConnectionClosed):
                while True:
                    message = await recv_json(ws, 10)
                    if message["type"] == "error":
                        errors.append(message)
        finally:
            flooding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flooding
        took = time.monotonic() - started
    assert ws.close_code == 1008
    assert errors and {e["code"] for e in errors} == {"rate_limited"}
    assert 5.0 <= took < 9.0
    closes = server.status()["edge"]["closes"]  # type: ignore[index]
    assert closes["rate_limited"] >= 1


async def test_a_rate_limited_op_gets_an_error_with_its_id(server: ServerProcess) -> None:
    """Ops past the burst are refused with ``rate_limited`` errors, each carrying the id of
    the op it refuses (and none for an op that had no id)."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws:
        for n in range(60):
            await send_op(ws, {"op": "ping", "id": f"p{n}"})
        await send_op(ws, {"op": "ping"})
        replies = [m for m in await collect(ws, 1.0) if m["type"] != "tick"]
    limited = [m for m in replies if m["type"] == "error"]
    assert limited and {m["code"] for m in limited} == {"rate_limited"}
    answered = [m.get("id") for m in replies if m["type"] == "pong"]
    ids = [m.get("id") for m in limited]
    assert sorted(map(str, answered + ids)) == sorted([f"p{n}" for n in range(60)] + ["None"])


async def test_a_status_client_gets_the_upstream_state(server: ServerProcess) -> None:
    """``?status=1`` clients get ``{"type":"status","upstream":...}`` first, then the ack
    of their ``?symbols=`` and the ticks."""
    async with connect(server.ws_base + "/ws?status=1&symbols=BTCUSDT") as ws:
        first = await recv_json(ws)
        assert first["type"] == "status"
        assert first["upstream"] == "connected"
        assert first["source"] == "sim"
        assert (await recv_json(ws))["type"] == "ack"
        assert (await recv_json(ws))["type"] == "tick"


async def test_throttle_caps_the_rate_per_symbol(server: ServerProcess) -> None:
    """``throttle_ms=500`` caps each symbol at about two ticks a second, in seq order."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT,ETHUSDT&throttle_ms=500") as ws:
        messages = await collect(ws, 3.0)
    assert_seq_increasing(messages)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        count = tick_symbols(messages).count(symbol)
        assert 3 <= count <= 3.0 / 0.5 + 2, (symbol, count)
    by_symbol = [m for m in messages if m["symbol"] == "BTCUSDT"]
    assert all(
        b["seq"] - a["seq"] > 10  # type: ignore[operator]
        for a, b in zip(by_symbol[1:], by_symbol[2:], strict=False)
    ), "throttled ticks should skip the ones in between"


async def test_a_throttled_client_gets_its_replies_at_once(server: ServerProcess) -> None:
    """With a long throttle window, ops are still answered immediately."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT&throttle_ms=5000") as ws:
        await collect(ws, 0.5)
        started = time.monotonic()
        await send_op(ws, {"op": "ping", "id": 1})
        assert await next_of_type(ws, "pong", timeout=4) == {"type": "pong", "id": 1}
        assert time.monotonic() - started < 1.0


async def test_a_throttled_client_counts_the_snapshot_as_the_last_send(
    server: ServerProcess,
) -> None:
    """With ``throttle_ms=60000`` the snapshot (at connect, after a subscribe op, or in the
    ``reset`` of a resume that cannot be served) is the symbol's send of the window: no
    live tick of it follows in the next seconds."""
    url = server.ws_base + "/ws?symbols=BTCUSDT&throttle_ms=60000"
    async with connect(url) as ws, connect(url + "&last_event_id=1") as resumed:
        assert (await recv_json(ws))["symbol"] == "BTCUSDT"
        await send_op(ws, {"op": "subscribe", "symbols": ["ETHUSDT"], "id": 1})
        assert (await next_of_type(ws, "ack"))["symbols"] == ["ETHUSDT"]
        assert (await recv_json(ws))["symbol"] == "ETHUSDT"
        reset = await recv_json(resumed)
        assert reset["type"] == "reset"
        later, after_reset = await asyncio.gather(collect(ws, 1.5), collect(resumed, 1.5))
    assert tick_symbols(later) == []
    assert tick_symbols(after_reset) == []


async def test_every_client_sees_seq_increase_per_symbol(server: ServerProcess) -> None:
    """Several clients at once each get every symbol in strictly increasing seq order."""
    async with (
        connect(server.ws_base + "/ws") as a,
        connect(server.ws_base + "/ws?symbols=*") as b,
        connect(server.ws_base + "/ws?symbols=BTCUSDT") as c,
    ):
        results = await asyncio.gather(collect(a, 1.5), collect(b, 1.5), collect(c, 1.5))
    for messages in results:
        assert messages
        assert_seq_increasing(messages)
    btc = [[m["seq"] for m in r if m["symbol"] == "BTCUSDT"] for r in results]
    common = set(btc[0]) & set(btc[1]) & set(btc[2])
    assert len(common) >= 5, "the same ticks reach every client"


# -- admission ------------------------------------------------------------------------


async def test_a_token_is_required_at_the_handshake(guarded: ServerProcess) -> None:
    """With TICKCAST_TOKEN set, no token (or a wrong one) is HTTP 401 at the handshake."""
    for query in ("", "&token=wrong"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(guarded.ws_base + "/ws?symbols=BTCUSDT" + query, origin=GOOD_ORIGIN):
                pass
        assert refused.value.response.status_code == 401


async def test_a_token_by_parameter_or_header_is_admitted(guarded: ServerProcess) -> None:
    """``?token=`` and ``Authorization: Bearer`` both open the connection."""
    url = guarded.ws_base + "/ws?symbols=BTCUSDT"
    async with connect(url + "&token=" + TOKEN, origin=GOOD_ORIGIN) as ws:
        assert (await recv_json(ws))["symbol"] == "BTCUSDT"
    headers = {"Authorization": "Bearer " + TOKEN}
    async with connect(url, origin=GOOD_ORIGIN, additional_headers=headers) as ws:
        assert (await recv_json(ws))["symbol"] == "BTCUSDT"


async def test_another_origin_is_refused_with_403(guarded: ServerProcess) -> None:
    """With TICKCAST_ALLOWED_ORIGINS set, another Origin gets HTTP 403 even with a token."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            guarded.ws_base + "/ws?token=" + TOKEN,
            origin=Origin("http://evil.example"),
        ):
            pass
    assert refused.value.response.status_code == 403
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(
            guarded.base + "/sse?token=" + TOKEN, headers={"Origin": "http://evil.example"}
        )
        assert response.status_code == 403


async def test_a_client_without_an_origin_is_admitted_with_the_token(
    guarded: ServerProcess,
) -> None:
    """With TICKCAST_ALLOWED_ORIGINS set, a client that sends no Origin (not a browser)
    is admitted on /ws and /sse when its token is valid; a listed Origin still is too."""
    async with connect(guarded.ws_base + "/ws?symbols=BTCUSDT&token=" + TOKEN) as ws:
        assert "origin" not in ws.request.headers  # type: ignore[union-attr]
        assert (await recv_json(ws))["symbol"] == "BTCUSDT"
    async with (
        httpx.AsyncClient(timeout=5) as client,
        client.stream("GET", guarded.base + "/sse?symbols=BTCUSDT&token=" + TOKEN) as response,
    ):
        assert "origin" not in response.request.headers
        assert response.status_code == 200
    async with (
        httpx.AsyncClient(timeout=5) as client,
        client.stream(
            "GET",
            guarded.base + "/sse?symbols=BTCUSDT&token=" + TOKEN,
            headers={"Origin": GOOD_ORIGIN},
        ) as response,
    ):
        assert response.status_code == 200


async def test_more_symbols_than_the_limit_at_connect_are_refused(
    guarded: ServerProcess,
) -> None:
    """``?symbols=`` naming more than TICKCAST_MAX_SUBSCRIPTIONS (3) is not silently cut:
    /ws replies too_many_subscriptions and subscribes none, /sse answers 400."""
    four = "BTCUSDT,ETHUSDT,SOLUSDT,XRPUSDT"
    async with connect(f"{guarded.ws_base}/ws?symbols={four}&token={TOKEN}") as ws:
        first = await recv_json(ws)
        assert first["type"] == "error"
        assert first["code"] == "too_many_subscriptions"
        assert await collect(ws, 0.5) == []
        await send_op(ws, {"op": "list", "id": 1})
        assert (await next_of_type(ws, "ack"))["symbols"] == []
    async with connect(f"{guarded.ws_base}/ws?symbols=BTCUSDT,ETHUSDT,SOLUSDT&token={TOKEN}") as ws:
        assert sorted(tick_symbols([await recv_json(ws) for _ in range(3)])) == [
            "BTCUSDT", "ETHUSDT", "SOLUSDT",
        ]  # fmt: skip
    async with (
        httpx.AsyncClient(base_url=guarded.base, timeout=5) as client,
        client.stream("GET", f"/sse?symbols={four}&token={TOKEN}") as response,
    ):
        assert response.status_code == 400  # before reading: a stream would never end
        assert orjson.loads(await response.aread())["error"] == "too_many_subscriptions"


async def test_status_and_sse_need_the_token(guarded: ServerProcess) -> None:
    """``/status`` and ``/sse`` answer 401 without the token; REST reads stay open."""
    async with httpx.AsyncClient(base_url=guarded.base, timeout=5) as client:
        assert (await client.get("/status")).status_code == 401
        assert (await client.get("/status")).json()["error"] == "unauthorized"
        assert (await client.get("/status?token=" + TOKEN)).status_code == 200
        bearer = {"Authorization": "Bearer " + TOKEN}
        assert (await client.get("/status", headers=bearer)).status_code == 200
        sse = await client.get("/sse", headers={"Origin": GOOD_ORIGIN})
        assert sse.status_code == 401
        assert (await client.get("/price")).status_code == 200


async def test_connections_past_the_limit_get_503(guarded: ServerProcess) -> None:
    """With max 3 connections the fourth gets HTTP 503; a freed slot admits the next."""
    url = guarded.ws_base + "/ws?symbols=BTCUSDT&token=" + TOKEN
    auth = {"Authorization": "Bearer " + TOKEN}

    def clients() -> object:
        edge = guarded.get("/status", headers=auth).json()["edge"]
        return edge["clients"]["total"]

    await eventually(lambda: clients() == 0)
    first = await connect(url, origin=GOOD_ORIGIN)
    try:
        async with (
            connect(url, origin=GOOD_ORIGIN) as second,
            connect(url, origin=GOOD_ORIGIN) as third,
        ):
            for ws in (first, second, third):
                assert (await recv_json(ws))["type"] == "tick"
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, origin=GOOD_ORIGIN):
                    pass
            assert refused.value.response.status_code == 503
            await first.close()
            await eventually(lambda: clients() == 2)
            async with connect(url, origin=GOOD_ORIGIN) as fourth:
                assert (await recv_json(fourth))["type"] == "tick"
    finally:
        await first.close()


# -- shutdown -------------------------------------------------------------------------


async def test_sigterm_closes_clients_with_1001_and_exits_within_5s(tmp_path: Path) -> None:
    """On SIGTERM every client gets close 1001 and the process exits in under 5 s."""
    with running_server(tmp_path, SIM, {"TICKCAST_SIM_RATE": "10"}) as server:
        clients = [await connect(server.ws_base + "/ws") for _ in range(3)]
        try:
            for ws in clients:
                await recv_json(ws)

            async def drain(ws: ClientConnection) -> int | None:
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 8)
                return ws.close_code

            drained = asyncio.gather(*(drain(ws) for ws in clients))
            took = await asyncio.to_thread(server.stop)
            codes = await drained
        finally:
            for ws in clients:
                await ws.close()
    assert codes == [1001, 1001, 1001]
    assert took < 5.0
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert server.proc.returncode in (0, -signal.SIGTERM)
