"""Wire encodings: WebSocket frames, SSE events and HTTP chunks, built once per tick."""

from __future__ import annotations

import struct
from collections.abc import Generator

import orjson
import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from tickcast.edge.wire import Wire, encode_message, http_chunk, sse_event, ws_text_frame
from tickcast.messages.tick import Tick


def parse_frame(data: bytes) -> Frame:
    """Parse ``data`` as one server-to-client frame with websockets' own parser."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser: Generator[None, None, Frame] = Frame.parse(reader.read_exact, mask=False, max_size=None)
    try:
        next(parser)
    except StopIteration as done:
        assert reader.at_eof(), "bytes left after the frame"
        frame: Frame = done.value
        return frame
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x81\x00"),
        (1, b"\x81\x01"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e" + struct.pack("!H", 126)),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f" + struct.pack("!Q", 65536)),
        (70000, b"\x81\x7f" + struct.pack("!Q", 70000)),
    ],
)
def test_ws_text_frame_uses_the_shortest_length_form(length: int, header: bytes) -> None:
    """RFC 6455 §5.2: 7-, 16- or 64-bit length; FIN, text opcode, no mask."""
    payload = b"x" * length
    data = ws_text_frame(payload)
    assert data == header + payload
    frame = parse_frame(data)
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert frame.data == payload


def test_sse_event_has_id_event_and_one_data_line() -> None:
    """An event is ``id``, ``event`` and ``data`` lines ended by a blank line; an unnamed
    event (a ``message``) has no ``event`` line."""
    assert sse_event("reset", b'{"a":1}', 42) == b'id: 42\nevent: reset\ndata: {"a":1}\n\n'
    assert sse_event("pong", b"{}") == b"event: pong\ndata: {}\n\n"
    assert sse_event(None, b"{}", 7) == b"id: 7\ndata: {}\n\n"


@pytest.mark.parametrize("size", [0, 1, 15, 16, 255, 4096, 70000])
def test_http_chunk_prefixes_the_hex_length(size: int) -> None:
    """RFC 9112 §7.1: hex size, CRLF, the data, CRLF."""
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    chunk = http_chunk(data)
    head, _, rest = chunk.partition(b"\r\n")
    assert int(head, 16) == size
    assert rest == data + b"\r\n"


def test_encode_message_in_each_wire_format() -> None:
    """The same JSON becomes bare JSON, a WS frame, an SSE event or a chunked SSE event."""
    data = b'{"type":"pong"}'
    assert encode_message("json", data, "pong", None) == data
    assert encode_message("ws_frame", data, "pong", None) == ws_text_frame(data)
    event = b'event: pong\ndata: {"type":"pong"}\n\n'
    assert encode_message("sse_event", data, "pong", None) == event
    assert encode_message("sse_chunk", data, "pong", None) == http_chunk(event)


def test_a_wire_encodes_each_format_once_and_shares_the_bytes() -> None:
    """Every subscriber gets the very same bytes object; a tick's SSE event is unnamed (the
    default ``message`` type, so ``EventSource.onmessage`` gets it) with its seq as id."""
    tick = Tick(symbol="ETHUSDT", seq=77, timestamp_ms=1, source="sim", last_price="0.3")
    wire = Wire(tick)
    frame = wire.get("ws_frame")
    assert wire.get("ws_frame") is frame
    assert orjson.loads(parse_frame(frame).data) == orjson.loads(tick.encode())
    assert wire.get("sse_event") == b"id: 77\ndata: " + tick.encode() + b"\n\n"
    assert wire.get("sse_chunk") == http_chunk(wire.get("sse_event"))
    assert wire.get("json") is tick.encode()
