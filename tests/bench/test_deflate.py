"""The bench's permessage-deflate clients: their frame reader and inflater as plain calls,
then one tiny real run with ``--deflate``."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tickcast.bench.scan import Ledger, Scanner
from tickcast.bench.wsbytes import (
    DEFLATE_OFFER,
    Inflater,
    deflate_inflater,
    pongs_for,
    server_frames,
    upgrade_request,
)
from tickcast.edge.wire import encode_message, ws_text_frame
from tickcast.messages.tick import Tick

T0 = 1_700_000_000_000


def tick(seq: int) -> bytes:
    return Tick(
        symbol="BTCUSDT", seq=seq, timestamp_ms=T0 + seq, source="sim", last_price="60500.5",
        change_percent="1.25", change="745.1", open="59755.4", high="61000", low="59000",
        volume="12345.678", quote_volume="745000000.5", bid="60500.4", ask="60500.6",
    ).encode()  # fmt: skip


def compressed_frame(body: bytes) -> bytes:
    """A final text frame with RSV1 set around ``body`` (at most 64 KB)."""
    if len(body) < 126:
        return bytes((0xC1, len(body))) + body
    return bytes((0xC1, 126)) + len(body).to_bytes(2, "big") + body


def test_the_offer_is_a_header_of_the_upgrade_request() -> None:
    """--deflate's request offers what browsers do; without it nothing is offered."""
    offered = upgrade_request("127.0.0.1", 8000, "/ws", extensions=DEFLATE_OFFER)
    assert b"\r\nSec-WebSocket-Extensions: " + DEFLATE_OFFER.encode() + b"\r\n" in offered
    assert offered.endswith(b"\r\n\r\n")
    assert b"Extensions" not in upgrade_request("127.0.0.1", 8000, "/ws")


def test_compressed_and_plain_frames_split_anywhere_come_out_whole() -> None:
    """tickcast's deflate frames, a short plain one and a ping, read in chunks split at
    every byte: the data payloads, inflated, in order, and nothing of the ping."""
    messages = [tick(1), b'{"type":"pong"}', tick(2), tick(3) * 300]  # the last > 64 KB
    frames = [encode_message("ws_deflate", m, None, None) for m in messages]
    stream = frames[0] + b"\x89\x04ping" + b"".join(frames[1:])
    assert stream[0] == 0xC1 and frames[1][0] == 0x81
    for cut in (1, 2, 3, 7, 100, len(stream)):
        inflater = Inflater()
        out = b"".join(inflater.feed(stream[i : i + cut]) for i in range(0, len(stream), cut))
        assert out == b"".join(messages), cut
        assert inflater.pings == [b"ping"], cut


def test_a_ping_header_inside_compressed_bytes_is_no_ping() -> None:
    """Compressed payloads are near random: a 0x89 byte followed by a small one turns up
    in most of them, which a search of the raw bytes (``pongs_for``) would answer with a
    pong each. The inflater reads frames, and finds no ping there."""
    frames = b"".join(encode_message("ws_deflate", tick(seq), None, None) for seq in range(200))
    assert pongs_for(frames), "the raw search is fooled"
    inflater = Inflater()
    inflater.feed(frames)
    assert inflater.pings == []


def test_server_frames_leave_an_incomplete_frame() -> None:
    """A frame whose header or payload is not all there yet is not taken."""
    whole = ws_text_frame(b"x" * 200)
    for end in range(len(whole)):
        assert server_frames(whole[:end]) == ([], 0)
    assert server_frames(whole + whole[:3]) == ([(0x81, b"x" * 200)], len(whole))


def test_a_server_that_takes_its_context_over_needs_the_kept_inflater() -> None:
    """With context takeover a message refers back into earlier ones: a kept inflater
    reads it, a fresh one per message could not."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    stream = b""
    for seq in (1, 2, 3):
        packed = compressor.compress(tick(seq)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        stream += compressed_frame(packed[:-4])
    assert Inflater(takeover=True).feed(stream) == tick(1) + tick(2) + tick(3)
    with pytest.raises(zlib.error, match="distance too far back"):
        Inflater(takeover=False).feed(stream)


def test_the_response_says_which_inflater() -> None:
    """No extension in the 101: none (plain frames). tickcast's answer: an inflater per
    message. A server that keeps its context: one kept inflater."""
    plain = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
    assert deflate_inflater(plain) is None
    ours = plain + b"\r\nsec-websocket-extensions: permessage-deflate; server_no_context_takeover"
    inflater = deflate_inflater(ours)
    assert inflater is not None and inflater._kept is None
    kept = deflate_inflater(plain + b"\r\nSec-WebSocket-Extensions: permessage-deflate")
    assert kept is not None and kept._kept is not None


def test_the_scanner_counts_wire_bytes_when_told() -> None:
    """Inflated data is scanned, but the bytes counted are what came on the wire."""
    scanner, ledger = Scanner(T0, T0 + 100), Ledger()
    frame = encode_message("ws_deflate", tick(5), None, None)
    found = scanner.feed(ledger, Inflater().feed(frame), T0 * 10, len(frame))
    assert found == 1 and ledger.received_bytes == len(frame) < len(tick(5))


def test_a_tiny_real_run_with_deflate(tmp_path: Path) -> None:
    """``tickcast bench --deflate``: every client negotiates it with tickcast and with the
    naive baseline (uvicorn's own, context kept), ticks arrive inflated with no gap from
    tickcast, and tickcast's messages take fewer bytes than their JSON."""
    out = tmp_path / "bench.json"
    command = [
        sys.executable, "-m", "tickcast.cli", "bench", "--clients", "20", "--symbols", "2",
        "--rate", "10", "--duration", "1", "--warmup", "0", "--deflate", "--compare", "naive",
        "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = json.loads(out.read_text())["runs"]
    for name in ("tickcast", "naive"):
        assert runs[name]["wire"]["deflate_clients"] == 20, name
        assert runs[name]["deliveries"]["total"] > 0, name
    assert runs["tickcast"]["gaps"]["total"] == 0
    assert runs["tickcast"]["duplicates"]["total"] == 0
    assert runs["tickcast"]["wire"]["bytes_per_message"] < len(tick(1))
    assert "clients with deflate" in done.stdout
