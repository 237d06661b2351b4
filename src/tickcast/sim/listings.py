"""The simulated exchange's symbol universe, with no I/O: which symbols it lists, their
status, start price, tick and lot sizes, and its ``/api/v3/exchangeInfo`` answer.

``Listings.build(seed, named, count)`` lists the named symbols, then generated ones until
it holds ``count``: Binance's ten best known first (``DEFAULT_SYMBOLS``), then plausible
others across its quote assets (mostly USDT, then FDUSD, USDC, BTC, TRY, ...), a base
asset listed against several quotes at prices that agree, levels from 1e-8 to 1e5, about
1.5 % of them not ``TRADING``. The same seed lists the same symbols, and a longer list
starts with the shorter one. Each listing's level is what the market's random walk starts
from, so exchangeInfo's filters and the streams' prices agree.

At run time (the admin calls) a symbol can be listed or change status (``set_status``:
``BREAK`` or ``HALT`` delists it, its streams go quiet), and the next exchangeInfo answers
can be made bad on purpose (``set_info_mode``) for tests of a client's parsing: not JSON,
truncated, no symbols, a symbol name that is not ``[A-Z0-9]``, a symbol in non-ASCII text
(Binance lists some in Chinese characters, such as ``币安人生USDT``).

Prices are integer counts of 1e-8, as in ``market``.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Final

import orjson

from tickcast.messages.tick import DEFAULT_SYMBOLS

UNIT: Final = 10**8
# Enough for every market Binance lists (about 3,000 symbols) with room to spare; a bound
# keeps a typo such as --symbols 2000000 from taking minutes to start.
MAX_SYMBOLS: Final = 20_000

# Start price, tick size and lot size of the best known symbols: close to the real books,
# so that a dashboard looks plausible and the decimals in use are the ones users expect.
_LEVELS: Final[Mapping[str, tuple[str, str, str]]] = MappingProxyType(
    {
        "BTCUSDT": ("60000", "0.01", "0.00001"),
        "ETHUSDT": ("3000", "0.01", "0.0001"),
        "BNBUSDT": ("600", "0.01", "0.001"),
        "SOLUSDT": ("150", "0.01", "0.001"),
        "XRPUSDT": ("0.5", "0.0001", "0.1"),
        "ADAUSDT": ("0.45", "0.0001", "0.1"),
        "DOGEUSDT": ("0.12", "0.00001", "1"),
        "TRXUSDT": ("0.12", "0.00001", "0.1"),
        "LTCUSDT": ("80", "0.01", "0.001"),
        "LINKUSDT": ("15", "0.001", "0.01"),
    }
)

# Each quote asset's value in US dollars (to price one base asset consistently across its
# quotes and size trades in quote units) and its share of Binance's spot symbols, roughly.
QUOTE_USD: Final[Mapping[str, float]] = MappingProxyType(
    {
        "USDT": 1.0,
        "FDUSD": 1.0,
        "USDC": 1.0,
        "BTC": 60000.0,
        "TRY": 0.03,
        "ETH": 3000.0,
        "BNB": 600.0,
        "EUR": 1.08,
        "BRL": 0.18,
        "JPY": 0.0067,
    }
)
_QUOTE_WEIGHTS: Final = (45, 10, 10, 9, 9, 4, 4, 4, 3, 2)
# Longest first: FDUSD before USD-something, USDT before a three-letter one.
_QUOTES_BY_LENGTH: Final = tuple(sorted(QUOTE_USD, key=len, reverse=True))
_BASE_LENGTHS: Final = ((2, 3, 4, 5, 6, 7, 8), (3, 35, 35, 15, 6, 4, 2))
_CONSONANTS: Final = "BCDFGHJKLMNPRSTVWXZQY"
_VOWELS: Final = "AEIOU"
_MIN_PRICE: Final = 1  # 1e-8, the smallest price Binance prints
_MAX_PRICE: Final = 10**5 * UNIT
_NOT_TRADING_SHARE: Final = 0.015
# A generated pair is a base asset already listed against another quote this often.
_SECOND_QUOTE_SHARE: Final = 0.3
# Typical trade, in US dollars: sizes quantities in each quote's units.
_TRADE_USD: Final = 800.0


class Status(enum.Enum):
    """A symbol's trading status as exchangeInfo reports it; only ``TRADING`` streams."""

    TRADING = "TRADING"
    BREAK = "BREAK"
    HALT = "HALT"


class InfoMode(enum.Enum):
    """What the next exchangeInfo answers are: Binance's, or bad in one way."""

    NORMAL = "normal"
    NOT_JSON = "not_json"  # an HTML error page, status 200
    TRUNCATED = "truncated"  # the first half of the JSON document
    EMPTY = "empty"  # a valid answer listing no symbols
    BAD_NAME = "bad_name"  # every symbol, plus one named "BTC-USDT"
    NON_ASCII = "non_ascii"  # every symbol, plus one named "币安人生USDT"


_NOT_JSON_BODY: Final = b"<html><head><title>502 Bad Gateway</title></head><body>502</body></html>"
_ODD_NAMES: Final = {
    InfoMode.BAD_NAME: ("BTC-USDT", "BTC-"),
    InfoMode.NON_ASCII: ("币安人生USDT", "币安人生"),
}


@dataclass(frozen=True, slots=True)
class Listing:
    """One listed symbol: names, status, start price, tick and lot sizes (1e-8 units)."""

    symbol: str
    base: str
    quote: str
    price: int
    tick: int
    lot: int
    status: Status = Status.TRADING

    @property
    def trade_notional(self) -> float:
        """A typical trade's size in quote units (800 US dollars' worth)."""
        return _TRADE_USD / QUOTE_USD.get(self.quote, 1.0)


def split_symbol(symbol: str) -> tuple[str, str]:
    """Base and quote asset of an uppercase symbol; an unknown quote is its last 3 letters."""
    for quote in _QUOTES_BY_LENGTH:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-3], symbol[-3:]


def _pow10_units(exponent: int) -> int:
    return 10 ** (exponent + 8) if exponent >= -8 else 1


def _level(symbol: str, base_usd: float, price: float, digits: int) -> tuple[int, int, int]:
    """Price, tick and lot in units: the tick shows ``digits`` significant digits of the
    price (at most 0.01, at least 1e-8); the lot is worth a tenth of a dollar to a dollar,
    or is one whole coin of a cheaper one."""
    known = _LEVELS.get(symbol)
    if known is not None:
        start, tick, lot = (int(Decimal(text) * UNIT) for text in known)
        return start, tick, lot
    magnitude = math.floor(math.log10(price))
    tick = _pow10_units(min(-2, max(-8, magnitude - digits + 1)))
    lot = _pow10_units(min(0, max(-8, -math.floor(math.log10(base_usd)) - 1)))
    return max(tick, round(price * UNIT / tick) * tick), tick, lot


def derived_listing(seed: int, symbol: str, status: Status = Status.TRADING) -> Listing:
    """The listing of a symbol the generator did not make: a level drawn from the seed and
    its name, so that it is the same whenever it is asked for."""
    upper = symbol.upper()
    base, quote = split_symbol(upper)
    rng = random.Random(f"tickcast-sim-level:{seed}:{upper}")
    price = 10 ** rng.uniform(-2.0, 3.0)
    digits = rng.choice((4, 5, 6))
    level = _level(upper, price * QUOTE_USD.get(quote, 1.0), price, digits)
    return Listing(upper, base, quote, *level, status=status)


def generate_listings(seed: int) -> Iterator[Listing]:
    """Plausible listings without end, the same for the same seed: ``DEFAULT_SYMBOLS``
    first, then pairs across the quote assets. Names are ``[A-Z0-9]{2,20}`` and unique."""
    rng = random.Random(f"tickcast-sim-listings:{seed}")
    usd: dict[str, float] = {}  # base asset -> its price in dollars, in listing order
    names: set[str] = set()
    for symbol in DEFAULT_SYMBOLS:
        base, quote = split_symbol(symbol)
        listing = Listing(symbol, base, quote, *_level(symbol, 1.0, 1.0, 5))
        usd[base] = listing.price / UNIT
        names.add(symbol)
        yield listing
    usd.update({q: v for q, v in QUOTE_USD.items() if q in ("BTC", "ETH", "BNB")})
    bases, taken = list(usd), usd.keys() | QUOTE_USD.keys()
    quotes = tuple(QUOTE_USD)
    while True:
        quote = rng.choices(quotes, _QUOTE_WEIGHTS)[0]
        if rng.random() < _SECOND_QUOTE_SHARE:
            base = rng.choice(bases)
        else:
            base = _new_base(rng, taken)
            usd[base] = 10 ** rng.triangular(-6.5, 4.5, -0.5)
            bases.append(base)
            taken.add(base)
        symbol, price = base + quote, usd[base] / QUOTE_USD[quote]
        if base == quote or symbol in names or not _MIN_PRICE <= price * UNIT <= _MAX_PRICE:
            continue
        names.add(symbol)
        status = Status.BREAK if rng.random() < _NOT_TRADING_SHARE else Status.TRADING
        level = _level(symbol, usd[base], price, rng.choice((4, 5, 5, 6)))
        yield Listing(symbol, base, quote, *level, status=status)


def _new_base(rng: random.Random, taken: Set[str]) -> str:
    """A base asset name of 2-8 letters and digits that is not ``taken``: pronounceable,
    now and then with digits (``C98``) or a ``1000`` prefix (``1000SATS``)."""
    while True:
        length = rng.choices(*_BASE_LENGTHS)[0]
        letters = "".join(rng.choice(_VOWELS if i % 2 else _CONSONANTS) for i in range(length + 1))
        name = letters[rng.randint(0, 1) :][:length]
        roll = rng.random()
        if roll < 0.03 and length <= 4:
            name = "1000" + name
        elif roll < 0.1:
            name = name[: max(1, length - 2)] + str(rng.randint(1, 99))
        if name not in taken and not name.isdigit():
            return name


class Listings:
    """The symbols one exchange lists, by uppercase name, and its exchangeInfo answer.

    ``version`` counts changes, so that a holder of something derived from the listings
    (the exchange's stream plan, the cached answer) knows when to rebuild it.
    """

    def __init__(self, seed: int, listings: Iterable[Listing]) -> None:
        self._seed = seed
        self._by_symbol = {listing.symbol: listing for listing in listings}
        self.version = 0
        self._derived: tuple[int, tuple[str, ...], tuple[str, ...], bytes] | None = None
        self._mode = InfoMode.NORMAL
        self._mode_answers: int | None = None

    @classmethod
    def build(cls, seed: int, named: Iterable[str] = (), count: int = 0) -> Listings:
        """The named symbols (their levels derived from the seed and name, or the known
        ones), then generated symbols until there are ``count``."""
        listed: dict[str, Listing] = {}
        for name in named:
            upper = name.upper()
            listed.setdefault(upper, derived_listing(seed, upper))
        generated = generate_listings(seed)
        while len(listed) < count:
            listing = next(generated)
            listed.setdefault(listing.symbol, listing)
        return cls(seed, listed.values())

    def __len__(self) -> int:
        return len(self._by_symbol)

    def get(self, symbol: str) -> Listing | None:
        """The listing of ``symbol`` (any case), None if it is not listed."""
        return self._by_symbol.get(symbol.upper())

    def level(self, symbol: str) -> Listing:
        """The listing of ``symbol``, or the one it would have, for a symbol that is not
        listed but still gets data (any valid name does, see ``market``)."""
        return self.get(symbol) or derived_listing(self._seed, symbol)

    def streams(self, symbol: str) -> bool:
        """Whether ``symbol``'s streams carry data: not when listed and not trading."""
        listing = self._by_symbol.get(symbol.upper())
        return listing is None or listing.status is Status.TRADING

    @property
    def symbols(self) -> tuple[str, ...]:
        """Every listed symbol, lowercase, in listing order."""
        return self._cache()[0]

    @property
    def trading(self) -> tuple[str, ...]:
        """The listed symbols that are trading, lowercase, in listing order."""
        return self._cache()[1]

    def counts(self) -> dict[str, int]:
        """How many symbols are listed with each status."""
        counts = dict.fromkeys((s.value for s in Status), 0)
        for listing in self._by_symbol.values():
            counts[listing.status.value] += 1
        return counts

    def set_status(self, symbol: str, status: Status) -> tuple[Listing, bool]:
        """List ``symbol`` with ``status``, or give it that status; True if newly listed."""
        upper = symbol.upper()
        listing = self._by_symbol.get(upper)
        new = listing is None
        if listing is None:
            listing = derived_listing(self._seed, upper, status)
        listing = self._by_symbol[upper] = replace(listing, status=status)
        self.version += 1
        return listing, new

    @property
    def info_mode(self) -> InfoMode:
        """What the next exchangeInfo answer will be."""
        return self._mode

    def set_info_mode(self, mode: InfoMode, answers: int | None = None) -> None:
        """Make the next ``answers`` exchangeInfo answers (None: every one until the next
        change) be ``mode``'s."""
        if answers is not None and answers < 1:
            raise ValueError(f"answers must be >= 1, got {answers}")
        self._mode = mode
        self._mode_answers = None if mode is InfoMode.NORMAL else answers

    def exchange_info(self, now_ms: int, weight_limit: int) -> bytes:
        """The body of the next ``GET /api/v3/exchangeInfo`` answer. The symbols part is
        encoded once per change of the listings: 2,000 symbols are 1.5 MB of JSON."""
        mode = self._mode
        if self._mode_answers is not None:
            self._mode_answers -= 1
            if self._mode_answers == 0:
                self.set_info_mode(InfoMode.NORMAL)
        if mode is InfoMode.NOT_JSON:
            return _NOT_JSON_BODY
        symbols = b"[]" if mode is InfoMode.EMPTY else self._cache()[2]
        odd = _ODD_NAMES.get(mode)
        if odd is not None:
            name, base = odd
            listing = replace(derived_listing(self._seed, "ODDUSDT"), symbol=name, base=base)
            extra = orjson.dumps(_symbol_info(listing))
            symbols = symbols[:-1] + (b"," if len(symbols) > 2 else b"") + extra + b"]"
        body = orjson.dumps(
            {
                "timezone": "UTC",
                "serverTime": now_ms,
                "rateLimits": [
                    {
                        "rateLimitType": "REQUEST_WEIGHT",
                        "interval": "MINUTE",
                        "intervalNum": 1,
                        "limit": weight_limit,
                    }
                ],
                "exchangeFilters": [],
                "symbols": orjson.Fragment(symbols),
            }
        )
        return body[: len(body) // 2] if mode is InfoMode.TRUNCATED else body

    def _cache(self) -> tuple[tuple[str, ...], tuple[str, ...], bytes]:
        derived = self._derived
        if derived is None or derived[0] != self.version:
            listings = self._by_symbol.values()
            derived = self._derived = (
                self.version,
                tuple(s.lower() for s in self._by_symbol),
                tuple(x.symbol.lower() for x in listings if x.status is Status.TRADING),
                orjson.dumps([_symbol_info(x) for x in listings]),
            )
        return derived[1], derived[2], derived[3]


def _units_text(value: int) -> str:
    whole, frac = divmod(value, UNIT)
    return f"{whole}.{frac:08d}"


def _symbol_info(listing: Listing) -> dict[str, object]:
    """One item of exchangeInfo's ``symbols``, in Binance's shape (the fields a market-data
    client reads, and the price and lot filters)."""
    return {
        "symbol": listing.symbol,
        "status": listing.status.value,
        "baseAsset": listing.base,
        "baseAssetPrecision": 8,
        "quoteAsset": listing.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": _units_text(listing.tick),
                "maxPrice": "1000000.00000000",
                "tickSize": _units_text(listing.tick),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": _units_text(listing.lot),
                "maxQty": "9000000.00000000",
                "stepSize": _units_text(listing.lot),
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
    }
