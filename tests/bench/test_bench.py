"""The load benchmark: its counting cores with plain calls, then one tiny real run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tickcast.bench.config import symbol_names
from tickcast.bench.histogram import BUCKETS, FINE, UNITS_PER_MS, LatencyHistogram
from tickcast.bench.loadgen import (
    ConnectSummary,
    HandshakeClosed,
    HandshakeRejected,
    LoadSpec,
    classify_failure,
    open_all,
    share,
    stall_indices,
)
from tickcast.bench.plot import main as plot_main
from tickcast.bench.plot import series
from tickcast.bench.rawhttp import dechunk
from tickcast.bench.report import (
    CpuSample,
    Figure,
    Measurements,
    Phase,
    close_delays,
    cpu_per_delivery,
    failed_run,
    failure_text,
    fill_seconds,
    ratio,
    ratios,
    reached,
    summarize,
)
from tickcast.bench.runner import error_text, within
from tickcast.bench.scan import NEVER_MS, Ledger, Scanner, Tally, rest_after
from tickcast.bench.table import format_ratio, format_ratios, format_table
from tickcast.bench.upstream import tick_message, wanted_symbols
from tickcast.bench.wsbytes import (
    OP_PONG,
    accept_key,
    masked_frame,
    parse_request,
    pongs_for,
    response_status,
    upgrade_request,
)
from tickcast.edge.wire import http_chunk, sse_event, ws_text_frame
from tickcast.messages.tick import Tick

from ..support import free_port

T0 = 1_700_000_000_000  # a window start, in exchange ms


def tick(symbol: str, seq: int, stamp: int) -> Tick:
    return Tick(
        symbol=symbol, seq=seq, timestamp_ms=stamp, source="binance", last_price="60500.5",
        change_percent="1.25", change="745.1", open="59755.4", high="61000", low="59000",
        volume="12345.678", quote_volume="745000000.5", bid="60500.4", ask="60500.6",
    )  # fmt: skip


def ws_stream(ticks: list[Tick]) -> bytes:
    return b"".join(ws_text_frame(t.encode()) for t in ticks)


def sample_ticks() -> list[Tick]:
    """Two symbols, 1 s apart, seq global and increasing; seq and stamp lengths vary."""
    out = []
    for step in range(6):
        for index, symbol in enumerate(("BTCUSDT", "ETHUSDT")):
            out.append(tick(symbol, 98 + 2 * step + index, T0 + 1000 * step))
    return out


def window_scanner() -> Scanner:
    return Scanner(T0, NEVER_MS)


def per_symbol(ledger: Ledger) -> dict[bytes, int]:
    return {symbol: ledger.events(symbol) for symbol in ledger.symbols}


# -- scanner ---------------------------------------------------------------------------


def test_scanner_counts_every_tick_of_whole_frames() -> None:
    """A chunk of WebSocket frames yields each tick once, per symbol, with no tail left."""
    scanner, ledger = window_scanner(), Ledger()
    assert scanner.feed(ledger, ws_stream(sample_ticks()), T0 * UNITS_PER_MS) == 12
    assert per_symbol(ledger) == {b"BTCUSDT": 6, b"ETHUSDT": 6}
    assert ledger.tail == b"" and ledger.duplicates == 0


def test_scanner_split_at_every_byte_counts_the_same() -> None:
    """Splitting the stream in two at any offset (inside headers, keys, numbers) changes
    nothing: the unconsumed tail is carried to the next chunk."""
    stream = ws_stream(sample_ticks())
    for cut in range(len(stream) + 1):
        scanner, ledger = window_scanner(), Ledger()
        scanner.feed(ledger, stream[:cut], 0)
        scanner.feed(ledger, stream[cut:], 0)
        assert scanner.deliveries == 12, cut
        assert per_symbol(ledger) == {b"BTCUSDT": 6, b"ETHUSDT": 6}, cut
        assert ledger.duplicates == 0, cut


def test_scanner_byte_by_byte_reads_count_the_same() -> None:
    """The worst fragmentation: one byte per read."""
    stream = ws_stream(sample_ticks())
    scanner, ledger = window_scanner(), Ledger()
    for at in range(len(stream)):
        scanner.feed(ledger, stream[at : at + 1], 0)
    assert scanner.deliveries == 12 and ledger.duplicates == 0


def test_scanner_never_takes_a_truncated_seq() -> None:
    """``"seq":12`` at the end of a read is not seq 12 when ``34,`` follows."""
    data = ws_text_frame(tick("BTCUSDT", 1234, T0).encode())
    cut = data.index(b'"seq":12') + len(b'"seq":12')
    scanner, ledger = window_scanner(), Ledger()
    assert scanner.feed(ledger, data[:cut], 0) == 0
    assert scanner.feed(ledger, data[cut:], 0) == 1
    assert ledger.symbols[b"BTCUSDT"][0] == 1234


def test_scanner_reads_sse_chunks_too() -> None:
    """SSE events inside HTTP chunks, split anywhere, count like frames."""
    body = b"".join(
        http_chunk(sse_event("tick", t.encode(), t.seq)) + http_chunk(b": heartbeat\n\n")
        for t in sample_ticks()
    )
    for cut in range(0, len(body), 7):
        scanner, ledger = window_scanner(), Ledger()
        scanner.feed(ledger, body[:cut], 0)
        scanner.feed(ledger, body[cut:], 0)
        assert scanner.deliveries == 12, cut


def test_scanner_counts_a_repeated_seq_as_duplicate() -> None:
    """The same tick twice is one delivery and one duplicate, not a new event."""
    first = tick("BTCUSDT", 7, T0)
    scanner, ledger = window_scanner(), Ledger()
    scanner.feed(ledger, ws_stream([first, tick("ETHUSDT", 8, T0), first]), 0)
    assert ledger.duplicates == 1
    assert scanner.deliveries == 2
    assert per_symbol(ledger) == {b"BTCUSDT": 1, b"ETHUSDT": 1}


def test_scanner_skips_the_window_edges_and_times_latency() -> None:
    """Only ticks stamped in [start, end) count; latency = receive time - stamp."""
    scanner, ledger = Scanner(T0, T0 + 2000), Ledger()
    ticks = [tick("BTCUSDT", 1, T0 - 1), tick("BTCUSDT", 2, T0), tick("BTCUSDT", 3, T0 + 1999)]
    ticks.append(tick("BTCUSDT", 4, T0 + 2000))
    now = (T0 + 2003) * UNITS_PER_MS + 5  # 2003.5 ms after T0
    assert scanner.feed(ledger, ws_stream(ticks), now) == 2
    assert ledger.events(b"BTCUSDT") == 2
    assert scanner.histogram.max_ms() == 2003.5
    assert scanner.histogram.percentile_ms(0.5) == 4.6  # 4.5 ms, bucket upper edge


def test_scanner_counts_nothing_before_a_window_is_set() -> None:
    """A fresh scanner has no window: the warm-up is not measured."""
    scanner, ledger = Scanner(), Ledger()
    assert scanner.feed(ledger, ws_stream(sample_ticks()), 0) == 0
    assert ledger.events(b"BTCUSDT") == 0 and ledger.messages == 12


def test_scanner_counts_events_by_exchange_time_not_seq() -> None:
    """Two ticks of one exchange event (same stamp, two seqs) are one event."""
    scanner, ledger = window_scanner(), Ledger()
    scanner.feed(ledger, ws_stream([tick("BTCUSDT", 1, T0), tick("BTCUSDT", 2, T0)]), 0)
    assert ledger.events(b"BTCUSDT") == 1 and ledger.duplicates == 0


def test_rest_after_ignores_an_incomplete_later_copy() -> None:
    """A duplicate cut right after its seq digits stays in the tail, whole."""
    complete = ws_text_frame(tick("BTCUSDT", 5, T0).encode())
    partial = complete[: complete.index(b'"seq":5') + len(b'"seq":5')]
    assert rest_after(complete + partial, b"5") == partial[partial.index(b"{") :]
    assert rest_after(complete + complete[:3], b"5") == b""  # a frame header only


# -- gaps and duplicates ----------------------------------------------------------------


def test_ledger_gaps_against_the_exchange_count() -> None:
    """Missing = expected events not received; extra = received but never sent."""
    scanner, ledger = window_scanner(), Ledger()
    scanner.feed(ledger, ws_stream(sample_ticks()[:-1]), 0)  # the last ETHUSDT tick lost
    assert ledger.gaps({b"BTCUSDT": 6, b"ETHUSDT": 6}) == (1, 0)
    assert ledger.gaps({b"BTCUSDT": 6}) == (0, 5)


def test_tally_keeps_totals_and_the_worst_client() -> None:
    """Across clients: sums, clients with gaps, and the per-client maximum."""
    expected = {b"BTCUSDT": 6, b"ETHUSDT": 6}
    tally = Tally()
    for keep in (12, 10, 12):
        scanner, ledger = window_scanner(), Ledger()
        scanner.feed(ledger, ws_stream(sample_ticks()[:keep]), 0)
        tally.add(ledger, expected)
    other = Tally(clients=1, gaps=3, gaps_max_per_client=3, clients_with_gaps=1)
    tally.merge(other)
    assert tally.clients == 4
    assert tally.gaps == 5 and tally.gaps_max_per_client == 3 and tally.clients_with_gaps == 2
    assert tally.deliveries == 34


# -- histogram --------------------------------------------------------------------------


def test_histogram_percentiles_of_a_known_distribution() -> None:
    """1..1000 units (0.1..100 ms): p50 = 50 ms, p99 = 99 ms, p99.9 = 99.9 ms."""
    histogram = LatencyHistogram()
    for units in range(1, 1001):
        histogram.add(units)
    assert histogram.percentile_ms(0.5) == pytest.approx(50.1)
    assert histogram.percentile_ms(0.99) == pytest.approx(99.1)
    assert histogram.percentile_ms(0.999) == pytest.approx(100.0)
    assert histogram.max_ms() == 100.0 and histogram.total == 1000


def test_histogram_reads_seconds_of_lag_at_10_ms_and_keeps_the_maximum() -> None:
    """Past 10 s buckets are 10 ms wide, past 600 s one overflow bucket; the maximum
    stays exact and percentiles never pass it."""
    histogram = LatencyHistogram()
    for units in (5, 120_004, 120_004, 7_000_000):  # 0.5 ms, 12.0004 s twice, 700 s
        histogram.add(units)
    assert histogram.counts[FINE + 200] == 2 and histogram.counts[BUCKETS] == 1
    assert histogram.percentile_ms(0.5) == pytest.approx(12_010.0)
    assert histogram.percentile_ms(1.0) == histogram.max_ms() == 700_000.0


def test_histogram_sparse_round_trip_and_merge() -> None:
    """What crosses the pipe rebuilds the same histogram; merging adds counts."""
    a, b = LatencyHistogram(), LatencyHistogram()
    for units in (3, 3, 40):
        a.add(units)
    b.add(7)
    copy = LatencyHistogram.from_sparse(a.to_sparse(), a.max_units)
    assert copy.counts == a.counts and copy.max_units == 40
    merged = LatencyHistogram.merged([a, b])
    assert merged.total == 4 and merged.max_units == 40
    assert merged.percentile_ms(0.5) == pytest.approx(0.4)


def test_histogram_empty_has_no_percentiles() -> None:
    """No samples: every figure is None, not zero."""
    summary = LatencyHistogram().summary()
    assert summary["p99_ms"] is None and summary["max_ms"] is None and summary["samples"] == 0


# -- wire bytes -------------------------------------------------------------------------


def test_accept_key_matches_rfc_6455_example() -> None:
    """RFC 6455 §1.3's own example key and answer."""
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_upgrade_request_parses_back() -> None:
    """The client's request is a valid head the raw server reads."""
    head = upgrade_request("127.0.0.1", 8000, "/ws?symbols=A,B", key=b"a2V5a2V5a2V5a2V5a2V5MQ==")
    request = parse_request(head.split(b"\r\n\r\n")[0])
    assert request.path == "/ws" and request.query == "symbols=A,B"
    assert request.headers["upgrade"] == "websocket"
    assert request.headers["sec-websocket-key"] == "a2V5a2V5a2V5a2V5a2V5MQ=="
    assert response_status(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket") == 101


def test_pongs_echo_pings_masked() -> None:
    """A ping among text frames gets a masked pong with the same payload; a split one
    gets none."""
    data = ws_text_frame(b'{"a":1}') + b"\x89\x04ping" + ws_text_frame(b"{}")
    (pong,) = pongs_for(data)
    assert pong[0] == 0x80 | OP_PONG and pong[1] == 0x80 | 4
    mask = pong[2:6]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(pong[6:])) == b"ping"
    assert pongs_for(b"\x89\x04pi") == []
    assert masked_frame(OP_PONG, b"", mask=b"\0\0\0\0") == b"\x8a\x80\0\0\0\0"


def test_dechunk_joins_chunks() -> None:
    """A chunked body decodes to its payload."""
    assert dechunk(b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n") == b"abcde"


def test_baseline_tick_has_tickcasts_fields_in_order() -> None:
    """The comparison servers send tickcast's tick shape, so the scanner reads all three."""
    event = {"e": "24hrTicker", "E": T0, "s": "BTCUSDT", "c": "1.5", "P": "2", "p": "0.1",
             "o": "1", "h": "2", "l": "1", "v": "10", "q": "15", "b": "1.4", "a": "1.6"}  # fmt: skip
    message = tick_message(event, 42)
    assert list(orjson.loads(message)) == list(tick("BTCUSDT", 1, T0).as_json_dict())
    scanner, ledger = window_scanner(), Ledger()
    assert scanner.feed(ledger, ws_text_frame(message), 0) == 1


def test_wanted_symbols_from_a_query() -> None:
    """``symbols=`` picks served symbols; absent or ``*`` means all."""
    served = frozenset({"BTCUSDT", "ETHUSDT"})
    assert wanted_symbols("symbols=btcusdt,XYZ", served) == {"BTCUSDT"}
    assert wanted_symbols("", served) == served
    assert wanted_symbols("symbols=*", served) == served


# -- connections ------------------------------------------------------------------------


def test_failures_are_named() -> None:
    """Connection failures become counted causes, EMFILE included."""
    assert classify_failure(HandshakeRejected(503)) == "http_503"
    assert classify_failure(HandshakeClosed()) == "closed_before_handshake"
    assert classify_failure(TimeoutError()) == "timeout"
    assert classify_failure(ConnectionRefusedError()) == "refused"
    assert classify_failure(OSError(24, "Too many open files")) == "client_emfile"


def test_stalled_clients_spread_and_shares_add_up() -> None:
    """K stalled of N are distinct and spread; process shares sum to the total."""
    assert stall_indices(10, 3) == {0, 3, 6}
    assert stall_indices(5, 5) == {0, 1, 2, 3, 4}
    assert stall_indices(5, 0) == frozenset()
    assert [share(1001, 3, i) for i in range(3)] == [334, 334, 333]


def test_symbol_names_default_then_synthetic() -> None:
    """The 10 defaults first, then S11USDT, S12USDT..."""
    names = symbol_names(12)
    assert names[0] == "BTCUSDT" and names[9] == "LINKUSDT" and names[10:] == ["S11USDT", "S12USDT"]


# -- report -----------------------------------------------------------------------------


def measured(
    target: str, server_cpu: float, latency_units: int, samples: int = 1000
) -> Measurements:
    histogram = LatencyHistogram()
    for _ in range(samples):
        histogram.add(latency_units)
    tally = Tally(clients=10, deliveries=1000, messages=1000, received_bytes=300_000)
    return Measurements(
        target=target, clients=12, stall=0, symbols=10, rate=1.0, duration=10.0,
        slow_timeout=10.0,
        connect=[{"healthy": 10, "stalled": 0, "failures": {"timeout": 2}, "seconds": 1.0}],
        reports=[{"tally": tally.as_dict(), "histogram": histogram.to_sparse(),
                  "max_units": histogram.max_units, "healthy_closed_by_server": 0}],
        cpu_start=CpuSample(100.0, 1.0, 1.0, [1.0], 1.0, 50.0),
        cpu_end=CpuSample(110.0, 1.0 + server_cpu, 1.1, [2.0], 1.1, 60.0),
        rss_baseline=50 << 20, rss_end=51 << 20, fds_end=30, fd_limit=20_000,
        expected={"BTCUSDT": 10},
    )  # fmt: skip


def test_summary_figures_and_ratios() -> None:
    """Deliveries/s, CPU-µs per delivery, RSS per connection, shortfall, and the ratios
    of tickcast over a baseline."""
    runs = {
        "tickcast": summarize(measured("tickcast", 0.1, 20)),
        "naive": summarize(measured("naive", 0.4, 100)),
        "raw": {"target": "raw", "error": "boom"},
    }
    run = runs["tickcast"]
    assert run["deliveries"]["per_second"] == 100.0
    assert run["server"]["cpu_us_per_delivery"] == 100.0
    assert run["server"]["cpu_us_per_delivery_na"] is None
    assert run["server"]["cpu_percent"] == 1.0
    assert run["server"]["rss_per_connection_kb"] == 102.4
    assert run["clients"]["shortfall"] == 2 and "timeout" in run["clients"]["shortfall_cause"]
    assert run["loadgen"]["cpu_percent"] == 10.0
    assert run["latency_ms"]["p99_ms"] == 2.0
    table = ratios(runs)
    assert table == {"tickcast/naive": {"cpu_us_per_delivery": 0.25, "p99_ms": 0.2}}
    assert "0.250x" in format_ratios(table)
    assert run["wire"] == {
        "bytes_received": 300_000,
        "bytes_per_message": 300.0,
        "deflate_clients": 0,
    }
    text = format_table(runs)
    assert "error" in text and "10/12" in text and "100.00" in text
    assert "wire bytes/message" in text and "clients with deflate" not in text


def test_cpu_per_delivery_needs_five_clock_ticks_and_a_delivery() -> None:
    """Under 5 ticks of CPU (50 ms at 100 Hz), with no delivery, or unread, the figure is
    None with a reason naming who; from 5 ticks on it is a number."""
    assert cpu_per_delivery(0.05, 1000, "tickcast", tick=0.01) == Figure(50.0)
    too_small = cpu_per_delivery(0.04, 1000, "tickcast", tick=0.01)
    assert too_small.value is None and too_small.na is not None
    assert too_small.na.startswith("tickcast: 40 ms of CPU") and "5 clock ticks" in too_small.na
    assert cpu_per_delivery(1.0, 0, "raw", tick=0.01).na == "raw: no delivery measured"
    assert cpu_per_delivery(None, 10, "raw", tick=0.01).na == "raw: CPU time not read"


def test_a_ratio_of_unmeasurable_parts_is_na_with_the_reason_not_one() -> None:
    """Both servers at 1 clock tick of CPU would read 1.000x; the ratio is null in the
    JSON with the reason, printed n/a, while the p99 ratio beside it stands."""
    runs = {
        "tickcast": summarize(measured("tickcast", 0.01, 20)),
        "raw": summarize(measured("raw", 0.01, 100)),
    }
    assert runs["tickcast"]["server"]["cpu_us_per_delivery"] is None
    assert "under the 5 clock ticks" in runs["tickcast"]["server"]["cpu_us_per_delivery_na"]
    table = ratios(runs)
    entry = table["tickcast/raw"]
    assert entry["cpu_us_per_delivery"] is None and entry["p99_ms"] == 0.2
    assert set(entry["na"]) == {"cpu_us_per_delivery"}
    assert "tickcast: 10 ms of CPU" in entry["na"]["cpu_us_per_delivery"]
    assert "raw: 10 ms of CPU" in entry["na"]["cpu_us_per_delivery"]
    text = format_ratios(table)
    assert text.splitlines()[0] == "tickcast/raw: CPU-µs per delivery n/a, p99 latency 0.200x"
    assert "1.000x" not in text and "CPU-µs per delivery n/a: tickcast: 10 ms" in text
    assert "n/a" in format_table(runs)


def test_a_p99_ratio_needs_a_hundred_samples_each() -> None:
    """A p99 of fewer than 100 latencies is only their maximum: no ratio is made of it."""
    runs = {
        "tickcast": summarize(measured("tickcast", 0.1, 20, samples=99)),
        "naive": summarize(measured("naive", 0.4, 100)),
    }
    entry = ratios(runs)["tickcast/naive"]
    assert entry["p99_ms"] is None and entry["cpu_us_per_delivery"] is not None
    assert entry["na"]["p99_ms"].startswith("tickcast: 99 latency samples")


def test_ratio_and_its_format() -> None:
    """A ratio is rounded to 3 places; a missing or zero side makes it n/a."""
    assert ratio(Figure(1.0), Figure(3.0)) == Figure(0.333)
    assert ratio(Figure(1.0), Figure(0.0)).value is None
    assert ratio(Figure(None, "a: why"), Figure(None, "b: why")).na == "a: why; b: why"
    assert format_ratio(None) == "n/a" and format_ratio(0.25) == "0.250x"


def connect_failed(progress: list[dict[str, object]]) -> Measurements:
    """A run whose connect phase gave up after 10 s with ``progress`` per generator."""
    m = measured("tickcast", 0.1, 20)
    m.clients, m.connect, m.reports = 5000, progress, []
    m.cpu_start = m.cpu_end = None
    m.rss_end = m.fds_end = None
    m.phase, m.phase_seconds = Phase.CONNECT, 10.02
    return m


def test_a_failed_connect_says_how_far_it_got_and_keeps_the_figures() -> None:
    """Connect gave up: the printed text and the JSON name the phase, the clients
    connected of those asked within how long and why the others failed; what was
    measured before (idle RSS, the failures) stays, what was not is absent."""
    m = connect_failed(
        [
            {"requested": 2500, "healthy": 2100, "failures": {"timeout": 400}, "seconds": 9.0},
            {"requested": 2500, "healthy": 2100, "failures": {"timeout": 300, "refused": 100}},
        ]
    )
    assert reached(m) == "4,200 of 5,000 clients within 10 s (800 failed: timeout 700, refused 100)"
    run = failed_run(m, "the load generators had not finished connecting within 27 s")
    assert run["phase"] == "connect" and run["error"].endswith("within 27 s")
    assert run["clients"]["connected"] == 4200 and run["clients"]["failures"]["timeout"] == 700
    assert run["server"] == {"rss_baseline_mb": 50.0, "fd_limit": 20_000}
    assert "deliveries" not in run and "latency_ms" not in run
    text = failure_text(run)
    assert text.startswith("tickcast failed in connect: 4,200 of 5,000 clients within 10 s")
    assert "TimeoutError" not in text
    assert "error" in format_table({"tickcast": run})


def test_a_run_that_fails_before_connecting_names_its_phase() -> None:
    """A failure before any client (say the server never got ready) names that phase;
    one in the spawn step says how many load generators had started."""
    m = connect_failed([])
    m.phase = Phase.SERVER
    run = failed_run(m, "tickcast: GET /price not 200 after 30.0s:\nlast log line")
    assert run["phase"] == "server start" and run["reached"] is None and "clients" not in run
    assert failure_text(run) == (
        "tickcast failed in server start\n  tickcast: GET /price not 200 after 30.0s:\n"
        "  last log line"
    )
    m = connect_failed([{"requested": 10, "healthy": 0}, {}])
    m.phase, m.phase_seconds = Phase.SPAWN, 30.0
    assert reached(m) == "1 of 2 load generators started within 30 s"


def test_a_failure_after_the_reports_keeps_every_figure() -> None:
    """A server found dead once the reports are in: the run keeps its whole summary."""
    m = measured("tickcast", 0.1, 20)
    m.phase = Phase.REPORT
    run = failed_run(m, "tickcast died during the run")
    assert run["error"] == "tickcast died during the run" and run["phase"] == "report"
    assert run["deliveries"]["total"] == 1000
    assert run["reached"].startswith("the 10 s window was measured with 10 of 12 clients")


async def test_timeouts_say_what_did_not_happen() -> None:
    """``within`` turns its own expiry into a sentence; a TimeoutError raised inside
    passes unchanged; an error with no message still reads as words."""
    with pytest.raises(TimeoutError, match=r"^the feed sent nothing within 0\.01 s$"):
        async with within(0.01, "the feed sent nothing"):
            await asyncio.sleep(5)
    with pytest.raises(TimeoutError, match=r"^inner$"):
        async with within(5, "unused"):
            raise TimeoutError("inner")
    assert error_text(TimeoutError()) == "timed out"
    assert error_text(RuntimeError("boom")) == "boom"
    assert error_text(EOFError()) == "a load generator's pipe closed"


@pytest.fixture
async def accepting_port() -> AsyncIterator[int]:
    """A loopback server that accepts every WebSocket upgrade and then stays silent. Its
    connections are closed at the end, whether or not their clients have gone yet (a
    server's close leaves open connections open, to be found unclosed by the GC)."""
    writers: list[asyncio.StreamWriter] = []

    async def upgrade_everything(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
        await reader.read()  # until the client goes
        writer.close()

    server = await asyncio.start_server(upgrade_everything, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]
        for writer in writers:
            writer.transport.abort()
        await asyncio.sleep(0)  # one loop turn: the aborts close their sockets


def spec(port: int, connections: int, batch: int) -> LoadSpec:
    return LoadSpec("127.0.0.1", port, "ws", "/ws", connections, 0, batch=batch,
                    batch_pause=0.0, connect_timeout=5.0)  # fmt: skip


async def test_connecting_reports_progress_after_each_batch(accepting_port: int) -> None:
    """A load generator reports before its first batch and after each one but the last
    (the bench keeps the latest, to tell how far connecting got if it gives up)."""
    seen: list[dict[str, object]] = []

    def progress(summary: ConnectSummary) -> None:
        seen.append(summary.as_dict())

    clients, summary = await open_all(spec(accepting_port, 10, 4), Scanner(), progress)
    try:
        assert [s["healthy"] for s in seen] == [0, 4, 8]
        assert not any(s["done"] for s in seen)
        assert summary.done and summary.healthy == 10 and len(clients) == 10
    finally:
        for client in clients:
            assert client.transport is not None
            client.transport.abort()


async def test_connecting_to_a_closed_port_stops_after_one_refused_batch() -> None:
    """Nothing listening: the first batch is refused, the rest is not attempted."""
    clients, summary = await open_all(spec(free_port(), 10, 4), Scanner())
    assert clients == [] and summary.done
    assert summary.as_dict()["failures"] == {"refused": 4} and summary.not_attempted == 6


def test_stall_close_timing_and_fill_estimate() -> None:
    """Closes are dated from /status polls relative to the stall; the fill estimate is
    buffer capacity over the client's byte rate."""
    timeline = [(100.0, 0), (105.0, 0), (112.0, 2), (113.0, 3)]
    assert close_delays(timeline, 101.0) == [11.0, 11.0, 12.0]
    assert close_delays(timeline, None) == []
    seconds = fill_seconds(10.0, 300.0)
    assert seconds is not None and 60 < seconds < 80
    assert fill_seconds(10.0, None) is None


# -- a real run -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.exclusive
def test_tiny_real_run_against_all_three_servers(tmp_path: Path) -> None:
    """``tickcast bench`` end to end: 20 clients get ticks from tickcast, naive and raw,
    with no gap and no duplicate from tickcast and raw, and the ratios are printed."""
    out = tmp_path / "bench.json"
    # A 1 s window at 10 ticks/s keeps 400 latency samples per server (a p99 needs 100).
    command = [
        sys.executable, "-m", "tickcast.cli", "bench", "--clients", "20", "--symbols", "2",
        "--rate", "10", "--duration", "1", "--warmup", "0", "--compare", "naive",
        "--compare", "raw", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    runs = result["runs"]
    assert set(runs) == {"tickcast", "naive", "raw"}
    for name in ("tickcast", "naive", "raw"):
        assert runs[name]["deliveries"]["total"] > 0, name
        assert runs[name]["clients"]["connected"] == 20, name
    for name in ("tickcast", "raw"):
        assert runs[name]["gaps"]["total"] == 0, runs[name]["gaps"]
        assert runs[name]["duplicates"]["total"] == 0, runs[name]["duplicates"]
    assert set(result["ratios"]) == {"tickcast/naive", "tickcast/raw"}
    assert result["ratios"]["tickcast/raw"]["p99_ms"] is not None
    assert "tickcast/naive: CPU-µs per delivery" in done.stdout
    assert result["machine"]["nproc"] >= 1 and result["command"].startswith("tickcast bench")


@pytest.mark.slow
@pytest.mark.exclusive
def test_a_real_run_through_the_redis_hub_beside_the_memory_hub(tmp_path: Path) -> None:
    """``tickcast bench --redis --nodes 2``: the same load through a private Redis and two
    server processes sharing one upstream, in the same invocation as the memory hub, with
    no gap and no duplicate, Redis's own CPU and the ratio reported."""
    out = tmp_path / "bench.json"
    command = [
        sys.executable, "-m", "tickcast.cli", "bench", "--clients", "20", "--symbols", "2",
        "--rate", "10", "--duration", "1", "--warmup", "0", "--redis", "--nodes", "2",
        "--loadgen-procs", "2", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    runs = result["runs"]
    assert set(runs) == {"tickcast", "tickcast-redis"}
    redis_run = runs["tickcast-redis"]
    assert redis_run["clients"]["connected"] == 20
    assert redis_run["deliveries"]["total"] > 0
    assert redis_run["gaps"]["total"] == 0 and redis_run["duplicates"]["total"] == 0
    assert redis_run["redis"]["cpu_percent"] is not None
    assert runs["tickcast"]["redis"] is None
    assert redis_run["server"]["status"]["hub"]["kind"] == "redis"
    assert "tickcast/tickcast-redis" in result["ratios"]
    assert "redis CPU %" in done.stdout
    assert result["config"]["nodes"] == 2


@pytest.mark.slow
@pytest.mark.exclusive
def test_a_real_run_whose_server_refuses_every_client_fails_in_connect(tmp_path: Path) -> None:
    """A real run whose server turns every client away (a token it requires, from the
    .env in the log folder it runs in): exit 1, the failure names the connect phase and
    how far it got, never a bare exception name, and the JSON keeps the run's error,
    phase and the figures measured before it."""
    out, logs = tmp_path / "bench.json", tmp_path / "logs"
    (logs / "tickcast").mkdir(parents=True)
    (logs / "tickcast" / ".env").write_text("TICKCAST_TOKEN=not-sent-by-the-clients\n")
    command = [
        sys.executable, "-m", "tickcast.cli", "bench", "--clients", "20", "--symbols", "2",
        "--rate", "5", "--duration", "1", "--warmup", "0", "--logs", str(logs),
        "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "tickcast failed in connect: 0 of 20 clients within" in done.stderr
    assert "http_401 20" in done.stderr and "no client connected" in done.stderr
    assert "Error:" not in done.stderr and "Traceback" not in done.stderr
    run = json.loads(out.read_text())["runs"]["tickcast"]
    assert run["phase"] == "connect" and run["error"].startswith("no client connected")
    assert run["clients"]["failures"] == {"http_401": 20}
    assert run["server"]["rss_baseline_mb"] > 0


def test_several_nodes_need_redis_and_a_load_generator_each() -> None:
    """--nodes above 1 without --redis, or with fewer load generators, is refused."""
    from tickcast.bench.config import BenchConfig

    assert any("--redis" in p for p in BenchConfig(nodes=2, loadgen_procs=2).problems())
    assert any("--loadgen-procs" in p for p in BenchConfig(nodes=2, redis=True).problems())
    assert BenchConfig(nodes=2, redis=True, loadgen_procs=2).problems() == []


# -- plot -------------------------------------------------------------------------------


def plot_results() -> list[dict[str, object]]:
    def run(clients: int, p99: float) -> dict[str, object]:
        latency = {"p50_ms": p99 / 4, "p99_ms": p99, "p999_ms": p99 * 2}
        return {"clients": {"connected": clients}, "latency_ms": latency}

    return [
        {"runs": {"tickcast": run(1000, 8.0), "naive": run(1000, 90.0)}},
        {"runs": {"tickcast": run(100, 2.0), "raw": {"error": "boom"}}},
    ]


def test_plot_series_per_server_and_percentile() -> None:
    """Each server and percentile is a line over client counts; failed runs are left out."""
    lines = series(plot_results())
    assert lines[("tickcast", "p99_ms")] == [(100, 2.0), (1000, 8.0)]
    assert lines[("naive", "p999_ms")] == [(1000, 180.0)]
    assert not any(name == "raw" for name, _ in lines)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    """The helper draws the figure to a PNG file (with the bench extra installed)."""
    pytest.importorskip("matplotlib")
    paths = []
    for index, result in enumerate(plot_results()):
        path = tmp_path / f"r{index}.json"
        path.write_text(json.dumps(result))
        paths.append(path)
    out = tmp_path / "docs" / "latency.png"
    assert plot_main([*map(str, paths), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gc_passes_in_the_window_come_from_the_status_at_both_edges() -> None:
    from tickcast.bench.report import _gc_passes

    def status(passes: int) -> dict[str, object]:
        return {"process": {"gc": {"policy": "freeze", "full_passes": passes}}}

    assert _gc_passes(status(3), status(3)) == 0
    assert _gc_passes(status(3), status(5)) == 2
    assert _gc_passes(None, status(5)) is None  # a baseline server has no /status
    assert _gc_passes({"process": {}}, status(1)) is None


@pytest.mark.slow
def test_a_real_run_with_tokens_connects_every_client_and_reports_the_cost(
    tmp_path: Path,
) -> None:
    """``--tokens``: the server requires a JWT, every client sends one and is admitted,
    and the report gives the connect time per 1,000 clients."""
    out = tmp_path / "bench.json"
    command = [
        sys.executable, "-m", "tickcast.cli", "bench", "--clients", "20", "--symbols", "2",
        "--rate", "10", "--duration", "1", "--warmup", "0", "--tokens", "--json", str(out),
        "--logs", str(tmp_path / "logs"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads(out.read_text())["runs"]["tickcast"]
    assert run["clients"]["connected"] == 20 and run["deliveries"]["total"] > 0
    assert run["clients"]["connect_seconds_per_1000"] > 0
    assert "connect s per 1,000" in done.stdout
    # The token went to the server in each request, and not into its log.
    logs = "".join(p.read_text() for p in (tmp_path / "logs").rglob("*.log"))
    assert "listening" in logs and "token=ey" not in logs
