"""Stream names (SPEC §12): what parses, to what, and what is refused with which reason."""

from __future__ import annotations

import pytest

from tickcast.messages.stream import (
    KLINE_INTERVALS,
    Stream,
    StreamKind,
    StreamNameError,
    interval_ms,
    parse_stream,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BTCUSDT", Stream(StreamKind.TICKER, "BTCUSDT")),
        ("btcusdt", Stream(StreamKind.TICKER, "BTCUSDT")),
        (" ETHUSDT ", Stream(StreamKind.TICKER, "ETHUSDT")),
        ("BTCUSDT@ticker", Stream(StreamKind.TICKER, "BTCUSDT")),
        ("btcusdt@trades", Stream(StreamKind.TRADES, "BTCUSDT")),
        ("BTCUSDT@kline_1m", Stream(StreamKind.KLINE, "BTCUSDT", "1m")),
        ("BTCUSDT@kline_1M", Stream(StreamKind.KLINE, "BTCUSDT", "1M")),
        ("BTCUSDT@book", Stream(StreamKind.BOOK, "BTCUSDT")),
        ("BTCUSDT@depth", Stream(StreamKind.DEPTH, "BTCUSDT")),
        ("!tickers", Stream(StreamKind.TICKERS, None)),
    ],
)
def test_names_parse_to_their_stream(text: str, expected: Stream) -> None:
    """Every kind parses; a bare symbol is its ticker; the symbol's case does not matter."""
    assert parse_stream(text) == expected


@pytest.mark.parametrize(
    ("stream", "name"),
    [
        (Stream(StreamKind.TICKER, "BTCUSDT"), "BTCUSDT@ticker"),
        (Stream(StreamKind.KLINE, "BTCUSDT", "15m"), "BTCUSDT@kline_15m"),
        (Stream(StreamKind.TICKERS, None), "!tickers"),
    ],
)
def test_the_canonical_name_parses_back_to_the_same_stream(stream: Stream, name: str) -> None:
    """``name`` is the full form, and parsing it gives the stream back."""
    assert stream.name == str(stream) == name
    assert parse_stream(name) == stream


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("B", "not a symbol"),
        ("BTC-USDT", "not a symbol"),
        ("BTCÜSDT", "not a symbol"),
        ("١٢٣٤", "not a symbol"),
        ("BTCUSDT@", "not a stream kind"),
        ("BTCUSDT@aggTrade", "not a stream kind"),
        ("BTCUSDT@TRADES", "not a stream kind"),
        ("BTCUSDT@kline", "not a stream kind"),
        ("BTCUSDT@tickers", "not a stream kind"),
        ("BTCUSDT@kline_2m", "not a kline interval"),
        ("BTCUSDT@kline_", "not a kline interval"),
        ("BTCUSDT@trades@x", "not a stream kind"),
        ("!ticker@arr", "not a symbol"),
        ("A" * 65, "longer than 64"),
    ],
)
def test_bad_names_are_refused_with_the_reason(text: str, says: str) -> None:
    """Malformed and unknown names raise StreamNameError saying what is wrong."""
    with pytest.raises(StreamNameError, match=says):
        parse_stream(text)


def test_an_error_quotes_a_hostile_name_short() -> None:
    """A long or odd name is quoted cut short, never echoed whole into a reply."""
    with pytest.raises(StreamNameError) as refused:
        parse_stream("BTCUSDT@" + "x" * 50)
    assert len(str(refused.value)) < 120


def test_interval_lengths() -> None:
    """Every interval but the month has a fixed length in milliseconds."""
    assert interval_ms("1s") == 1_000
    assert interval_ms("1m") == 60_000
    assert interval_ms("4h") == 4 * 3_600_000
    assert interval_ms("1w") == 7 * 86_400_000
    assert interval_ms("1M") is None
    assert interval_ms("7m") is None
    lengths = [interval_ms(i) for i in KLINE_INTERVALS[:-1]]
    assert lengths == sorted(lengths)
