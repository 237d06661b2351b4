"""The upstream's stream list, and trades and candles flowing from a real simulated
exchange process to the client's sink."""

from __future__ import annotations

import asyncio

from tickcast.settings import Settings
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.binance import BinanceClient, ClientOptions
from tickcast.upstream.normalize import KlineEvent, MarketEvent, TradeEvent
from tickcast.upstream.streams import settings_streams, shard, stream_names

from ..support import eventually, sim_exchange


def test_tickers_come_first_then_the_carried_symbols_trades_and_candles() -> None:
    """Every symbol gets its ticker; the carried ones add @aggTrade and one @kline_<i> per
    interval, lowercase symbols with the interval's case kept."""
    names = stream_names(
        ["BTCUSDT", "ETHUSDT"], True, carried=["ETHUSDT"], trades=True, intervals=["1m", "1M"]
    )
    assert names == [
        "btcusdt@ticker",
        "btcusdt@bookTicker",
        "ethusdt@ticker",
        "ethusdt@bookTicker",
        "ethusdt@aggTrade",
        "ethusdt@kline_1m",
        "ethusdt@kline_1M",
    ]


def test_without_carried_symbols_only_tickers_are_named() -> None:
    """No carried symbol, no trades and no candles: today's ticker streams alone."""
    assert stream_names(["BTCUSDT"], False, trades=True, intervals=["1m"]) == ["btcusdt@ticker"]


def test_settings_name_the_streams_of_their_kinds_and_symbols() -> None:
    """Settings choose the kinds, intervals and carried symbols."""
    settings = Settings(
        symbols=["BTCUSDT", "ETHUSDT"],
        stream_kinds=["klines"],
        stream_symbols=["BTCUSDT"],
        kline_intervals=["1m", "1h"],
    )
    assert settings_streams(settings) == [
        "btcusdt@ticker",
        "ethusdt@ticker",
        "btcusdt@kline_1m",
        "btcusdt@kline_1h",
    ]
    trades_only = Settings(symbols=["BTCUSDT"], stream_kinds=["trades"])
    assert settings_streams(trades_only) == ["btcusdt@ticker", "btcusdt@aggTrade"]


def test_trade_and_candle_streams_are_sharded_with_the_tickers() -> None:
    """Carried streams count toward a connection's 1024 like the tickers."""
    symbols = [f"S{i}USDT" for i in range(400)]
    names = stream_names(symbols, False, carried=symbols, trades=True, intervals=["1m"])
    assert [len(part) for part in shard(names)] == [1024, 176]


async def test_a_real_exchange_delivers_trades_and_candles_with_the_connections_history() -> None:
    """A client subscribed to @aggTrade and @kline_1s of a sim-exchange process hands
    TradeEvent and KlineEvent to its sink, stamped with their connection's history."""
    events: list[MarketEvent] = []
    with sim_exchange("--symbols", "BTCUSDT", "--rate", "5") as port:
        client = BinanceClient(
            f"ws://127.0.0.1:{port}",
            ["btcusdt@aggTrade", "btcusdt@kline_1s"],
            events.append,
            options=ClientOptions(backoff_initial=0.1, backoff_max=0.5),
        )
        task = asyncio.create_task(client.run())
        try:

            def both() -> bool:
                kinds = {type(e) for e in events}
                return {TradeEvent, KlineEvent} <= kinds

            await eventually(both, timeout=20)
        finally:
            await cancel_and_wait(task)
    assert {e.symbol for e in events} == {"BTCUSDT"}
    assert {e.interval for e in events if isinstance(e, KlineEvent)} == {"1s"}
    histories = {e.history for e in events}
    assert len(histories) == 1 and 0 not in histories
    assert client.errors == {}
