"""Values as ``tickcast tail`` shows them: exact decimals from JSON numbers, prices with
their symbol's decimals, signed percentages, compact volumes, timestamps, ages and
sparklines. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Final

SPARK_BARS: Final = "▁▂▃▄▅▆▇█"
MISSING: Final = "\N{EN DASH}"  # a value the server has not sent yet
# The fields of a tick that are prices, quoted at the symbol's tick size.
PRICE_FIELDS: Final = ("last_price", "open", "high", "low", "bid", "ask")


def to_decimal(value: object) -> Decimal | None:
    """The exact decimal of a JSON number or decimal string; None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float | str):
        try:
            # str() of a float is its shortest round-trip form: the digits the server sent.
            number = Decimal(str(value))
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def _given_places(number: Decimal) -> int:
    exponent = number.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _price_floor(number: Decimal) -> int:
    # Fewer decimals than this look wrong for a price: 2, or 4 below 1.
    return 2 if abs(number) >= 1 else 4


def decimal_text(
    number: Decimal | None, *, grouping: bool, missing: str, places: int | None = None
) -> str:
    """``number`` with ``places`` decimals (a symbol's, see ``PriceDecimals``), or with
    every digit given and at least 2 decimals (4 below 1); None: ``missing``."""
    if number is None:
        return missing
    if places is None:
        places = max(_price_floor(number), _given_places(number))
    return f"{number:{',' if grouping else ''}.{places}f}"


def format_price(value: object, places: int | None = None) -> str:
    """A price with grouping, at ``places`` decimals when given (see ``decimal_text``)."""
    return decimal_text(to_decimal(value), grouping=True, missing=MISSING, places=places)


def format_spread(bid: Decimal | None, ask: Decimal | None, places: int | None = None) -> str:
    """Ask minus bid at the prices' ``places``, else with the digits of the prices
    themselves: ``0.01``, not ``0.0100``."""
    if bid is None or ask is None:
        return MISSING
    return f"{ask - bid:,f}" if places is None else f"{ask - bid:,.{places}f}"


class PriceDecimals:
    """How many decimals each symbol's prices are shown with, so a column keeps its width.

    The most any price of the symbol has had: the server trims trailing zeros, so
    ``14.96`` is ``14.960`` of a symbol quoted to 0.001, and the six prices of a tick
    (last, open, high, low, bid, ask) show the symbol's decimals from its first tick all
    but surely. At least 2 (4 while the last price is below 1). It grows, never shrinks.
    """

    def __init__(self) -> None:
        self._places: dict[str, int] = {}

    def learn(self, symbol: str, tick: Mapping[str, object]) -> int | None:
        """Fold in the prices of one tick of ``symbol``; its decimals from now on."""
        for name in PRICE_FIELDS:
            number = to_decimal(tick.get(name))
            if number is not None:
                places = _given_places(number)
                if name == "last_price":
                    places = max(places, _price_floor(number))
                self._places[symbol] = max(self._places.get(symbol, 0), places)
        return self._places.get(symbol)

    def learn_prices(self, symbol: str, prices: Iterable[object]) -> int | None:
        """Fold in prices of ``symbol`` from a trade or a candle; its decimals from now on."""
        for value in prices:
            number = to_decimal(value)
            if number is not None:
                places = max(_given_places(number), _price_floor(number))
                self._places[symbol] = max(self._places.get(symbol, 0), places)
        return self._places.get(symbol)

    def of(self, symbol: str) -> int | None:
        """The decimals of ``symbol``'s prices; None before any of them arrived."""
        return self._places.get(symbol)


def format_percent(value: object) -> str:
    """A signed percentage with 2 decimals: ``+1.25%``."""
    number = to_decimal(value)
    if number is None:
        return MISSING
    return f"{number:+,.2f}%"


_COMPACT_UNITS: Final = (
    (Decimal(10) ** 12, "T"),
    (Decimal(10) ** 9, "B"),
    (Decimal(10) ** 6, "M"),
    (Decimal(10) ** 3, "K"),
)


def format_volume(value: object) -> str:
    """A volume in compact form: ``12.35K``, ``745.00M``."""
    number = to_decimal(value)
    if number is None:
        return MISSING
    for scale, unit in _COMPACT_UNITS:
        if abs(number) >= scale:
            return f"{number / scale:,.2f}{unit}"
    return f"{number:,.2f}"


def exact_text(value: object, missing: str = "-") -> str:
    """A JSON number with exactly the digits it came with, no grouping, no exponent:
    ``0.00012``, ``60500.5``; ``missing`` for anything that is not a number."""
    number = to_decimal(value)
    return missing if number is None else f"{number:f}"


def _moment(value: object) -> datetime | None:
    number = to_decimal(value)
    if number is None:
        return None
    try:
        return datetime.fromtimestamp(float(number) / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def format_clock(value: object, *, millis: bool = True, date: bool = False) -> str:
    """Unix milliseconds as a UTC time of day: ``17:30:01.123`` (``millis``), ``17:30:01``;
    with ``date``, ``2026-12-07 17:30:01``."""
    moment = _moment(value)
    if moment is None:
        return MISSING
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}" if millis else text


def format_timestamp(value: object) -> str:
    """Unix milliseconds as UTC ISO 8601 with milliseconds: ``2026-11-28T12:00:00.123Z``."""
    moment = _moment(value)
    if moment is None:
        return "-"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_instant(value: object) -> str:
    """Unix milliseconds as UTC ISO 8601 in whole seconds: ``2026-12-07T17:30:00Z`` (a
    candle's open time, always on a whole second)."""
    moment = _moment(value)
    return "-" if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_age(timestamp_ms: object, now_ms: float) -> str:
    """How old a tick is: ``0.4s``, ``12s``, ``3m``, ``2h`` (a clock ahead of ours: 0)."""
    stamp = to_decimal(timestamp_ms)
    if stamp is None:
        return MISSING
    seconds = max(0.0, (now_ms - float(stamp)) / 1000)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    return f"{seconds // 3600:.0f}h"


def sparkline(prices: Iterable[Decimal]) -> str:
    """Recent prices as a row of block characters, lowest ▁ to highest █."""
    values = list(prices)
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    if low == high:
        return SPARK_BARS[len(SPARK_BARS) // 2 - 1] * len(values)
    top = len(SPARK_BARS) - 1
    return "".join(SPARK_BARS[round((v - low) / (high - low) * top)] for v in values)
