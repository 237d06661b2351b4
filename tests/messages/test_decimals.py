"""The canonical decimal: every short string of digits, points and signs gets the form a
plain reading of the rule gives (sign, whole part without leading zeros, fraction without
trailing zeros; ``-0`` is ``0``), or is refused as that reading refuses it."""

from __future__ import annotations

import itertools

import pytest

from tickcast.messages.decimals import canonical_decimal


def by_the_rule(text: str) -> str | None:
    """The rule read plainly: None for what is no decimal number."""
    sign, rest = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, point, frac = rest.partition(".")
    if not whole.isdigit() or not whole.isascii() or (point and not frac.isdigit()):
        return None
    out = (whole.lstrip("0") or "0") + ("." + frac.rstrip("0") if frac.rstrip("0") else "")
    return "-" + out if sign and out != "0" else out


def test_every_short_string_gets_the_rules_form() -> None:
    """Every string of up to six of ``0 1 9 . -``: the same answer as the rule read
    plainly."""
    for size in range(1, 7):
        for chars in itertools.product("019.-", repeat=size):
            text = "".join(chars)
            expected = by_the_rule(text)
            if expected is None:
                with pytest.raises(ValueError):
                    canonical_decimal(text)
            else:
                assert canonical_decimal(text) == expected, text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("60123.45000000", "60123.45"), ("0.00000000", "0"), ("-0.000", "0"), ("007.50", "7.5")],
)
def test_binance_forms(text: str, canonical: str) -> None:
    """What Binance sends, trailing zeros and all."""
    assert canonical_decimal(text) == canonical


@pytest.mark.parametrize("text", ["", "1e5", " 1", "١٢", "+1", "1.", ".5", "0x1"])
def test_what_is_no_decimal_is_refused(text: str) -> None:
    """Exponents, spaces, other scripts' digits, a bare point: ValueError."""
    with pytest.raises(ValueError, match="not a decimal number"):
        canonical_decimal(text)
