"""A resume id from before a restart of a single server (memory hub) gets a reset: the
new run's history is another history, not what the client missed."""

from __future__ import annotations

from pathlib import Path

import httpx

from .support import ServerProcess, free_port


def sse_events(base: str, last_event_id: str | None, count: int) -> list[tuple[str, str]]:
    """The first ``count`` events of /sse as (event name, id)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[tuple[str, str]] = []
    name, ident = "message", ""
    with httpx.stream("GET", f"{base}/sse", headers=headers, timeout=15) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.partition(":")[2].strip()
            elif line.startswith("id:"):
                ident = line.partition(":")[2].strip()
            elif line == "" and (name != "message" or ident):
                events.append((name, ident))
                name, ident = "message", ""
                if len(events) >= count:
                    break
    return events


def test_a_resume_id_from_before_a_restart_gets_a_reset(tmp_path: Path) -> None:
    port = free_port()
    args = ["--source", "sim"]
    first = ServerProcess(args, {"TICKCAST_SIM_RATE": "5"}, tmp_path / "first.log", port)
    try:
        first.wait_ready()
        events = sse_events(first.base, None, 15)
    finally:
        first.stop()
    old_id = [ident for name, ident in events if name == "message"][-1]

    second = ServerProcess(args, {"TICKCAST_SIM_RATE": "5"}, tmp_path / "second.log", port)
    try:
        second.wait_ready()
        new_seq = int(second.get("/price").json()["seq"])
        assert new_seq > int(old_id)  # a new run's seqs start above the old run's
        name, _ = sse_events(second.base, old_id, 1)[0]
        assert name == "reset"
        # Within one run, resuming still works.
        current = str(new_seq)
        replayed = [i for n, i in sse_events(second.base, current, 4) if n != "status"]
        assert replayed and all(int(i) > new_seq for i in replayed)
        assert "reset" not in [n for n, _ in sse_events(second.base, current, 2)]
    finally:
        second.stop()
