"""Settings of one simulated exchange."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tickcast.messages.tick import DEFAULT_SYMBOLS
from tickcast.sim.faults import Fault
from tickcast.sim.listings import MAX_SYMBOLS
from tickcast.sim.rest import WEIGHT_LIMIT_1M


@dataclass(frozen=True)
class SimConfig:
    """Settings of one simulated exchange; the defaults are Binance's real limits.

    ``rate`` is events per second per symbol and stream kind; ``trade_rate`` (None: one
    trade per event) paces each subscribed symbol's trades apart from the ticker's steps,
    which then report the trades made since the last one; ``symbols`` is the known
    universe (realistic start prices, the ``!miniTicker@arr`` members), though any
    valid symbol gets data. ``symbol_count`` (0: none) lists generated symbols after those
    until there are that many, Binance's ten best known first (see ``listings``).
    ``max_incoming_per_second`` and ``max_connection_attempts``
    (per client address per 5 minutes) are off when 0. ``identify`` sends
    ``SIMULATED_HEADER`` in every handshake, so that tickcast labels what it serves
    ``sim``; off only where a test needs a stand-in for live Binance.
    ``rest_weight_limit`` is the REST weight an address may use per minute (Binance's
    6,000); ``rest_weight_window`` is that minute in seconds (shorter in tests, so that a
    429's ``Retry-After`` is not a minute long).
    """

    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 1
    rate: float = 1.0
    trade_rate: float | None = None
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    symbol_count: int = 0
    ping_interval: float = 20.0
    pong_timeout: float = 60.0
    max_streams: int = 1024
    max_incoming_per_second: int = 5
    max_connection_attempts: int = 300
    fault_schedule: tuple[Fault, ...] = ()
    identify: bool = True
    rest_weight_limit: int = WEIGHT_LIMIT_1M
    rest_weight_window: float = 60.0

    def __post_init__(self) -> None:
        for name in ("rate", "ping_interval", "pong_timeout", "rest_weight_window"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"SimConfig.{name} must be a positive number, got {value!r}")
        trade_rate = self.trade_rate
        if trade_rate is not None and (not math.isfinite(trade_rate) or trade_rate <= 0):
            raise ValueError(f"SimConfig.trade_rate must be a positive number, got {trade_rate!r}")
        if self.max_streams < 1:
            raise ValueError(f"SimConfig.max_streams must be >= 1, got {self.max_streams}")
        if not 0 <= self.symbol_count <= MAX_SYMBOLS:
            raise ValueError(
                f"SimConfig.symbol_count must be 0..{MAX_SYMBOLS}, got {self.symbol_count}"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"SimConfig.port must be 0..65535, got {self.port}")
