"""From what one run measured to the figures: summary, ratios, the printed table.

Pure functions over plain data, so they are tested with plain calls; ``runner`` fills
``Measurements`` and writes the JSON.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tickcast.bench.bookscan import BookCounts
from tickcast.bench.histogram import LatencyHistogram
from tickcast.bench.procstat import CLOCK_TICKS
from tickcast.bench.scan import Tally
from tickcast.bench.tradescan import TradeCounts

# What a stalled client's buffers hold before the server sees it blocked: its receive
# buffer and the server's send buffer (the kernel doubles both settings), plus the
# server's user-space write limit (64 KiB in tickcast and raw).
STALL_RCVBUF = 4096
SERVER_SNDBUF = 65536
SERVER_WRITE_HIGH = 65536
SWEEP_AND_GRACE_S = 1.5  # tickcast's 0.5 s sweep plus its 1 s close grace

# The rule for "too small to measure". /proc counts a process's CPU time in clock ticks
# (1/CLK_TCK s: 10 ms on Linux) and each read is truncated, so a difference of two reads
# is off by up to one tick. Under MIN_CPU_TICKS ticks that is more than 20% of it: a CPU
# time per delivery (and any ratio of one) is then null with the reason, printed "n/a",
# and so is one with no delivery to divide by. Likewise a p99 of fewer than
# MIN_P99_SAMPLES latencies is only the largest one, so no latency ratio is made of it.
CPU_TICK_SECONDS = 1 / CLOCK_TICKS
MIN_CPU_TICKS = 5
MIN_P99_SAMPLES = 100


class Phase(StrEnum):
    """The steps of one run, in order: a run that fails names the one it failed in."""

    SIMULATOR = "simulator start"
    REFERENCE = "reference feed"
    REDIS = "redis start"
    SERVER = "server start"
    SPAWN = "load generators spawn"
    CONNECT = "connect"
    MEASURE = "measure"
    REPORT = "report"


@dataclass(frozen=True)
class Figure:
    """A derived figure, or None and why it could not be measured."""

    value: float | None
    na: str | None = None


def cpu_per_delivery(
    cpu_seconds: float | None, deliveries: int, who: str, tick: float = CPU_TICK_SECONDS
) -> Figure:
    """CPU-µs per delivery, or n/a (see ``MIN_CPU_TICKS``) with the reason naming ``who``."""
    if cpu_seconds is None:
        return Figure(None, f"{who}: CPU time not read")
    if deliveries <= 0:
        return Figure(None, f"{who}: no delivery measured")
    if round(cpu_seconds / tick) < MIN_CPU_TICKS:
        return Figure(
            None,
            f"{who}: {cpu_seconds * 1000:.0f} ms of CPU in the window, under the "
            f"{MIN_CPU_TICKS} clock ticks ({MIN_CPU_TICKS * tick * 1000:.0f} ms) it takes "
            "to measure (run longer or with more load)",
        )
    return Figure(round(cpu_seconds * 1e6 / deliveries, 3))


@dataclass
class CpuSample:
    """CPU seconds consumed so far by each process of a run, at one wall time."""

    wall: float
    server: float | None
    simulator: float | None
    loadgen: list[float | None]
    bench: float | None
    machine: float
    redis: float | None = None  # the Redis hub's server, in a --redis run


@dataclass
class Measurements:
    """Everything one run measured, before any arithmetic."""

    target: str
    clients: int
    stall: int
    symbols: int
    rate: float
    duration: float
    slow_timeout: float
    connect: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    cpu_start: CpuSample | None = None
    cpu_end: CpuSample | None = None
    rss_baseline: int | None = None
    rss_end: int | None = None
    fds_end: int | None = None
    fd_limit: int | None = None
    expected: dict[str, int] = field(default_factory=dict)
    reference_complete: bool = True
    status_end: dict[str, Any] | None = None
    status_start: dict[str, Any] | None = None  # at the window's start (GC passes)
    closes_timeline: list[tuple[float, int]] = field(default_factory=list)
    server_emfile_logged: bool = False
    spread: list[int] = field(default_factory=list)  # connections per worker (--workers)
    burst: dict[str, Any] | None = None  # --streams trades: when the burst began, its answer
    book_answers: dict[str, Any] | None = None  # --streams book|depth: GET /book asked
    window_start_ms: int = 0
    window_end_ms: int = 0
    grace: float = 0.0
    phase: Phase = Phase.SIMULATOR  # the step under way (the one that failed, if any)
    phase_seconds: float = 0.0  # how long that step had run when it failed


def summarize(m: Measurements) -> dict[str, Any]:
    """The figures of one run (see the module docstring of ``runner`` for the terms)."""
    tally = Tally()
    for report in m.reports:
        tally.merge(Tally(**report["tally"]))
    histogram = LatencyHistogram.merged(
        LatencyHistogram.from_sparse(r["histogram"], int(r["max_units"])) for r in m.reports
    )
    clients = _clients(m)
    trades = _trades(m)
    # The server delivers to the stalled trade clients too (once they read again).
    deliveries = histogram.total + (trades["stalled"]["deliveries"] if trades else 0)
    books = _books(m, tally)
    if books is not None:
        deliveries = tally.deliveries  # a @depth diff carries no time: no latency sample
    wall = _wall(m)
    server_cpu = _cpu_delta(m, "server")
    server_per_delivery = cpu_per_delivery(server_cpu, deliveries, m.target)
    expected_each = sum(m.expected.values())
    per_connection = _per_connection(m, clients["connected"])
    return {
        "target": m.target,
        "clients": clients,
        "deliveries": {
            "total": deliveries,
            "per_second": _round(deliveries / m.duration if m.duration else None, 1),
            "expected": expected_each * tally.clients,
            "events_per_symbol": dict(m.expected),
        },
        "latency_ms": histogram.summary(),
        "gaps": {
            "total": tally.gaps,
            "max_per_client": tally.gaps_max_per_client,
            "clients_with_gaps": tally.clients_with_gaps,
            "extra": tally.extra,
            "reference_complete": m.reference_complete,
        },
        "duplicates": {
            "total": tally.duplicates,
            "max_per_client": tally.duplicates_max_per_client,
        },
        "healthy_closed_by_server": sum(r["healthy_closed_by_server"] for r in m.reports),
        "wire": _wire(m, tally),
        "server": {
            "cpu_percent": _percent(server_cpu, wall),
            "cpu_us_per_delivery": server_per_delivery.value,
            "cpu_us_per_delivery_na": server_per_delivery.na,
            "rss_baseline_mb": _mb(m.rss_baseline),
            "rss_end_mb": _mb(m.rss_end),
            "rss_per_connection_kb": per_connection,
            "fds_end": m.fds_end,
            "connections_per_worker": m.spread or None,
            "fd_limit": m.fd_limit,
            "status": _status_subset(m.status_end),
            "gc_full_passes_in_window": _gc_passes(m.status_start, m.status_end),
        },
        "loadgen": _loadgen(m, wall, deliveries),
        "simulator": {"cpu_percent": _percent(_cpu_delta(m, "simulator"), wall)},
        "redis": _redis(m, wall, deliveries),
        "bench_process": {"cpu_percent": _percent(_cpu_delta(m, "bench"), wall)},
        "machine": _machine(m, wall),
        "stall": _stall(m, tally) if m.stall else None,
        "trades": trades,
        "books": books,
        "window": {
            "start_ms": m.window_start_ms,
            "end_ms": m.window_end_ms,
            "wall_seconds": _round(wall, 3),
            "grace_seconds": m.grace,
        },
    }


def _wire(m: Measurements, tally: Tally) -> dict[str, Any]:
    """What the healthy clients' ticks took on the wire (frame headers and compressed
    payloads as received, control messages and snapshots included; TCP/IP not), and how
    many clients had permessage-deflate (``--deflate``)."""
    return {
        "bytes_received": tally.received_bytes,
        "bytes_per_message": _round(
            tally.received_bytes / tally.messages if tally.messages else None, 1
        ),
        "deflate_clients": sum(r.get("deflated", 0) for r in m.reports),
    }


def _trades(m: Measurements) -> dict[str, Any] | None:
    """``--streams trades``: the healthy clients' gap messages and skipped ids, and the
    stalled clients apart: what they got of the window's trades, what their gap
    messages announced, what was lost unannounced, their latency."""
    parts = [report["trades"] for report in m.reports if report.get("trades")]
    if not parts:
        return None
    healthy, stalled, stalled_tally = TradeCounts(), TradeCounts(), Tally()
    for part in parts:
        healthy.merge(TradeCounts(**part["healthy"]))
        stalled.merge(TradeCounts(**part["stalled"]))
        stalled_tally.merge(Tally(**part["stalled_tally"]))
    latency = LatencyHistogram.merged(
        LatencyHistogram.from_sparse(p["stalled_histogram"], int(p["stalled_max_units"]))
        for p in parts
    )
    per_client = sum(m.expected.values())
    return {
        "burst": m.burst,
        "expected_per_client": per_client,
        "healthy": healthy.as_dict(),
        "stalled": {
            **stalled.as_dict(),
            "deliveries": stalled_tally.deliveries,
            "expected": per_client * stalled.clients,
            "missing": stalled_tally.gaps,
            "duplicates": stalled_tally.duplicates,
            "latency_ms": latency.summary(),
        },
    }


def _books(m: Measurements, tally: Tally) -> dict[str, Any] | None:
    """``--streams book|depth``: every client's book against the server's at the same
    update id (``bookscan.BookCounts``), what the server was asked, bytes per message."""
    parts = [report["books"] for report in m.reports if report.get("books")]
    if not parts:
        return None
    counts = BookCounts()
    for part in parts:
        counts.merge(BookCounts(**part))
    return {
        **counts.as_dict(),
        "bytes_per_message": _round(
            tally.received_bytes / tally.messages if tally.messages else None, 1
        ),
        "server_answers": m.book_answers,
    }


def _clients(m: Measurements) -> dict[str, Any]:
    failures: Counter[str] = Counter()
    for summary in m.connect:
        failures.update(summary.get("failures", {}))
    healthy = sum(s.get("healthy", 0) for s in m.connect)
    stalled = sum(s.get("stalled", 0) for s in m.connect)
    not_attempted = sum(s.get("not_attempted", 0) for s in m.connect)
    connected = healthy + stalled
    shortfall = m.clients - connected
    connect_seconds = max((s.get("seconds", 0.0) for s in m.connect), default=None)
    return {
        "requested": m.clients,
        "connected": connected,
        "healthy": healthy,
        "stalled": stalled,
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "not_attempted": not_attempted,
        "shortfall": shortfall,
        "shortfall_cause": shortfall_cause(m, failures, not_attempted) if shortfall else None,
        "connect_seconds": connect_seconds,
        # What connecting costs, comparable across runs of any size (with and without
        # --tokens, say): batch pauses included, as in connect_seconds.
        "connect_seconds_per_1000": (
            round(connect_seconds / connected * 1000, 3) if connect_seconds and connected else None
        ),
    }


def shortfall_cause(m: Measurements, failures: Mapping[str, int], not_attempted: int = 0) -> str:
    """Why fewer clients connected than asked, in words."""
    skipped = f"; {not_attempted} not attempted after a whole batch failed" if not_attempted else ""
    server_full = m.server_emfile_logged or (
        m.fds_end is not None and m.fd_limit is not None and m.fds_end >= m.fd_limit - 16
    )
    if server_full:
        return (
            f"server EMFILE: the server process reached its open-file limit "
            f"(RLIMIT_NOFILE {m.fd_limit}; the hard limit cannot be raised here){skipped}"
        )
    if failures.get("client_emfile"):
        return f"load generator EMFILE: spread the clients over more --loadgen-procs{skipped}"
    if failures:
        cause, count = max(failures.items(), key=lambda item: item[1])
        return f"{cause} ({count} connections){skipped}"
    return f"no failure recorded{skipped}"


def reached(m: Measurements) -> str:
    """How far a run had got in ``m.phase`` when it failed, in words ('' when the error
    says it all): e.g. ``4,200 of 5,000 clients within 10 s``."""
    started = sum(1 for summary in m.connect if summary)
    if m.phase is Phase.SPAWN and started < len(m.connect):
        return (
            f"{started} of {len(m.connect)} load generators started within "
            f"{_seconds(m.phase_seconds)} s"
        )
    if m.phase in (Phase.SPAWN, Phase.CONNECT):
        return connect_progress(m)
    connected = sum(s.get("healthy", 0) + s.get("stalled", 0) for s in m.connect)
    if m.phase is Phase.MEASURE:
        return (
            f"{connected:,} of {m.clients:,} clients connected; failed "
            f"{_seconds(m.phase_seconds)} s into the warm-up and {m.duration:g} s window"
        )
    if m.phase is Phase.REPORT:
        return (
            f"the {m.duration:g} s window was measured with {connected:,} of {m.clients:,} "
            f"clients; {len(m.reports)} of {len(m.connect)} load generators reported"
        )
    return ""


def connect_progress(m: Measurements) -> str:
    """The clients connected so far, out of those asked for, and the failures by cause."""
    clients = _clients(m)
    seconds = max(m.phase_seconds, clients["connect_seconds"] or 0.0)
    text = f"{clients['connected']:,} of {m.clients:,} clients within {_seconds(seconds)} s"
    if clients["failures"]:
        causes = sorted(clients["failures"].items(), key=lambda item: -item[1])
        text += f" ({clients['failed']:,} failed: "
        text += ", ".join(f"{cause} {count:,}" for cause, count in causes) + ")"
    if clients["not_attempted"]:
        text += f"; {clients['not_attempted']:,} not attempted"
    return text


def failed_run(m: Measurements, error: str) -> dict[str, Any]:
    """The JSON of a run that failed in ``m.phase``: the error, the phase, how far it had
    got, and what it had measured (everything, when it failed only after the reports)."""
    head = {
        "target": m.target,
        "error": error,
        "phase": m.phase.value,
        "reached": reached(m) or None,
        "phase_seconds": round(m.phase_seconds, 3),
    }
    if m.reports and len(m.reports) == len(m.connect):
        return {**summarize(m), **head}
    partial: dict[str, Any] = {}
    if any(m.connect):
        partial["clients"] = _clients(m)
    server = {
        key: value
        for key, value in (
            ("rss_baseline_mb", _mb(m.rss_baseline)),
            ("rss_end_mb", _mb(m.rss_end)),
            ("fds_end", m.fds_end),
            ("fd_limit", m.fd_limit),
            ("cpu_percent", _percent(_cpu_delta(m, "server"), _wall(m))),
        )
        if value is not None
    }
    if server:
        partial["server"] = server
    return {**head, **partial}


def failure_text(run: Mapping[str, Any]) -> str:
    """What is printed for a failed run: its phase and how far it got on one line, the
    error under it (indented, as it may hold a process's last log lines)."""
    where = f"{run['target']} failed in {run.get('phase') or 'an unknown phase'}"
    if run.get("reached"):
        where += f": {run['reached']}"
    error = "\n".join(f"  {line}" for line in str(run["error"]).splitlines())
    return f"{where}\n{error}"


def _seconds(value: float) -> str:
    if value >= 10:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _wall(m: Measurements) -> float | None:
    if m.cpu_start is None or m.cpu_end is None:
        return None
    return m.cpu_end.wall - m.cpu_start.wall


def _redis(m: Measurements, wall: float | None, deliveries: int) -> dict[str, Any] | None:
    """Redis's own CPU in a ``--redis`` run, and the server's and Redis's together per
    delivery: what the Redis hub costs in all."""
    redis_cpu = _cpu_delta(m, "redis")
    server_cpu = _cpu_delta(m, "server")
    if redis_cpu is None:
        return None
    both = None if server_cpu is None else server_cpu + redis_cpu
    per_delivery = cpu_per_delivery(both, deliveries, f"{m.target} and Redis")
    return {
        "cpu_percent": _percent(redis_cpu, wall),
        "cpu_us_per_delivery_with_server": per_delivery.value,
        "cpu_us_per_delivery_with_server_na": per_delivery.na,
    }


def _cpu_delta(m: Measurements, name: str) -> float | None:
    if m.cpu_start is None or m.cpu_end is None:
        return None
    before, after = getattr(m.cpu_start, name), getattr(m.cpu_end, name)
    if before is None or after is None:
        return None
    return float(after - before)


def _loadgen(m: Measurements, wall: float | None, deliveries: int) -> dict[str, Any]:
    per_proc: list[float | None] = []
    if m.cpu_start is not None and m.cpu_end is not None:
        for before, after in zip(m.cpu_start.loadgen, m.cpu_end.loadgen, strict=True):
            per_proc.append(None if before is None or after is None else after - before)
    total = sum(p for p in per_proc if p is not None) if per_proc else None
    per_delivery = cpu_per_delivery(total, deliveries, "the load generators")
    return {
        "procs": len(m.connect),
        "cpu_percent": _percent(total, wall),
        "per_proc_cpu_percent": [_percent(p, wall) for p in per_proc],
        "cpu_us_per_delivery": per_delivery.value,
        "cpu_us_per_delivery_na": per_delivery.na,
    }


def _machine(m: Measurements, wall: float | None) -> dict[str, Any]:
    if m.cpu_start is None or m.cpu_end is None or not wall:
        return {"busy_cores": None, "other_cores": None}
    busy = (m.cpu_end.machine - m.cpu_start.machine) / wall
    ours = sum(
        v
        for v in (
            _cpu_delta(m, "server"),
            _cpu_delta(m, "simulator"),
            _cpu_delta(m, "bench"),
            *(
                (a - b) if a is not None and b is not None else None
                for a, b in zip(m.cpu_end.loadgen, m.cpu_start.loadgen, strict=True)
            ),
        )
        if v is not None
    )
    return {"busy_cores": round(busy, 3), "other_cores": round(max(0.0, busy - ours / wall), 3)}


def _per_connection(m: Measurements, connected: int) -> float | None:
    if m.rss_baseline is None or m.rss_end is None or connected <= 0:
        return None
    return round((m.rss_end - m.rss_baseline) / connected / 1024, 2)


def _stall(m: Measurements, tally: Tally) -> dict[str, Any]:
    stalled_at = sorted(t for r in m.reports for t in r.get("stalled_at", []))
    connected = sum(r.get("stalled", 0) for r in m.reports)
    delays = close_delays(m.closes_timeline, statistics.median(stalled_at) if stalled_at else None)
    message_bytes = tally.received_bytes / tally.messages if tally.messages else None
    fill = fill_seconds(m.symbols * m.rate, message_bytes)
    return {
        "requested": m.stall,
        "connected": connected,
        "closed_by_server": len(delays),
        "found_closed_at_end": sum(r.get("stalled_found_closed", 0) for r in m.reports),
        "close_after_s": {
            "first": _round(delays[0], 2) if delays else None,
            "median": _round(statistics.median(delays), 2) if delays else None,
            "last": _round(delays[-1], 2) if delays else None,
        },
        "fill_estimate_s": _round(fill, 1),
        "expected_close_within_s": _round(
            None if fill is None else m.slow_timeout + fill + SWEEP_AND_GRACE_S, 1
        ),
        "observed_for_s": _round(
            m.window_end_ms / 1000 + m.grace - stalled_at[0] if stalled_at else None, 1
        ),
    }


def close_delays(timeline: Sequence[tuple[float, int]], stalled_at: float | None) -> list[float]:
    """Seconds from the stall to each server-side close, from ``(time, closes so far)``
    polls of ``/status`` (a close is dated by the poll that first counts it)."""
    if stalled_at is None or not timeline:
        return []
    delays = []
    previous = timeline[0][1]
    for when, closes in timeline[1:]:
        delays.extend([when - stalled_at] * max(0, closes - previous))
        previous = max(previous, closes)
    return delays


def fill_seconds(messages_per_second: float, message_bytes: float | None) -> float | None:
    """Estimated time for a stalled client's buffers to fill at its message rate."""
    if not message_bytes or messages_per_second <= 0:
        return None
    capacity = 2 * STALL_RCVBUF + 2 * SERVER_SNDBUF + SERVER_WRITE_HIGH
    return capacity / (messages_per_second * message_bytes)


def _status_subset(status: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not status:
        return None
    edge = status.get("edge", {})
    keep = ("clients", "delivered", "conflated", "closes")
    out = {k: edge[k] for k in keep if k in edge}
    hub = status.get("hub")
    if isinstance(hub, dict):
        out["hub"] = hub  # with Redis: lag, fenced writes, duplicates, resyncs
    gc = status.get("process", {}).get("gc")
    if isinstance(gc, dict):
        out["gc"] = gc  # full collection passes: how many, the last one's length
    return out


def _gc_passes(start: Mapping[str, Any] | None, end: Mapping[str, Any] | None) -> int | None:
    """Full garbage-collection passes the server ran during the measured window (one
    process; under ``--workers`` or ``--nodes`` the one that answered ``/status``)."""
    counts: list[int] = []
    for status in (start, end):
        gc = (status or {}).get("process", {}).get("gc")
        if not isinstance(gc, dict) or not isinstance(gc.get("full_passes"), int):
            return None
        counts.append(int(gc["full_passes"]))
    return counts[1] - counts[0]


RATIO_LABELS = {"cpu_us_per_delivery": "CPU-µs per delivery", "p99_ms": "p99 latency"}


def ratios(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """tickcast over each other run, for CPU-µs per delivery and p99 latency (< 1:
    tickcast uses less / is faster). A ratio that cannot be made is None, and ``na``
    says why, by figure: ``{"cpu_us_per_delivery": None, "p99_ms": 0.2, "na": {...}}``."""
    base = runs.get("tickcast")
    out: dict[str, dict[str, Any]] = {}
    if not base or "error" in base:
        return out
    for name, run in runs.items():
        if name == "tickcast" or "error" in run:
            continue
        entry: dict[str, Any] = {}
        na: dict[str, str] = {}
        for key in RATIO_LABELS:
            figure = ratio(ratio_part(base, key), ratio_part(run, key))
            entry[key] = figure.value
            if figure.na is not None:
                na[key] = figure.na
        if na:
            entry["na"] = na
        out[f"tickcast/{name}"] = entry
    return out


def ratio_part(run: Mapping[str, Any], key: str) -> Figure:
    """One run's side of a ratio (``key`` of ``RATIO_LABELS``), or why it has none."""
    name = run.get("target", "?")
    if key == "cpu_us_per_delivery":
        server = run["server"]
        return Figure(server["cpu_us_per_delivery"], server.get("cpu_us_per_delivery_na"))
    latency = run["latency_ms"]
    samples = latency.get("samples", 0)
    if samples < MIN_P99_SAMPLES:
        return Figure(
            None, f"{name}: {samples} latency samples, under the {MIN_P99_SAMPLES} a p99 needs"
        )
    return Figure(latency["p99_ms"])


def ratio(top: Figure, bottom: Figure) -> Figure:
    """``top / bottom``, or None with the reasons of either side."""
    reasons = [part.na for part in (top, bottom) if part.na is not None]
    if reasons:
        return Figure(None, "; ".join(reasons))
    if top.value is None or bottom.value is None or bottom.value <= 0:
        return Figure(None, "a figure is missing or zero")
    return Figure(round(top.value / bottom.value, 3))


def _percent(seconds: float | None, wall: float | None) -> float | None:
    if seconds is None or not wall:
        return None
    return round(100 * seconds / wall, 1)


def _mb(size: int | None) -> float | None:
    return None if size is None else round(size / (1 << 20), 2)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
