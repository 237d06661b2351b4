"""What is served: ``TICKCAST_SYMBOLS=*`` in the settings, and the served set a new listing
changes (plain calls)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tickcast.messages.tick import DEFAULT_SYMBOLS
from tickcast.served import Served, ServedChange
from tickcast.settings import Settings
from tickcast.upstream.streams import settings_streams


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_star_serves_the_named_symbols_until_the_listing_is_known() -> None:
    """``*`` alone starts from the ten defaults; names beside it are the start instead,
    and carry trades, candles and books."""
    every = settings(symbols="*")
    assert every.every_market and every.named_symbols == DEFAULT_SYMBOLS
    assert every.carried_symbols == DEFAULT_SYMBOLS
    named = settings(symbols="*,btcusdt,ETHUSDT")
    assert named.every_market and named.named_symbols == ("BTCUSDT", "ETHUSDT")
    assert named.carried_symbols == ("BTCUSDT", "ETHUSDT")
    assert Served.of(named).keys >= {"BTCUSDT", "ETHUSDT@trades", "!tickers"}
    assert "*" not in Served.of(named).keys
    plain = settings(symbols="BTCUSDT")
    assert not plain.every_market and plain.named_symbols == ("BTCUSDT",)


def test_star_with_stream_symbols_carries_those() -> None:
    """With ``*`` the stream symbols need not be served at start: they are carried while
    the exchange lists them; ``*`` is refused as a stream symbol."""
    every = settings(symbols="*", stream_symbols="SOLUSDT,NEWUSDT")
    assert every.carried_symbols == ("SOLUSDT", "NEWUSDT")
    with pytest.raises(ValidationError, match="name the symbols to carry"):
        settings(symbols="*", stream_symbols="*")


def test_quote_assets_are_names() -> None:
    """``TICKCAST_QUOTE_ASSETS`` is upper-cased, deduplicated, and refuses what no asset
    is called."""
    assert settings(quote_assets="usdt, FDUSD,usdt").quote_assets == ["USDT", "FDUSD"]
    with pytest.raises(ValidationError, match="invalid quote asset"):
        settings(quote_assets="US-DT")
    with pytest.raises(ValidationError, match="invalid symbol"):
        settings(symbols="*,BTC/USDT")


def test_upstream_streams_follow_the_served_symbols() -> None:
    """Every served symbol's ticker, and the carried symbols' other streams while they
    are served: a carried symbol not listed opens nothing."""
    every = settings(symbols="*,BTCUSDT", kline_intervals="1m")
    streams = settings_streams(every, ["XYZUSDT", "BTCUSDT"])
    assert streams[:2] == ["xyzusdt@ticker", "btcusdt@ticker"]
    assert {"btcusdt@aggTrade", "btcusdt@kline_1m", "btcusdt@depth@100ms"} <= set(streams)
    assert not any(s.startswith("btc") for s in settings_streams(every, ["XYZUSDT"]))
    assert settings_streams(every) == settings_streams(every, ["BTCUSDT"])


def test_a_listing_changes_symbols_and_keys_in_place() -> None:
    """A new listing adds and removes symbols and their keys in the same set objects, and
    tells each listener once; the same set again changes nothing."""
    served = Served(["AAAUSDT", "BTCUSDT"], ["BTCUSDT"], trades=True, books=True)
    keys, symbols = served.keys, served.symbol_set
    seen: list[ServedChange] = []
    served.on_change(seen.append)
    assert "BTCUSDT@trades" in keys and "!tickers" in keys
    change = served.replace(["BTCUSDT", "NEWUSDT"])
    assert change is not None and seen == [change]
    assert change.added == ("NEWUSDT",) and change.removed == ("AAAUSDT",)
    assert change.added_keys == {"NEWUSDT"} and change.removed_keys == {"AAAUSDT"}
    assert served.keys is keys and served.symbol_set is symbols
    assert symbols == {"BTCUSDT", "NEWUSDT"} and "AAAUSDT" not in keys
    assert served.replace(["NEWUSDT", "BTCUSDT"]) is None and len(seen) == 1
    assert served.symbols == ("NEWUSDT", "BTCUSDT") and served.changes == 1


def test_a_carried_symbol_delisted_takes_all_its_streams() -> None:
    """A carried symbol that stops trading loses its ticker, trades, candles and book
    streams; listed again, it gets them back."""
    served = Served(["BTCUSDT", "ETHUSDT"], ["BTCUSDT"], trades=True, intervals=["1m"])
    change = served.replace(["ETHUSDT"])
    assert change is not None
    assert change.removed_keys == {"BTCUSDT", "BTCUSDT@trades", "BTCUSDT@kline_1m"}
    assert served.carried == ()
    back = served.replace(["ETHUSDT", "BTCUSDT"])
    assert back is not None and back.added_keys == change.removed_keys
    assert served.carried == ("BTCUSDT",)


def test_an_empty_listing_is_refused() -> None:
    """A server never serves nothing: an empty set raises and changes nothing."""
    served = Served(["BTCUSDT"])
    with pytest.raises(ValueError, match="at least one"):
        served.replace([])
    assert served.symbols == ("BTCUSDT",)
