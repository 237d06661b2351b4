"""The simulated market: seeded random walks and Binance-shaped payloads, with no I/O.

Every price and quantity is held as an integer count of 1e-8 (Binance prints 8
decimals), so a payload never carries float noise and two runs with the same seed
print the same strings. One ``Market.step`` advances the chosen symbols once under a
single event time; the payload builders then read that state, so every stream kind of
a symbol reports the same trade, book and 24h statistics for that step.
"""

from __future__ import annotations

import enum
import math
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from tickcast.messages.stream import KLINE_INTERVALS, interval_ms
from tickcast.sim.book import OrderBook
from tickcast.sim.listings import Listing, Listings

UNIT: Final = 10**8
DAY_MS: Final = 86_400_000

# Per-second volatility of the walk and the pull back towards the start level, which
# keeps a simulator that runs for days from drifting to absurd prices.
_VOLATILITY_PER_SECOND: Final = 0.0003
_REVERSION: Final = 0.0005

_SYMBOL_RE: Final = re.compile(r"[a-z0-9]{2,20}")


class StreamKind(enum.Enum):
    """The stream kinds the simulator produces data for."""

    TICKER = "ticker"
    MINI_TICKER = "miniTicker"
    BOOK_TICKER = "bookTicker"
    TRADE = "trade"
    AGG_TRADE = "aggTrade"
    KLINE = "kline"
    ALL_MINI_TICKERS = "!miniTicker@arr"
    DEPTH = "depth"  # diffs: depthUpdate
    PARTIAL_DEPTH = "depthN"  # the top N levels: depth5, depth10, depth20


DEPTH_KINDS: Final = frozenset({StreamKind.DEPTH, StreamKind.PARTIAL_DEPTH})

# Binance's kline intervals but the month (it has no fixed length), with their lengths.
KLINE_INTERVALS_MS: Final[Mapping[str, int]] = MappingProxyType(
    {i: length for i in KLINE_INTERVALS if (length := interval_ms(i)) is not None}
)


_SYMBOL_KINDS: Final[Mapping[str, StreamKind]] = MappingProxyType(
    {
        k.value: k
        for k in StreamKind
        if k not in (StreamKind.ALL_MINI_TICKERS, StreamKind.KLINE) and k not in DEPTH_KINDS
    }
)
# The kinds a market step makes an event of (the others have their own clocks).
STEP_KINDS: Final = frozenset(
    {k for k in StreamKind if k is not StreamKind.KLINE and k not in DEPTH_KINDS}
)
# depth, depth@100ms, depth@1000ms; depth5|10|20 with the same speeds. A bare name is
# Binance's 1000 ms.
_DEPTH_RE: Final = re.compile(r"depth(5|10|20)?(?:@(100|1000)ms)?")
# python-binance asks for the "@1000ms" spelling; both name the same data.
_ALL_MINI_NAMES: Final = frozenset({"!miniTicker@arr", "!miniTicker@arr@1000ms"})


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What a stream name asks for: a kind and a lowercase symbol (None: all symbols);
    ``interval`` for a kline stream; ``speed_ms`` (100 or 1000) for a depth stream and
    ``levels`` for a partial one."""

    kind: StreamKind
    symbol: str | None
    interval: str | None = None
    speed_ms: int = 0
    levels: int = 0


def parse_stream(name: str) -> StreamSpec | None:
    """Map a subscribed stream name to the data it carries, or None for no data.

    None covers retired streams (``!ticker@arr``), kinds the simulator does not
    produce (the ``1M`` kline) and uppercase symbols, which Binance also accepts and
    then never feeds.
    """
    if name in _ALL_MINI_NAMES:
        return StreamSpec(StreamKind.ALL_MINI_TICKERS, None)
    symbol, sep, kind_name = name.partition("@")
    if not sep or _SYMBOL_RE.fullmatch(symbol) is None:
        return None
    if kind_name.startswith("kline_"):
        interval = kind_name.removeprefix("kline_")
        if interval not in KLINE_INTERVALS_MS:
            return None
        return StreamSpec(StreamKind.KLINE, symbol, interval)
    depth = _DEPTH_RE.fullmatch(kind_name)
    if depth is not None:
        levels, speed = depth.group(1), int(depth.group(2) or 1000)
        if levels is None:
            return StreamSpec(StreamKind.DEPTH, symbol, speed_ms=speed)
        return StreamSpec(StreamKind.PARTIAL_DEPTH, symbol, speed_ms=speed, levels=int(levels))
    kind = _SYMBOL_KINDS.get(kind_name)
    return None if kind is None else StreamSpec(kind, symbol)


def format_units(value: int) -> str:
    """Print an integer count of 1e-8 as Binance does: ``"60500.51000000"``."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), UNIT)
    return f"{sign}{whole}.{frac:08d}"


def format_percent(change: int, base: int) -> str:
    """Price change percent with Binance's three decimals, rounded half away from zero."""
    if base <= 0:
        return "0.000"
    thousandths = (2 * abs(change) * 100_000 + base) // (2 * base)
    sign = "-" if change < 0 and thousandths else ""
    whole, frac = divmod(thousandths, 1000)
    return f"{sign}{whole}.{frac:03d}"


@dataclass(frozen=True, slots=True)
class Carry:
    """Where a symbol's market stood, as decimal strings (the ticks last served): a
    simulator that takes over continues from here instead of its start level."""

    last: str
    open: str | None = None
    high: str | None = None
    low: str | None = None
    volume: str | None = None
    quote_volume: str | None = None


def _units(text: str) -> int:
    return int(Decimal(text) * UNIT)


@dataclass(slots=True)
class SymbolState:
    """The simulated book and 24h statistics of one symbol (prices in 1e-8 units)."""

    symbol: str
    rng: random.Random
    tick: int
    lot: int
    typical_lots: int
    anchor: float
    fair: float
    last: int
    last_qty: int
    bid: int
    bid_qty: int
    ask: int
    ask_qty: int
    open: int
    high: int
    low: int
    volume: int
    quote_volume: int
    first_trade_id: int
    trade_id: int
    agg_id: int
    update_id: int
    buyer_maker: bool

    @property
    def trades(self) -> int:
        return self.trade_id - self.first_trade_id + 1

    @property
    def weighted_average(self) -> int:
        return self.quote_volume * UNIT // self.volume if self.volume else self.last


def _new_symbol(seed: int, listing: Listing) -> SymbolState:
    """Seed a symbol's walk from the seed and its name, so symbols stay independent; it
    starts at its listing's level, on its tick and lot sizes."""
    upper = listing.symbol
    rng = random.Random(f"tickcast-sim:{seed}:{upper}")
    tick, lot, start_units = listing.tick, listing.lot, float(listing.price)
    lot_price = start_units * lot / UNIT / UNIT  # in quote units
    typical_lots = max(1, round(listing.trade_notional / lot_price))

    def quantize(price: float) -> int:
        return max(tick, round(price / tick) * tick)

    last = quantize(start_units)
    open_ = quantize(start_units * math.exp(rng.gauss(0.0, 0.02)))
    high = quantize(max(open_, last) * math.exp(abs(rng.gauss(0.0, 0.01))))
    low = quantize(min(open_, last) * math.exp(-abs(rng.gauss(0.0, 0.01))))
    trades = rng.randint(50_000, 2_000_000)
    volume = trades * typical_lots * lot
    first_trade_id = rng.randint(100_000_000, 4_000_000_000)
    return SymbolState(
        symbol=upper,
        rng=rng,
        tick=tick,
        lot=lot,
        typical_lots=typical_lots,
        anchor=start_units,
        fair=start_units,
        last=last,
        last_qty=typical_lots * lot,
        bid=last - tick,
        bid_qty=typical_lots * lot,
        ask=last,
        ask_qty=typical_lots * lot,
        open=open_,
        high=high,
        low=low,
        volume=volume,
        quote_volume=volume * ((open_ + last) // 2) // UNIT,
        first_trade_id=first_trade_id,
        trade_id=first_trade_id + trades - 1,
        agg_id=rng.randint(100_000_000, 3_000_000_000),
        update_id=rng.randint(1_000_000_000, 70_000_000_000),
        buyer_maker=False,
    )


class Market:
    """Every symbol's state plus the exchange clock; ``step`` advances a set of symbols.

    A symbol is created on first use at its listing's level (``listings``; a symbol that
    is not listed gets one from the seed and its name), so any syntactically valid symbol
    gets data; the walk only advances while someone is subscribed to it. Its full order
    book too is made on first use (``book``), as few symbols of thousands are asked for
    theirs; from then on the book's best levels are the symbol's bid and ask and its
    update id is the symbol's, after every trade and every churn.
    """

    def __init__(
        self, seed: int, listings: Listings | Iterable[str], steps_per_second: float
    ) -> None:
        self._seed = seed
        self._states: dict[str, SymbolState] = {}
        # Symbol names alone: listed with levels derived from the seed and the name.
        if not isinstance(listings, Listings):
            listings = Listings.build(seed, listings)
        self.listings = listings
        self._sigma = _VOLATILITY_PER_SECOND / math.sqrt(max(steps_per_second, 1e-6))
        self.event_time = 0
        self.stepped: tuple[SymbolState, ...] = ()
        self._trade_times: dict[str, int] = {}
        self._books: dict[str, OrderBook] = {}

    def state(self, symbol: str) -> SymbolState:
        """The state of a lowercase symbol, created from the seed on first use."""
        state = self._states.get(symbol)
        if state is None:
            state = self._states[symbol] = _new_symbol(self._seed, self.listings.level(symbol))
        return state

    @property
    def known_symbols(self) -> tuple[str, ...]:
        """The listed symbols, lowercase, whatever their status."""
        return self.listings.symbols

    def book(self, symbol: str) -> OrderBook:
        """The full order book of a lowercase symbol, built from the seed on first use
        around the symbol's bid and ask and at its update id."""
        book = self._books.get(symbol)
        if book is None:
            s = self.state(symbol)
            book = self._books[symbol] = OrderBook(
                tick=s.tick,
                lot=s.lot,
                typical_lots=s.typical_lots,
                bid=(s.bid, s.bid_qty),
                ask=(s.ask, s.ask_qty),
                update_id=s.update_id,
                rng=random.Random(f"tickcast-sim-book:{self._seed}:{s.symbol}"),
            )
        return book

    @property
    def book_symbols(self) -> tuple[str, ...]:
        """The lowercase symbols that have a book, in the order they got it."""
        return tuple(self._books)

    def churn(self, symbol: str) -> None:
        """One 100 ms of order flow on the symbol's book (see ``OrderBook.churn``)."""
        book = self.book(symbol)
        book.churn()
        _sync_top(self.state(symbol), book)

    def continue_from(self, carried: Mapping[str, Carry]) -> None:
        """Take up each symbol where ``carried`` says it stood: last price, 24h open, high
        and low, volumes. The walk goes on from there (and reverts towards there), so a
        chart never jumps back to the start level and volume never goes backwards."""
        for symbol, carry in carried.items():
            state = self.state(symbol.lower())
            _carry(state, carry)
            self._book_follows(state)

    def step(self, symbols: Iterable[str], now_ms: int) -> int:
        """Advance each symbol by one trade; return the step's event time.

        Event times strictly increase even when steps come faster than the clock
        (bursts), because clients dedupe by symbol and event time.
        """
        self.event_time = max(now_ms, self.event_time + 1)
        stepped = []
        for symbol in symbols:
            state = self.state(symbol)
            self._advance(state)
            stepped.append(state)
        self.stepped = tuple(stepped)
        return self.event_time

    def mark(self, symbols: Iterable[str], now_ms: int) -> int:
        """A step without a trade: a new event time for the ticker streams of ``symbols``,
        which report what the trades since the last one did (``--trade-rate``)."""
        self.event_time = max(now_ms, self.event_time + 1)
        self.stepped = tuple(self.state(symbol) for symbol in symbols)
        return self.event_time

    def trade(self, symbol: str, now_ms: int) -> tuple[SymbolState, int]:
        """One trade of ``symbol`` alone, and its time. Unlike ``step`` it leaves the
        ticker's event time alone, and trades of one millisecond share it, as Binance's
        do: a burst of 2,000 trades in a second stays within that second."""
        state = self.state(symbol)
        self._advance(state)
        time_ms = self._trade_times[symbol] = max(now_ms, self._trade_times.get(symbol, 0))
        return state, time_ms

    def _advance(self, s: SymbolState) -> None:
        rng = s.rng
        drift = -_REVERSION * math.log(s.fair / s.anchor)
        s.fair *= math.exp(drift + self._sigma * rng.gauss(0.0, 1.0))
        price = max(s.tick, round(s.fair / s.tick) * s.tick)
        qty = s.lot * max(1, round(rng.expovariate(1.0) * s.typical_lots))
        # A seller hitting the bid trades at the bid; a buyer lifting the ask at the ask.
        s.buyer_maker = price < s.last or (price == s.last and rng.random() < 0.5)
        spread = s.tick * (1 if rng.random() < 0.7 else 2)
        if s.buyer_maker:
            s.bid, s.ask = price, price + spread
        else:
            s.bid, s.ask = max(s.tick, price - spread), price
            if s.bid >= s.ask:
                s.ask = s.bid + s.tick
        s.bid_qty = s.lot * rng.randint(1, 20 * s.typical_lots)
        s.ask_qty = s.lot * rng.randint(1, 20 * s.typical_lots)
        s.last, s.last_qty = price, qty
        s.high = max(s.high, price)
        s.low = min(s.low, price)
        s.volume += qty
        s.quote_volume += price * qty // UNIT
        s.trade_id += 1
        s.agg_id += 1
        # Drawn whether or not the symbol has a book, so that its prices never depend on
        # whether someone asked for its depth; the book counts its own changes.
        jump = rng.randint(1, 40)
        if not self._book_follows(s):
            s.update_id += jump

    def _book_follows(self, s: SymbolState) -> bool:
        """Move the symbol's book (if it has one) to its new bid and ask."""
        book = self._books.get(s.symbol.lower())
        if book is None:
            return False
        book.set_top((s.bid, s.bid_qty), (s.ask, s.ask_qty))
        _sync_top(s, book)
        return True


def _sync_top(s: SymbolState, book: OrderBook) -> None:
    """The symbol's bid, ask and update id from its book, the one truth for them."""
    (s.bid, s.bid_qty), (s.ask, s.ask_qty) = book.best_bid, book.best_ask
    s.update_id = book.update_id


def _carry(s: SymbolState, carry: Carry) -> None:
    last = max(s.tick, round(_units(carry.last) / s.tick) * s.tick)
    s.last, s.fair, s.anchor = last, float(last), float(last)
    s.bid = max(s.tick, last - s.tick)
    s.ask = max(last, s.bid + s.tick)
    if carry.open is not None:
        s.open = max(s.tick, _units(carry.open))
    s.high = max(last, _units(carry.high)) if carry.high is not None else max(s.high, last)
    s.low = min(last, _units(carry.low)) if carry.low is not None else min(s.low, last)
    if carry.volume is not None:
        s.volume = _units(carry.volume)
    if carry.quote_volume is not None:
        s.quote_volume = _units(carry.quote_volume)


Payload = dict[str, object]


def ticker_payload(s: SymbolState, event_time: int, scale: int = 1) -> Payload:
    """``<symbol>@ticker`` (event ``24hrTicker``); ``scale`` 1000 gives microseconds."""
    change = s.last - s.open
    e = event_time * scale
    return {
        "e": "24hrTicker",
        "E": e,
        "s": s.symbol,
        "p": format_units(change),
        "P": format_percent(change, s.open),
        "w": format_units(s.weighted_average),
        "x": format_units(s.open),
        "c": format_units(s.last),
        "Q": format_units(s.last_qty),
        "b": format_units(s.bid),
        "B": format_units(s.bid_qty),
        "a": format_units(s.ask),
        "A": format_units(s.ask_qty),
        "o": format_units(s.open),
        "h": format_units(s.high),
        "l": format_units(s.low),
        "v": format_units(s.volume),
        "q": format_units(s.quote_volume),
        "O": e - DAY_MS * scale,
        "C": e,
        "F": s.first_trade_id,
        "L": s.trade_id,
        "n": s.trades,
    }


def mini_ticker_payload(s: SymbolState, event_time: int, scale: int = 1) -> Payload:
    """``<symbol>@miniTicker`` (event ``24hrMiniTicker``), also the ``!miniTicker@arr`` item."""
    return {
        "e": "24hrMiniTicker",
        "E": event_time * scale,
        "s": s.symbol,
        "c": format_units(s.last),
        "o": format_units(s.open),
        "h": format_units(s.high),
        "l": format_units(s.low),
        "v": format_units(s.volume),
        "q": format_units(s.quote_volume),
    }


def book_ticker_payload(s: SymbolState) -> Payload:
    """``<symbol>@bookTicker``: no ``e`` or ``E``, ordered by the update id ``u``."""
    return {
        "u": s.update_id,
        "s": s.symbol,
        "b": format_units(s.bid),
        "B": format_units(s.bid_qty),
        "a": format_units(s.ask),
        "A": format_units(s.ask_qty),
    }


def trade_payload(s: SymbolState, event_time: int, scale: int = 1) -> Payload:
    """``<symbol>@trade``: the step's single trade."""
    e = event_time * scale
    return {
        "e": "trade",
        "E": e,
        "s": s.symbol,
        "t": s.trade_id,
        "p": format_units(s.last),
        "q": format_units(s.last_qty),
        "T": e,
        "m": s.buyer_maker,
        "M": True,
    }


def agg_trade_payload(s: SymbolState, event_time: int, scale: int = 1) -> Payload:
    """``<symbol>@aggTrade``: one aggregate per step, covering that step's one trade."""
    e = event_time * scale
    return {
        "e": "aggTrade",
        "E": e,
        "s": s.symbol,
        "a": s.agg_id,
        "p": format_units(s.last),
        "q": format_units(s.last_qty),
        "f": s.trade_id,
        "l": s.trade_id,
        "T": e,
        "m": s.buyer_maker,
        "M": True,
    }


def build_payload(spec: StreamSpec, market: Market, scale: int = 1) -> Payload | list[Payload]:
    """The payload of ``spec`` for the market's latest step."""
    e = market.event_time
    if spec.kind is StreamKind.ALL_MINI_TICKERS:
        return [mini_ticker_payload(s, e, scale) for s in market.stepped]
    assert spec.symbol is not None
    s = market.state(spec.symbol)
    if spec.kind is StreamKind.TICKER:
        return ticker_payload(s, e, scale)
    if spec.kind is StreamKind.MINI_TICKER:
        return mini_ticker_payload(s, e, scale)
    if spec.kind is StreamKind.BOOK_TICKER:
        return book_ticker_payload(s)
    if spec.kind is StreamKind.TRADE:
        return trade_payload(s, e, scale)
    if spec.kind is StreamKind.AGG_TRADE:
        return agg_trade_payload(s, e, scale)
    raise ValueError(f"{spec.kind.value} events come from the candles, not a market step")


def server_shutdown_payload(event_time: int, scale: int = 1) -> Payload:
    """The ``serverShutdown`` event Binance sends before closing a connection."""
    return {"e": "serverShutdown", "E": event_time * scale}
