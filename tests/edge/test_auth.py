"""Per-client tokens against a real ``tickcast serve`` process, over loopback (SPEC §10).

Every refusal is checked three ways: the status or close code, that the server answered
no 5xx, and that the token is in none of the server's log lines (its access log included).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ..support import ServerProcess, eventually, running_server
from .tokenkit import SECRET, hmac_with, hs256, jwks, rsa_key, unsigned

Message = dict[str, Any]
AUD, ISS = "tickcast-test", "https://idp.example"
SHARED = "shared-secret-of-the-old-kind"
SUBJECT_LIMIT = 5


def claims(sub: str = "alice", ttl: float = 3600, **extra: Any) -> dict[str, Any]:
    return {"sub": sub, "exp": int(time.time() + ttl), "aud": AUD, "iss": ISS, **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "TICKCAST_SIM_RATE": "10",
        "TICKCAST_JWT_SECRET": SECRET,
        "TICKCAST_JWT_AUDIENCE": AUD,
        "TICKCAST_JWT_ISSUER": ISS,
        "TICKCAST_JWT_LEEWAY": "0",
        "TICKCAST_MAX_CONNECTIONS_PER_SUBJECT": str(SUBJECT_LIMIT),
        "TICKCAST_TOKEN": SHARED,
    }
    with running_server(tmp_path_factory.mktemp("jwt"), ["--source", "sim"], env) as s:
        yield s


@pytest.fixture(scope="module")
def jwks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("jwks")
    keys = folder / "jwks.json"
    keys.write_bytes(jwks(rsa_key()))
    env = {"TICKCAST_SIM_RATE": "10", "TICKCAST_JWT_JWKS": str(keys), "TICKCAST_JWT_LEEWAY": "0"}
    with running_server(folder, ["--source", "sim"], env) as s:
        yield s


def full_log(server: ServerProcess) -> str:
    return Path(server.log_path).read_text(errors="replace")


async def assert_not_logged(server: ServerProcess, *tokens: str) -> None:
    """No ``tokens`` in the log, nor a 5xx, once the request before this one is logged.

    A plain request with a marker goes last: the access log is never rate limited, and
    it is written after the lines of every request answered before it."""
    marker = uuid.uuid4().hex
    async with httpx.AsyncClient(timeout=5) as client:
        await client.get(f"{server.base}/healthz?probe={marker}")
    await eventually(lambda: marker in full_log(server), timeout=5)
    text = full_log(server)
    for token in tokens:
        assert token not in text
        # Not its signature either, the part that makes it a credential.
        if token.count(".") == 2 and len(token.rsplit(".", 1)[1]) > 8:
            assert token.rsplit(".", 1)[1] not in text
    # /price answers 503 until the first tick, while the fixture waits for it.
    errors = [line for line in text.splitlines() if '" 5' in line and "GET /price " not in line]
    assert not errors and "Traceback" not in text


async def ws_refusal(
    server: ServerProcess,
    token: str | None,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, Message]:
    """The status and JSON body of a refused /ws handshake."""
    url = f"{server.ws_base}/ws?symbols=BTCUSDT{query}"
    if token is not None and headers is None:
        url += "&token=" + token
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=headers, open_timeout=5):
            pass
    response = refused.value.response
    await assert_not_logged(server, *([token] if token else []))
    # A head over the limits gets the protocol's text answer, not the app's JSON.
    body = orjson.loads(response.body) if response.status_code != 431 else {}
    return response.status_code, body


async def raw_status(server: ServerProcess, request: str) -> int:
    """The status of the answer to ``request`` sent as is."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request.encode())
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    return int(line.split()[1])


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Message:
    message = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(message, dict)
    return message


async def next_of_type(ws: ClientConnection, kind: str, timeout: float = 5.0) -> Message:
    deadline = time.monotonic() + timeout
    while True:
        message = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        if message["type"] == kind:
            return message


async def send(ws: ClientConnection, op: Message) -> None:
    await ws.send(orjson.dumps(op).decode())


# -- refusals at the handshake --------------------------------------------------------


async def test_alg_none_is_refused(server: ServerProcess) -> None:
    """An unsigned token: 401 bad_signature."""
    status, body = await ws_refusal(server, unsigned(claims()))
    assert (status, body["reason"]) == (401, "bad_signature")


async def test_hs256_made_with_the_rsa_public_key_is_refused(jwks_server: ServerProcess) -> None:
    """Key confusion: the JWKS's RSA public key (PEM) used as an HS256 secret."""
    forged = hmac_with(rsa_key().public_pem(), claims(), kid=rsa_key().kid)
    status, body = await ws_refusal(jwks_server, forged)
    assert (status, body["reason"]) == (401, "bad_signature")


async def test_a_token_without_exp_is_refused(server: ServerProcess) -> None:
    payload = claims()
    del payload["exp"]
    status, body = await ws_refusal(server, hs256(payload))
    assert (status, body["reason"]) == (401, "malformed")


async def test_an_expired_token_is_refused(server: ServerProcess) -> None:
    """exp past beyond the leeway (0 here)."""
    status, body = await ws_refusal(server, hs256(claims(ttl=-5)))
    assert (status, body["reason"]) == (401, "expired")


async def test_a_token_not_valid_yet_is_refused(server: ServerProcess) -> None:
    status, body = await ws_refusal(server, hs256(claims(nbf=int(time.time()) + 600)))
    assert (status, body["reason"]) == (401, "not_yet_valid")


async def test_wrong_audience_and_issuer_are_refused(server: ServerProcess) -> None:
    status, body = await ws_refusal(server, hs256(claims(aud="someone-else")))
    assert (status, body["reason"]) == (401, "audience")
    status, body = await ws_refusal(server, hs256(claims(iss="https://other.example")))
    assert (status, body["reason"]) == (401, "issuer")


async def test_a_kid_not_in_the_jwks_is_refused(jwks_server: ServerProcess) -> None:
    """A token naming a key the JWKS does not hold: unknown_key; a known one is admitted."""
    status, body = await ws_refusal(jwks_server, rsa_key().sign(claims(), kid="no-such-key"))
    assert (status, body["reason"]) == (401, "unknown_key")
    token = rsa_key().sign({"sub": "bob", "exp": int(time.time()) + 600})
    async with connect(f"{jwks_server.ws_base}/ws?symbols=BTCUSDT&token={token}") as ws:
        assert (await recv_json(ws))["symbol"] == "BTCUSDT"
    jwks_state = jwks_server.status()["edge"]["auth"]["jwks"]  # type: ignore[index]
    assert jwks_state["state"] == "ok" and jwks_state["keys"] == 1


async def test_a_100kb_token_is_refused_fast_without_a_5xx(server: ServerProcess) -> None:
    """In the query or a header: 431 by the request-head limits, at once; in an auth op:
    closed 1009 (over the message size limit). Never a 5xx."""
    huge = hs256(claims(pad="x" * 100_000))
    started = time.monotonic()
    # httpx will not send a URL this long: the request goes as raw bytes.
    assert await raw_status(server, f"GET /sse?token={huge} HTTP/1.1\r\nHost: x\r\n\r\n") == 431
    async with httpx.AsyncClient(timeout=5) as client:
        by_header = await client.get(
            f"{server.base}/sse", headers={"Authorization": "Bearer " + huge}
        )
    assert by_header.status_code == 431
    status, _ = await ws_refusal(server, None, headers={"Authorization": "Bearer " + huge})
    assert status == 431
    async with connect(f"{server.ws_base}/ws", max_size=None) as ws:
        await send(ws, {"op": "auth", "token": huge})
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert time.monotonic() - started < 5
    await assert_not_logged(server, huge)


async def test_a_header_token_and_a_different_query_token_are_refused(
    server: ServerProcess,
) -> None:
    """Two different tokens: 401 ambiguous, on /ws and /sse, whichever is valid."""
    good, other = hs256(claims()), hs256(claims(sub="mallory"))
    headers = {"Authorization": "Bearer " + good}
    status, body = await ws_refusal(server, None, query="&token=" + other, headers=headers)
    assert (status, body["reason"]) == (401, "ambiguous")
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{server.base}/sse?token={other}", headers=headers)
    assert response.status_code == 401 and response.json()["reason"] == "ambiguous"
    await assert_not_logged(server, good, other)


async def test_connections_of_one_subject_past_its_limit_are_refused(
    server: ServerProcess,
) -> None:
    """With a limit of 5 per subject, 20 attempts of one subject open 5; the rest get 429
    subject_limit; another subject is unaffected; a closed one frees its place."""
    token = hs256(claims(sub="carol"))
    url = f"{server.ws_base}/ws?symbols=BTCUSDT&token={token}"
    opened: list[ClientConnection] = []
    answers: list[tuple[int, Message]] = []
    refused = 0
    try:
        for _ in range(20):
            try:
                opened.append(await connect(url))
            except InvalidStatus as exc:
                answers.append((exc.response.status_code, orjson.loads(exc.response.body)))
                refused += 1
        assert (len(opened), refused) == (SUBJECT_LIMIT, 20 - SUBJECT_LIMIT)
        assert {(status, body["reason"]) for status, body in answers} == {(429, "subject_limit")}
        async with connect(f"{server.ws_base}/ws?symbols=BTCUSDT&token={hs256(claims('dave'))}"):
            pass
        auth = server.get("/status", headers={"Authorization": "Bearer " + SHARED}).json()
        counts = auth["edge"]["auth"]
        assert counts["most_connections_of_a_subject"] == SUBJECT_LIMIT
        assert "carol" not in str(auth)
        await opened.pop().close()

        async def admitted() -> bool:
            try:
                opened.append(await connect(url))
            except InvalidStatus:
                return False
            return True

        await eventually(admitted, timeout=5)
    finally:
        for ws in opened:
            await ws.close()
    await assert_not_logged(server, token)


async def test_concurrent_connections_of_one_subject_stay_within_its_limit(
    server: ServerProcess,
) -> None:
    """20 handshakes of one subject at once: at most 5 stay open (429 at the handshake,
    or 1013 right after it for those checked before the others were open)."""
    token = hs256(claims(sub="erin"))
    url = f"{server.ws_base}/ws?symbols=BTCUSDT&token={token}"

    statuses: list[int] = []

    async def attempt() -> ClientConnection | None:
        try:
            return await connect(url)
        except InvalidStatus as exc:
            statuses.append(exc.response.status_code)
            return None

    opened = [ws for ws in await asyncio.gather(*(attempt() for _ in range(20))) if ws]
    assert set(statuses) <= {429}
    try:
        await asyncio.sleep(0.5)
        alive, codes = [], []
        for ws in opened:
            try:
                await recv_json(ws, timeout=2)
                alive.append(ws)
            except ConnectionClosed as closed:
                codes.append(closed.rcvd.code if closed.rcvd else None)
        assert set(codes) <= {1013}
        assert 1 <= len(alive) <= SUBJECT_LIMIT
    finally:
        for ws in opened:
            await ws.close()


# -- what a token allows -------------------------------------------------------------


async def test_subscribing_star_with_a_btc_token_gets_btc_and_forbidden(
    server: ServerProcess,
) -> None:
    """A token allowing BTCUSDT@* subscribing ``*``: the ack lists BTCUSDT alone, one
    ``forbidden`` error names the rest, and only BTCUSDT ticks arrive."""
    token = hs256(claims(streams=["BTCUSDT@*"]))
    async with connect(f"{server.ws_base}/ws?symbols=BTCUSDT&token={token}&status=1") as ws:
        await send(ws, {"op": "unsubscribe", "symbols": ["BTCUSDT"], "id": 1})
        await next_of_type(ws, "ack")
        await send(ws, {"op": "subscribe", "symbols": ["*"], "id": 2})
        error = await next_of_type(ws, "error")
        assert error["code"] == "forbidden" and error["id"] == 2
        assert "ETHUSDT@ticker" in error["streams"] and "BTCUSDT@ticker" not in error["streams"]
        ack = await next_of_type(ws, "ack")
        assert ack["symbols"] == ["BTCUSDT"]
        seen = set()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            message = await recv_json(ws)
            if message["type"] == "tick":
                seen.add(message["symbol"])
        assert seen == {"BTCUSDT"}
        await send(ws, {"op": "subscribe", "streams": ["BTCUSDT@trades", "ETHUSDT@trades"]})
        error = await next_of_type(ws, "error")
        assert error["code"] == "forbidden" and error["streams"] == ["ETHUSDT@trades"]


async def test_a_resume_replays_nothing_of_streams_not_allowed(server: ServerProcess) -> None:
    """SSE with Last-Event-ID over BTCUSDT and ETHUSDT, with a token for BTCUSDT only:
    ETHUSDT is reported forbidden and none of its missed ticks is replayed."""
    first = server.get("/history/BTCUSDT?limit=1").json()
    since = int(first[0]["seq"]) - 1 if first else 0
    await asyncio.sleep(1.0)  # ticks of both symbols to miss
    token = hs256(claims(streams=["BTCUSDT@*"]))
    headers = {"Last-Event-ID": str(since), "Authorization": "Bearer " + token}
    events = await sse_events(f"{server.base}/sse?symbols=BTCUSDT,ETHUSDT", headers, 1.0)
    ticks = [orjson.loads(data) for name, data in events if name == "message"]
    errors = [orjson.loads(data) for name, data in events if name == "error"]
    assert ticks and {t["symbol"] for t in ticks} == {"BTCUSDT"}
    assert errors[0]["code"] == "forbidden" and errors[0]["streams"] == ["ETHUSDT@ticker"]
    assert not any(name == "reset" for name, _ in events)  # a resume, not a reset
    # No allowed stream at all: 403.
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(
            f"{server.base}/sse?symbols=ETHUSDT", headers={"Authorization": "Bearer " + token}
        )
    assert response.status_code == 403 and response.json()["reason"] == "forbidden_stream"


async def sse_events(url: str, headers: dict[str, str], seconds: float) -> list[tuple[str, bytes]]:
    """The (event name, data) of every event read in ``seconds`` (or until the end)."""
    out: list[tuple[str, bytes]] = []
    async with (
        httpx.AsyncClient(timeout=5) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200
        try:
            async with asyncio.timeout(seconds):
                async for name, data in _events(response.aiter_lines()):
                    out.append((name, data))
        except TimeoutError:
            pass
    return out


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, bytes]]:
    name, data = "message", b""
    async for line in lines:
        if not line:
            if data:
                yield name, data
            name, data = "message", b""
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip().encode()


# -- the op path: auth, refresh, expiry -----------------------------------------------


async def test_a_browser_style_client_authenticates_with_an_auth_op(
    server: ServerProcess,
) -> None:
    """No token at the handshake: an ``auth`` op opens the connect parameters' streams."""
    token = hs256(claims())
    async with connect(f"{server.ws_base}/ws?symbols=BTCUSDT") as ws:
        await send(ws, {"op": "auth", "token": token, "id": "a"})
        ack = await next_of_type(ws, "ack")
        assert ack["op"] == "auth" and ack["id"] == "a"
        assert (await next_of_type(ws, "tick"))["symbol"] == "BTCUSDT"


async def test_a_client_that_never_authenticates_is_closed(server: ServerProcess) -> None:
    """Any other op first: closed 1008 at once; nothing at all: closed after 5 s."""
    async with connect(f"{server.ws_base}/ws?symbols=BTCUSDT") as ws:
        await send(ws, {"op": "subscribe", "symbols": ["BTCUSDT"]})
        assert (await next_of_type(ws, "error"))["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    started = time.monotonic()
    async with connect(f"{server.ws_base}/ws?symbols=BTCUSDT") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                message = await recv_json(ws, timeout=8)
                assert message["type"] != "tick"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert 4 <= time.monotonic() - started < 8


async def test_an_expiring_token_is_warned_then_closed_with_4001(server: ServerProcess) -> None:
    """exp 3 s ahead: ``token_expiring`` at once (under 30 s left), then close 4001."""
    token = hs256(claims(ttl=3))
    async with connect(f"{server.ws_base}/ws?symbols=BTCUSDT&token={token}") as ws:
        warning = await next_of_type(ws, "token_expiring", timeout=3)
        assert 0 < warning["in_ms"] <= 3000
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await recv_json(ws, timeout=6)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "token expired")


async def test_a_refresh_extends_the_connection(server: ServerProcess) -> None:
    """A refresh with the same sub and a later exp: acked, and ticks go on past the first exp."""
    token = hs256(claims(ttl=2))
    async with connect(f"{server.ws_base}/ws?symbols=BTCUSDT&token={token}") as ws:
        await next_of_type(ws, "token_expiring", timeout=3)
        fresh = hs256(claims(ttl=3600))
        await send(ws, {"op": "refresh", "token": fresh, "id": 7})
        ack = await next_of_type(ws, "ack")
        assert ack["op"] == "refresh" and ack["expires_at"] > time.time() + 3000
        await asyncio.sleep(3)
        assert (await next_of_type(ws, "tick"))["symbol"] == "BTCUSDT"


async def test_a_refresh_for_another_subject_is_refused(server: ServerProcess) -> None:
    """A refresh naming another sub: an error with reason subject_changed; the old token
    still runs out and closes the connection."""
    token = hs256(claims(ttl=3))
    other = hs256(claims(sub="mallory", ttl=3600))
    async with connect(f"{server.ws_base}/ws?symbols=BTCUSDT&token={token}") as ws:
        await send(ws, {"op": "refresh", "token": other, "id": 8})
        error = await next_of_type(ws, "error")
        assert (error["code"], error["reason"], error["id"]) == (
            "unauthorized",
            "subject_changed",
            8,
        )
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await recv_json(ws, timeout=6)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    await assert_not_logged(server, token, other)


async def test_an_sse_stream_ends_with_an_error_event_when_its_token_expires(
    server: ServerProcess,
) -> None:
    token = hs256(claims(ttl=2))
    events = await sse_events(f"{server.base}/sse?symbols=BTCUSDT&token={token}", {}, 6)
    names = [name for name, _ in events]
    assert "token_expiring" in names
    assert names[-1] == "error" and orjson.loads(events[-1][1])["code"] == "token_expired"


# -- beside the shared token, and what is shown ----------------------------------------


async def test_the_shared_token_still_admits(server: ServerProcess) -> None:
    async with connect(f"{server.ws_base}/ws?symbols=BTCUSDT&token={SHARED}") as ws:
        assert (await recv_json(ws))["symbol"] == "BTCUSDT"


async def test_refusals_are_counted_by_reason_and_status_shows_counts_only(
    server: ServerProcess,
) -> None:
    await ws_refusal(server, unsigned(claims()))
    metrics = server.get("/metrics").text
    assert 'tickcast_auth_refused_total{reason="bad_signature"}' in metrics
    assert 'tickcast_auth_refused_total{reason="subject_limit"}' in metrics
    status = server.get("/status", headers={"Authorization": "Bearer " + SHARED}).json()
    auth = status["edge"]["auth"]
    assert auth["mode"] == "hs256" and auth["shared_token"] is True
    assert auth["refused"]["bad_signature"] >= 1
    assert {"subjects", "most_connections_of_a_subject"} <= set(auth)


async def test_tail_sends_a_refresh_from_its_token_source(server: ServerProcess) -> None:
    """``tickcast tail`` with a token that changes (``--token-file``): told the token is
    expiring, it sends the new one and the stream goes on past the first exp."""
    from tickcast.tail import OutputFormat, run_tail

    tokens = [hs256(claims(ttl=2)), hs256(claims(ttl=3600))]
    calls = []

    def current() -> str:
        calls.append(1)
        return tokens[0] if len(calls) == 1 else tokens[1]

    def expired_closes() -> int:
        status = server.get("/status", headers={"Authorization": "Bearer " + SHARED}).json()
        return int(status["edge"]["closes"].get("token_expired", 0))

    before = expired_closes()
    started_ms = time.time() * 1000
    out, err = io.StringIO(), io.StringIO()
    code = await run_tail(
        server.base, ["BTCUSDT"], False, token=current, output=OutputFormat.JSON,
        out=out, err=err, max_seconds=4.0,
    )  # fmt: skip
    assert code == 0, err.getvalue()
    assert expired_closes() == before
    assert "closed the connection" not in err.getvalue()
    assert len(calls) >= 2  # asked again when told the token was expiring
    last = orjson.loads(out.getvalue().splitlines()[-1])
    assert last["timestamp_ms"] > started_ms + 2500  # ticks went on past the first exp


# -- REST with TICKCAST_JWT_REST ------------------------------------------------------


@pytest.fixture(scope="module")
def rest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "TICKCAST_SIM_RATE": "10",
        "TICKCAST_JWT_SECRET": SECRET,
        "TICKCAST_JWT_REST": "1",
        "TICKCAST_TOKEN": SHARED,
    }
    with running_server(
        tmp_path_factory.mktemp("rest"), ["--source", "sim"], env, ready="/healthz"
    ) as s:
        yield s


async def test_rest_reads_need_a_token_that_allows_what_they_read(
    rest_server: ServerProcess,
) -> None:
    """No token: 401; a token for BTCUSDT@* reads BTCUSDT's price, candles and the
    listings, not ETHUSDT's price nor every price (403); health and metrics stay open."""
    everything = hs256({"sub": "alice", "exp": int(time.time()) + 600})
    btc = hs256({"sub": "bob", "exp": int(time.time()) + 600, "streams": ["BTCUSDT@*"]})

    def get(path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": "Bearer " + token} if token else {}
        return rest_server.get(path, headers=headers)

    await eventually(lambda: get("/price", everything).status_code == 200)
    refused = get("/price")
    assert refused.status_code == 401 and refused.json()["reason"] == "missing"
    assert get("/prices", SHARED).status_code == 200
    assert rest_server.get("/price?token=" + everything).status_code == 200
    for path in ("/price?symbol=btcusdt", "/prices/BTCUSDT", "/klines/BTCUSDT", "/symbols"):
        assert get(path, btc).status_code == 200, path
    for path in ("/price?symbol=ETHUSDT", "/history/ETHUSDT", "/prices", "/trades/ETHUSDT"):
        response = get(path, btc)
        assert response.status_code == 403 and response.json()["reason"] == "forbidden_stream"
    for path in ("/healthz", "/metrics", "/"):
        assert rest_server.get(path).status_code == 200, path
    await assert_not_logged(rest_server, everything, btc)
