"""What ``tickcast bench`` was asked to do: the flags, their checks, the servers compared.

``--streams trades`` loads the trade tape instead of the ticker: ``--rate`` is then trades
per second per symbol (the simulator's ``--trade-rate``; its tickers stay at 1/s), each
client subscribes ``?streams=SYMBOL@trades``, ``--burst N`` adds N trades of the first
symbol over ``--burst-seconds`` at ``--burst-at`` seconds into the window, and the
``--stall`` clients stop reading at the burst for ``--stall-seconds`` then read again.

``--streams tickers`` has each client follow every symbol as the one stream ``!tickers``
(one message per upstream batch); ``--every-market`` serves ``TICKCAST_SYMBOLS=*``, the
simulator's whole listing (the ``--symbols`` it is started with), instead of naming them.

``--streams book`` and ``--streams depth`` load the order books (``SYMBOL@book``, the top
20 levels, latest wins; ``SYMBOL@depth``, the whole book then diffs): the simulator's books
change every 100 ms, so ``--rate`` is 10; at the end every client's book is compared
with the server's (see ``bookscan``).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tickcast.bench.loadgen import Kind
from tickcast.settings import DEFAULT_SYMBOLS, Settings

Target = Literal["tickcast", "tickcast-redis", "tickcast-workers", "naive", "raw"]
# The targets that run on a private Redis started by the bench.
ON_REDIS: tuple[Target, ...] = ("tickcast-redis", "tickcast-workers")
BASELINES: dict[str, Target] = {"naive": "naive", "raw": "raw"}
BOOK_RATE = 10.0  # the simulator's books change every 100 ms
DEFAULT_BURST_AT = 0.3  # of the window: room after it for the backlog to drain
DEFAULT_STALL_SECONDS = 4.0  # under the default 10 s slow-client timeout


@dataclass(frozen=True)
class BenchConfig:
    """What ``tickcast bench`` was asked to do."""

    clients: int = 1000
    symbols: int = 10
    rate: float = 1.0
    duration: float = 10.0
    stall: int = 0
    streams: Kind = "ticker"
    burst: int = 0  # trades of the first symbol in one burst (--streams trades)
    burst_at: float | None = None  # seconds into the window; None: DEFAULT_BURST_AT of it
    burst_seconds: float = 1.0
    stall_seconds: float = DEFAULT_STALL_SECONDS
    transport: Literal["ws", "sse"] = "ws"
    deflate: bool = False  # the clients offer permessage-deflate
    every_market: bool = False  # the server serves ``*``: the simulator's whole listing
    # TICKCAST_STREAM_KINDS of the server (None: its default); with --symbols above 10 the
    # trades, candles and books are carried for the first ten alone, as ``*`` does.
    stream_kinds: str | None = None
    tokens: bool = False  # the clients connect with a JWT, verified at each handshake
    compare: tuple[str, ...] = ()
    redis: bool = False
    nodes: int = 1
    workers: int = 1
    json_path: Path | None = None
    flush_ms: float | None = None
    slow_timeout: float = 10.0
    loadgen_procs: int = 1
    warmup: float = 3.0
    grace: float = 1.5
    connect_batch: int = 500
    connect_timeout: float = 10.0
    logs: Path | None = None
    argv: tuple[str, ...] = field(default_factory=tuple)

    def problems(self) -> list[str]:
        out = []
        if self.clients < 1:
            out.append("--clients must be at least 1")
        if self.symbols < 1:
            out.append("--symbols must be at least 1")
        if self.rate <= 0 or self.duration <= 0:
            out.append("--rate and --duration must be positive")
        if not 0 <= self.stall <= self.clients:
            out.append("--stall must be between 0 and --clients")
        if self.deflate and self.transport != "ws":
            out.append("--deflate is a WebSocket extension: it needs --transport ws")
        if self.loadgen_procs < 1:
            out.append("--loadgen-procs must be at least 1")
        if self.nodes < 1 or (self.nodes > 1 and not self.redis):
            out.append("--nodes above 1 needs --redis: nodes share their upstream through it")
        if self.nodes > self.loadgen_procs:
            out.append(f"--nodes {self.nodes} needs --loadgen-procs {self.nodes} or more")
        if not 1 <= self.workers <= 64:
            out.append("--workers must be between 1 and 64")
        if self.flush_ms is not None and self.flush_ms < 0:
            out.append("--flush-ms must be 0 or more")
        if self.grace < 0:
            out.append("--grace must be 0 or more")
        if self.warmup < 0 or self.connect_batch < 1 or self.connect_timeout <= 0:
            out.append("--warmup, --connect-batch and --connect-timeout must be positive")
        if self.stream_kinds is not None and (self.trades or self.books):
            out.append(f"--stream-kinds is for the tickers: --streams {self.streams} sets them")
        if self.streams == "tickers" and self.compare:
            out.append("--streams tickers (the !tickers stream) has no baseline to --compare")
        return out + self._trade_problems() + self._book_problems()

    def _trade_problems(self) -> list[str]:
        out = []
        if self.streams != "trades":
            if self.burst:
                out.append("--burst needs --streams trades")
            return out
        if self.transport != "ws":
            out.append("--streams trades is measured over WebSocket only")
        if self.redis or self.workers > 1:
            out.append(
                "--streams trades runs against one memory-hub process (no --redis, --workers)"
            )
        if self.burst < 0 or self.burst_seconds <= 0:
            out.append("--burst must be 0 or more and --burst-seconds positive")
        if not 0 <= self.burst_offset() < self.duration:
            out.append("--burst-at must fall inside the measured window")
        if self.stall and not 0 < self.stall_seconds < self.slow_timeout:
            out.append("--stall-seconds must be positive and under --slow-timeout (or the "
                       "stalled clients are closed, not given their gap)")  # fmt: skip
        return out

    def _book_problems(self) -> list[str]:
        if not self.books:
            return []
        out = []
        if self.rate != BOOK_RATE:
            out.append(f"--streams {self.streams}: the simulator's books change every 100 ms: "
                       f"--rate must be {BOOK_RATE:g}")  # fmt: skip
        if self.transport != "ws":
            out.append(f"--streams {self.streams} is measured over WebSocket only")
        if self.redis or self.workers > 1:
            out.append(f"--streams {self.streams} runs against one memory-hub process "
                       "(no --redis, --workers)")  # fmt: skip
        if self.stall:
            out.append("--stall is not measured with --streams book|depth")
        return out

    def burst_offset(self) -> float:
        """When the burst starts, in seconds after the window's start."""
        return self.burst_at if self.burst_at is not None else DEFAULT_BURST_AT * self.duration

    @property
    def trades(self) -> bool:
        return self.streams == "trades"

    @property
    def books(self) -> bool:
        """``--streams book`` or ``--streams depth``."""
        return self.streams in ("book", "depth")


def symbol_names(count: int) -> list[str]:
    """The 10 default symbols, then synthetic ones: S11USDT, S12USDT, ..."""
    names = list(DEFAULT_SYMBOLS[:count])
    names += [f"S{i}USDT" for i in range(len(DEFAULT_SYMBOLS) + 1, count + 1)]
    return names


def command_line(argv: Sequence[str]) -> str:
    return shlex.join(["tickcast", *argv])


def config_json(config: BenchConfig) -> dict[str, Any]:
    out = asdict(config)
    out["json_path"] = str(config.json_path) if config.json_path else None
    out["logs"] = str(config.logs) if config.logs else None
    out["compare"] = list(config.compare)
    out["redis"] = config.redis
    out["nodes"] = config.nodes
    out["workers"] = config.workers
    out["argv"] = list(config.argv)
    default_flush = Settings.model_fields["flush_ms"].default
    out["flush_ms_effective"] = config.flush_ms if config.flush_ms is not None else default_flush
    out["symbol_names"] = symbol_names(config.symbols)
    return out
