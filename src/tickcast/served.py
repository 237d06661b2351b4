"""The symbols served now, and the key of every stream they make (SPEC §12).

A list of names in ``TICKCAST_SYMBOLS`` fixes them. With ``*`` (every market) they are
the exchange's listing, which changes while the server runs: a new symbol is listed, one
stops trading. Every stage reads this one object, so they agree on what is served: the
ingest drops what is not, the upstream subscribes what is, the edge and REST answer for
it. ``keys`` and ``symbol_set`` are the same set objects for the object's life, updated in
place, so a holder of either always sees the current set without being told.

Trades, candles and books are carried for a fixed list of symbols (``carried``, from
``TICKCAST_STREAM_SYMBOLS`` or the named symbols): their streams are served while the
symbol is, never opened for every listed symbol by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tickcast.hooks import Hooks
from tickcast.messages.stream import served_keys
from tickcast.settings import Settings


@dataclass(frozen=True, slots=True)
class ServedChange:
    """What one new listing changed: symbols and stream keys added and removed."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    added_keys: frozenset[str]
    removed_keys: frozenset[str]


class Served:
    """The served symbols in order, their set, and the keys of every served stream."""

    def __init__(
        self,
        symbols: Sequence[str],
        carried: Sequence[str] = (),
        *,
        trades: bool = False,
        intervals: Sequence[str] = (),
        books: bool = False,
    ) -> None:
        self._carried = tuple(carried)
        self._trades = trades
        self._intervals = tuple(intervals)
        self._books = books
        self.symbols: tuple[str, ...] = tuple(dict.fromkeys(symbols))
        self.symbol_set: set[str] = set(self.symbols)
        self.keys: set[str] = set(self._keys_of(self.symbols))
        # How many listings changed the set since start (``/status``).
        self.changes = 0
        self._hooks: Hooks[ServedChange] = Hooks("served-symbols listener")

    @classmethod
    def of(cls, settings: Settings) -> Served:
        """What ``settings`` serve at start: the named symbols (with ``*``, until the
        exchange's listing is known)."""
        return cls(
            settings.named_symbols,
            settings.carried_symbols,
            trades=settings.carries_trades,
            intervals=settings.carried_intervals,
            books=settings.carries_books,
        )

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.symbol_set

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def carried(self) -> tuple[str, ...]:
        """The carried symbols that are served now."""
        return tuple(s for s in self._carried if s in self.symbol_set)

    def on_change(self, listener: Callable[[ServedChange], None]) -> Callable[[], None]:
        """Call ``listener`` after each change of the set; returns the remover."""
        return self._hooks.add(listener)

    def replace(self, symbols: Iterable[str]) -> ServedChange | None:
        """Serve ``symbols`` (in their order) from now on; the change, None when the set
        is the one served (a new order alone is taken silently)."""
        ordered = tuple(dict.fromkeys(symbols))
        if not ordered:
            raise ValueError("a server serves at least one symbol")
        wanted = set(ordered)
        if wanted == self.symbol_set:
            self.symbols = ordered
            return None
        keys = self._keys_of(ordered)
        change = ServedChange(
            added=tuple(s for s in ordered if s not in self.symbol_set),
            removed=tuple(s for s in self.symbols if s not in wanted),
            added_keys=frozenset(keys - self.keys),
            removed_keys=frozenset(self.keys - keys),
        )
        self.symbols = ordered
        self.symbol_set.intersection_update(wanted)
        self.symbol_set.update(ordered)
        self.keys.difference_update(change.removed_keys)
        self.keys.update(change.added_keys)
        self.changes += 1
        self._hooks(change)
        return change

    def _keys_of(self, symbols: Sequence[str]) -> frozenset[str]:
        listed = set(symbols)
        carried = [s for s in self._carried if s in listed]
        return served_keys(symbols, carried, self._trades, self._intervals, books=self._books)
