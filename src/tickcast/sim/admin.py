"""The simulated exchange's admin calls under ``/_sim/``, for tests and the bench.

``GET /_sim/stats``; ``POST /_sim/fault?kind=&duration=[&ms=][&symbol=]`` and
``DELETE /_sim/fault`` (ends every running fault window); ``POST /_sim/burst?symbol=&count=
&seconds=`` (extra trades of one symbol, see ``trades``); ``GET /_sim/book?symbol=`` (the
true full book and its update id, at no REST weight). Routing and argument checks only: the exchange
does the work, reached through the narrow ``AdminTarget``.
"""

from __future__ import annotations

import re
from typing import Final, Protocol
from urllib.parse import parse_qs

from tickcast.sim.faults import DEFAULT_LATENCY_MS, FaultKind, parse_fault_query
from tickcast.sim.trades import BurstRequest, parse_burst_query

Answer = tuple[int, dict[str, object]]
_SYMBOL_RE: Final = re.compile(r"[A-Za-z0-9]{2,20}")


class AdminTarget(Protocol):
    """What the admin calls need from an exchange."""

    def stats(self) -> dict[str, object]: ...
    def clear_faults(self) -> None: ...
    def burst(self, request: BurstRequest) -> None: ...
    def book(self, symbol: str) -> dict[str, object]: ...
    def inject(
        self,
        kind: FaultKind,
        duration: float = 0.0,
        *,
        latency_ms: float = DEFAULT_LATENCY_MS,
        symbol: str | None = None,
    ) -> str | None: ...


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
    if path == "/_sim/book":
        return _book(target, method, query)
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
    chosen = target.inject(
        request.kind, request.duration, latency_ms=request.latency_ms, symbol=request.symbol
    )
    body: dict[str, object] = {"ok": True, "kind": request.kind.value, "duration": request.duration}
    if request.kind is FaultKind.LATENCY:
        body["ms"] = request.latency_ms
    if request.kind is FaultKind.DEPTH_GAP:
        body["symbol"] = None if chosen is None else chosen.upper()
    return 200, body


def _book(target: AdminTarget, method: str, query: str) -> Answer:
    if method != "GET":
        return 405, {"ok": False, "error": "use GET /_sim/book?symbol=..."}
    symbol = parse_qs(query).get("symbol", [""])[0]
    if _SYMBOL_RE.fullmatch(symbol) is None:
        return 400, {"ok": False, "error": f"bad or missing symbol {symbol[:40]!r}"}
    return 200, target.book(symbol.lower())


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
