"""The simulated exchange's admin calls under ``/_sim/``, for tests and the bench.

``GET /_sim/stats``; ``POST /_sim/fault?kind=&duration=[&ms=]`` and ``DELETE /_sim/fault``
(ends every running fault window); ``POST /_sim/burst?symbol=&count=&seconds=`` (extra
trades of one symbol, see ``trades``). Routing and argument checks only: the exchange
does the work, reached through the narrow ``AdminTarget``.
"""

from __future__ import annotations

from typing import Protocol

from tickcast.sim.faults import DEFAULT_LATENCY_MS, FaultKind, parse_fault_query
from tickcast.sim.trades import BurstRequest, parse_burst_query

Answer = tuple[int, dict[str, object]]


class AdminTarget(Protocol):
    """What the admin calls need from an exchange."""

    def stats(self) -> dict[str, object]: ...
    def clear_faults(self) -> None: ...
    def burst(self, request: BurstRequest) -> None: ...
    def inject(
        self, kind: FaultKind, duration: float = 0.0, *, latency_ms: float = DEFAULT_LATENCY_MS
    ) -> None: ...


def answer_admin(target: AdminTarget, method: str, request_target: str) -> Answer:
    """An HTTP status and a JSON body for ``method request_target``."""
    path, _, query = request_target.partition("?")
    if path == "/_sim/stats":
        if method != "GET":
            return 405, {"ok": False, "error": "use GET /_sim/stats"}
        return 200, target.stats()
    if path == "/_sim/fault":
        return _fault(target, method, query)
    if path == "/_sim/burst":
        return _burst(target, method, query)
    return 404, {"ok": False, "error": f"no such endpoint: {path}"}


def _fault(target: AdminTarget, method: str, query: str) -> Answer:
    if method == "DELETE":
        target.clear_faults()
        return 200, {"ok": True, "cleared": True}
    if method != "POST":
        return 405, {"ok": False, "error": "use POST /_sim/fault?kind=...&duration=..."}
    try:
        request = parse_fault_query(query)
    except ValueError as exc:
        return 400, {"ok": False, "error": str(exc)}
    target.inject(request.kind, request.duration, latency_ms=request.latency_ms)
    body: dict[str, object] = {"ok": True, "kind": request.kind.value, "duration": request.duration}
    if request.kind is FaultKind.LATENCY:
        body["ms"] = request.latency_ms
    return 200, body


def _burst(target: AdminTarget, method: str, query: str) -> Answer:
    if method != "POST":
        return 405, {"ok": False, "error": "use POST /_sim/burst?symbol=...&count=...&seconds=..."}
    try:
        burst = parse_burst_query(query)
    except ValueError as exc:
        return 400, {"ok": False, "error": str(exc)}
    target.burst(burst)
    return 200, {
        "ok": True,
        "symbol": burst.symbol.upper(),
        "count": burst.count,
        "seconds": burst.seconds,
    }
