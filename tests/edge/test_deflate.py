"""permessage-deflate (RFC 7692): the frame builder and the negotiation, as plain calls."""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import NegotiationError
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from tickcast.bench.wsbytes import server_frames
from tickcast.edge.backlog import Backlog
from tickcast.edge.deflate import (
    MIN_BYTES,
    SharedDeflateFactory,
    deflate_payload,
    negotiated,
    ws_deflate_frame,
)
from tickcast.edge.wire import Wire, encode_message
from tickcast.messages.tick import Tick

TICK = Tick(
    symbol="BTCUSDT",
    seq=1234,
    timestamp_ms=1678886400000,
    source="sim",
    last_price="60500.5",
    change_percent="1.25",
    change="745.1",
    open="59755.4",
    high="61000",
    low="59000",
    volume="12345.678",
    quote_volume="745000000.5",
    bid="60500.4",
    ask="60500.6",
)


def parse_frame(data: bytes) -> Frame:
    """``data`` as exactly one unmasked server frame, RSV1 kept as sent (websockets' own
    parser only takes RSV1 with an extension that decodes it first)."""
    first, second = data[0], data[1]
    assert not second & 0x80, "a server frame is never masked"
    length, at = second & 0x7F, 2
    if length == 126:
        (length,), at = struct.unpack_from("!H", data, 2), 4
    elif length == 127:
        (length,), at = struct.unpack_from("!Q", data, 2), 10
    assert len(data) == at + length, "not exactly one frame"
    return Frame(
        Opcode(first & 0x0F),
        data[at:],
        fin=bool(first & 0x80),
        rsv1=bool(first & 0x40),
        rsv2=bool(first & 0x20),
        rsv3=bool(first & 0x10),
    )


def inflate(payload: bytes) -> bytes:
    """What a client does with a compressed message (RFC 7692 §7.2.2), no context kept."""
    return zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff")


def test_a_tick_frame_is_compressed_and_inflates_to_the_plain_message() -> None:
    """A tick goes out as a final text frame with RSV1 set, smaller than its JSON, and
    inflates alone (no earlier message needed) to exactly that JSON."""
    data = TICK.encode()
    frame = parse_frame(ws_deflate_frame(data))
    assert frame.opcode is Opcode.TEXT and frame.fin and frame.rsv1
    assert not frame.rsv2 and not frame.rsv3
    assert len(frame.data) < len(data)
    assert inflate(frame.data) == data


def test_the_trailing_empty_block_is_removed() -> None:
    """§7.2.1: the 00 00 ff ff that ends a sync flush is not sent."""
    packed = deflate_payload(TICK.encode())
    assert not packed.endswith(b"\x00\x00\xff\xff")
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    full = compressor.compress(TICK.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert full == packed + b"\x00\x00\xff\xff"


@pytest.mark.parametrize("size", [126, 300, 65535, 70_000])
def test_long_messages_get_the_extended_length_forms(size: int) -> None:
    """Payloads past 125 and 65535 bytes, compressed or not, parse as one whole frame."""
    data = b'{"type":"book","bids":[' + b"[1,2]," * (size // 6) + b"[1,2]]}"
    frame = parse_frame(ws_deflate_frame(data))
    assert frame.rsv1 and inflate(frame.data) == data
    noise = os.urandom(size)  # does not compress: sent plain
    frame = parse_frame(ws_deflate_frame(noise))
    assert not frame.rsv1 and frame.data == noise


def test_short_messages_go_plain() -> None:
    """A message under MIN_BYTES (a pong) would grow: RSV1 clear, the bytes as they are,
    which RFC 7692 §6 allows for any message once the extension is on."""
    pong = b'{"type":"pong"}'
    assert len(pong) < MIN_BYTES
    frame = parse_frame(ws_deflate_frame(pong))
    assert not frame.rsv1 and frame.data == pong
    assert len(deflate_payload(pong)) >= len(pong)


def test_websockets_own_decoder_reads_the_frames() -> None:
    """The frames inflate with the websockets library's extension, as a client of it
    negotiated with the server's context not taken over."""
    extension = PerMessageDeflate(False, True, 15, 15)
    for data in (TICK.encode(), TICK.encode(), b'{"type":"pong"}'):
        frame = parse_frame(ws_deflate_frame(data))
        assert extension.decode(frame, max_size=None).data == data


def test_a_message_is_compressed_once_for_every_client() -> None:
    """The shared Wire compresses on first use and hands the same bytes to everyone;
    control messages in the deflate format are compressed frames too."""
    wire = Wire(TICK)
    first = wire.get("ws_deflate")
    assert wire.get("ws_deflate") is first
    assert first == encode_message("ws_deflate", TICK.encode(), None, None)
    assert wire.get("ws_frame") != first


def test_a_resume_backlog_joins_whole_compressed_frames() -> None:
    """A backlog piece is several frames in one write: each a whole frame that inflates
    alone, in order, ticks held as messages and as shared Wires alike."""
    ticks = [dataclasses.replace(TICK, seq=seq, _encoded=None) for seq in (1, 2, 3)]
    backlog = Backlog(ticks[:2], limit=10)
    assert backlog.add(Wire(ticks[2]))
    data, count = backlog.take("ws_deflate", 1 << 20)
    frames, used = server_frames(data)
    assert count == 3 and used == len(data)
    assert [inflate(payload) for _, payload in frames] == [t.encode() for t in ticks]
    assert {first for first, _ in frames} == {0xC1}


def handshake(offered: str) -> tuple[ServerProtocol, Response]:
    """A server protocol with our factory, and its answer to an upgrade request whose
    Sec-WebSocket-Extensions header is ``offered``."""
    server = ServerProtocol(extensions=[SharedDeflateFactory()])
    headers = Headers()
    headers["Host"] = "localhost"
    headers["Upgrade"] = "websocket"
    headers["Connection"] = "Upgrade"
    headers["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    headers["Sec-WebSocket-Version"] = "13"
    headers["Sec-WebSocket-Extensions"] = offered
    server.receive_data(Request("/ws", headers).serialize())
    (request,) = server.events_received()
    assert isinstance(request, Request)
    return server, server.accept(request)


def test_a_browser_offer_is_accepted_without_context_takeover_either_way() -> None:
    """What Chromium and Firefox offer gets server_ and client_no_context_takeover."""
    server, response = handshake("permessage-deflate; client_max_window_bits")
    assert response.status_code == 101
    assert response.headers["Sec-WebSocket-Extensions"] == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    )
    assert negotiated(server.extensions)
    (extension,) = server.extensions
    assert isinstance(extension, PerMessageDeflate)
    assert extension.local_no_context_takeover and extension.remote_no_context_takeover


@pytest.mark.parametrize(
    "value",
    [
        "permessage-deflate; server_max_window_bits=10",  # a smaller window than ours
        "permessage-deflate; server_max_window_bits=99",  # not a window size
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover=yes",  # takes no value
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; foo",  # not a parameter of this extension
        "x-webkit-deflate-frame",  # another extension entirely
    ],
)
def test_an_offer_we_cannot_honour_is_declined_and_the_handshake_goes_on(value: str) -> None:
    """RFC 7692 §5: an offer with an unknown or invalid parameter, or a configuration the
    server does not support, is declined; the connection opens without the extension."""
    server, response = handshake(value)
    assert response.status_code == 101
    assert "Sec-WebSocket-Extensions" not in response.headers
    assert not negotiated(server.extensions)


def test_a_declined_offer_falls_back_to_the_next_one() -> None:
    """Offers are tried in the client's order: a window we cannot use, then a plain one."""
    server, _ = handshake("permessage-deflate; server_max_window_bits=9, permessage-deflate")
    assert negotiated(server.extensions)


def test_a_window_limit_is_refused_by_the_factory_itself() -> None:
    """The decline comes from our factory, as a NegotiationError websockets catches."""
    with pytest.raises(NegotiationError, match="15-bit window"):
        SharedDeflateFactory().process_request_params([("server_max_window_bits", "12")], [])


def test_an_unreadable_extensions_header_is_a_clean_400() -> None:
    """A header that is not the RFC 6455 §9.1 grammar fails the handshake with 400."""
    _, response = handshake(";;=,")
    assert response.status_code == 400


def test_a_compressed_client_frame_is_inflated_by_the_negotiated_extension() -> None:
    """A client's compressed op reaches the app inflated: websockets decodes frames with
    the extension it negotiated, a fresh inflater per message."""
    server, response = handshake("permessage-deflate; client_max_window_bits")
    server.send_response(response)
    op = b'{"op":"subscribe","symbols":["ETHUSDT"],"id":1}'
    client_side = PerMessageDeflate(True, False, 15, 15)
    wire = Frame(Opcode.TEXT, op).serialize(mask=True, extensions=[client_side])
    assert wire[0] & 0x40, "RSV1: the client compressed it"
    server.receive_data(wire)
    (received,) = server.events_received()
    assert isinstance(received, Frame) and received.data == op
