"""permessage-deflate (RFC 7692) on ``/ws``, compressed once per message for every client.

A server that keeps its compression context between messages ("context takeover") must
compress each message separately for each client, since each client's window holds what
that client received before. With ``server_no_context_takeover`` (§7.1.1.1) a message's
compressed bytes depend on that message alone, so they are built once, cached with the
message's other encodings (``tickcast.edge.wire.Wire``) and written to every client that
negotiated the extension, as the plain frames are.

The negotiation itself is the ``websockets`` library's; ``SharedDeflateFactory`` only
declines the offers our shared bytes cannot honour.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Final

from websockets.exceptions import NegotiationError
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.typing import ExtensionParameter

# Level 6 (zlib's default) against 1: about the same size for a tick (293 B -> 200 vs
# 204 B) and 3% smaller for a 20-level book (919 B -> 405 vs 416 B), for 7-17 µs against
# 7-11 µs per message: a cost paid once per message, not per client (docs/BENCHMARKS.md).
LEVEL: Final = 6
# The LZ77 window: a message never refers back further than its own start, so the size
# only bounds what a client must hold to inflate it. 15 bits (32 KB) is the RFC's default,
# what every client can inflate when it did not ask for less.
WINDOW_BITS: Final = 15
# Below this a JSON message (a pong is 15 bytes) does not shrink: deflate's block header
# and the final block bits outweigh what it finds. RFC 7692 §6 lets each message choose.
MIN_BYTES: Final = 64
# §7.2.1: the compressor's sync flush ends with an empty stored block, 00 00 ff ff, which
# the sender removes and the receiver appends again before inflating.
_TAIL: Final = b"\x00\x00\xff\xff"
# FIN + RSV1 ("this message is compressed", §6) + opcode 0x1 (text).
_FIN_RSV1_TEXT: Final = 0xC1
_FIN_TEXT: Final = 0x81


def deflate_payload(data: bytes) -> bytes:
    """``data`` as an RFC 7692 compressed payload: raw deflate, sync-flushed, its
    trailing ``00 00 ff ff`` removed. A new compressor each time: no context is taken
    over from one message to the next (``server_no_context_takeover``)."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(_TAIL) else out


def ws_deflate_frame(payload: bytes) -> bytes:
    """A final, unmasked WebSocket text frame carrying ``payload`` compressed (RSV1 set),
    or plain (RSV1 clear) when it is too short to gain from it."""
    if len(payload) < MIN_BYTES:
        return _frame(_FIN_TEXT, payload)
    packed = deflate_payload(payload)
    if len(packed) >= len(payload):
        return _frame(_FIN_TEXT, payload)
    return _frame(_FIN_RSV1_TEXT, packed)


def _frame(first: int, body: bytes) -> bytes:
    length = len(body)
    if length < 126:
        header = struct.pack("!BB", first, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + body


class SharedDeflateFactory(ServerPerMessageDeflateFactory):
    """websockets' permessage-deflate negotiation, for frames compressed once for all.

    - ``server_no_context_takeover``, always (§7.1.1.1): the precondition of sharing.
    - ``client_no_context_takeover``, always (a server may add it to any offer,
      §7.1.1.2): a client's messages are a few small ops, for which a context kept across
      them saves next to nothing, while keeping one would mean an inflate state (about
      7 KB, plus a 32 KB window once used) held for every connection's whole life.
    - An offer that limits ``server_max_window_bits`` below ``WINDOW_BITS`` is declined
      (§7.1.2.1 lets a server decline what it does not support): the shared bytes were
      built with that window, and a per-client variant would undo the point. Such a
      client, rare (browsers do not ask it), gets plain frames.
    """

    def __init__(self) -> None:
        super().__init__(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            compress_settings={"level": LEVEL},
        )

    def process_request_params(
        self,
        params: Sequence[ExtensionParameter],
        accepted_extensions: Sequence[Extension],
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, extension = super().process_request_params(params, accepted_extensions)
        if extension.local_max_window_bits < WINDOW_BITS:
            raise NegotiationError(
                f"server_max_window_bits={extension.local_max_window_bits}: frames are "
                f"compressed once for all clients with a {WINDOW_BITS}-bit window"
            )
        return response, extension


def negotiated(extensions: Sequence[Extension]) -> bool:
    """Whether a connection's negotiated ``extensions`` include permessage-deflate."""
    return any(isinstance(e, PerMessageDeflate) for e in extensions)
