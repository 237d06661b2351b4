"""Wire fuzz: random and malformed WebSocket and HTTP traffic against a running server.

Bounded in count and time (``TICKCAST_FUZZ_CASES``, default 240, seeded by
``TICKCAST_FUZZ_SEED``). Afterwards the server must serve a fresh client normally and hold
no session, task or descriptor more than before, and it must not have logged a traceback.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.frames import Frame, Opcode

from ..rawclient import RawWebSocket, abort_socket, open_socket
from ..support import ServerProcess, eventually, running_server

CASES = int(os.environ.get("TICKCAST_FUZZ_CASES", "240"))
SEED = int(os.environ.get("TICKCAST_FUZZ_SEED", str(random.SystemRandom().randrange(2**32))))
CONCURRENCY = 16
CASE_TIMEOUT = 3.0

Case = Callable[[random.Random, ServerProcess], Coroutine[Any, Any, None]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"TICKCAST_SIM_RATE": "5", "TICKCAST_HANDSHAKE_TIMEOUT": "2"}
    with running_server(tmp_path_factory.mktemp("fuzz"), ["--source", "sim"], env) as process:
        yield process


# -- frames, built by hand where a library would refuse --------------------------------


def frame_bytes(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    declared: int | None = None,
) -> bytes:
    """One frame; ``declared`` lies about the payload length."""
    length = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 2**16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def random_text(rng: random.Random) -> bytes:
    choices: list[Callable[[], bytes]] = [
        lambda: b'{"op":"subscribe","symbols":["BTCUSDT"],"id":1}',
        lambda: b'{"op":"unsubscribe","symbols":["ETHUSDT","NOPE"],"id":"x"}',
        lambda: b'{"op":"list","id":' + str(rng.randrange(-(2**70), 2**70)).encode() + b"}",
        lambda: b'{"op":"ping","extra":{"unknown":[1,2,3]}}',
        lambda: b"[" * rng.randrange(1, 5000) + b"]" * rng.randrange(0, 5000),
        lambda: b'{"op":"subscribe","symbols":' + b"[" * 3000 + b"]" * 3000 + b"}",
        lambda: b'{"op":"subscribe","symbols":["' + b"A" * rng.randrange(0, 3000) + b'"]}',
        lambda: b'{"op":' + str(10**400).encode() + b"}",
        lambda: b'{"op":"subscribe","symbols":[1e999,null,true,{}]}',
        lambda: b'{"op":"\\ud800","symbols":"*"}',
        lambda: b"null",
        lambda: b"",
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
        lambda: b"\xff\xfe\xc3\x28 not utf-8",
        lambda: b'{"op":"subscribe","symbols":["BTCUSDT"],"id":1}' * 40,
    ]
    return rng.choice(choices)()


def random_frames(rng: random.Random) -> bytes:
    """A burst of frames: valid, malformed, fragmented, interleaved and oversized."""
    out = b""
    for _ in range(rng.randrange(1, 6)):
        kind = rng.randrange(12)
        if kind == 0:
            out += frame_bytes(Opcode.TEXT.value, random_text(rng))
        elif kind == 1:
            out += frame_bytes(Opcode.BINARY.value, os.urandom(rng.randrange(0, 300)))
        elif kind == 2:  # fragmented text with a ping in the middle
            text = random_text(rng)
            cut = len(text) // 2
            out += frame_bytes(Opcode.TEXT.value, text[:cut], fin=False)
            out += frame_bytes(Opcode.PING.value, b"mid")
            out += frame_bytes(Opcode.CONT.value, text[cut:])
        elif kind == 3:  # a continuation with nothing to continue
            out += frame_bytes(Opcode.CONT.value, b"orphan")
        elif kind == 4:  # a new message before the last one ended
            out += frame_bytes(Opcode.TEXT.value, b'{"op":', fin=False)
            out += frame_bytes(Opcode.TEXT.value, b'"ping"}')
        elif kind == 5:
            out += frame_bytes(Opcode.TEXT.value, b"x" * rng.choice([4097, 70000]))
        elif kind == 6:
            out += frame_bytes(Opcode.TEXT.value, b'{"op":"ping"}', masked=False)
        elif kind == 7:  # control frames: too long, fragmented, unsolicited pong
            out += rng.choice(
                [
                    frame_bytes(Opcode.PING.value, b"p" * 200),
                    frame_bytes(Opcode.PING.value, b"p", fin=False),
                    frame_bytes(Opcode.PONG.value, b"unsolicited"),
                    frame_bytes(Opcode.CLOSE.value, b"\x03"),
                    frame_bytes(Opcode.CLOSE.value, struct.pack("!H", 999) + b"\xff"),
                ]
            )
        elif kind == 8:
            out += frame_bytes(Opcode.TEXT.value, b'{"op":"ping"}', rsv=rng.randrange(1, 8))
        elif kind == 9:
            out += frame_bytes(rng.choice([3, 4, 5, 6, 7, 11, 12, 15]), b"reserved opcode")
        elif kind == 10:  # a length that is never sent, or is absurd
            out += frame_bytes(Opcode.TEXT.value, b"short", declared=rng.choice([500, 2**63 - 1]))
        else:
            out += frame_bytes(Opcode.TEXT.value, b"")
    if rng.random() < 0.3:  # cut the burst anywhere
        out = out[: rng.randrange(len(out) + 1)]
    return out


async def drain(sock: socket.socket, timeout: float) -> None:
    """Read whatever comes until the server closes or ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            if not await asyncio.wait_for(loop.sock_recv(sock, 65536), left):
                return
        except (TimeoutError, ConnectionError):
            return


# -- cases ------------------------------------------------------------------------------


async def websocket_garbage(rng: random.Random, server: ServerProcess) -> None:
    query = rng.choice(["", "?symbols=BTCUSDT", "?symbols=*&status=1", "?throttle_ms=50"])
    client = await RawWebSocket.connect(server.ws_base + "/ws" + query)
    try:
        loop = asyncio.get_running_loop()
        for _ in range(rng.randrange(1, 4)):
            await loop.sock_sendall(client.sock, random_frames(rng))
            await asyncio.sleep(rng.random() * 0.05)
        await drain(client.sock, rng.choice([0.0, 0.2, 1.0]))
    except ConnectionError:
        pass
    finally:
        if rng.random() < 0.5:
            client.abort()
        else:
            client.close()


async def half_handshake(rng: random.Random, server: ServerProcess) -> None:
    sock = await open_socket("127.0.0.1", server.port)
    request = (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        await asyncio.get_running_loop().sock_sendall(sock, request[: rng.randrange(len(request))])
        await drain(sock, rng.choice([0.0, 0.5]))
    finally:
        abort_socket(sock) if rng.random() < 0.5 else sock.close()


def malformed_request(rng: random.Random) -> bytes:
    path = rng.choice(["/sse", "/price", "/history/BTCUSDT", "/prices/%ZZ", "/status", "/ws"])
    query = rng.choice(
        [
            "",
            "?symbols=" + ",".join(["BTCUSDT"] * rng.randrange(1, 400)),
            "?symbols=%00%ff",
            "?last_event_id=" + rng.choice(["%C2%B2", "9" * 5000, "-1", "abc", "1:2:3", "%"]),
            "?throttle_ms=" + rng.choice(["1e12", "-5", "nan", "inf", "0x10", ""]),
            "?limit=" + rng.choice(["0", "-1", "99999999999999999999", "1.5"]),
            "?symbol=" + rng.choice(["", "btcusdt", "\u00b2", "A" * 2000]),
        ]
    )
    lines = [f"GET {path}{query} HTTP/1.1".encode(), b"Host: x"]
    lines += rng.sample(
        [
            b"Last-Event-ID: \xc2\xb2",
            b"Last-Event-ID: " + b"9" * 5000,
            b"Authorization: Bearer \xff\xfe",
            b"Origin: null",
            b"Connection: Upgrade",
            b"Upgrade: websocket",
            b"Sec-WebSocket-Version: 99",
            b"Content-Length: 10",
            b"Transfer-Encoding: chunked",
            b"X-Bad Header: 1",
            b"Accept: " + os.urandom(20).replace(b"\r", b"").replace(b"\n", b""),
        ],
        k=rng.randrange(0, 4),
    )
    raw = b"\r\n".join(lines) + b"\r\n\r\n"
    if rng.random() < 0.2:
        raw = rng.choice(
            [b"BREW /coffee HTCPCP/1.0\r\n\r\n", b"\x16\x03\x01\x02\x00", b"GET\r\n\r\n"]
        )
    return raw


async def http_garbage(rng: random.Random, server: ServerProcess) -> None:
    sock = await open_socket("127.0.0.1", server.port)
    try:
        await asyncio.get_running_loop().sock_sendall(sock, malformed_request(rng))
        await drain(sock, rng.choice([0.1, 0.5, 1.0]))
    except ConnectionError:
        pass
    finally:
        abort_socket(sock) if rng.random() < 0.5 else sock.close()


CASE_KINDS: list[Case] = [websocket_garbage, websocket_garbage, half_handshake, http_garbage]


async def run_cases(server: ServerProcess) -> list[str]:
    rng = random.Random(SEED)
    plan = [(rng.choice(CASE_KINDS), random.Random(rng.getrandbits(64))) for _ in range(CASES)]
    gate = asyncio.Semaphore(CONCURRENCY)
    problems: list[str] = []

    async def one(index: int, case: Case, case_rng: random.Random) -> None:
        async with gate:
            try:
                await asyncio.wait_for(case(case_rng, server), CASE_TIMEOUT)
            except (TimeoutError, ConnectionError, OSError):
                pass  # the server may close or reset a misbehaving client at any point
            except Exception as exc:
                problems.append(f"case {index} ({case.__name__}): {exc!r}")

    await asyncio.gather(*(one(i, case, r) for i, (case, r) in enumerate(plan)))
    return problems


def process(server: ServerProcess) -> dict[str, int]:
    status = server.status()
    edge, proc = status["edge"], status["process"]
    assert isinstance(edge, dict) and isinstance(proc, dict)
    return {
        "sessions": edge["clients"]["total"],
        "tasks": proc["asyncio_tasks"],
        "fds": proc["open_fds"],
    }


@pytest.mark.slow
@pytest.mark.exclusive
async def test_the_server_survives_wire_fuzz_and_leaks_nothing(server: ServerProcess) -> None:
    """After malformed frames, handshakes and requests, a fresh client is served, and no
    session, task or descriptor is left behind."""
    before = process(server)
    problems = await run_cases(server)
    assert not problems, f"seed {SEED}: {problems[:5]}"

    async with websockets.connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws:
        message = await asyncio.wait_for(ws.recv(), 10)
        assert b'"type":"tick"' in (message if isinstance(message, bytes) else message.encode())
    async with httpx.AsyncClient(base_url=server.base, timeout=5) as http:
        assert (await http.get("/price")).status_code == 200

    def settled() -> bool:
        now = process(server)
        return (
            now["sessions"] == before["sessions"]
            and now["tasks"] <= before["tasks"]
            and now["fds"] <= before["fds"]
        )

    try:
        await eventually(settled, timeout=15, interval=0.25)
    except AssertionError:
        pytest.fail(f"seed {SEED}: before {before}, after {process(server)}")
    log = server.log()
    assert "Traceback" not in log, f"seed {SEED}: {log[-3000:]}"


def test_frame_builder_makes_frames_websockets_reads() -> None:
    """The hand-made frames are what the protocol says (checked with websockets' parser)."""
    from websockets.streams import StreamReader

    reader = StreamReader()
    reader.feed_data(frame_bytes(Opcode.TEXT.value, b"hello" * 30))
    parser = Frame.parse(reader.read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    assert frame.opcode is Opcode.TEXT and frame.data == b"hello" * 30
