"""The REST candle parser and the retry pacing, by plain calls: strict rows, errors by
kind, Retry-After first, backoff that grows and starts over, one log line per kind."""

from __future__ import annotations

import random

import pytest

from tickcast.upstream.pacing import ErrorTally, RetryPacer
from tickcast.upstream.rest import (
    RestErrorKind,
    RestKline,
    error_of_status,
    parse_kline_row,
    parse_klines,
    retry_after,
)

T0 = 1_700_000_040_000


def row(open_time: int = T0, **changes: object) -> list[object]:
    """A 1m row as Binance writes it, with ``changes`` by column index name."""
    values: list[object] = [
        open_time,
        "60490.10000000",
        "60510.00000000",
        "60480.20000000",
        "60500.50000000",
        "12.50000000",
        open_time + 59_999,
        "756210.30000000",
        311,
        "6.00000000",
        "363000.00000000",
        "0",
    ]
    for key, value in changes.items():
        values[int(key[1:])] = value
    return values


def test_a_row_becomes_a_candle_with_canonical_decimals() -> None:
    """Every column lands in its field, trailing zeros trimmed."""
    assert parse_kline_row("BTCUSDT", "1m", row()) == RestKline(
        symbol="BTCUSDT",
        interval="1m",
        open_time=T0,
        close_time=T0 + 59_999,
        open="60490.1",
        high="60510",
        low="60480.2",
        close="60500.5",
        volume="12.5",
        quote_volume="756210.3",
        trades=311,
        taker_buy_volume="6",
        taker_buy_quote="363000",
    )


@pytest.mark.parametrize(
    "bad",
    [
        row()[:11],
        [*row(), "extra"],
        {"t": T0},
        "not a row",
        row(c2="60000", c3="60100"),  # high below low
        row(c4="70000"),  # close above high
        row(c1="abc"),
        row(c1=60490.1),  # a float, not a decimal string
        row(c1="1e5"),
        row(c5="-1"),  # negative volume
        row(c9="-1"),  # negative taker volume
        row(c0="1700000040000"),  # the open time as a string
        row(c0=True),
        row(c8=1.5),
        row(c6=T0 + 60_000),  # does not close a minute after it opened
        row(c1="1" * 50),  # absurdly long
    ],
)
def test_a_row_that_is_no_candle_raises(bad: object) -> None:
    """Wrong length, wrong types, non-numbers, negative sizes and prices outside low-high
    are refused, never made into a candle."""
    with pytest.raises(ValueError):
        parse_kline_row("BTCUSDT", "1m", bad)


def test_an_answer_must_be_increasing_candles_within_what_was_asked() -> None:
    """Not a list, too many rows, rows out of order or after endTime: no candles."""
    good = [row(T0), row(T0 + 60_000)]
    assert len(parse_klines("BTCUSDT", "1m", good, limit=2, end_ms=T0 + 60_000)) == 2
    assert parse_klines("BTCUSDT", "1m", [], limit=5) == []
    for body, limit, end in [
        ({"code": -1121, "msg": "Invalid symbol."}, 5, None),
        (good, 1, None),
        (good[::-1], 5, None),
        ([row(T0), row(T0)], 5, None),
        (good, 5, T0 + 59_999),
    ]:
        with pytest.raises(ValueError):
            parse_klines("BTCUSDT", "1m", body, limit=limit, end_ms=end)


def test_retry_after_is_read_in_seconds() -> None:
    """Seconds, fractional or not; a date, garbage or a negative are no Retry-After."""
    assert retry_after("30") == 30.0
    assert retry_after(" 1.5 ") == 1.5
    for value in (None, "", "Wed, 21 Oct 2015 07:28:00 GMT", "-3", "nan", "inf"):
        assert retry_after(value) is None


def test_each_status_has_its_error_kind() -> None:
    """429 and 418 are their own kinds and keep their wait; the rest go by class."""
    limited = error_of_status(429, b'{"code":-1003}', 12.0)
    assert (limited.kind, limited.retry_after) == (RestErrorKind.HTTP_429, 12.0)
    assert error_of_status(418, b"", 120.0).kind is RestErrorKind.HTTP_418
    assert error_of_status(503, b"", None).kind is RestErrorKind.HTTP_5XX
    assert error_of_status(400, b"", None).kind is RestErrorKind.HTTP_4XX
    assert error_of_status(302, b"", None).kind is RestErrorKind.HTTP_OTHER
    assert "HTTP 400" in error_of_status(400, b'{"msg":"Invalid symbol."}', None).message


def test_retry_after_wins_over_the_backoff() -> None:
    """The server's wait is taken as it is, however short or long."""
    pacer = RetryPacer(initial=1.0, maximum=60.0)
    assert pacer.failed(45.0) == 45.0
    assert pacer.failed(0.0) == 0.0


def test_the_backoff_grows_to_its_cap_with_jitter_and_starts_over_on_success() -> None:
    """Delays lie in the upper half of 1, 2, 4, ... 60 s; a success starts at 1 s again."""
    pacer = RetryPacer(initial=1.0, maximum=60.0, rng=random.Random(3))
    ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60]
    for ceiling in ceilings:
        assert ceiling / 2 <= pacer.failed() <= ceiling
    pacer.succeeded()
    assert 0.5 <= pacer.failed() <= 1.0


def test_each_kind_of_failure_is_logged_once_per_run_and_all_are_counted() -> None:
    """The first failure of a kind is to be logged, repeats only counted; a success ends
    the run (reporting its length) and the next failure is logged again."""
    tally = ErrorTally()
    assert tally.failed("timeout", "a") is True
    assert tally.failed("timeout", "b") is False
    assert tally.failed("http_429", "c") is True
    assert tally.failed("timeout", "d") is False
    assert tally.counts == {"timeout": 3, "http_429": 1}
    assert tally.last_error == "d"
    assert tally.succeeded() == 4
    assert tally.succeeded() == 0
    assert tally.failed("timeout", "e") is True
    assert tally.counts["timeout"] == 4
