"""Binance frames -> updates: every payload kind, combined and raw, and bad input."""

from __future__ import annotations

import logging

import orjson
import pytest

from tickcast.upstream.normalize import (
    ControlReply,
    KlineEvent,
    Normalizer,
    ParseError,
    ServerShutdown,
    TradeEvent,
    Update,
    parse_frame,
)

TICKER = {
    "e": "24hrTicker", "E": 1672515782136, "s": "BNBBTC", "p": "0.0015", "P": "250.00",
    "w": "0.0018", "x": "0.0009", "c": "0.0025", "Q": "10", "b": "0.0024", "B": "10",
    "a": "0.0026", "A": "100", "o": "0.0010", "h": "0.0025", "l": "0.0010", "v": "10000",
    "q": "18", "O": 0, "C": 86400000, "F": 0, "L": 18150, "n": 18151,
}  # fmt: skip
MINI = {
    "e": "24hrMiniTicker", "E": 1672515782136, "s": "BNBBTC", "c": "0.0025", "o": "0.0010",
    "h": "0.0025", "l": "0.0010", "v": "10000", "q": "18",
}  # fmt: skip
BOOK = {"u": 400900217, "s": "BNBUSDT", "b": "25.35190000", "B": "31.21", "a": "25.3652", "A": "4"}
TRADE = {
    "e": "trade", "E": 1672515782136, "s": "BNBBTC", "t": 12345, "p": "0.001", "q": "100",
    "T": 1672515782136, "m": True, "M": True,
}  # fmt: skip
AGG = {
    "e": "aggTrade", "E": 1672515782136, "s": "BNBBTC", "a": 777, "p": "0.002", "q": "100",
    "f": 100, "l": 105, "T": 1672515782136, "m": True, "M": True,
}  # fmt: skip


NOW = 1672515782500  # half a second after the samples' event time


def now() -> int:
    return NOW


def one(frame: object) -> object:
    events = parse_frame(orjson.dumps(frame), now)
    assert len(events) == 1
    return events[0]


def test_ticker_maps_every_field() -> None:
    """A 24hrTicker becomes a full update ordered by event time."""
    update = one(TICKER)
    assert update == Update(
        symbol="BNBBTC",
        kind="ticker",
        order=1672515782136,
        event_time_ms=1672515782136,
        values={
            "last_price": "0.0025", "change_percent": "250", "change": "0.0015",
            "open": "0.001", "high": "0.0025", "low": "0.001", "volume": "10000",
            "quote_volume": "18", "bid": "0.0024", "ask": "0.0026",
        },
    )  # fmt: skip


def test_combined_wrapper_is_unwrapped() -> None:
    """The combined form's {"stream","data"} wrapper gives the same update as the raw form."""
    assert one({"stream": "bnbbtc@ticker", "data": TICKER}) == one(TICKER)


def test_mini_ticker_derives_change_exactly() -> None:
    """A mini ticker has no change fields: they are derived exactly from close and open."""
    update = one(MINI)
    assert isinstance(update, Update)
    assert update.kind == "miniTicker"
    assert update.values["change"] == "0.0015"
    assert update.values["change_percent"] == "150"


def test_mini_ticker_array() -> None:
    """!miniTicker@arr frames carry one update per changed symbol."""
    frame = {"stream": "!miniTicker@arr", "data": [MINI, {**MINI, "s": "ETHBTC"}]}
    events = parse_frame(orjson.dumps(frame), now)
    assert [e.symbol for e in events if isinstance(e, Update)] == ["BNBBTC", "ETHBTC"]


def test_book_ticker_has_no_event_time() -> None:
    """bookTicker carries no e/E: it is ordered by update id and stamped on receipt."""
    update = one(BOOK)
    assert update == Update(
        "BNBUSDT", "bookTicker", 400900217, NOW, {"bid": "25.3519", "ask": "25.3652"}
    )


def test_a_trade_sets_the_last_price() -> None:
    """``trade`` updates the last price, ordered by its id."""
    trade = one(TRADE)
    assert isinstance(trade, Update)
    assert (trade.kind, trade.order, trade.values) == ("trade", 12345, {"last_price": "0.001"})


def test_an_agg_trade_is_a_trade_of_the_tape() -> None:
    """``aggTrade`` is a trade event: its id, exact price and size, the taker's side (the
    buyer made the bid: a sell), the trade time."""
    agg = one(AGG)
    assert agg == TradeEvent("BNBBTC", 777, "0.002", "100", "sell", 1672515782136, 1672515782136)
    assert one({**AGG, "m": False}).side == "buy"  # type: ignore[union-attr]


KLINE = {
    "e": "kline", "E": 1672515782136, "s": "BNBBTC",
    "k": {"t": 1672515780000, "T": 1672515839999, "s": "BNBBTC", "i": "1m", "f": 100,
          "L": 200, "o": "0.0010", "c": "0.0020", "h": "0.0025", "l": "0.0015", "v": "1000",
          "n": 100, "x": False, "q": "1.0000", "V": "500", "Q": "0.500", "B": "123456"},
}  # fmt: skip


def test_a_kline_is_a_candle_with_exact_values() -> None:
    """Binance's kline payload parses to its candle, decimals canonical."""
    kline = one({**KLINE, "k": {**KLINE["k"], "o": "0.0016"}})  # type: ignore[dict-item]
    assert kline == KlineEvent(
        "BNBBTC", "1m", 1672515780000, 1672515839999, "0.0016", "0.0025", "0.0015", "0.002",
        "1000", "1", 100, False, 1672515782136,
    )  # fmt: skip


def test_the_documented_kline_has_its_low_above_its_open() -> None:
    """Binance's own sample (open 0.0010, low 0.0015) is no candle: refused by name."""
    with pytest.raises(ParseError) as refused:
        parse_frame(orjson.dumps(KLINE), now)
    assert refused.value.kind == "invalid_candle"


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"h": "0.0001"}, "invalid_candle"),
        ({"T": 1672515840000}, "invalid_candle"),
        ({"i": "2m"}, "invalid_candle"),
        ({"x": "false"}, "bad_value"),
        ({"n": -1}, "invalid_candle"),
        ({"o": "1e-3"}, "bad_value"),
    ],
)
def test_a_kline_that_is_no_candle_is_refused_by_kind(change: dict[str, object], kind: str) -> None:
    """High below low, times not spanning the interval, an unknown interval, a closed flag
    that is not a boolean, a negative count: each a named parse error."""
    good = {**KLINE["k"], "o": "0.0016", "l": "0.0015"}  # type: ignore[dict-item]
    with pytest.raises(ParseError) as refused:
        parse_frame(orjson.dumps({**KLINE, "k": {**good, **change}}), now)
    assert refused.value.kind == kind


@pytest.mark.parametrize(
    ("change", "kind"),
    [({"p": "0"}, "invalid_trade"), ({"q": "-1"}, "invalid_trade"), ({"m": 1}, "bad_value")],
)
def test_an_agg_trade_that_is_no_trade_is_refused_by_kind(
    change: dict[str, object], kind: str
) -> None:
    """A zero price, a negative size or a maker flag that is not a boolean: refused."""
    with pytest.raises(ParseError) as refused:
        parse_frame(orjson.dumps({**AGG, **change}), now)
    assert refused.value.kind == kind


def test_server_shutdown_both_forms() -> None:
    """serverShutdown is recognised raw and combined."""
    raw = {"e": "serverShutdown", "E": 1770123456789}
    assert one(raw) == ServerShutdown(1770123456789)
    assert one({"stream": "!serverShutdown", "data": raw}) == ServerShutdown(1770123456789)


def test_control_replies_and_errors() -> None:
    """Acks and both error shapes parse as control replies."""
    assert one({"result": None, "id": 1}) == ControlReply(id=1)
    wrapped = one({"error": {"code": 2, "msg": "Invalid request"}, "id": "a"})
    assert wrapped == ControlReply(id="a", error_code=2, error_msg="Invalid request")
    bare = one({"code": 3, "msg": "Invalid JSON", "id": None})
    assert bare == ControlReply(id=None, error_code=3, error_msg="Invalid JSON")


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (b'{"e":"24hrTicker","s":', "invalid_json"),
        (b"hello", "invalid_json"),
        (b'"just a string"', "not_object"),
        (b'{"e":"mystery"}', "unknown_event"),
        (orjson.dumps({k: v for k, v in TICKER.items() if k != "c"}), "missing_field"),
        (orjson.dumps({**TICKER, "c": 60500.5}), "bad_value"),
        (orjson.dumps({**TICKER, "c": "1e5"}), "bad_value"),
        (orjson.dumps({**TICKER, "E": "soon"}), "bad_value"),
        (orjson.dumps({**TICKER, "s": "BTC/USDT"}), "bad_value"),
        (orjson.dumps({**TICKER, "b": "\u0661\u0662"}), "bad_value"),
        (orjson.dumps({**TICKER, "c": "\uff16\uff10\uff10\uff10\uff10"}), "bad_value"),
        (orjson.dumps({**TICKER, "c": "NaN"}), "bad_value"),
        (orjson.dumps({**TICKER, "c": "Infinity"}), "bad_value"),
        (orjson.dumps({**TICKER, "c": ""}), "bad_value"),
        (orjson.dumps({**TICKER, "c": "9" * 41}), "bad_value"),
        (orjson.dumps({**TICKER, "c": None}), "missing_field"),
        (orjson.dumps({**TICKER, "E": 2**62}), "bad_value"),
        (orjson.dumps({**TICKER, "E": NOW - 2 * 86_400_000}), "bad_value"),
        (orjson.dumps({**MINI, "o": "\u0661"}), "bad_value"),
    ],
)
def test_bad_frames_raise_named_errors(frame: bytes, kind: str) -> None:
    """Every malformed frame raises a ParseError naming its kind."""
    with pytest.raises(ParseError) as info:
        parse_frame(frame, now)
    assert info.value.kind == kind


def test_normalizer_counts_skips_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """Bad frames are counted and skipped; each kind is logged once, with a sample."""
    normalizer = Normalizer(now)
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        assert normalizer.parse(b"garbage!") == []
    assert normalizer.parse(orjson.dumps(TICKER))
    assert normalizer.errors == {"invalid_json": 5}
    assert normalizer.frames == 6
    warnings = [r for r in caplog.records if "skipping upstream frame" in r.message]
    assert len(warnings) == 1
    assert "garbage!" in warnings[0].message


TINY = "0." + "0" * 37 + "1"  # 40 characters, the longest decimal accepted


@pytest.mark.parametrize(
    ("close", "open_", "change", "percent"),
    [
        ("100000000000000000000", "0.00000001", "99999999999999999999.99999999",
         "999999999999999999999999999900"),
        ("9" * 40, TINY, "9" * 39 + "8." + "9" * 38, "9" * 39 + "8" + "9" * 38 + "00"),
        (TINY, "9" * 40, "-" + "9" * 39 + "8." + "9" * 38, "-100"),
        ("5", "0", "5", None),
    ],
)  # fmt: skip
def test_mini_ticker_change_is_exact_for_huge_and_tiny_values(
    close: str, open_: str, change: str, percent: str | None
) -> None:
    """Derived change and percent stay exact at the extremes instead of overflowing the
    decimal context (an InvalidOperation once escaped the parser and stopped the feed)."""
    update = one({**MINI, "c": close, "o": open_})
    assert isinstance(update, Update)
    assert update.values["change"] == change
    assert update.values.get("change_percent") == percent


def test_an_unexpected_parser_failure_is_counted_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception the parser did not foresee skips the frame under ``parser_error``, logged
    once with its traceback; the next frame parses."""

    calls = 0

    def clock_that_breaks_twice() -> int:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ZeroDivisionError("clock broke")
        return NOW

    normalizer = Normalizer(clock_that_breaks_twice)
    caplog.set_level(logging.ERROR)
    assert normalizer.parse(orjson.dumps(BOOK)) == []
    assert normalizer.parse(orjson.dumps(BOOK)) == []
    assert normalizer.parse(orjson.dumps(BOOK))
    assert normalizer.errors == {"parser_error": 2}
    failures = [r for r in caplog.records if r.exc_info is not None]
    assert len(failures) == 1
