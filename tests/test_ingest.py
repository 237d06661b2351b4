"""Ingest: dedupe, merge, sequencing, publishing."""

from __future__ import annotations

from tickcast.hub.memory import MemoryHub
from tickcast.ingest import Ingest
from tickcast.tick import Tick
from tickcast.upstream.normalize import Update


def ticker(symbol: str, order: int, price: str) -> Update:
    return Update(symbol, "ticker", order, order, {"last_price": price, "change_percent": "1"})


def make() -> tuple[Ingest, MemoryHub, list[Tick]]:
    hub = MemoryHub(history_size=10)
    seen: list[Tick] = []
    hub.subscribe(seen.append)
    return Ingest(hub, ["BTCUSDT", "ETHUSDT"]), hub, seen


def test_seq_increases_across_symbols() -> None:
    """Every published tick gets the next seq, whatever its symbol."""
    ingest, hub, seen = make()
    ingest.apply(ticker("BTCUSDT", 1, "1"), "sim")
    ingest.apply(ticker("ETHUSDT", 1, "2"), "sim")
    ingest.apply(ticker("BTCUSDT", 2, "3"), "sim")
    assert [t.seq for t in seen] == [1, 2, 3]
    latest = hub.latest("BTCUSDT")
    assert latest is not None
    assert latest.last_price == "3"


def test_duplicates_and_older_events_are_dropped() -> None:
    """The same event from two connections is published once; an older one never."""
    ingest, _hub, seen = make()
    for order in (5, 5, 4, 6, 6):
        ingest.apply(ticker("BTCUSDT", order, str(order)), "binance")
    assert [t.last_price for t in seen] == ["5", "6"]
    assert ingest.counts["duplicates"] == 3


def test_dedupe_is_per_source_and_kind() -> None:
    """Orders of different kinds or sources never shadow each other."""
    ingest, _hub, seen = make()
    ingest.apply(ticker("BTCUSDT", 100, "1"), "sim")
    ingest.apply(Update("BTCUSDT", "bookTicker", 3, 7, {"bid": "1", "ask": "2"}), "sim")
    ingest.apply(ticker("BTCUSDT", 50, "2"), "binance")
    assert len(seen) == 3


def test_forget_source_accepts_restarted_ids() -> None:
    """After forget_source, a source whose ids restarted is accepted again."""
    ingest, _hub, seen = make()
    ingest.apply(ticker("BTCUSDT", 100, "1"), "replay")
    ingest.forget_source("replay")
    ingest.apply(ticker("BTCUSDT", 1, "2"), "replay")
    assert [t.last_price for t in seen] == ["1", "2"]


def test_book_update_merges_into_the_latest_state() -> None:
    """A bookTicker update keeps the last price and changes bid/ask."""
    ingest, _hub, seen = make()
    ingest.apply(ticker("BTCUSDT", 1, "10"), "sim")
    ingest.apply(Update("BTCUSDT", "bookTicker", 1, 99, {"bid": "9.5", "ask": "10.5"}), "sim")
    last = seen[-1]
    assert (last.last_price, last.bid, last.ask, last.timestamp_ms) == ("10", "9.5", "10.5", 99)


def test_nothing_is_published_before_a_last_price() -> None:
    """A symbol's book updates are held until its first price, then merged into it."""
    ingest, _hub, seen = make()
    ingest.apply(Update("ETHUSDT", "bookTicker", 1, 5, {"bid": "1", "ask": "2"}), "sim")
    assert seen == []
    ingest.apply(ticker("ETHUSDT", 6, "1.5"), "sim")
    assert (seen[0].seq, seen[0].bid, seen[0].last_price) == (1, "1", "1.5")


def test_unserved_symbols_are_ignored() -> None:
    """Updates for symbols not configured are counted and dropped."""
    ingest, _hub, seen = make()
    assert ingest.apply(ticker("DOGEUSDT", 1, "1"), "sim") is None
    assert seen == []
    assert ingest.counts["ignored_symbol"] == 1
