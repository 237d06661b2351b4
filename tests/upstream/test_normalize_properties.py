"""The normalizer on generated and mutated Binance payloads (hypothesis): every frame
either gives events whose decimals are exact canonical strings equal to the input's
(never a float), or is skipped under a named kind; nothing else ever escapes."""

from __future__ import annotations

import json
import re
from collections import Counter
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickcast.upstream.normalize import (
    ControlReply,
    Event,
    KlineEvent,
    Normalizer,
    ParseError,
    ServerShutdown,
    TradeEvent,
    Update,
    parse_frame,
)

NOW = 1_700_000_000_000
DAY_MS = 86_400_000
KINDS = {
    "invalid_json", "not_object", "unknown_event", "missing_field", "bad_value",
    "invalid_trade", "invalid_candle",
}  # fmt: skip
CANONICAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?")
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Binance field -> tick field per update kind, from Binance's stream documentation
# (restated here rather than imported, so a wrong mapping in the parser shows).
TICKER = {"c": "last_price", "P": "change_percent", "p": "change", "o": "open", "h": "high",
          "l": "low", "v": "volume", "q": "quote_volume", "b": "bid", "a": "ask"}  # fmt: skip
MINI = {"c": "last_price", "o": "open", "h": "high", "l": "low", "v": "volume",
        "q": "quote_volume"}  # fmt: skip
FIELDS = {
    "ticker": TICKER,
    "miniTicker": MINI,
    "bookTicker": {"b": "bid", "a": "ask"},
    "trade": {"p": "last_price"},
}
ORDER_KEY = {"ticker": "E", "miniTicker": "E", "bookTicker": "u", "trade": "t"}
EVENT_KIND = {"24hrTicker": "ticker", "24hrMiniTicker": "miniTicker", "trade": "trade"}
# Events that are not ticker updates: the trade tape and candles.
OTHER_EVENTS = ["aggTrade", "kline"]
KLINE = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "q": "quote_volume"}


def now() -> int:
    return NOW


# -- valid payloads ----------------------------------------------------------------------

digits = st.text("0123456789", min_size=1, max_size=19)
plain_decimals = st.builds(
    lambda sign, whole, frac: sign + whole + frac,
    st.sampled_from(["", "-"]),
    digits,
    st.one_of(st.just(""), digits.map(lambda d: "." + d)),
)
# Realistic prices too: Binance writes 8 decimal places, trailing zeros included.
priced = st.decimals(min_value=0, max_value=10**12, places=8).map(lambda d: format(d, "f"))
decimals = st.one_of(plain_decimals, priced)
symbols = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcxyz", min_size=1, max_size=12)
event_times = st.integers(NOW - DAY_MS, NOW + DAY_MS)
ids = st.integers(0, 2**63 - 1)


def _payload(event: str | None, order_key: str | None, fields: list[str]) -> Any:
    """A strategy for one payload: ``e``/``E`` when ``event``, ``s``, the order key, and a
    decimal string for each of ``fields``."""
    base: dict[str, Any] = {"s": symbols}
    if event is not None:
        base.update(e=st.just(event), E=event_times)
    if order_key is not None and order_key != "E":
        base[order_key] = ids
    for key in fields:
        base[key] = decimals
    return st.fixed_dictionaries(base)


ticker_payloads = _payload("24hrTicker", "E", [*TICKER, "w", "x", "Q", "B", "A"]).flatmap(
    lambda p: st.fixed_dictionaries(
        {"O": st.just(p["E"] - DAY_MS), "C": st.just(p["E"]), "F": ids, "L": ids, "n": ids}
    ).map(lambda extra: {**p, **extra})
)
mini_payloads = _payload("24hrMiniTicker", "E", list(MINI))
book_payloads = _payload(None, "u", ["b", "B", "a", "A"])
trade_payloads = _payload("trade", "t", ["p", "q"])
positive = st.decimals(min_value="0.00000001", max_value=10**9, places=8).map(
    lambda d: format(d, "f")
)
agg_payloads = _payload("aggTrade", "a", []).flatmap(
    lambda p: st.fixed_dictionaries(
        {"p": positive, "q": positive, "f": ids, "l": ids, "T": event_times, "m": st.booleans()}
    ).map(lambda extra: {**p, **extra})
)


@st.composite
def kline_payloads(draw: st.DrawFn) -> Any:
    """A 1m candle whose prices agree (low <= open, close <= high), as Binance sends."""
    base = draw(_payload("kline", "E", []))
    prices = sorted(draw(st.lists(positive, min_size=4, max_size=4)), key=Decimal)
    open_, close = draw(st.permutations(prices[1:3]))
    open_time = draw(st.integers(0, 2**40)) * 60_000
    candle = {
        "t": open_time, "T": open_time + 59_999, "s": base["s"], "i": "1m",
        "f": draw(ids), "L": draw(ids), "o": open_, "c": close, "h": prices[3],
        "l": prices[0], "v": draw(positive), "n": draw(st.integers(0, 10**6)),
        "x": draw(st.booleans()), "q": draw(positive), "V": "0", "Q": "0", "B": "0",
    }  # fmt: skip
    return {**base, "k": candle}


shutdowns = st.builds(lambda e: {"e": "serverShutdown", "E": e}, event_times)
json_ids = st.one_of(st.none(), st.integers(0, 2**31), st.text(max_size=36))
controls = st.one_of(
    st.builds(lambda i: {"result": None, "id": i}, json_ids),
    st.builds(
        lambda i, c, m: {"error": {"code": c, "msg": m}, "id": i},
        json_ids,
        st.integers(0, 3),
        st.text(max_size=30),
    ),
    st.builds(
        lambda i, c, m: {"code": c, "msg": m, "id": i}, json_ids, st.integers(0, 3), st.text()
    ),
)
events = st.one_of(
    ticker_payloads,
    mini_payloads,
    book_payloads,
    trade_payloads,
    agg_payloads,
    kline_payloads(),
    shutdowns,
)


@st.composite
def frames(draw: st.DrawFn) -> Any:
    """A valid frame object: raw, combined, a bare array of mini tickers, or the combined
    ``!miniTicker@arr``; or a control reply (never wrapped)."""
    form = draw(st.sampled_from(["raw", "combined", "array", "combined_array", "control"]))
    if form == "control":
        return draw(controls)
    if form in ("array", "combined_array"):
        items = draw(st.lists(mini_payloads, min_size=1, max_size=4))
        return items if form == "array" else {"stream": "!miniTicker@arr", "data": items}
    payload = draw(events)
    if form == "raw":
        return payload
    name = payload.get("e") or "bookTicker"
    return {"stream": f"{str(payload.get('s', '')).lower()}@{name}", "data": payload}


# -- mutations ---------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
# Strings a decimal field must never pass on as a number: exponents, NaN and infinities,
# signs and spaces JSON would not take, digits of other scripts, too long.
TRICKY = [
    "1e5", "1E-7", "-2.5e+3", "NaN", "nan", "-NaN", "Infinity", "-inf", "sNaN", "", " 1", "1 ",
    "+1", "1.", ".5", "-", "--1", "1.2.3", "0x1f", "1_000", "\u0661\u0662", "\uff16\uff10",
    "\u00b2", "\U0001d7d9", "\u0669.\u0665", "1\x00", "9" * 41, "0." + "0" * 39 + "1",
    "-" + "9" * 40,
]  # fmt: skip
tricky_strings = st.one_of(
    st.sampled_from(TRICKY),
    st.builds(lambda a, b: f"{a}e{b}", st.integers(-(10**6), 10**6), st.integers(-400, 400)),
    st.text(st.characters(categories=["Nd"]), min_size=1, max_size=6),
    st.text("0123456789", min_size=41, max_size=60),
    st.text(max_size=12),
)
replacements = st.one_of(
    json_values, tricky_strings, decimals, st.floats(), st.integers(), st.booleans()
)


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    """A ``valid`` frame with one to four of: a field dropped, a value replaced (arbitrary
    JSON, tricky strings, wrong types), a key added, the event type changed."""
    frame = draw(valid)
    for _ in range(draw(st.integers(1, 4))):
        targets = _dicts_in(frame)
        target = draw(st.sampled_from(targets)) if targets else None
        action = draw(st.sampled_from(["drop", "replace", "replace", "add", "event", "whole"]))
        if action == "whole" or target is None:
            frame = draw(st.one_of(json_values, st.just(frame)))
        elif action == "drop" and target:
            target.pop(draw(st.sampled_from(sorted(target))))
        elif action == "replace" and target:
            target[draw(st.sampled_from(sorted(target)))] = draw(replacements)
        elif action == "add":
            target[draw(st.text(max_size=3))] = draw(replacements)
        elif action == "event":
            target["e"] = draw(
                st.one_of(
                    st.sampled_from([*EVENT_KIND, *OTHER_EVENTS, "serverShutdown"]), json_values
                )
            )
    return frame


def _dicts_in(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value, *(d for v in value.values() for d in _dicts_in(v))]
    if isinstance(value, list):
        return [d for v in value for d in _dicts_in(v)]
    return []


def encode(frame: Any, ascii_only: bool) -> bytes:
    """The frame as JSON text. The stdlib encoder, unlike orjson, writes integers past 64
    bits and NaN/Infinity (which no JSON parser should take)."""
    return json.dumps(frame, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def damaged_bytes(draw: st.DrawFn) -> bytes:
    """A valid frame's bytes truncated, with bytes flipped or inserted, or random bytes."""
    data = bytearray(encode(draw(frames()), draw(st.booleans())))
    action = draw(st.sampled_from(["truncate", "flip", "insert", "random"]))
    if action == "random":
        return draw(st.binary(max_size=200))
    if action == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


# -- the checks --------------------------------------------------------------------------


def items_of(obj: Any) -> list[Any]:
    """The payloads a frame carries, by Binance's wrapper rule (see the module docstring
    of ``tickcast.upstream.normalize``): ``{"stream","data"}`` unwrapped, arrays itemised."""
    if isinstance(obj, dict) and "stream" in obj and "data" in obj:
        obj = obj["data"]
    return obj if isinstance(obj, list) else [obj]


def assert_exact(value: object, source: object) -> None:
    """``value`` is a canonical decimal string equal to ``source``, itself a string."""
    assert type(value) is str and type(source) is str, (value, source)
    assert CANONICAL.fullmatch(value) and value != "-0", value
    assert Decimal(value) == Decimal(source), (value, source)


def assert_int(value: object, source: object) -> None:
    assert type(value) is int and type(source) is int and value == source, (value, source)


def check_update(update: Update, item: dict[str, Any]) -> None:
    fields = FIELDS[update.kind]
    assert type(item["s"]) is str and item["s"].upper() == update.symbol
    assert update.symbol.isascii() and update.symbol.isalnum()
    assert_int(update.order, item[ORDER_KEY[update.kind]])
    if update.kind == "bookTicker":
        assert "e" not in item or item["e"] is None
        assert update.event_time_ms == NOW
    else:
        assert item["e"] in EVENT_KIND and EVENT_KIND[item["e"]] == update.kind
        assert_int(update.event_time_ms, item["E"])
        assert abs(update.event_time_ms - NOW) <= DAY_MS
    derived = {"change", "change_percent"} if update.kind == "miniTicker" else set()
    assert set(update.values) - derived == set(fields.values())
    for key, name in fields.items():
        assert_exact(update.values[name], item[key])
    if update.kind == "miniTicker":
        check_mini_change(update.values, Decimal(item["c"]), Decimal(item["o"]))


def check_trade_event(event: TradeEvent, item: dict[str, Any]) -> None:
    """An aggTrade: its id, exact positive price and size, the taker's side, both times."""
    assert item["e"] == "aggTrade" and item["s"].upper() == event.symbol
    assert_int(event.trade_id, item["a"])
    assert_exact(event.price, item["p"])
    assert_exact(event.qty, item["q"])
    assert Decimal(event.price) > 0 and Decimal(event.qty) > 0
    assert event.side == ("sell" if item["m"] else "buy")
    assert_int(event.trade_time_ms, item["T"])
    assert_int(event.event_time_ms, item["E"])


def check_kline_event(event: KlineEvent, item: dict[str, Any]) -> None:
    """A kline: its times, exact prices and volumes in agreement, trades and closed."""
    k = item["k"]
    assert item["e"] == "kline" and item["s"].upper() == event.symbol
    assert (event.interval, event.closed) == (k["i"], k["x"])
    assert_int(event.open_time, k["t"])
    assert_int(event.close_time, k["T"])
    assert_int(event.trades, k["n"])
    for key, name in KLINE.items():
        assert_exact(getattr(event, name), k[key])
    low, high = Decimal(event.low), Decimal(event.high)
    assert low <= Decimal(event.open) <= high and low <= Decimal(event.close) <= high


def check_mini_change(values: dict[str, str], close: Decimal, open_: Decimal) -> None:
    """change = close - open exactly; percent = change / open * 100 to 0.001, half-even."""
    with localcontext() as ctx:
        ctx.prec = 400
        change = close - open_
        assert_exact(values["change"], format(change, "f"))
        if open_ == 0:
            assert "change_percent" not in values
        else:
            percent = (change / open_ * 100).quantize(Decimal("0.001"), ROUND_HALF_EVEN)
            assert_exact(values["change_percent"], format(percent, "f"))


def check_event(event: Event, item: Any) -> None:
    assert isinstance(item, dict)
    if isinstance(event, Update):
        check_update(event, item)
    elif isinstance(event, TradeEvent):
        check_trade_event(event, item)
    elif isinstance(event, KlineEvent):
        check_kline_event(event, item)
    elif isinstance(event, ServerShutdown):
        assert item.get("e") == "serverShutdown"
        assert_int(event.event_time_ms, item["E"])
    else:
        assert isinstance(event, ControlReply)
        assert item.get("e") is None and event.id == item.get("id")
        assert event.error_code is None or type(event.error_code) is int
        if "code" in item and "msg" in item and "result" not in item and "error" not in item:
            assert_int(event.error_code, item["code"])
        # A reply carrying an error is never read as a success.
        if item.get("error") is not None:
            assert event.error_code is not None, item


def parse_or_kind(frame: str | bytes) -> list[Event] | str:
    """The frame's events, or the kind of the ParseError it raised (any other escapes)."""
    try:
        return parse_frame(frame, now)
    except ParseError as exc:
        return exc.kind


def check_frame(frame: str | bytes) -> None:
    """parse_frame gives exact events or a named ParseError; the Normalizer agrees, counting
    the skip under that kind and never under ``parser_error``."""
    normalizer = Normalizer(now)
    parsed = parse_or_kind(frame)
    if isinstance(parsed, str):
        assert parsed in KINDS, parsed
        assert normalizer.parse(frame) == []
        assert normalizer.errors == Counter({parsed: 1})
        return
    items = items_of(orjson.loads(frame))
    assert len(parsed) == len(items)
    for event, item in zip(parsed, items, strict=True):
        check_event(event, item)
    assert normalizer.parse(frame) == parsed
    assert not normalizer.errors


@SETTINGS
@given(frame=frames(), ascii_only=st.booleans(), as_text=st.booleans())
def test_valid_payloads_parse_exactly(frame: Any, ascii_only: bool, as_text: bool) -> None:
    """Every kind, raw and combined, arrays too: one event per payload, every decimal an
    exact canonical string equal to Binance's, change and percent derived exactly."""
    data = encode(frame, ascii_only)
    parsed = parse_frame(data.decode() if as_text else data, now)
    assert len(parsed) == len(items_of(frame))
    for event, item in zip(parsed, items_of(frame), strict=True):
        check_event(event, item)


@SETTINGS
@given(frame=mutated(frames()), ascii_only=st.booleans(), as_text=st.booleans())
def test_mutated_payloads_are_exact_or_counted_skips(
    frame: Any, ascii_only: bool, as_text: bool
) -> None:
    """Fields dropped, values replaced by arbitrary JSON, tricky strings or wrong types:
    exact events or a counted skip of a named kind, never another exception."""
    data = encode(frame, ascii_only)
    check_frame(data.decode("utf-8", "surrogatepass") if as_text else data)


@SETTINGS
@given(data=damaged_bytes())
def test_damaged_bytes_are_exact_or_counted_skips(data: bytes) -> None:
    """Truncated frames, flipped or inserted bytes, random bytes: the same guarantee."""
    check_frame(data)


@SETTINGS
@given(value=json_values)
def test_arbitrary_json_is_exact_or_counted_skips(value: Any) -> None:
    """Any JSON document at all, as a frame: the same guarantee."""
    check_frame(encode(value, ascii_only=True))


@SETTINGS
@given(reply=mutated(controls))
def test_mutated_control_replies_never_turn_an_error_into_an_ack(reply: Any) -> None:
    """Acks and error replies with fields dropped or replaced: an error is read as an error
    or skipped, never as a success; the rest of the guarantee holds."""
    check_frame(encode(reply, ascii_only=True))


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ({"error": "Invalid request", "id": 1}, "bad_value"),
        ({"error": [2], "result": None, "id": 1}, "bad_value"),
        ({"error": {"code": "2", "msg": "Invalid request"}, "id": 1}, "bad_value"),
        ({"error": {"code": True, "msg": "Invalid request"}, "id": 1}, "bad_value"),
        ({"error": {"msg": ""}, "id": None}, "missing_field"),
    ],
)
def test_a_malformed_error_reply_is_never_an_ack(reply: dict[str, object], kind: str) -> None:
    """An error reply whose error is not Binance's {"code": int, "msg": str} is skipped and
    counted, not taken for a successful SUBSCRIBE (found by the properties above)."""
    assert parse_or_kind(orjson.dumps(reply)) == kind
    check_frame(orjson.dumps(reply))
