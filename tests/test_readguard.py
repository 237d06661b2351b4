"""What ``TICKCAST_JWT_REST`` guards, and the stream each REST read is of: plain calls."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tickcast.serve.readguard import read_stream
from tickcast.settings import Settings

from .edge.tokenkit import SECRET


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/price", "", (True, "BTCUSDT")),
        ("/price", "symbol=ethusdt", (True, "ETHUSDT")),
        ("/prices", "", (True, "*")),
        ("/prices/solusdt", "", (True, "SOLUSDT")),
        ("/history/BTCUSDT", "limit=5", (True, "BTCUSDT")),
        ("/trades/BTCUSDT", "", (True, "BTCUSDT@trades")),
        ("/klines/BTCUSDT", "interval=5m", (True, "BTCUSDT@kline_5m")),
        ("/klines/BTCUSDT", "", (True, "BTCUSDT@kline_1m")),
        ("/book/BTCUSDT", "", (True, "BTCUSDT@book")),
        ("/symbols", "", (True, None)),
        ("/streams", "", (True, None)),
        ("/healthz", "", (False, None)),
        ("/status", "", (False, None)),
        ("/sse", "symbols=BTCUSDT", (False, None)),
        ("/", "", (False, None)),
        ("/docs", "", (False, None)),
    ],
)
def test_each_read_is_of_its_stream(
    path: str, query: str, expected: tuple[bool, str | None]
) -> None:
    assert read_stream(path, query) == expected


def test_jwt_rest_needs_a_key() -> None:
    with pytest.raises(ValidationError, match="TICKCAST_JWT_REST needs"):
        Settings(jwt_rest=True)
    assert Settings(jwt_rest=True, jwt_secret=SECRET).jwt_rest


def test_a_short_secret_and_two_kinds_of_key_are_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(jwt_secret="short")
    with pytest.raises(ValidationError, match="not both"):
        Settings(jwt_secret=SECRET, jwt_jwks="keys.json")
