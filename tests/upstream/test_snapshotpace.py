"""The snapshot pacer, by plain calls with a made-up clock: within the weight budget,
each symbol once and in order, every request stopped by a Retry-After."""

from __future__ import annotations

import pytest

from tickcast.upstream.snapshotpace import SnapshotPacer


def drain(pacer: SnapshotPacer, weight: int, start: float = 0.0) -> list[tuple[float, str]]:
    """Take every queued symbol as soon as the pacer allows: (time, symbol)."""
    now, taken = start, []
    while (wait := pacer.wait_time(now, weight)) is not None:
        now += wait
        symbol = pacer.take(now, weight)
        assert symbol is not None
        pacer.answered(symbol, now, None)
        taken.append((now, symbol))
    return taken


def most_in_a_window(times: list[float], window: float = 60.0) -> int:
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


def test_200_snapshots_of_weight_250_stay_within_80_percent_of_the_budget() -> None:
    """200 symbols at limit 5000 (weight 250): at most 19 in any minute (4800 of 6000),
    all served, in the order they asked, spread over about ten minutes."""
    pacer = SnapshotPacer()
    symbols = [f"S{i}USDT" for i in range(200)]
    for symbol in symbols:
        assert pacer.ask(symbol)
    taken = drain(pacer, 250)
    assert [s for _, s in taken] == symbols
    times = [t for t, _ in taken]
    assert most_in_a_window(times) == 19
    assert times[18] == 0.0 and times[19] == 60.0
    assert 600.0 <= times[-1] <= 660.0


def test_a_symbol_asking_again_keeps_its_one_place() -> None:
    """Asked twice while waiting, or while its snapshot is on its way: queued once."""
    pacer = SnapshotPacer()
    assert pacer.ask("BTCUSDT") and pacer.ask("ETHUSDT")
    assert not pacer.ask("BTCUSDT")
    assert pacer.queued == ["BTCUSDT", "ETHUSDT"]
    assert pacer.take(0.0, 250) == "BTCUSDT"
    assert not pacer.ask("BTCUSDT")
    assert pacer.queued == ["ETHUSDT"] and pacer.in_flight == {"BTCUSDT"}
    pacer.answered("BTCUSDT", 0.1, None)
    assert pacer.ask("BTCUSDT")
    assert pacer.queued == ["ETHUSDT", "BTCUSDT"]


def test_a_failed_symbol_goes_back_to_the_head_of_the_queue() -> None:
    """A request that failed is retried before the symbols that asked after it."""
    pacer = SnapshotPacer()
    for symbol in ("A", "B", "C"):
        pacer.ask(symbol)
    assert pacer.take(0.0, 5) == "A"
    pacer.failed("A", 0.1)
    assert pacer.queued == ["A", "B", "C"]


@pytest.mark.parametrize("status", [429, 418])
def test_a_refusals_retry_after_stops_every_request_until_it_passes(status: int) -> None:
    """After a 429 (or a 418 ban) with Retry-After 7, nothing goes out before 7 s have
    passed, whatever the budget left; then requests go on."""
    pacer = SnapshotPacer()
    for symbol in ("A", "B", "C"):
        pacer.ask(symbol)
    assert pacer.take(10.0, 5) == "A"
    pacer.failed("A", 10.2)
    pacer.refused(10.2, 7.0)
    assert pacer.take(10.3, 5) is None
    assert pacer.wait_time(10.3, 5) == pytest.approx(6.9)
    assert pacer.take(17.1, 5) is None
    assert pacer.take(17.2, 5) == "A"
    assert pacer.take(17.2, 5) == "B"
    assert pacer.refusals == 1


def test_a_refusal_without_retry_after_waits_a_whole_window() -> None:
    """No Retry-After (Binance always sends one): a minute, to be safe."""
    pacer = SnapshotPacer()
    pacer.ask("A")
    pacer.refused(0.0, None)
    assert pacer.wait_time(0.0, 5) == 60.0


def test_the_servers_reported_weight_wins_when_higher() -> None:
    """The server says 4700 of the minute is spent (others share the address): a request
    of 250 waits until that report is a window old, though locally little was spent."""
    pacer = SnapshotPacer()
    pacer.ask("A")
    pacer.ask("B")
    assert pacer.take(0.0, 250) == "A"
    pacer.answered("A", 0.5, 4700)
    assert pacer.used(1.0) == 4700
    assert pacer.wait_time(1.0, 250) == pytest.approx(59.5)
    assert pacer.take(60.5, 250) == "B"


def test_a_lower_reported_weight_does_not_undo_the_local_count() -> None:
    """The server's count may be lower (its minute just began): the local one holds."""
    pacer = SnapshotPacer()
    for i in range(20):
        pacer.ask(f"S{i}")
    for _ in range(19):
        assert pacer.take(0.0, 250) is not None
    pacer.reported(1.0, 250)
    assert pacer.used(1.0) == 4750
    assert pacer.take(1.0, 250) is None
    assert pacer.wait_time(1.0, 250) == pytest.approx(59.0)


def test_a_hold_delays_and_resume_now_forgets_it() -> None:
    """A backoff's hold stops requests until it ends; resume_now ends it at once."""
    pacer = SnapshotPacer()
    pacer.ask("A")
    pacer.hold(5.0)
    assert pacer.take(1.0, 5) is None
    pacer.resume_now()
    assert pacer.take(1.0, 5) == "A"


def test_an_empty_queue_has_no_wait_and_a_dropped_symbol_is_not_served() -> None:
    """Nothing waiting: wait_time is None; a dropped symbol leaves the queue."""
    pacer = SnapshotPacer()
    assert pacer.wait_time(0.0, 5) is None
    pacer.ask("A")
    pacer.drop("A")
    assert pacer.wait_time(0.0, 5) is None and pacer.take(0.0, 5) is None


def test_a_weight_over_the_allowance_and_a_budget_of_nothing_are_refused() -> None:
    """A request that could never fit, or no budget at all: ValueError, not a hang."""
    pacer = SnapshotPacer(budget=100)
    pacer.ask("A")
    with pytest.raises(ValueError, match="never fits"):
        pacer.wait_time(0.0, 250)
    with pytest.raises(ValueError):
        SnapshotPacer(share=0.0)
