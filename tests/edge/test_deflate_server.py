"""permessage-deflate on ``/ws`` against a real ``tickcast serve`` process, over loopback."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.extensions.permessage_deflate import PerMessageDeflate

from tickcast.bench.wsbytes import DEFLATE_OFFER, server_frames, upgrade_request

from ..rawclient import RawWebSocket, open_socket, raw_http_get
from ..support import ServerProcess, running_server

SIM = ["--source", "sim"]
ACCEPTED = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("deflate"), SIM, {"TICKCAST_SIM_RATE": "10"}) as s:
        yield s


async def texts(ws: ClientConnection, seconds: float) -> list[str]:
    """Every text message received in the next ``seconds``, as received."""
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(ws.recv(), left)
        except TimeoutError:
            break
        assert isinstance(message, str)
        out.append(message)
    return out


def by_seq(messages: list[str]) -> dict[int, str]:
    return {int(orjson.loads(m)["seq"]): m for m in messages}


async def raw_frames(
    server: ServerProcess, target: str, offer: str | None, seconds: float
) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A hand-made handshake offering ``offer``: the response head and every frame
    received in ``seconds``, as (first header byte, payload) with nothing decoded."""
    parts = urlsplit(server.base)
    assert parts.hostname is not None and parts.port is not None
    sock = await open_socket(parts.hostname, parts.port)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(
            sock, upgrade_request(parts.hostname, parts.port, target, extensions=offer)
        )
        data = b""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    frames, _ = server_frames(rest)
    return head, frames


def inflate(payload: bytes) -> bytes:
    return zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff")


async def test_an_offering_client_gets_deflate_and_the_same_messages_as_a_plain_one(
    server: ServerProcess,
) -> None:
    """The websockets client offers permessage-deflate by default: the server accepts it
    without context takeover, and the ticks it inflates are exactly the plain client's."""
    url = server.ws_base + "/ws?symbols=BTCUSDT,ETHUSDT"
    async with connect(url) as packed, connect(url, compression=None) as plain:
        assert packed.response is not None and plain.response is not None
        assert packed.response.headers["Sec-WebSocket-Extensions"] == ACCEPTED
        assert "Sec-WebSocket-Extensions" not in plain.response.headers
        assert any(isinstance(e, PerMessageDeflate) for e in packed.protocol.extensions)
        edge = server.status()["edge"]
        assert isinstance(edge, dict) and edge["ws_deflate"] == 1
        got_packed, got_plain = await asyncio.gather(texts(packed, 1.5), texts(plain, 1.5))
    common = by_seq(got_packed).keys() & by_seq(got_plain).keys()
    assert len(common) >= 10
    for seq in common:
        assert by_seq(got_packed)[seq] == by_seq(got_plain)[seq]


async def test_two_clients_get_the_same_compressed_bytes(server: ServerProcess) -> None:
    """Each tick is compressed once: two deflate clients receive byte-identical frames,
    RSV1 set, each inflating on its own (no earlier message needed) to the JSON tick."""
    target = "/ws?symbols=BTCUSDT"
    (head_a, frames_a), (head_b, frames_b) = await asyncio.gather(
        raw_frames(server, target, DEFLATE_OFFER, 1.5),
        raw_frames(server, target, DEFLATE_OFFER, 1.5),
    )
    for head in (head_a, head_b):
        assert head.startswith(b"HTTP/1.1 101")
        assert f"Sec-WebSocket-Extensions: {ACCEPTED}".encode() in head
    ticks: list[dict[int, bytes]] = []
    for frames in (frames_a, frames_b):
        seen: dict[int, bytes] = {}
        for first, payload in frames:
            if first & 0x0F != 0x1:
                continue  # a ping
            assert first == 0xC1, f"not a compressed final text frame: {first:#x}"
            seen[int(orjson.loads(inflate(payload))["seq"])] = payload
        ticks.append(seen)
    common = ticks[0].keys() & ticks[1].keys()
    assert len(common) >= 5
    for seq in common:
        assert ticks[0][seq] == ticks[1][seq]


async def test_a_client_that_offers_nothing_gets_plain_frames(server: ServerProcess) -> None:
    """No offer, no extension: text frames with RSV1 clear, the JSON as it is."""
    head, frames = await raw_frames(server, "/ws?symbols=BTCUSDT", None, 1.0)
    assert head.startswith(b"HTTP/1.1 101") and b"Sec-WebSocket-Extensions" not in head
    texts_ = [payload for first, payload in frames if first == 0x81]
    assert texts_ and all(orjson.loads(p)["type"] == "tick" for p in texts_)
    assert not [first for first, _ in frames if first & 0x40]


async def test_a_compressed_op_is_read(server: ServerProcess) -> None:
    """A client compresses what it sends once deflate is on; a subscribe so sent is
    acknowledged and served, and a compressed ping answered."""
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws:
        assert any(isinstance(e, PerMessageDeflate) for e in ws.protocol.extensions)
        await ws.send(orjson.dumps({"op": "subscribe", "symbols": ["ETHUSDT"], "id": 7}).decode())
        await ws.send(orjson.dumps({"op": "ping", "id": 8}).decode())
        messages = [orjson.loads(m) for m in await texts(ws, 1.5)]
    assert {"type": "ack", "id": 7, "op": "subscribe", "symbols": ["ETHUSDT"]} in messages
    assert {"type": "pong", "id": 8} in messages
    assert "ETHUSDT" in {m.get("symbol") for m in messages if m["type"] == "tick"}


async def test_a_compressed_op_past_the_size_limit_closes_with_1009(
    server: ServerProcess,
) -> None:
    """The size limit holds for what a message inflates to, not what it takes on the
    wire: 100 KB of one byte (a few hundred bytes compressed) closes with 1009, and the
    server goes on serving."""
    ws = await RawWebSocket.connect(server.ws_base + "/ws?symbols=BTCUSDT", deflate=True)
    try:
        await ws.send_raw_text(b'{"op":"ping","pad":"' + b"x" * 100_000 + b'"}')
        assert await ws.close_code() == 1009
    finally:
        ws.close()
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT") as again:
        assert orjson.loads(await asyncio.wait_for(again.recv(), 5))["type"] == "tick"


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=10",  # a window we do not compress for
        "permessage-deflate; server_max_window_bits=99",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; foo=bar",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
    ],
)
async def test_an_offer_with_bad_parameters_connects_without_deflate(
    server: ServerProcess, offer: str
) -> None:
    """RFC 7692 §5: an offer the server cannot accept is declined, not the connection:
    101 without the extension, and plain ticks."""
    head, frames = await raw_frames(server, "/ws?symbols=BTCUSDT", offer, 1.0)
    assert head.startswith(b"HTTP/1.1 101") and b"Sec-WebSocket-Extensions" not in head
    ticks = [orjson.loads(payload) for first, payload in frames if first == 0x81]
    assert ticks and ticks[0]["type"] == "tick"


async def test_an_unreadable_extensions_header_is_refused_cleanly(server: ServerProcess) -> None:
    """A Sec-WebSocket-Extensions header outside the RFC 6455 grammar gets a 400 with
    the connection closed, and the server serves the next client as before."""
    for value in (";;=,", 'permessage-deflate; a="unterminated', "\x7f"):
        sock, head = await raw_http_get(
            server.ws_base.replace("ws://", "http://") + "/ws",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Extensions": value,
            },
        )
        sock.close()
        assert head.startswith(b"HTTP/1.1 400"), head
    async with connect(server.ws_base + "/ws?symbols=BTCUSDT") as ws:
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "tick"
    assert "Traceback" not in server.log()


async def test_deflate_can_be_turned_off(tmp_path_factory: pytest.TempPathFactory) -> None:
    """TICKCAST_WS_DEFLATE=0: an offer is ignored and the frames are plain."""
    env = {"TICKCAST_SIM_RATE": "10", "TICKCAST_WS_DEFLATE": "0"}
    with running_server(tmp_path_factory.mktemp("plain"), SIM, env) as plain:
        head, frames = await raw_frames(plain, "/ws?symbols=BTCUSDT", DEFLATE_OFFER, 1.0)
    assert head.startswith(b"HTTP/1.1 101") and b"Sec-WebSocket-Extensions" not in head
    assert frames and all(first == 0x81 for first, _ in frames if first & 0x0F == 0x1)
