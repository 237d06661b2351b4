"""Logging set-up: human-readable lines by default, one JSON object per line on request.

Every record passes a ``RedactSecrets`` filter on the one handler before it is formatted,
so no access token reaches the output: uvicorn prints the request target of every
WebSocket handshake (``"WebSocket /ws?token=..." [accepted]``) on ``uvicorn.error``, its
access log does the same for HTTP requests, and an exception's text may quote a URL.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal, TextIO

import orjson

REDACTED: Final = "[redacted]"
# Shorter secrets are not replaced wherever they appear as plain text: a 3-letter token
# would blank out unrelated words. The patterns below still catch them in their usual places.
MIN_LITERAL_SECRET: Final = 6

# A query parameter whose name ends in "token" (token=, access_token=), in any position,
# also when the whole query is itself percent-encoded once or more (a URL inside a
# parameter: "next=%2Fws%3Ftoken%3D..."), where "=" is %3D (%253D...) and "&" is %26.
_QUERY_TOKEN: Final = re.compile(
    r"""(?ix) ( \b [\w.~-]*? token (?: = | %(?:25)*3d ) )
        (?! \[redacted\] ) ( (?: (?! %(?:25)*26 ) [^&\s"'\#\\<>] )+ )"""
)
# An Authorization header in any shape it is printed in: "Authorization: Bearer x",
# {'authorization': 'Bearer x'}, (b'authorization', b'Bearer x').
_BEARER: Final = re.compile(r"""(?i)(\bbearer\s+)(?!\[redacted\])([^\s"',;)\]}\\]+)""")


class Redactor:
    """Rewrites text so no access token survives. Pure: tested with plain calls."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a shorter secret never leaves the tail of a longer one behind.
        wanted = sorted({s for s in secrets if len(s) >= MIN_LITERAL_SECRET}, key=len, reverse=True)
        alternatives = "|".join(_any_encoding(s) for s in wanted)
        self._literal = re.compile(alternatives, re.IGNORECASE) if wanted else None

    def __call__(self, text: str) -> str:
        text = _QUERY_TOKEN.sub(lambda m: m.group(1) + REDACTED, text)
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
        return text if self._literal is None else self._literal.sub(REDACTED, text)


def _any_encoding(secret: str) -> str:
    """A pattern for ``secret`` as typed or with any of its characters percent-encoded
    (once or more), as a client may have put it in a URL."""
    parts = []
    for char in secret:
        encoded = "".join(f"%(?:25)*{byte:02x}" for byte in char.encode())
        plus = r"|\+" if char == " " else ""
        parts.append(f"(?:{re.escape(char)}|{encoded}{plus})")
    return "".join(parts)


class RedactSecrets(logging.Filter):
    """Rewrites each record's message, exception and stack text through a ``Redactor``.

    On the handler rather than on loggers: a logger's filters do not see the records
    its children propagate, a handler's see every record it writes.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redact = redactor
        self._plain = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # the handler would print the raw msg and args to stderr instead
            message = f"{record.msg!s} (unformattable arguments: {record.args!r})"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            # Formatters print a cached exc_text as is; fill the cache with redacted text.
            record.exc_text = self._plain.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


@dataclass
class _Window:
    start: float
    passed: int = 0
    suppressed: int = 0
    sample: logging.LogRecord | None = None


class RateLimit(logging.Filter):
    """Lets ``burst`` records of one kind through per ``window`` seconds, then counts the
    rest and writes one summary line for them when the window ends.

    A kind is the logger, the level and the message *template* (``record.msg`` before its
    arguments are filled in), so "bad frame from %s" from a thousand clients is one kind.
    Must run before any filter that formats the message into ``msg``. An access log,
    when enabled, is a record of every request, so it is exempt.
    """

    exempt: frozenset[str] = frozenset({"uvicorn.access"})

    def __init__(
        self,
        emit: Callable[[logging.LogRecord], object],
        burst: int = 5,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 1000,
    ) -> None:
        super().__init__()
        self._emit = emit
        self.burst = burst
        self.window = window
        self._clock = clock
        self._max_kinds = max_kinds
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._next_sweep = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "rate_summary", False) or record.name in self.exempt:
            return True
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        key = (record.name, record.levelno, str(record.msg))
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self._max_kinds:
                return True  # too many kinds to track: let it through rather than lose it
            window = self._windows[key] = _Window(now)
        if window.passed < self.burst:
            window.passed += 1
            return True
        window.suppressed += 1
        window.sample = record
        return False

    def flush(self) -> None:
        """Write the summaries now, whatever their windows (at shutdown)."""
        self._sweep(float("inf"))

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + min(1.0, self.window)
        for key, window in list(self._windows.items()):
            if now - window.start < self.window:
                continue
            del self._windows[key]
            if window.suppressed and window.sample is not None:
                self._emit(self._summary(window))

    def _summary(self, window: _Window) -> logging.LogRecord:
        sample = window.sample
        assert sample is not None
        try:
            text = sample.getMessage()
        except Exception:
            text = str(sample.msg)
        record = logging.LogRecord(
            sample.name,
            sample.levelno,
            sample.pathname,
            sample.lineno,
            "%d more like this in %.0f s, the last: %s",
            (window.suppressed, self.window, text),
            None,
        )
        record.rate_summary = True
        return record


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message (exc and stack when present),
    and ``node`` when the process is one of several writing to the same output."""

    def __init__(self, node: str | None = None) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.node is not None:
            entry["node"] = self.node
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return orjson.dumps(entry).decode()


def build_handler(
    fmt: Literal["text", "json"],
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    *,
    node: str | None = None,
) -> logging.Handler:
    """The handler every log line goes through: ``fmt`` lines on ``stream`` (stderr),
    with access tokens (``secrets``, and any ``token=`` or bearer value) redacted; each
    line names ``node`` when given (a worker of ``--workers``, sharing the output)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(node))
    else:
        named = "" if node is None else "[" + node.replace("%", "%%") + "] "
        formatter = logging.Formatter(f"%(asctime)s %(levelname)-7s {named}%(name)s: %(message)s")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    # Rate limiting reads the message template, which redaction replaces: it goes first.
    handler.addFilter(RateLimit(handler.handle))
    handler.addFilter(RedactSecrets(Redactor(secrets)))
    return handler


class StreamNoise(logging.Filter):
    """Drops the WebSocket library's "connection open" and "connection closed" lines: they
    name no client, and each stream, on /ws and /sse alike, already has two lines of its
    own, the request's (``"WebSocket /ws?..." [accepted]``, ``"GET /sse?..." 200``) and
    tickcast's when it ends (with the client, how long and why)."""

    noise: frozenset[str] = frozenset({"connection open", "connection closed"})

    def filter(self, record: logging.LogRecord) -> bool:
        return str(record.msg) not in self.noise


def configure_logging(
    fmt: Literal["text", "json"],
    level: str,
    *,
    secrets: Iterable[str] = (),
    node: str | None = None,
) -> None:
    """Route tickcast's and uvicorn's loggers to stderr in ``fmt``, ``secrets`` redacted,
    each line naming ``node`` when given."""
    root = logging.getLogger()
    root.handlers[:] = [build_handler(fmt, secrets, node=node)]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # Their own handlers would bypass the root handler and its redaction.
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # The upstream REST client logs each request at INFO: a line per candle page and
    # trade fill, which the backfill's own lines (failures, recoveries) say better.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    uvicorn_error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, StreamNoise) for f in uvicorn_error.filters):
        uvicorn_error.addFilter(StreamNoise())


def flush_rate_limits() -> None:
    """Write the pending "N more like this" lines now (at shutdown)."""
    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, RateLimit):
                flt.flush()
