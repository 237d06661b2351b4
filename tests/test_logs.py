"""Log redaction: the pure redactor, the handler's formats, then real server processes."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Literal

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from tickcast.logs import REDACTED, RateLimit, Redactor, build_handler

from .support import eventually, free_port, running_server

TOKEN = "tc_S3cret-Token.42~x"
# The same token as a client may put it in a URL: unreserved characters percent-encoded.
TOKEN_ENCODED = "tc_S3cret%2DToken%2E42~x"


# ---------------------------------------------------------------------- Redactor


@pytest.mark.parametrize(
    ("line", "redacted"),
    [
        ('"WebSocket /ws?token=abc" [accepted]', f'"WebSocket /ws?token={REDACTED}" [accepted]'),
        ("/ws?symbols=A,B&token=abc&status=1", f"/ws?symbols=A,B&token={REDACTED}&status=1"),
        ("/sse?symbols=A&token=abc", f"/sse?symbols=A&token={REDACTED}"),
        ("/sse?TOKEN=a%2Db#frag", f"/sse?TOKEN={REDACTED}#frag"),
        ("/x?access_token=abc&y=1", f"/x?access_token={REDACTED}&y=1"),
        ("next=%2Fws%3Ftoken%3Dabc%26x%3D1", f"next=%2Fws%3Ftoken%3D{REDACTED}%26x%3D1"),
        ("next=%252Fws%253Ftoken%253Dabc%2526x", f"next=%252Fws%253Ftoken%253D{REDACTED}%2526x"),
        ("{'query_string': b'token=abc'}", f"{{'query_string': b'token={REDACTED}'}}"),
    ],
)
def test_token_query_parameter_is_redacted_in_any_position_and_encoding(
    line: str, redacted: str
) -> None:
    """A token= value goes, first or later in the query, plain or percent-encoded."""
    assert Redactor()(line) == redacted


@pytest.mark.parametrize(
    "line",
    [
        "Authorization: Bearer abc.def",
        "{'authorization': 'bearer abc.def'}",
        "[(b'authorization', b'Bearer abc.def')]",
        '{"Authorization":"Bearer abc.def"}',
    ],
)
def test_bearer_credentials_are_redacted_in_any_header_shape(line: str) -> None:
    """The credential of an Authorization header is gone however the header is printed."""
    out = Redactor()(line)
    assert "abc" not in out
    assert REDACTED in out


def test_configured_token_is_redacted_wherever_it_appears() -> None:
    """The configured token goes in any context, with any of its characters %-encoded."""
    redact = Redactor([TOKEN])
    out = redact(f"path /a/{TOKEN}/b; encoded {TOKEN_ENCODED}; twice %74c_S3cret%252DToken.42~x")
    assert out == f"path /a/{REDACTED}/b; encoded {REDACTED}; twice {REDACTED}"
    assert redact(f"Bearer {TOKEN}, token={TOKEN}") == f"Bearer {REDACTED}, token={REDACTED}"


def test_other_text_is_left_alone() -> None:
    """Other query parameters, other words and a short token's lookalikes are kept."""
    line = "/sse?symbols=BTCUSDT&last_event_id=5 tokens=3 tick abc"
    assert Redactor(["abc", ""])(line) == line


# ---------------------------------------------------------------------- the handler


@pytest.fixture
def logger() -> logging.Logger:
    """A logger outside logging's registry: no parent, and pytest adds no handler to it."""
    return logging.Logger("tickcast.test", logging.DEBUG)


def log_everything(logger: logging.Logger) -> None:
    logger.info("client %s", f"/ws?token={TOKEN}")
    logger.warning("auth header %r", {"authorization": f"Bearer {TOKEN}"})
    try:
        raise ValueError(f"bad request /sse?symbols=X&token={TOKEN_ENCODED}")
    except ValueError:
        logger.exception("request failed", stack_info=True)
    logger.error("unformattable %d", f"token={TOKEN}")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_messages_exceptions_and_stacks_are_redacted(
    fmt: Literal["text", "json"], logger: logging.Logger
) -> None:
    """Messages, their arguments, tracebacks and stacks are written without the token."""
    out = io.StringIO()
    logger.addHandler(build_handler(fmt, [TOKEN], out))
    log_everything(logger)
    text = out.getvalue()
    assert TOKEN not in text
    assert TOKEN_ENCODED not in text
    assert "ValueError: bad request /sse?symbols=X&token=[redacted]" in text
    assert "Traceback" in text
    assert "Stack (most recent call last)" in text
    if fmt == "json":
        entries = [json.loads(line) for line in text.splitlines()]
        assert [e["level"] for e in entries] == ["info", "warning", "error", "error"]
        assert entries[0]["message"] == f"client /ws?token={REDACTED}"
        assert entries[1]["message"] == f"auth header {{'authorization': 'Bearer {REDACTED}'}}"
        assert "token=[redacted]" in entries[2]["exc"]
        assert "unformattable arguments" in entries[3]["message"]


# ---------------------------------------------------------------------- real processes


async def make_requests(base: str) -> None:
    """Real clients offering the token every way the server accepts it, and a wrong one."""
    ws = base.replace("http://", "ws://", 1)
    async with ws_connect(f"{ws}/ws?symbols=BTCUSDT&token={TOKEN}") as client:
        await asyncio.wait_for(client.recv(), 5)
    async with ws_connect(f"{ws}/ws?token={TOKEN_ENCODED}&symbols=ETHUSDT") as client:
        await asyncio.wait_for(client.recv(), 5)
    for target in ["/ws?token=wrong-guess-1234", f"/ws?next=%2Fsse%3Ftoken%3D{TOKEN}"]:
        with pytest.raises(InvalidStatus):
            async with ws_connect(ws + target):
                pass
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        async with http.stream("GET", f"/sse?symbols=BTCUSDT&token={TOKEN_ENCODED}") as sse:
            assert sse.status_code == 200
            await anext(sse.aiter_lines())
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert (await http.get("/status", headers=headers)).status_code == 200
        assert (await http.get(f"/status?token={TOKEN}")).status_code == 200


def assert_no_token(log: str) -> None:
    for secret in (TOKEN, TOKEN_ENCODED, "wrong-guess-1234"):
        assert secret.lower() not in log.lower(), f"{secret} leaked into the log:\n{log}"


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_server_log_never_shows_the_token(tmp_path: Path, fmt: str) -> None:
    """`tickcast serve` with a token logs each handshake with the token redacted."""
    env = {"TICKCAST_TOKEN": TOKEN, "TICKCAST_LOG_FORMAT": fmt}
    with running_server(tmp_path, ["--source", "sim"], env) as server:
        await make_requests(server.base)
    log = server.log_path.read_text()
    assert_no_token(log)
    if fmt == "json":
        messages = "\n".join(json.loads(line)["message"] for line in log.splitlines())
    else:
        messages = log
    assert f'"WebSocket /ws?symbols=BTCUSDT&token={REDACTED}" [accepted]' in messages
    assert f'"WebSocket /ws?token={REDACTED}&symbols=ETHUSDT" [accepted]' in messages
    assert f'"WebSocket /ws?token={REDACTED}" 401' in messages
    assert f'"WebSocket /ws?next=%2Fsse%3Ftoken%3D{REDACTED}" 401' in messages


# tickcast serve logs each request through uvicorn's access log; the same app run by an
# operator with that log sent on must not get the token in it either.
ACCESS_LOGGED_SERVER = """
import logging, uvicorn
from tickcast.logs import configure_logging
from tickcast.serve.server import uvicorn_config
from tickcast.settings import Settings
settings = Settings()
configure_logging(settings.log_format, settings.log_level, secrets=[settings.token])
config = uvicorn_config(settings)
logging.getLogger("uvicorn.access").propagate = True
uvicorn.Server(config).run()
"""


async def ready(base: str, proc: asyncio.subprocess.Process) -> bool:
    assert proc.returncode is None, "the server exited"
    async with httpx.AsyncClient(timeout=1) as http:
        try:
            return (await http.get(base + "/price")).status_code == 200
        except httpx.HTTPError:
            return False


async def test_access_log_never_shows_the_token(tmp_path: Path) -> None:
    """With uvicorn's access log on, /sse and /status lines carry the token redacted."""
    port = free_port()
    env = {
        **os.environ,
        "TICKCAST_TOKEN": TOKEN,
        "TICKCAST_SOURCE": "sim",
        "TICKCAST_HOST": "127.0.0.1",
        "TICKCAST_PORT": str(port),
        "TICKCAST_LOG_FORMAT": "json",
    }
    log_path = tmp_path / "access.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", ACCESS_LOGGED_SERVER, env=env, stdout=log_file, stderr=log_file
        )
        try:
            base = f"http://127.0.0.1:{port}"
            await eventually(lambda: ready(base, proc), timeout=20)
            await make_requests(base)
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
    log = log_path.read_text()
    assert_no_token(log)
    access = [
        entry["message"]
        for entry in map(json.loads, log.splitlines())
        if entry["logger"] == "uvicorn.access"
    ]
    assert any(f"GET /sse?symbols=BTCUSDT&token={REDACTED} HTTP/1.1" in a for a in access), access
    assert any(f"GET /status?token={REDACTED} HTTP/1.1" in a for a in access), access


async def test_ws_sse_and_rest_are_logged_alike(tmp_path: Path) -> None:
    """A WebSocket and an SSE stream each log two lines, the request's and the stream's end
    (after how long, and why when the server ended it); a REST request logs one access line; all at INFO, none
    with the token, and nothing else about them."""
    with running_server(tmp_path, ["--source", "sim"], {"TICKCAST_TOKEN": TOKEN}) as server:
        start = len(server.log_path.read_text().splitlines())
        ws = server.ws_base
        async with ws_connect(f"{ws}/ws?symbols=BTCUSDT&token={TOKEN}") as client:
            await asyncio.wait_for(client.recv(), 5)
        async with httpx.AsyncClient(base_url=server.base, timeout=5) as http:
            async with http.stream("GET", f"/sse?symbols=ETHUSDT&token={TOKEN}") as sse:
                await anext(sse.aiter_lines())
            assert (await http.get("/price?symbol=SOLUSDT")).status_code == 200

        def lines() -> list[str]:
            return server.log_path.read_text().splitlines()[start:]

        await eventually(lambda: sum(") disconnected after " in x for x in lines()) == 2)
        logged = lines()
    assert_no_token("\n".join(logged))
    expected = [
        f'"WebSocket /ws?symbols=BTCUSDT&token={REDACTED}" [accepted]',
        r"client \d+ \(ws, 127\.0\.0\.1\) disconnected after \d+\.\d s$",
        f'"GET /sse?symbols=ETHUSDT&token={REDACTED} HTTP/1.1" 200',
        r"client \d+ \(sse, 127\.0\.0\.1\) disconnected after \d+\.\d s$",
        '"GET /price?symbol=SOLUSDT HTTP/1.1" 200',
    ]
    # The lines of the server's side of clients: uvicorn's and the edge's.
    requests = [line for line in logged if " uvicorn." in line or " tickcast.edge." in line]
    assert len(requests) == len(expected), logged
    for line, wanted in zip(requests, expected, strict=True):
        assert " INFO " in line, line
        assert wanted in line or re.search(wanted, line), (wanted, logged)
    assert not [line for line in requests if "connection open" in line or "closed" in line[-9:]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rate_limited_logger(stream: io.StringIO, clock: FakeClock) -> logging.Logger:
    handler = build_handler("text", stream=stream)
    limit = next(f for f in handler.filters if isinstance(f, RateLimit))
    limit._clock = clock
    logger = logging.getLogger(f"tickcast.test.rate.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_a_flood_of_one_message_is_summarized_with_a_count() -> None:
    """Thousands of the same warning (different arguments) give a burst and one summary."""
    stream, clock = io.StringIO(), FakeClock()
    logger = rate_limited_logger(stream, clock)
    for i in range(5000):
        logger.warning("bad frame from client %s", f"10.0.0.{i % 250}")
    clock.now = 11.0
    logger.warning("bad frame from client %s", "10.9.9.9")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5 + 1 + 1
    summary = [line for line in lines if "more like this" in line]
    assert len(summary) == 1
    assert "4995 more like this in 10 s, the last: bad frame from client 10.0.0.249" in summary[0]


def test_rate_limits_are_per_kind() -> None:
    """Another message, logger or level keeps its own allowance."""
    stream, clock = io.StringIO(), FakeClock()
    logger = rate_limited_logger(stream, clock)
    for _ in range(100):
        logger.warning("flood %d", 1)
    logger.warning("something else happened")
    logger.error("flood %d", 1)
    lines = stream.getvalue().splitlines()
    assert any("something else happened" in line for line in lines)
    assert sum("ERROR" in line for line in lines) == 1


def test_summaries_are_redacted_too() -> None:
    """A summary quoting the last message still hides the token."""
    stream, clock = io.StringIO(), FakeClock()
    logger = rate_limited_logger(stream, clock)
    for _ in range(20):
        logger.warning("rejected %s", "/ws?token=hunter22secret")
    clock.now = 20.0
    logger.info("tick")
    assert "hunter22secret" not in stream.getvalue()
    assert "more like this" in stream.getvalue()


def test_a_quiet_flood_is_summarized_on_flush() -> None:
    """Suppressed lines are reported at shutdown even if nothing else is logged."""
    stream, clock = io.StringIO(), FakeClock()
    logger = rate_limited_logger(stream, clock)
    for _ in range(8):
        logger.warning("upstream garbage")
    limit = next(f for f in logger.handlers[0].filters if isinstance(f, RateLimit))
    limit.flush()
    assert "3 more like this" in stream.getvalue()


async def test_a_flood_of_bad_clients_cannot_flood_the_log(tmp_path: Path) -> None:
    """Sixty clients sending text that is not UTF-8, at once, and a flood of malformed
    ops: the log gets a handful of lines per kind, and the rest is counted in one line
    written at the latest when the server stops."""
    from .rawclient import RawWebSocket

    with running_server(tmp_path, ["--source", "sim"]) as server:

        async def bad_client() -> None:
            ws = await RawWebSocket.connect(server.ws_base + "/ws?symbols=BTCUSDT")
            try:
                await ws.send_raw_text(b"\xc3\x28 not UTF-8")
                await ws.close_code()
            finally:
                ws.close()

        async def flooder() -> None:
            # It never reads its 300 error replies: with the default bounded queue the
            # client would stop reading, miss the server's close frame and wait 10 s.
            url = server.ws_base + "/ws?symbols=BTCUSDT"
            async with ws_connect(url, max_queue=None) as ws:
                for _ in range(300):
                    await ws.send('{"op":')

        await asyncio.gather(*(bad_client() for _ in range(60)), flooder())
        await asyncio.sleep(0.3)
    log = server.log_path.read_text()
    utf8 = [line for line in log.splitlines() if "invalid UTF-8" in line]
    assert len(utf8) <= 7, utf8  # a burst of 5, then summaries
    summaries = [line for line in utf8 if "more like this" in line]
    assert summaries, utf8
    counted = sum(int(line.split(" more like this")[0].rsplit(" ", 1)[-1]) for line in summaries)
    assert counted + len(utf8) - len(summaries) == 60
    assert len(log.splitlines()) < 120, log[-3000:]
