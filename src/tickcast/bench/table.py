"""The printed results: one column per server, then the ratios (plain text, no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tickcast.bench.report import RATIO_LABELS


def format_table(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """The figures side by side, one column per server."""
    names = list(runs)
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, pick: Any) -> None:
        cells = []
        for name in names:
            run = runs[name]
            try:
                cells.append("error" if "error" in run else pick(run))
            except (KeyError, TypeError):
                cells.append("-")
        rows.append((label, cells))

    row("clients connected", lambda r: f"{r['clients']['connected']}/{r['clients']['requested']}")
    row("connect s per 1,000", lambda r: _num(r["clients"]["connect_seconds_per_1000"], 3))
    row("deliveries/s", lambda r: _num(r["deliveries"]["per_second"], 0))
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        row(f"latency {label} ms", lambda r, k=key: _num(r["latency_ms"][k], 1))
    row("latency max ms", lambda r: _num(r["latency_ms"]["max_ms"], 1))
    row("gaps (max/client)", lambda r: f"{r['gaps']['total']} ({r['gaps']['max_per_client']})")
    row(
        "duplicates (max/client)",
        lambda r: f"{r['duplicates']['total']} ({r['duplicates']['max_per_client']})",
    )
    row("wire bytes/message", lambda r: _num(r["wire"]["bytes_per_message"], 1))
    if any(r.get("wire", {}).get("deflate_clients") for r in runs.values()):
        row("clients with deflate", lambda r: str(r["wire"]["deflate_clients"]))
    row("server CPU %", lambda r: _num(r["server"]["cpu_percent"], 1))
    row("server CPU-µs/delivery", lambda r: _na_num(r["server"], "cpu_us_per_delivery", 2))
    row("GC full passes in window", lambda r: _num(r["server"]["gc_full_passes_in_window"], 0))
    row("server RSS idle MB", lambda r: _num(r["server"]["rss_baseline_mb"], 1))
    row("server RSS end MB", lambda r: _num(r["server"]["rss_end_mb"], 1))
    row("RSS per connection KB", lambda r: _num(r["server"]["rss_per_connection_kb"], 1))
    if any(runs[n].get("server", {}).get("connections_per_worker") for n in names):
        row(
            "connections per worker",
            lambda r: "/".join(map(str, r["server"]["connections_per_worker"] or [])) or "-",
        )
    row("loadgen CPU % (procs)", lambda r: f"{_num(r['loadgen']['cpu_percent'], 1)} "
        f"({r['loadgen']['procs']})")  # fmt: skip
    row("simulator CPU %", lambda r: _num(r["simulator"]["cpu_percent"], 1))
    if any(runs[n].get("redis") for n in names):
        row("redis CPU %", lambda r: _num(r["redis"]["cpu_percent"], 1) if r["redis"] else "-")
        row(
            "server+redis CPU-µs/delivery",
            lambda r: (
                _na_num(r["redis"], "cpu_us_per_delivery_with_server", 2) if r["redis"] else "-"
            ),
        )
    row("machine busy cores", lambda r: _num(r["machine"]["busy_cores"], 2))
    row("  of which others", lambda r: _num(r["machine"]["other_cores"], 2))
    if any(not runs[n].get("error") and runs[n].get("stall") for n in names):
        row("stalled closed/connected", lambda r: _stall_cell(r["stall"]))
        row("  close after s (1st..last)", lambda r: _close_cell(r["stall"]))
    if any(runs[n].get("trades") for n in names):
        _trade_rows(row, runs)
    if any(runs[n].get("books") for n in names):
        _book_rows(row)
    row("healthy closed by server", lambda r: str(r["healthy_closed_by_server"]))
    width = max(len(label) for label, _ in rows) + 2
    col = max(12, *(len(n) + 2 for n in names), *(len(c) + 2 for _, cs in rows for c in cs))
    lines = [" " * width + "".join(n.rjust(col) for n in names)]
    lines += [label.ljust(width) + "".join(c.rjust(col) for c in cells) for label, cells in rows]
    return "\n".join(lines)


def _trade_rows(
    row: Callable[[str, Callable[[Any], str]], None], runs: Mapping[str, Mapping[str, Any]]
) -> None:
    """``--streams trades``: the healthy clients' gap messages and skipped ids, then the
    stalled clients' own figures."""
    row("trades per client in window", lambda r: str(r["trades"]["expected_per_client"]))
    row("gap messages (missed)", lambda r: _gap_cell(r["trades"]["healthy"]))
    row("skipped ids (unannounced)", lambda r: _holes_cell(r["trades"]["healthy"]))
    if not any((r.get("trades") or {}).get("stalled", {}).get("clients") for r in runs.values()):
        return
    row("stalled: trades got/expected", lambda r: _got_cell(r["trades"]["stalled"]))
    row("stalled: gap messages (missed)", lambda r: _gap_cell(r["trades"]["stalled"]))
    row("stalled: skipped (unannounced)", lambda r: _holes_cell(r["trades"]["stalled"]))
    row("stalled: duplicates", lambda r: str(r["trades"]["stalled"]["duplicates"]))
    row("stalled: p50 / p99 ms", lambda r: _p50_p99(r["trades"]["stalled"]["latency_ms"]))


def _book_rows(row: Callable[[str, Callable[[Any], str]], None]) -> None:
    """``--streams book|depth``: the clients' books against the server's."""
    row("bytes per message", lambda r: _num(r["books"]["bytes_per_message"], 0))
    row("books equal the server's", lambda r: f"{r['books']['equal']}/{r['books']['compared']}")
    row(
        "books differing (clients)", lambda r: _pair(r["books"], "mismatched", "clients_mismatched")
    )
    row("books not compared", lambda r: str(r["books"]["not_answered"] + r["books"]["no_book"]))
    row("diff gaps (clients)", lambda r: _pair(r["books"], "gaps", "clients_with_gaps"))
    row("book status messages", lambda r: str(r["books"]["statuses"]))


def _pair(part: Mapping[str, Any], total: str, clients: str) -> str:
    return f"{part[total]} ({part[clients]})"


def _gap_cell(part: Mapping[str, Any]) -> str:
    return f"{part['gap_messages']} ({part['missed']})"


def _holes_cell(part: Mapping[str, Any]) -> str:
    return f"{part['holes']} ({part['unannounced']})"


def _got_cell(part: Mapping[str, Any]) -> str:
    return f"{part['deliveries']}/{part['expected']}"


def _p50_p99(latency: Mapping[str, Any]) -> str:
    return f"{_num(latency['p50_ms'], 1)} / {_num(latency['p99_ms'], 1)}"


def format_ratios(table: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per ratio pair; a ratio that cannot be made reads ``n/a``, and an
    indented line under it says why."""
    lines = []
    for name, values in table.items():
        cells = [f"{label} {format_ratio(values.get(key))}" for key, label in RATIO_LABELS.items()]
        lines.append(f"{name}: {', '.join(cells)}")
        for key, reason in values.get("na", {}).items():
            lines.append(f"  {RATIO_LABELS.get(key, key)} n/a: {reason}")
    return "\n".join(lines)


def format_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.3f}x"


def _stall_cell(stall: Mapping[str, Any] | None) -> str:
    if not stall:
        return "-"
    return f"{stall['closed_by_server']}/{stall['connected']}"


def _close_cell(stall: Mapping[str, Any] | None) -> str:
    if not stall or stall["close_after_s"]["first"] is None:
        return "-"
    after = stall["close_after_s"]
    return f"{after['first']}..{after['last']}"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _na_num(section: Mapping[str, Any], key: str, digits: int) -> str:
    """``section[key]``, or ``n/a`` when it is null for a reason (``<key>_na``)."""
    if section[key] is None and section.get(f"{key}_na"):
        return "n/a"
    return _num(section[key], digits)
