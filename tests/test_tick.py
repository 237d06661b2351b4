"""The Tick model: exact decimals, one encoding, round trip."""

from __future__ import annotations

import orjson
import pytest

from tickcast.messages.decimals import canonical_decimal
from tickcast.messages.tick import Tick, price_decimals


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60500.51000000", "60500.51"),
        ("0.30000000", "0.3"),
        ("100.00000000", "100"),
        ("-1.2500", "-1.25"),
        ("-0.000", "0"),
        ("007.10", "7.1"),
        ("0.00000001", "0.00000001"),
    ],
)
def test_canonical_decimal_trims_zeros_exactly(text: str, expected: str) -> None:
    """Canonical decimals keep every significant digit and drop only padding."""
    assert canonical_decimal(text) == expected


@pytest.mark.parametrize("text", ["", "1e5", "NaN", "1.", ".5", "1,5", "+1", "0x10", "1 "])
def test_canonical_decimal_rejects_non_decimals(text: str) -> None:
    """Anything but a plain decimal number is refused."""
    with pytest.raises(ValueError, match="not a decimal"):
        canonical_decimal(text)


@pytest.mark.parametrize(
    "text",
    [
        "\u0661\u0662",  # Arabic-Indic 12
        "1.\u0665",  # 1.5 with an Arabic-Indic 5
        "\uff16\uff10\uff10\uff10\uff10",  # fullwidth 60000
        "\u0967\u0968\u0969",  # Devanagari 123
        "12\n",
        "\U0001d7d9\U0001d7da",  # mathematical double-struck 12
    ],
)
def test_canonical_decimal_accepts_ascii_digits_only(text: str) -> None:
    """Digits of other scripts are refused: written into the JSON as they are, they would
    make every client's message invalid JSON."""
    with pytest.raises(ValueError, match="not a decimal"):
        canonical_decimal(text)


def _tick(**values: str) -> Tick:
    return Tick(symbol="BTCUSDT", seq=7, timestamp_ms=1678886400000, source="sim", **values)


def test_encode_keeps_seed_fields_first_and_exact_numbers() -> None:
    """The message starts with the seed server's four fields and writes decimals verbatim."""
    raw = _tick(last_price="0.3", change_percent="1.25", volume="12345.678").encode()
    assert raw.startswith(b'{"type":"tick","symbol":"BTCUSDT","last_price":0.3,')
    obj = orjson.loads(raw)
    assert list(obj)[:5] == ["type", "symbol", "last_price", "change_percent", "timestamp_ms"]
    assert obj["last_price"] == 0.3
    assert obj["volume"] == 12345.678
    assert obj["bid"] is None
    assert obj["seq"] == 7
    assert obj["source"] == "sim"


def test_encode_is_cached_and_evolve_invalidates() -> None:
    """The same bytes serve every subscriber; a changed tick gets a new encoding."""
    tick = _tick(last_price="1")
    assert tick.encode() is tick.encode()
    newer = tick.evolve(last_price="2", seq=8)
    assert orjson.loads(newer.encode())["last_price"] == 2
    assert orjson.loads(tick.encode())["last_price"] == 1


def test_from_json_round_trips_exact_decimals() -> None:
    """A tick rebuilt from its encoding has the same decimal strings, not floats."""
    tick = _tick(last_price="60500.10000001", change_percent="-0.5", high="70000")
    back = Tick.from_json(tick.encode())
    assert back.last_price == "60500.10000001"
    assert back.change_percent == "-0.5"
    assert back.high == "70000"
    assert back.low is None
    assert back.encode() == tick.encode()


def test_from_json_rejects_other_messages() -> None:
    """Only tick messages rebuild into ticks."""
    with pytest.raises(ValueError, match="not a tick"):
        Tick.from_json(b'{"type":"status"}')


def test_price_decimals_are_the_most_any_price_shows() -> None:
    """A symbol's price decimals are the most of any price held (a trimmed 14.96 beside a
    14.966 bid: 3); volumes and changes do not count; no prices: None."""
    first = Tick("LINKUSDT", 1, 1, "binance", last_price="14.96", bid="14.966", volume="1.23456")
    second = Tick("LINKUSDT", 2, 2, "binance", last_price="15", change="0.12345")
    assert price_decimals([first, second]) == 3
    assert price_decimals([second]) == 0
    assert price_decimals([Tick("X", 3, 3, "sim", volume="1.5")]) is None
    assert price_decimals([]) is None
