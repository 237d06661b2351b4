"""Exact decimals in JSON: what every message kind shares.

Values are kept as canonical decimal strings exactly as the exchange sent them (trailing
zeros trimmed) and written into the JSON as numbers verbatim, so a price of "0.3" reaches
clients as ``0.3``, never as ``0.30000000000000004``; decoding reads them back from the raw
JSON text, never through a float.
"""

from __future__ import annotations

import re
from typing import Final

import orjson

# ASCII digits only: ``\d`` also matches the digits of other scripts ("١٢"), which would be
# written into the JSON verbatim and make every client's message invalid JSON.
_DECIMAL: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")

_RAW_NUMBER: Final = re.compile(rb'"([a-z_]+)":(-?[0-9]+(?:\.[0-9]+)?)(?=[,}])')


def canonical_decimal(text: str) -> str:
    """Return ``text`` as a JSON-ready decimal: sign, digits, trailing zeros trimmed.

    Raises ``ValueError`` when ``text`` is not a plain decimal number.
    """
    if _DECIMAL.fullmatch(text) is None:
        raise ValueError(f"not a decimal number: {text[:40]!r}")
    # Binance writes every decimal with trailing zeros ("60123.45000000") and rarely a
    # leading one: string methods on the common case alone (ten per ticker, 2,000 tickers
    # a second with every market served).
    if "." in text:
        text = text.rstrip("0")
        if text[-1] == ".":
            text = text[:-1]
    negative = text[0] == "-"
    if negative:
        text = text[1:]
    if text[0] == "0" and len(text) > 1 and text[1] != ".":
        text = text.lstrip("0")
        if not text or text[0] == ".":
            text = "0" + text
    if negative and text != "0":
        return "-" + text
    return text


def fragment(value: str | None) -> orjson.Fragment | None:
    """A canonical decimal written into orjson's output verbatim (``None`` stays null)."""
    return None if value is None else orjson.Fragment(value.encode())


def raw_numbers(data: bytes) -> dict[str, str]:
    """The number text of every top-level-style ``"name":number`` pair in ``data``.

    Only names of lowercase letters and underscores are read: the message fields. A name
    that occurs twice keeps its last value, which for tickcast's own encodings never
    happens.
    """
    return {m.group(1).decode(): m.group(2).decode() for m in _RAW_NUMBER.finditer(data)}
