"""Trade and kline messages: SPEC §12's shapes, exact decimals, one encoding, and the
values that make no trade or no candle refused by name."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickcast.messages.decimals import canonical_decimal
from tickcast.messages.kline import Kline
from tickcast.messages.trade import Trade, taker_side


def trade(**changes: Any) -> Trade:
    values: dict[str, Any] = {
        "symbol": "BTCUSDT", "trade_id": 123, "price": "60500.5", "qty": "0.012",
        "side": "buy", "timestamp_ms": 1678886400000, "seq": 1235, "source": "binance",
    }  # fmt: skip
    return Trade(**{**values, **changes})


def kline(**changes: Any) -> Kline:
    values: dict[str, Any] = {
        "symbol": "BTCUSDT", "interval": "1m", "open_time": 1678886400000,
        "close_time": 1678886459999, "open": "60490.1", "high": "60510", "low": "60480.2",
        "close": "60500.5", "volume": "12.5", "quote_volume": "756210.3", "trades": 311,
        "closed": False, "seq": 1236, "source": "binance",
    }  # fmt: skip
    return Kline(**{**values, **changes})


def test_a_trade_encodes_to_the_spec_shape() -> None:
    """The trade message has SPEC §12's fields, in order, with decimals written verbatim."""
    encoded = trade().encode()
    assert encoded == (
        b'{"type":"trade","stream":"BTCUSDT@trades","symbol":"BTCUSDT","trade_id":123,'
        b'"price":60500.5,"qty":0.012,"side":"buy","timestamp_ms":1678886400000,'
        b'"seq":1235,"source":"binance"}'
    )
    assert trade().encode() is not encoded
    one = trade()
    assert one.encode() is one.encode()  # encoded once, the same bytes for everyone


def test_a_kline_encodes_to_the_spec_shape() -> None:
    """The kline message has SPEC §12's fields, with decimals written verbatim."""
    message = orjson.loads(kline().encode())
    assert list(message) == [
        "type", "stream", "symbol", "interval", "open_time", "close_time", "open", "high",
        "low", "close", "volume", "quote_volume", "trades", "closed", "seq", "source",
    ]  # fmt: skip
    assert message["stream"] == "BTCUSDT@kline_1m"
    assert b'"high":60510,' in kline().encode() and b'"quote_volume":756210.3,' in kline().encode()


@given(
    price=st.decimals(min_value="0.00000001", max_value="1000000", places=8),
    qty=st.decimals(min_value="0.00000001", max_value="100000", places=8),
    trade_id=st.integers(0, 2**53),
    buyer_is_maker=st.booleans(),
)
def test_a_trade_round_trips_exactly(
    price: Any, qty: Any, trade_id: int, buyer_is_maker: bool
) -> None:
    """from_json(encode()) gives the same trade, decimals to the last digit."""
    original = trade(
        price=canonical_decimal(format(price, "f")),
        qty=canonical_decimal(format(qty, "f")),
        trade_id=trade_id,
        side=taker_side(buyer_is_maker),
    )
    again = Trade.from_json(original.encode())
    assert again == original
    assert again.encode() == original.encode()


def test_a_kline_round_trips_exactly() -> None:
    """from_json(encode()) gives the same candle, open and closed."""
    for closed in (False, True):
        original = kline(closed=closed, volume="0.00000001")
        assert Kline.from_json(original.encode()) == original


def test_the_taker_side_reads_binances_maker_flag() -> None:
    """``m`` true (the buyer made the bid) is a sell taker; false a buy taker."""
    assert taker_side(True) == "sell"
    assert taker_side(False) == "buy"


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"price": "0"}, "not positive"),
        ({"price": "-1"}, "not positive"),
        ({"qty": "0.0"}, "not a canonical decimal"),
        ({"qty": "1e5"}, "not a decimal"),
        ({"price": "١٢"}, "not a decimal"),
        ({"side": "long"}, "neither buy nor sell"),
    ],
)
def test_values_that_make_no_trade_are_refused(changes: dict[str, Any], says: str) -> None:
    """A trade cannot be built with a non-positive or non-decimal price or size, or a side
    other than buy or sell."""
    with pytest.raises(ValueError, match=says):
        trade(**changes)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"high": "60470", "low": "60480.2"}, "above high"),
        ({"open": "60520"}, "outside low-high"),
        ({"close": "60400"}, "outside low-high"),
        ({"volume": "-1"}, "negative"),
        ({"trades": -1}, "negative"),
        ({"close_time": 1678886460000}, "does not end"),
        ({"interval": "2m"}, "not a kline interval"),
        ({"high": "60510.0"}, "not a canonical decimal"),
        ({"interval": "1M", "close_time": 1678886400000}, "not after"),
    ],
)
def test_values_that_make_no_candle_are_refused(changes: dict[str, Any], says: str) -> None:
    """A candle with high < low, prices outside its range, negative sizes or times that
    do not span its interval cannot be built."""
    with pytest.raises(ValueError, match=says):
        kline(**changes)


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"tick"}',
        b"[]",
        b'{"type":"trade","stream":"BTCUSDT@trades","symbol":"BTCUSDT","trade_id":1,'
        b'"price":1,"qty":1,"side":"buy","timestamp_ms":1,"seq":1,"source":"exchange"}',
        b'{"type":"trade","stream":"BTCUSDT@trades","symbol":"BTCUSDT","trade_id":1,'
        b'"price":1,"qty":1,"side":"up","timestamp_ms":1,"seq":1,"source":"sim"}',
    ],
)
def test_a_trade_decoder_refuses_what_is_not_its_own_encoding(data: bytes) -> None:
    """Other message types, other sources and other sides are refused, not guessed."""
    with pytest.raises(ValueError):
        Trade.from_json(data)


def test_a_kline_decoder_refuses_a_non_boolean_closed() -> None:
    """``closed`` must be a JSON boolean: 0/1 or "false" are refused."""
    data = kline().encode().replace(b'"closed":false', b'"closed":0')
    with pytest.raises(ValueError, match="closed"):
        Kline.from_json(data)
