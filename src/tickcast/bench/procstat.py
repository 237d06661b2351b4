"""What the bench reads from /proc (Linux): CPU time, RSS and open files of a process,
the machine's busy time and description; and the per-process limits it raises."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
from pathlib import Path

from tickcast.serve.workers import die_with_parent

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of ``pid`` (None once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    # Fields 14 and 15 of proc(5), counted from field 3 (the state) here.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int | None:
    """Resident set size (VmRSS) of ``pid``."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (``--workers``: the supervisor's workers)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found.extend(int(child) for child in text.split())
    return sorted(found)


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def nofile_limit(pid: int) -> int | None:
    """The soft open-file limit of ``pid`` (``Max open files`` in /proc/<pid>/limits)."""
    try:
        lines = Path(f"/proc/{pid}/limits").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("Max open files"):
            value = line.split()[3]
            return int(value) if value.isdigit() else None
    return None


def machine_busy_seconds() -> float:
    """CPU time all cores have spent not idle since boot (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # Fields past steal (guest, guest_nice) are already counted in user and nice.
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def load_average() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, object]:
    """nproc, CPU model, Python, kernel and the file-descriptor limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "nofile_soft": soft,
        "nofile_hard": hard,
        "load_average": load_average(),
    }


def raise_nofile() -> int:
    """Raise this process's open-file soft limit to its hard limit; returns it.

    The hard limit itself cannot be raised here (not even by root in this container), so
    that is the ceiling on connections per process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def child_setup() -> None:
    """``preexec_fn`` of every subprocess the bench starts."""
    raise_nofile()
    die_with_parent()
