"""One event of one stream, encoded once per wire variant and shared by every subscriber."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from websockets.frames import Frame, Opcode


def _text_frame(payload: bytes) -> bytes:
    # Server frames are unmasked and no extension is negotiated, so one serialized frame
    # is valid on every connection: encode once, write the same bytes everywhere.
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


class Encoded:
    """One event of one stream, encoded lazily once per (combined, time unit) variant;
    ``build(scale)`` makes its payload (``scale`` 1000: microseconds)."""

    __slots__ = ("_build", "_frames", "_name", "_payloads")

    def __init__(self, name: str, build: Callable[[int], object]) -> None:
        self._name = name
        self._build = build
        self._frames: list[bytes | None] = [None, None, None, None]
        self._payloads: list[object] = [None, None]

    def frame(self, combined: bool, micro: bool) -> bytes:
        slot = 2 * combined + micro
        frame = self._frames[slot]
        if frame is None:
            payload = self._payloads[micro]
            if payload is None:
                payload = self._payloads[micro] = self._build(1000 if micro else 1)
            body = {"stream": self._name, "data": payload} if combined else payload
            frame = self._frames[slot] = _text_frame(orjson.dumps(body))
        return frame
