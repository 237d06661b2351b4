"""The simulated exchange's admin calls under ``/_sim/``, for tests and the bench.

``GET /_sim/stats``; ``POST /_sim/fault?kind=&duration=[&ms=][&symbol=]`` and
``DELETE /_sim/fault`` (ends every running fault window); ``POST /_sim/burst?symbol=&count=
&seconds=`` (extra trades of one symbol, see ``trades``); ``GET /_sim/book?symbol=`` (the
true full book and its update id, at no REST weight).

``POST /_sim/listing?symbol=XYZUSDT&status=TRADING|BREAK|HALT`` lists a new symbol with
that status (it then trades and streams) or changes a listed one's: ``BREAK`` or ``HALT``
delists it, its streams stay subscribed but send nothing, and exchangeInfo says so; back to
``TRADING`` it streams again. Answers ``{"ok", "symbol", "status", "listed"}`` (``listed``:
new to the listings).

``POST /_sim/exchange_info?mode=MODE[&count=N]`` makes the next N ``GET
/api/v3/exchangeInfo`` answers (without ``count``: every one until the next call) one of:

- ``normal``: Binance's answer (this ends any other mode);
- ``not_json``: status 200 with an HTML error page for a body;
- ``truncated``: the first half of the normal JSON document (the HTTP answer itself is
  whole: its Content-Length is that half's);
- ``empty``: a valid answer with ``"symbols": []``;
- ``bad_name``: every symbol, plus a trading one named ``BTC-USDT`` (not ``[A-Z0-9]``);
- ``non_ascii``: every symbol, plus a trading one named ``币安人生USDT`` (Binance lists some
  symbols in Chinese characters).

Routing and argument checks only: the exchange does the work, reached through the narrow
``AdminTarget``; the listings (``listings``) keep the symbols and the mode.
"""

from __future__ import annotations

import re
from typing import Final, Protocol
from urllib.parse import parse_qs

from tickcast.sim.faults import DEFAULT_LATENCY_MS, FaultKind, parse_fault_query
from tickcast.sim.listings import InfoMode, Listings, Status
from tickcast.sim.trades import BurstRequest, parse_burst_query

Answer = tuple[int, dict[str, object]]
_SYMBOL_RE: Final = re.compile(r"[A-Za-z0-9]{2,20}")


class AdminTarget(Protocol):
    """What the admin calls need from an exchange."""

    @property
    def listings(self) -> Listings: ...
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
    if path == "/_sim/listing":
        return _listing(target.listings, method, query)
    if path == "/_sim/exchange_info":
        return _exchange_info(target.listings, method, query)
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


def _listing(listings: Listings, method: str, query: str) -> Answer:
    if method != "POST":
        return 405, {"ok": False, "error": "use POST /_sim/listing?symbol=...&status=..."}
    args = parse_qs(query)
    symbol = args.get("symbol", [""])[0]
    if _SYMBOL_RE.fullmatch(symbol) is None:
        return 400, {"ok": False, "error": f"bad or missing symbol {symbol[:40]!r}"}
    status_text = args.get("status", [""])[0]
    try:
        status = Status(status_text.upper())
    except ValueError:
        choices = "|".join(s.value for s in Status)
        return 400, {"ok": False, "error": f"status must be {choices}, got {status_text[:40]!r}"}
    listing, new = listings.set_status(symbol, status)
    return 200, {"ok": True, "symbol": listing.symbol, "status": status.value, "listed": new}


def _exchange_info(listings: Listings, method: str, query: str) -> Answer:
    if method != "POST":
        return 405, {"ok": False, "error": "use POST /_sim/exchange_info?mode=...[&count=...]"}
    args = parse_qs(query)
    mode_text = args.get("mode", [""])[0]
    try:
        mode = InfoMode(mode_text.lower())
    except ValueError:
        choices = "|".join(m.value for m in InfoMode)
        return 400, {"ok": False, "error": f"mode must be {choices}, got {mode_text[:40]!r}"}
    count_text = args.get("count", [""])[0]
    count = None
    if count_text:
        digits = count_text.isascii() and count_text.isdigit() and len(count_text) <= 9
        if not digits or int(count_text) < 1:
            return 400, {"ok": False, "error": f"count must be >= 1, got {count_text[:40]!r}"}
        count = int(count_text)
    listings.set_info_mode(mode, count)
    return 200, {
        "ok": True,
        "mode": mode.value,
        "count": None if mode is InfoMode.NORMAL else count,
    }
