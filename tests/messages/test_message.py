"""decode_message: every kind rebuilt from its own encoding, anything else a ValueError;
is_event and ticks_of."""

from __future__ import annotations

import orjson
import pytest

from tickcast.messages.kline import Kline
from tickcast.messages.message import Message, decode_message, is_event, ticks_of
from tickcast.messages.tick import Tick
from tickcast.messages.trade import Trade

TICK = Tick(symbol="BTCUSDT", seq=7, timestamp_ms=1678886400000, source="binance",
            last_price="60500.5", change_percent="1.25", bid="0.30000000000000004")  # fmt: skip
TRADE = Trade(symbol="BTCUSDT", trade_id=123, price="60500.5", qty="0.012", side="buy",
              timestamp_ms=1678886400000, seq=8, source="sim")  # fmt: skip
KLINE = Kline(symbol="BTCUSDT", interval="1m", open_time=1678886400000,
              close_time=1678886459999, open="60490.1", high="60510", low="60480.2",
              close="60500.5", volume="12.5", quote_volume="756210.3", trades=311,
              closed=True, seq=9, source="replay")  # fmt: skip


@pytest.mark.parametrize("message", [TICK, TRADE, KLINE], ids=["tick", "trade", "kline"])
def test_each_kind_round_trips_through_its_encoding(message: Message) -> None:
    """decode_message(encode()) is the same message of the same kind, to the last digit."""
    again = decode_message(message.encode())
    assert type(again) is type(message)
    assert again == message
    assert again.encode() == message.encode()
    assert (again.key, again.seq) == (message.key, message.seq)


@pytest.mark.parametrize("message", [TICK, TRADE, KLINE], ids=["tick", "trade", "kline"])
def test_a_message_whose_type_is_not_first_is_still_decoded(message: Message) -> None:
    """An encoding with its fields in another order is read by its ``type`` all the same."""
    fields = orjson.loads(message.encode())
    reordered = orjson.dumps({**{k: v for k, v in fields.items() if k != "type"}, **fields})
    assert next(iter(orjson.loads(reordered))) != "type"
    assert type(decode_message(reordered)) is type(message)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b'{"type":"tick"',
        b"[1, 2]",
        b'"tick"',
        b"null",
        b"{}",
        b'{"type":"book","stream":"BTCUSDT@book"}',
        b'{"type":"gap","stream":"BTCUSDT@trades","missed":3}',
        b'{"type":7}',
    ],
)
def test_what_is_no_market_data_message_is_a_value_error(data: bytes) -> None:
    """Non-JSON, non-objects and unknown types are refused with ValueError."""
    with pytest.raises(ValueError):
        decode_message(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"tick"}',
        b'{"type":"tick","seq":1}',
        b'{"type":"tick","symbol":"BTCUSDT","seq":1,"timestamp_ms":1}',
        b'{"type":"tick","symbol":"BTCUSDT","timestamp_ms":1,"source":"sim"}',
        b'{"type":"tick","symbol":"BTCUSDT","seq":"one","timestamp_ms":1,"source":"sim"}',
        b'{"type":"tick","symbol":"BTCUSDT","seq":1,"timestamp_ms":1,"source":"nasdaq"}',
        b'{"type":"tick","symbol":"BTCUSDT","seq":null,"timestamp_ms":1,"source":"sim"}',
        b'{"type":"trade","source":"sim","side":"buy"}',
        b'{"type":"kline","source":"sim","closed":true}',
    ],
)
def test_a_message_missing_or_mistyping_fields_is_a_value_error(data: bytes) -> None:
    """A market-data message without the fields its kind needs is refused with
    ValueError, the one error its readers (the Redis hub) expect, never a KeyError."""
    with pytest.raises(ValueError):
        decode_message(data)


def test_only_a_trade_is_an_event() -> None:
    """A trade is an event (no latest value to snapshot); a tick and a candle are states."""
    assert is_event(TRADE)
    assert not is_event(TICK)
    assert not is_event(KLINE)


def test_ticks_of_keeps_the_ticks_in_order() -> None:
    """ticks_of picks the ticks out of mixed messages, in their order."""
    later = TICK.evolve(seq=10)
    assert ticks_of([TRADE, TICK, KLINE, later]) == [TICK, later]
    assert ticks_of([]) == []
