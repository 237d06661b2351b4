"""The simulated exchange's candles: the true aggregation of its own trades, no I/O.

Every trade the market makes goes into one ``CandleSeries`` per symbol and interval, so a
candle served over REST or a kline stream is exactly what the trade stream said: open the
first trade's price, close the last's, high and low their extremes, volumes their sums.
An interval with no trade is a flat candle at the previous close with zero volume, as
Binance serves it.

Before its first live trade a series reaches back ``backfill`` candles that never traded
here: generated from the seed, walking backwards from the first live price, so they join
the live candles without a seam (the newest generated candle closes where the first live
one opens). A fresh simulator therefore has a chart with history.

Prices and sizes are integer counts of 1e-8, as in ``market``. ``1M`` is not served: a
month has no fixed length.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from tickcast.sim.market import KLINE_INTERVALS_MS, UNIT, SymbolState, format_units

# Binance's weeks start on Monday; the epoch was a Thursday.
_WEEK_OFFSET_MS: Final = 4 * 86_400_000
# Per-candle volatility of the generated history, per square root of a minute.
_BACKFILL_VOLATILITY: Final = 0.0012


@dataclass(slots=True)
class Candle:
    """One candle; ``trades`` 0 means nothing traded in it (a flat candle)."""

    open_time: int
    close_time: int
    open: int
    high: int
    low: int
    close: int
    volume: int = 0
    quote_volume: int = 0
    trades: int = 0
    taker_buy_volume: int = 0
    taker_buy_quote: int = 0

    def add(self, price: int, qty: int, buyer_maker: bool) -> None:
        quote = price * qty // UNIT
        if self.trades == 0:  # the first trade opens the candle, whatever the last close
            self.open = self.high = self.low = price
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += qty
        self.quote_volume += quote
        self.trades += 1
        if not buyer_maker:  # the buyer took the offer: a taker buy
            self.taker_buy_volume += qty
            self.taker_buy_quote += quote

    def rest_row(self) -> list[object]:
        """The row of Binance's ``GET /api/v3/klines``."""
        return [
            self.open_time,
            format_units(self.open),
            format_units(self.high),
            format_units(self.low),
            format_units(self.close),
            format_units(self.volume),
            self.close_time,
            format_units(self.quote_volume),
            self.trades,
            format_units(self.taker_buy_volume),
            format_units(self.taker_buy_quote),
            "0",
        ]

    def stream_payload(
        self, symbol: str, interval: str, event_time: int, closed: bool, scale: int = 1
    ) -> dict[str, object]:
        """Binance's ``<symbol>@kline_<interval>`` event for this candle; ``scale`` 1000
        gives microseconds."""
        return {
            "e": "kline",
            "E": event_time * scale,
            "s": symbol,
            "k": {
                "t": self.open_time * scale,
                "T": self.close_time * scale,
                "s": symbol,
                "i": interval,
                "f": -1,
                "L": -1,
                "o": format_units(self.open),
                "c": format_units(self.close),
                "h": format_units(self.high),
                "l": format_units(self.low),
                "v": format_units(self.volume),
                "n": self.trades,
                "x": closed,
                "q": format_units(self.quote_volume),
                "V": format_units(self.taker_buy_volume),
                "Q": format_units(self.taker_buy_quote),
                "B": "0",
            },
        }


def open_time_of(time_ms: int, length_ms: int) -> int:
    """The open time of the candle of ``length_ms`` holding ``time_ms`` (UTC-aligned;
    weeks from Monday)."""
    offset = _WEEK_OFFSET_MS if length_ms == KLINE_INTERVALS_MS["1w"] else 0
    return (time_ms - offset) // length_ms * length_ms + offset


class CandleSeries:
    """The candles of one symbol at one interval: generated history, then live ones."""

    def __init__(self, length_ms: int, held: int, backfill: int, rng: random.Random) -> None:
        self.length_ms = length_ms
        self._closed: deque[Candle] = deque(maxlen=held)
        self.current: Candle | None = None
        self._backfill = backfill
        self._rng = rng
        self._tick = 1
        self._lot = 1
        self._generated: list[Candle] | None = None
        self._first_open_time: int | None = None
        self._first_price = 0

    def add_trade(self, time_ms: int, price: int, qty: int, buyer_maker: bool) -> None:
        """Put one trade into its candle, closing (and flat-filling) the ones it passed."""
        self.advance_to(time_ms)
        if self.current is None:
            self.open_flat(time_ms, price)
        assert self.current is not None
        self.current.add(price, qty, buyer_maker)

    def open_flat(self, time_ms: int, price: int) -> None:
        """Start the live series with an untraded candle at ``price`` (a symbol asked for
        before it ever traded); the generated history ends there."""
        if self.current is not None:
            return
        open_time = open_time_of(time_ms, self.length_ms)
        self.current = Candle(open_time, open_time + self.length_ms - 1, *([price] * 4))
        if self._first_open_time is None:
            self._first_open_time, self._first_price = open_time, price

    def set_steps(self, tick: int, lot: int) -> None:
        """The symbol's price and size steps, so generated candles sit on them."""
        self._tick, self._lot = max(1, tick), max(1, lot)

    def advance_to(self, time_ms: int) -> list[Candle]:
        """Close every candle that ended before ``time_ms``; returns them, oldest first.

        An interval that passed with no trade becomes a flat candle at the last close, so
        the series has no hole; at most ``held`` of them are made, however long the pause.
        """
        closed: list[Candle] = []
        current = self.current
        if current is None or time_ms <= current.close_time:
            return closed
        closed.append(current)
        last = current.close
        next_open = current.open_time + self.length_ms
        now_open = open_time_of(time_ms, self.length_ms)
        skipped = (now_open - next_open) // self.length_ms
        maxlen = self._closed.maxlen or 0
        if skipped > maxlen:
            next_open += (skipped - maxlen) * self.length_ms
        while next_open < now_open:
            closed.append(Candle(next_open, next_open + self.length_ms - 1, last, last, last, last))
            next_open += self.length_ms
        self._closed.extend(closed)
        self.current = Candle(now_open, now_open + self.length_ms - 1, last, last, last, last)
        return closed

    def closed_after(self, open_time: int) -> list[Candle]:
        """The held closed candles that opened after ``open_time``, oldest first."""
        out: list[Candle] = []
        for candle in reversed(self._closed):
            if candle.open_time <= open_time:
                break
            out.append(candle)
        out.reverse()
        return out

    def candles(
        self, limit: int, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[Candle]:
        """Binance's selection: from ``start_ms`` forwards, else the last ``limit`` up to
        ``end_ms`` (else up to now, the open candle included); oldest first."""
        everything = [*self._history(), *self._closed]
        if self.current is not None:
            everything.append(self.current)
        chosen = [
            c
            for c in everything
            if (start_ms is None or c.open_time >= start_ms)
            and (end_ms is None or c.open_time <= end_ms)
        ]
        return chosen[:limit] if start_ms is not None else chosen[-limit:]

    def _history(self) -> list[Candle]:
        """The generated candles before the first live one, kept only while they still
        join what is held (once the held live candles are trimmed, they would not)."""
        if self._first_open_time is None or self._backfill <= 0:
            return []
        if self._closed and self._closed[0].open_time != self._first_open_time:
            return []
        if self._generated is None:
            self._generated = self._generate()
        return self._generated

    def _generate(self) -> list[Candle]:
        assert self._first_open_time is not None
        sigma = _BACKFILL_VOLATILITY * math.sqrt(self.length_ms / 60_000)
        tick, rng = self._tick, self._rng
        out: list[Candle] = []
        close = self._first_price  # the newest generated candle closes where live opens
        open_time = self._first_open_time
        for _ in range(self._backfill):
            open_time -= self.length_ms
            open_ = _on_tick(close * math.exp(rng.gauss(0.0, sigma)), tick)
            wick = abs(rng.gauss(0.0, sigma / 2))
            high = _on_tick(max(open_, close) * math.exp(wick), tick)
            low = _on_tick(min(open_, close) * math.exp(-abs(rng.gauss(0.0, sigma / 2))), tick)
            trades = rng.randint(20, 400)
            volume = trades * rng.randint(1, 50) * self._lot
            candle = Candle(open_time, open_time + self.length_ms - 1, open_, high, low, close)
            candle.volume = volume
            candle.quote_volume = volume * ((open_ + close) // 2) // UNIT
            candle.trades = trades
            candle.taker_buy_volume = volume // 2
            candle.taker_buy_quote = candle.quote_volume // 2
            out.append(candle)
            close = open_
        out.reverse()
        return out


def _on_tick(price: float, tick: int) -> int:
    return max(tick, round(price / tick) * tick)


class CandleBook:
    """Every symbol's series at every interval, fed with the market's trades."""

    def __init__(self, seed: int, held: int = 5000, backfill: int = 1000) -> None:
        self._seed = seed
        self._held = held
        self._backfill = backfill
        self._series: dict[tuple[str, str], CandleSeries] = {}

    def record(self, stepped: Iterable[SymbolState], time_ms: int) -> None:
        """Each stepped symbol's trade (its ``last``, ``last_qty``, ``buyer_maker``)."""
        for state in stepped:
            for interval in KLINE_INTERVALS_MS:
                series = self.series(state.symbol, interval, state.tick, state.lot)
                series.add_trade(time_ms, state.last, state.last_qty, state.buyer_maker)

    def series(self, symbol: str, interval: str, tick: int = 1, lot: int = 1) -> CandleSeries:
        """The series of an uppercase ``symbol`` at ``interval`` (made on first use)."""
        key = (symbol, interval)
        series = self._series.get(key)
        if series is None:
            rng = random.Random(f"tickcast-sim-klines:{self._seed}:{symbol}:{interval}")
            length = KLINE_INTERVALS_MS[interval]
            series = self._series[key] = CandleSeries(length, self._held, self._backfill, rng)
            series.set_steps(tick, lot)
        return series
