"""``tickcast bench --streams trades``: the trade counting core, the raw baseline's trade
message, the config's checks and the summary by plain calls, then one short real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tickcast.bench.config import BenchConfig
from tickcast.bench.histogram import UNITS_PER_MS
from tickcast.bench.report import Measurements, summarize
from tickcast.bench.scan import NEVER_MS, Tally
from tickcast.bench.table import format_table
from tickcast.bench.tradescan import TradeCounts, TradeLedger, TradeScanner
from tickcast.bench.upstream import trade_message, wanted_streams
from tickcast.edge.wire import ws_text_frame
from tickcast.messages.trade import Trade

T0 = 1_700_000_000_000  # a window start, in exchange ms


def trade(trade_id: int, stamp: int = T0, seq: int | None = None) -> bytes:
    return Trade(
        symbol="BTCUSDT", trade_id=trade_id, price="60500.5", qty="0.012", side="buy",
        timestamp_ms=stamp, seq=seq if seq is not None else trade_id + 1000, source="sim",
    ).encode()  # fmt: skip


def gap(missed: int) -> bytes:
    return orjson.dumps({"type": "gap", "stream": "BTCUSDT@trades", "missed": missed})


def frames(*messages: bytes) -> bytes:
    return b"".join(ws_text_frame(message) for message in messages)


def scan(data: bytes, start: int = T0) -> tuple[TradeScanner, TradeLedger]:
    scanner = TradeScanner(start, NEVER_MS)
    ledger = scanner.new_ledger()
    scanner.feed(ledger, data, T0 * UNITS_PER_MS)
    return scanner, ledger


def test_consecutive_trades_are_counted_once_with_no_hole() -> None:
    """Ids 100..109 in one chunk: ten in-window trades, no duplicate, no hole."""
    scanner, ledger = scan(frames(*(trade(i) for i in range(100, 110))))
    assert scanner.deliveries == 10 and ledger.events(b"BTCUSDT") == 10
    assert (ledger.duplicates, ledger.holes, ledger.gap_messages) == (0, 0, 0)
    assert ledger.tail == b""


def test_a_repeated_id_is_a_duplicate_and_a_jump_is_a_hole() -> None:
    """101 twice is one duplicate; 101 -> 105 skips three ids: a hole of 3, unannounced."""
    _, ledger = scan(frames(trade(100), trade(101), trade(101), trade(105)))
    assert ledger.duplicates == 1
    assert ledger.holes == 3 and ledger.unannounced == 3
    assert ledger.deliveries == 3


def test_a_gap_message_announces_the_ids_a_hole_skips() -> None:
    """Trades, ``gap`` with missed 40, then live trades 40 ids on: the hole is announced."""
    _, ledger = scan(frames(trade(100), trade(101), gap(40), trade(142), trade(143)))
    assert (ledger.gap_messages, ledger.missed, ledger.holes) == (1, 40, 40)
    assert ledger.unannounced == 0 and ledger.deliveries == 4


def test_an_announcement_short_of_the_hole_leaves_the_rest_unannounced() -> None:
    _, ledger = scan(frames(trade(1), gap(5), trade(12)))
    assert ledger.holes == 10 and ledger.missed == 5 and ledger.unannounced == 5


def test_split_at_every_byte_counts_the_same() -> None:
    """Trades and a gap message cut into two reads at any offset count the same: the
    unfinished message waits for the next read, a truncated id or count is never taken."""
    stream = frames(trade(7), trade(8), gap(1234), trade(1243), trade(1244, seq=99_999))
    for cut in range(len(stream) + 1):
        scanner = TradeScanner(T0, NEVER_MS)
        ledger = scanner.new_ledger()
        scanner.feed(ledger, stream[:cut], 0)
        scanner.feed(ledger, stream[cut:], 0)
        assert ledger.deliveries == 4, cut
        assert (ledger.missed, ledger.holes, ledger.duplicates) == (1234, 1234, 0), cut


def test_only_the_window_counts_and_latency_is_from_the_trade_time() -> None:
    """A trade before the window advances the id (no hole after it) but is not counted;
    an in-window trade received 25 ms after its time is a 25 ms sample."""
    scanner = TradeScanner(T0, T0 + 1000)
    ledger = scanner.new_ledger()
    data = frames(trade(1, T0 - 5), trade(2, T0), trade(3, T0 + 1000))
    assert scanner.feed(ledger, data, (T0 + 25) * UNITS_PER_MS) == 1
    assert ledger.holes == 0 and ledger.messages == 3
    assert scanner.histogram.percentile_ms(0.5) == 25.0


def test_gaps_against_the_exchange_count_catch_a_loss_at_the_end() -> None:
    """A trade lost after the last one received leaves no hole; the exchange's count for
    the window still shows it missing."""
    _, ledger = scan(frames(trade(1), trade(2)))
    assert ledger.holes == 0
    assert ledger.gaps({b"BTCUSDT": 3}) == (1, 0)


def test_counts_add_up_over_clients() -> None:
    """TradeCounts: totals, and how many clients had gap messages or unannounced losses;
    scan.Tally adds up trade ledgers as it does tick ledgers."""
    announced = scan(frames(trade(1), gap(3), trade(5)))[1]
    silent = scan(frames(trade(1), trade(5)))[1]
    clean = scan(frames(trade(1), trade(2)))[1]
    counts, tally = TradeCounts(), Tally()
    for ledger in (announced, silent, clean):
        counts.add(ledger)
        tally.add(ledger, {b"BTCUSDT": 5})
    assert counts.as_dict() == {
        "clients": 3, "holes": 6, "gap_messages": 1, "missed": 3,
        "clients_with_gap_messages": 1, "unannounced": 3, "clients_unannounced": 1,
    }  # fmt: skip
    assert tally.gaps == 9 and tally.clients_with_gaps == 3
    merged = TradeCounts()
    merged.merge(counts)
    merged.merge(counts)
    assert merged.missed == 6 and merged.clients == 6


def test_raw_sends_tickcasts_trade_message_byte_for_byte() -> None:
    """The raw baseline's trade has tickcast's fields in tickcast's order and decimals,
    so it is the same size and the same scanner reads both."""
    event = {"e": "aggTrade", "E": T0, "s": "BTCUSDT", "a": 123, "p": "60500.50000000",
             "q": "0.01200000", "f": 1, "l": 1, "T": T0, "m": False, "M": True}  # fmt: skip
    assert trade_message(event, 1123) == trade(123, T0, seq=1123)
    sold = orjson.loads(trade_message({**event, "m": True}, 1))
    assert sold["side"] == "sell"
    _, ledger = scan(ws_text_frame(trade_message(event, 5)))
    assert ledger.deliveries == 1


def test_wanted_streams_from_a_query() -> None:
    """``streams=A@trades`` picks served symbols' trades; other kinds and none: nothing."""
    served = frozenset({"BTCUSDT", "ETHUSDT"})
    assert wanted_streams("streams=BTCUSDT@trades,XYZUSDT@trades", served) == {"BTCUSDT"}
    assert wanted_streams("streams=BTCUSDT", served) == frozenset()
    assert wanted_streams("symbols=BTCUSDT", served) == frozenset()


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"burst": 100}, "--burst needs --streams trades"),
        ({"streams": "trades", "transport": "sse"}, "WebSocket only"),
        ({"streams": "trades", "redis": True}, "one memory-hub process"),
        ({"streams": "trades", "burst_at": 10.0}, "--burst-at"),
        ({"streams": "trades", "stall": 5, "stall_seconds": 10.0}, "--stall-seconds"),
    ],
)
def test_trade_options_are_checked(overrides: dict[str, object], problem: str) -> None:
    config = BenchConfig(duration=10.0, **overrides)  # type: ignore[arg-type]
    assert any(problem in text for text in config.problems()), config.problems()


def test_the_burst_starts_at_three_tenths_of_the_window_unless_told() -> None:
    assert BenchConfig(streams="trades", duration=10.0).burst_offset() == pytest.approx(3.0)
    assert BenchConfig(streams="trades", burst_at=1.5).burst_offset() == 1.5


def trade_report(stalled: TradeCounts, stalled_tally: Tally) -> dict[str, object]:
    return {
        "healthy": TradeCounts(clients=8).as_dict(),
        "stalled": stalled.as_dict(),
        "stalled_tally": stalled_tally.as_dict(),
        "stalled_histogram": {40_000: 100},
        "stalled_max_units": 40_000,
    }


def test_the_summary_keeps_the_stalled_clients_apart() -> None:
    """The stalled clients' deliveries count for the server's CPU per delivery, their
    latency and gap messages are shown apart from the healthy clients'."""
    stalled = TradeCounts(clients=2, holes=900, gap_messages=2, missed=900,
                          clients_with_gap_messages=2)  # fmt: skip
    stalled_tally = Tally(clients=2, deliveries=100, gaps=900)
    m = Measurements(
        target="tickcast", clients=10, stall=2, symbols=1, rate=100.0, duration=10.0,
        slow_timeout=10.0,
        connect=[{"healthy": 8, "stalled": 2}],
        reports=[{"tally": Tally(clients=8, deliveries=4000).as_dict(),
                  "histogram": {20: 4000}, "max_units": 20, "healthy_closed_by_server": 0,
                  "trades": trade_report(stalled, stalled_tally)}],
        expected={"BTCUSDT": 500}, burst={"at_ms": T0, "count": 2000},
    )  # fmt: skip
    run = summarize(m)
    assert run["deliveries"]["total"] == 4100
    trades = run["trades"]
    assert trades["expected_per_client"] == 500 and trades["burst"]["count"] == 2000
    assert trades["stalled"]["expected"] == 1000 and trades["stalled"]["missing"] == 900
    assert trades["stalled"]["missed"] == 900 and trades["stalled"]["unannounced"] == 0
    assert trades["stalled"]["latency_ms"]["p50_ms"] == 4000.0
    text = format_table({"tickcast": run})
    assert "stalled: gap messages (missed)" in text and "2 (900)" in text


@pytest.mark.slow
@pytest.mark.exclusive
def test_a_short_real_trade_run_with_a_burst_and_stalled_clients(tmp_path: Path) -> None:
    """``tickcast bench --streams trades --burst --stall`` end to end against tickcast and
    raw: every healthy client gets every trade of the window once, the stalled clients
    read again and every trade they lost is announced by a gap message."""
    out = tmp_path / "bench.json"
    command = [
        sys.executable, "-m", "tickcast.cli", "bench", "--streams", "trades",
        "--clients", "12", "--symbols", "1", "--rate", "50", "--burst", "3000",
        "--duration", "3", "--warmup", "0.5", "--burst-at", "0.5", "--stall", "2",
        "--stall-seconds", "1.5", "--compare", "raw", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = json.loads(out.read_text())["runs"]
    assert set(runs) == {"tickcast", "raw"}
    for name, run in runs.items():
        trades = run["trades"]
        assert trades["burst"]["answer"]["count"] == 3000, name
        assert run["clients"]["healthy"] == 10 and trades["stalled"]["clients"] == 2, name
        assert run["gaps"]["total"] == 0 and run["duplicates"]["total"] == 0, name
        assert trades["expected_per_client"] >= 3000, name
        assert trades["healthy"]["holes"] == 0 and trades["healthy"]["gap_messages"] == 0
        assert trades["stalled"]["unannounced"] == 0, (name, trades["stalled"])
        assert trades["stalled"]["duplicates"] == 0, name
    # tickcast's bound (1,000 trades a client) made the stalled clients lose some, and
    # said so; raw holds everything for them.
    stalled = runs["tickcast"]["trades"]["stalled"]
    assert stalled["gap_messages"] >= 2 and stalled["missed"] == stalled["missing"]
    assert runs["raw"]["trades"]["stalled"]["missed"] == 0
    assert "stalled: gap messages (missed)" in done.stdout
