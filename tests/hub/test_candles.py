"""CandleHistory: the stream's candles joined to the REST history at the first live one,
a series restarted by a change of source, bounded, and read like Binance's klines."""

from __future__ import annotations

from tickcast.hub.candles import CandleHistory
from tickcast.messages.kline import Kline
from tickcast.messages.stream import interval_ms
from tickcast.messages.tick import SourceLabel

MINUTE = 60_000
T0 = 1_700_000_100_000  # a minute boundary, and a five minutes' one


def kline(
    minute: int,
    *,
    seq: int = 0,
    close: str = "2",
    closed: bool = True,
    source: SourceLabel = "binance",
    symbol: str = "BTCUSDT",
    interval: str = "1m",
) -> Kline:
    """The candle opened ``minute`` minutes after T0 (negative: before it)."""
    open_time = T0 + minute * MINUTE
    length = interval_ms(interval) or MINUTE
    return Kline(symbol=symbol, interval=interval, open_time=open_time,
                 close_time=open_time + length - 1, open="2", high="9", low="1", close=close,
                 volume="3", quote_volume="6", trades=4, closed=closed, seq=seq,
                 source=source)  # fmt: skip


def minutes(candles: list[Kline]) -> list[int]:
    return [(k.open_time - T0) // MINUTE for k in candles]


def test_the_first_live_candle_starts_a_series_and_asks_for_its_history() -> None:
    """The first candle of a series is ``first``; the next ones are ``held``."""
    history = CandleHistory(limit=100)
    assert history.first_live("BTCUSDT", "1m") is None
    assert history.add(kline(0, closed=False, seq=1)) == "first"
    assert history.add(kline(0, seq=2)) == "held"
    assert history.add(kline(1, closed=False, seq=3)) == "held"
    assert history.first_live("BTCUSDT", "1m") == ("binance", T0)
    assert history.add(kline(0, interval="5m")) == "first"  # another series
    assert history.add(kline(0, symbol="ETHUSDT")) == "first"


def test_the_rest_history_ends_at_the_first_live_candle() -> None:
    """The REST history fills the candles before the first live one; its version of the
    first live candle (older than the stream's), and anything after, are ignored: one
    candle per open time, the stream's where both have it."""
    history = CandleHistory(limit=100)
    history.add(kline(0, closed=False, close="5", seq=10))
    history.add(kline(1, closed=False, seq=11))
    rest = [kline(m, close="3") for m in range(-3, 2)]  # -3 .. 1, overlapping the stream
    assert history.fill("BTCUSDT", "1m", rest) == 3
    got = history.candles("BTCUSDT", "1m", 100)
    assert minutes(got) == [-3, -2, -1, 0, 1]
    assert (got[3].seq, got[3].close, got[4].seq) == (10, "5", 11)
    assert history.filled("BTCUSDT", "1m")
    assert len(history) == 5


def test_a_live_update_after_the_fill_replaces_its_candle() -> None:
    """The stream keeps updating its candles after the fill, without duplicating them."""
    history = CandleHistory(limit=100)
    history.add(kline(0, closed=False, seq=1))
    history.fill("BTCUSDT", "1m", [kline(-1)])
    history.add(kline(0, close="7", seq=2))
    got = history.candles("BTCUSDT", "1m", 100)
    assert minutes(got) == [-1, 0]
    assert (got[1].close, got[1].closed) == ("7", True)


def test_a_fill_before_any_live_candle_does_nothing() -> None:
    """Without a live candle there is no seam to end at: the REST history is not kept."""
    history = CandleHistory(limit=100)
    assert history.fill("BTCUSDT", "1m", [kline(m) for m in range(-3, 0)]) == 0
    assert history.candles("BTCUSDT", "1m", 100) == []
    assert not history.filled("BTCUSDT", "1m")
    assert len(history) == 0
    assert history.add(kline(0, seq=1)) == "first"


def test_a_fill_of_another_source_is_ignored() -> None:
    """REST candles of a source other than the series' are not mixed into it."""
    history = CandleHistory(limit=100)
    history.add(kline(0, source="sim", seq=1))
    assert history.fill("BTCUSDT", "1m", [kline(-2), kline(-1)]) == 0
    assert minutes(history.candles("BTCUSDT", "1m", 100)) == [0]


def test_a_change_of_source_restarts_the_series() -> None:
    """A candle from another source starts the series over: the old candles, REST ones
    included, are gone, and its own history is to be fetched."""
    history = CandleHistory(limit=100)
    history.add(kline(0, source="binance", seq=1))
    history.fill("BTCUSDT", "1m", [kline(-2), kline(-1)])
    assert history.add(kline(1, source="sim", seq=2)) == "first"
    assert minutes(history.candles("BTCUSDT", "1m", 100)) == [1]
    assert history.first_live("BTCUSDT", "1m") == ("sim", T0 + MINUTE)
    assert not history.filled("BTCUSDT", "1m")
    assert history.fill("BTCUSDT", "1m", [kline(0, source="sim"), kline(1, source="sim")]) == 1
    assert minutes(history.candles("BTCUSDT", "1m", 100)) == [0, 1]
    assert history.add(kline(2, source="binance", seq=3)) == "first"  # and back again


def test_a_late_fill_of_the_old_source_leaves_the_new_series_unfilled() -> None:
    """REST history fetched for a series that a change of source has since restarted is
    not the new series' history: the new series still waits for its own."""
    history = CandleHistory(limit=100)
    history.add(kline(0, source="binance", seq=1))
    history.add(kline(1, source="sim", seq=2))
    history.fill("BTCUSDT", "1m", [kline(-1, source="binance")])
    assert not history.filled("BTCUSDT", "1m")


def test_the_limit_evicts_the_oldest_candles() -> None:
    """At most ``limit`` candles per series, the newest kept, live or from REST."""
    history = CandleHistory(limit=3)
    for minute in range(5):
        history.add(kline(minute, seq=minute + 1))
    assert minutes(history.candles("BTCUSDT", "1m", 100)) == [2, 3, 4]
    assert len(history) == 3
    other = CandleHistory(limit=3)
    other.add(kline(0, seq=1))
    other.fill("BTCUSDT", "1m", [kline(m) for m in range(-5, 0)])
    assert minutes(other.candles("BTCUSDT", "1m", 100)) == [-2, -1, 0]


def test_a_fill_counts_only_the_candles_it_kept() -> None:
    """A fill returns how many of its candles the series holds: none into a series at its
    limit, only the newest that fit into one with room."""
    history = CandleHistory(limit=2)
    history.add(kline(0, seq=1))
    history.add(kline(1, seq=2))
    assert history.fill("BTCUSDT", "1m", [kline(-2), kline(-1)]) == 0
    assert minutes(history.candles("BTCUSDT", "1m", 100)) == [0, 1]
    roomy = CandleHistory(limit=3)
    roomy.add(kline(0, seq=1))
    assert roomy.fill("BTCUSDT", "1m", [kline(m) for m in range(-5, 0)]) == 2


def filled_history() -> CandleHistory:
    """Candles at minutes 0 .. 9."""
    history = CandleHistory(limit=100)
    history.add(kline(5, seq=1))
    for minute in range(6, 10):
        history.add(kline(minute, seq=minute))
    history.fill("BTCUSDT", "1m", [kline(m) for m in range(5)])
    return history


def test_candles_without_times_are_the_last_limit() -> None:
    """With neither start nor end, the newest ``limit`` candles, oldest first."""
    history = filled_history()
    assert minutes(history.candles("BTCUSDT", "1m", 3)) == [7, 8, 9]
    assert minutes(history.candles("BTCUSDT", "1m", 500)) == list(range(10))


def test_candles_with_a_start_are_the_first_limit_from_it() -> None:
    """With ``start_ms``, the first ``limit`` candles opened at or after it (Binance)."""
    history = filled_history()
    start = T0 + 3 * MINUTE
    assert minutes(history.candles("BTCUSDT", "1m", 2, start_ms=start)) == [3, 4]
    assert minutes(history.candles("BTCUSDT", "1m", 2, start_ms=start + 1)) == [4, 5]
    assert minutes(history.candles("BTCUSDT", "1m", 100, start_ms=start)) == list(range(3, 10))


def test_candles_with_an_end_are_the_last_limit_up_to_it() -> None:
    """With only ``end_ms``, the last ``limit`` candles opened at or before it."""
    history = filled_history()
    end = T0 + 6 * MINUTE
    assert minutes(history.candles("BTCUSDT", "1m", 2, end_ms=end)) == [5, 6]
    assert minutes(history.candles("BTCUSDT", "1m", 2, end_ms=end - 1)) == [4, 5]


def test_candles_with_start_and_end_are_the_first_limit_within_them() -> None:
    """With both, the first ``limit`` candles opened within ``[start_ms, end_ms]``."""
    history = filled_history()
    start, end = T0 + 2 * MINUTE, T0 + 7 * MINUTE
    assert minutes(history.candles("BTCUSDT", "1m", 3, start, end)) == [2, 3, 4]
    assert minutes(history.candles("BTCUSDT", "1m", 100, start, end)) == [2, 3, 4, 5, 6, 7]
    assert history.candles("BTCUSDT", "1m", 100, end, start) == []


def test_candles_of_nothing_are_empty() -> None:
    """An unknown series, a non-positive limit or a window with no candle: no candles."""
    history = filled_history()
    assert history.candles("ETHUSDT", "1m", 10) == []
    assert history.candles("BTCUSDT", "5m", 10) == []
    assert history.candles("BTCUSDT", "1m", 0) == []
    assert history.candles("BTCUSDT", "1m", -1) == []
    assert history.candles("BTCUSDT", "1m", 10, start_ms=T0 + 10 * MINUTE) == []
    assert history.candles("BTCUSDT", "1m", 10, end_ms=T0 - 1) == []
