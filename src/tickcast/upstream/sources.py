"""Sources of upstream data: live Binance, the simulated exchange, auto fallback, replay.

A source runs until cancelled and hands every parsed market-data event (ticker and book
updates, trades, candles) to its sink with the label
of where it came from, so simulated data is never presented as live. Every source runs
under a supervisor (``build_source``), and so do the live and simulated halves of ``auto``:
a failure restarts the part that failed, with backoff, and is logged with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from tickcast.messages.tick import SourceLabel, Tick
from tickcast.settings import Settings
from tickcast.sim.exchange import SimConfig, SimExchange
from tickcast.sim.market import Carry
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.base import FrameHook, LatestTicks, Sink, Source, StateListener
from tickcast.upstream.binance import BinanceClient, ClientOptions, UpstreamState
from tickcast.upstream.normalize import MarketEvent
from tickcast.upstream.pacing import Backoff
from tickcast.upstream.replay import ReplaySource
from tickcast.upstream.streams import settings_streams
from tickcast.upstream.supervisor import SupervisedSource

__all__ = [
    "AutoSource",
    "ExchangeSource",
    "FrameHook",
    "LatestTicks",
    "ReplaySource",
    "SimSource",
    "Sink",
    "Source",
    "StateListener",
    "SupervisedSource",
    "build_source",
]

log = logging.getLogger(__name__)

# With ``TICKCAST_SYMBOLS=*`` and no ``TICKCAST_SIM_SYMBOLS``: the simulated exchange lists
# about as many symbols as Binance spot does.
EVERY_MARKET_SIM_SYMBOLS = 2000


def supervised(
    source: Source, settings: Settings, on_state: StateListener | None
) -> SupervisedSource:
    """``source`` under a supervisor with the upstream's backoff settings."""
    return SupervisedSource(
        source,
        Backoff(settings.backoff_initial, settings.backoff_max),
        on_state,
        healthy_after=settings.backoff_reset_after,
    )


def client_options(settings: Settings) -> ClientOptions:
    return ClientOptions(
        stale_after=settings.stale_after,
        rotate_after=settings.rotate_after,
        backoff_initial=settings.backoff_initial,
        backoff_max=settings.backoff_max,
        backoff_reset_after=settings.backoff_reset_after,
        streams_per_connection=settings.streams_per_connection,
    )


class ExchangeSource:
    """A Binance-protocol source: live Binance, or the simulator under the ``sim`` label.

    A server that says in its handshake that it is a simulator (``tickcast sim-exchange``
    at ``TICKCAST_BINANCE_URL``) is labelled ``sim`` whatever ``label`` says. ``rest_url``
    is the same exchange's REST base (see ``Source.rest_url``).
    """

    def __init__(
        self,
        url: str,
        streams: Sequence[str],
        label: SourceLabel,
        sink: Sink,
        options: ClientOptions,
        on_state: StateListener | None = None,
        on_frame: FrameHook | None = None,
        errors: Counter[str] | None = None,
        *,
        rest_url: str | None,
    ) -> None:
        self._label = label
        self._rest_url = rest_url
        self._sink = sink
        self._on_state = on_state
        hook = None if on_frame is None else (lambda frame: on_frame(self.label, frame))
        self.client = BinanceClient(
            url,
            streams,
            self._deliver,
            options=options,
            on_frame=hook,
            on_state=self._state_changed,
            errors=errors,
        )
        self.last_update = 0.0

    @property
    def label(self) -> SourceLabel:
        return "sim" if self.client.simulated else self._label

    @property
    def state(self) -> UpstreamState:
        return self.client.state

    @property
    def rest_url(self) -> str | None:
        return self._rest_url

    def _deliver(self, event: MarketEvent) -> None:
        self.last_update = time.monotonic()
        self._sink(event, self.label)

    def _state_changed(self, _state: UpstreamState) -> None:
        if self._on_state is not None:
            self._on_state()

    async def run(self) -> None:
        await self.client.run()

    def set_streams(self, streams: Sequence[str]) -> None:
        """See ``Source.set_streams``: the client changes its subscriptions in place."""
        self.client.set_streams(streams)

    def brief(self) -> dict[str, object]:
        age = self.client.last_message_age
        return {
            "state": self.client.state.value,
            "since": self.client.state_since,
            "reconnects": self.client.counters["reconnects"],
            "last_message_age": None if age is None else round(age, 3),
            "last_error": self.client.last_error,
            "last_error_at": self.client.last_error_at,
        }

    def status(self) -> dict[str, object]:
        return {"source": self.label, **self.client.status()}

    def parse_errors(self) -> dict[str, int]:
        return dict(self.client.errors)


def carried(ticks: Mapping[str, Tick]) -> dict[str, Carry]:
    """Where each symbol of ``ticks`` stood, for a simulator to continue from."""
    return {
        symbol: Carry(t.last_price, t.open, t.high, t.low, t.volume, t.quote_volume)
        for symbol, t in ticks.items()
        if t.last_price is not None
    }


class SimSource:
    """The built-in simulated exchange on a free loopback port, read by the real client.

    Each run continues the market from ``latest`` (the ticks served so far: a previous
    leader's, or live ones before a fallback), so prices never jump back to the start level
    nor replay a path already served. Without a configured seed the walk is seeded from
    the clock; an explicit seed keeps a fresh start reproducible.
    """

    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        on_state: StateListener | None = None,
        on_frame: FrameHook | None = None,
        errors: Counter[str] | None = None,
        latest: LatestTicks | None = None,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._on_state = on_state
        self._on_frame = on_frame
        self._latest = latest
        # One count over every run: each run has a client of its own.
        self.errors: Counter[str] = Counter() if errors is None else errors
        seed = settings.sim_seed if settings.sim_seed is not None else time.time_ns()
        self.exchange = SimExchange(
            SimConfig(
                host="127.0.0.1",
                port=0,
                seed=seed,
                rate=settings.sim_rate,
                symbols=settings.named_symbols,
                symbol_count=settings.sim_symbols
                or (EVERY_MARKET_SIM_SYMBOLS if settings.every_market else 0),
            )
        )
        self.inner: ExchangeSource | None = None
        self._rest_url: str | None = None
        # The streams of the latest set_streams, which win over the settings' from then on.
        self._streams: list[str] | None = None

    @property
    def label(self) -> SourceLabel:
        return "sim"

    @property
    def state(self) -> UpstreamState:
        return UpstreamState.CONNECTING if self.inner is None else self.inner.state

    @property
    def last_update(self) -> float:
        return 0.0 if self.inner is None else self.inner.last_update

    @property
    def rest_url(self) -> str | None:
        """The in-process exchange's HTTP base while it runs (it serves REST on the port of
        its WebSocket paths)."""
        return self._rest_url

    async def run(self) -> None:
        if self._latest is not None:
            self.exchange.continue_from(carried(self._latest()))
        await self.exchange.start()
        rest_url = f"http://127.0.0.1:{self.exchange.port}"
        try:
            streams = self._streams
            self.inner = ExchangeSource(
                self.exchange.url,
                settings_streams(self._settings) if streams is None else streams,
                "sim",
                self._sink,
                client_options(self._settings),
                self._on_state,
                self._on_frame,
                self.errors,
                rest_url=rest_url,
            )
            log.info("serving simulated data from %s", self.exchange.url)
            self._rest_url = rest_url
            await self.inner.run()
        finally:
            self._rest_url = None
            await self.exchange.stop()

    def set_streams(self, streams: Sequence[str]) -> None:
        """See ``Source.set_streams``: kept for every later run, and applied now to the
        running client when there is one."""
        if not streams:
            raise ValueError("a source needs at least one stream")
        self._streams = list(streams)
        if self.inner is not None:
            self.inner.set_streams(self._streams)

    def brief(self) -> dict[str, object]:
        if self.inner is None:
            return {"state": self.state.value, "since": None, "reconnects": 0}
        return self.inner.brief()

    def status(self) -> dict[str, object]:
        if self.inner is None:
            return {"source": "sim", "state": self.state.value}
        return {**self.inner.status(), "exchange": self.exchange.url}

    def parse_errors(self) -> dict[str, int]:
        return dict(self.errors)


class AutoSource:
    """Live Binance first; simulated data while live has been silent for the grace period,
    or at once when live cannot be reached at all (its name does not resolve, the
    connection is refused).

    Live keeps retrying in the background, and wins as soon as it delivers again.
    """

    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        on_state: StateListener | None = None,
        on_frame: FrameHook | None = None,
        latest: LatestTicks | None = None,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._on_state = on_state
        self._on_frame = on_frame
        self._latest = latest
        self.live = ExchangeSource(
            settings.binance_url,
            settings_streams(settings),
            "binance",
            self._from_live,
            client_options(settings),
            on_state,
            on_frame,
            rest_url=settings.binance_rest_url,
        )
        self._live = supervised(self.live, settings, on_state)
        self.sim: SupervisedSource | None = None
        self._sim_errors: Counter[str] = Counter()
        # Whose data the clients were last given: None until anything arrived. Live may
        # itself be a simulator (its label then says so), hence "fallback", not "sim".
        self._serving: Literal["live", "fallback"] | None = None
        self.fallbacks = 0
        self.fallback_reason: str | None = None
        # The streams of the latest set_streams, for a simulator started after it.
        self._streams: list[str] | None = None

    @property
    def label(self) -> SourceLabel | None:
        """``sim`` while simulated data is served; ``binance`` while live data is served
        and a live connection is open; None otherwise (nothing served yet, or live lost
        and the grace not over), so ``/status`` never calls anything live that is not."""
        if self._serving == "live":
            return self.live.label if self.live.client.connected else None
        return "sim" if self._serving == "fallback" else None

    @property
    def state(self) -> UpstreamState:
        if self._serving == "fallback" and self.sim is not None:
            return self.sim.state
        return self._live.state

    @property
    def rest_url(self) -> str | None:
        """Live's REST while live data is served, the simulator's while its data is."""
        if self._serving == "live":
            return self.live.rest_url
        if self._serving == "fallback" and self.sim is not None:
            return self.sim.rest_url
        return None

    def _live_fresh(self, now: float) -> bool:
        last = self.live.last_update
        return last > 0 and now - last < self._settings.auto_grace

    def _from_live(self, event: MarketEvent, label: SourceLabel) -> None:
        self._serve("live")
        self._sink(event, label)

    def _from_sim(self, event: MarketEvent, label: SourceLabel) -> None:
        # Live may have come back a moment ago: never mix sim data into live data.
        if self._serving == "fallback":
            self._sink(event, label)

    def _serve(self, serving: Literal["live", "fallback"]) -> None:
        label, previous = self.label, self._serving
        self._serving = serving
        if serving != previous:
            log.warning("auto source: now serving %s data", self.label)
        # Also after a reconnect of live (None -> binance): clients hear the label return.
        if self.label != label and self._on_state is not None:
            self._on_state()

    def _fallback_reason(self, now: float, started: float) -> str | None:
        """Why simulated data should be served now, or None while live may still come.

        The grace protects what clients hold: live data of moments ago, or a live server
        that answered and may yet deliver. A server that cannot be reached at all gets no
        grace when clients hold no live data; it is retried in the background all the same.
        """
        if now - max(started, self.live.last_update) >= self._settings.auto_grace:
            return f"no live data for {self._settings.auto_grace:g}s"
        if not self._live_fresh(now) and self.live.client.unreachable:
            return f"live upstream unreachable ({self.live.client.last_connect_error})"
        return None

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._live.run(), name="auto-live")
            await self._supervise()

    async def _supervise(self) -> None:
        started = time.monotonic()
        sim_task: asyncio.Task[None] | None = None
        try:
            while True:
                now = time.monotonic()
                reason = None if sim_task is not None else self._fallback_reason(now, started)
                if reason is not None:
                    log.warning("auto source: %s, serving simulated data", reason)
                    self.fallbacks += 1
                    self.fallback_reason = reason
                    sim = SimSource(
                        self._settings,
                        self._from_sim,
                        self._on_state,
                        self._on_frame,
                        self._sim_errors,
                        self._latest,
                    )
                    if self._streams is not None:
                        sim.set_streams(self._streams)
                    self.sim = supervised(sim, self._settings, self._on_state)
                    sim_task = asyncio.create_task(self.sim.run(), name="auto-sim")
                    self._serve("fallback")
                elif sim_task is not None and self._live_fresh(now):
                    await cancel_and_wait(sim_task)
                    sim_task = None
                    self.sim = None
                await asyncio.sleep(0.25)
        finally:
            if sim_task is not None:
                await cancel_and_wait(sim_task)

    def set_streams(self, streams: Sequence[str]) -> None:
        """See ``Source.set_streams``: live changes at once, and so does a running
        simulator; one started later begins with these streams."""
        self.live.set_streams(streams)
        self._streams = list(streams)
        if self.sim is not None:
            self.sim.set_streams(self._streams)

    def brief(self) -> dict[str, object]:
        live = self._live.brief()
        if self._serving == "fallback" and self.sim is not None:
            # Why simulated data is served: what live last failed with.
            sim = self.sim.brief()
            if live.get("last_error") is not None:
                sim.update(last_error=live["last_error"], last_error_at=live["last_error_at"])
            return sim
        return live

    def status(self) -> dict[str, object]:
        out: dict[str, object] = {
            "source": self.label,
            "mode": "auto",
            "fallbacks": self.fallbacks,
            "fallback_reason": self.fallback_reason,
            "live": self._live.status(),
        }
        if self.sim is not None:
            out["sim"] = self.sim.status()
        out["state"] = self.state.value
        out["parse_errors"] = self.parse_errors()
        return out

    def parse_errors(self) -> dict[str, int]:
        """Live and every simulator run together (each half also has its own in status)."""
        return dict(Counter(self.live.parse_errors()) + self._sim_errors)


def build_source(
    settings: Settings,
    sink: Sink,
    on_state: StateListener | None = None,
    on_frame: FrameHook | None = None,
    latest: LatestTicks | None = None,
) -> SupervisedSource:
    """The source ``settings.source`` names, under a supervisor (its ``inner``).
    ``latest``: the ticks served so far, which simulated data continues from."""
    source = _unsupervised(settings, sink, on_state, on_frame, latest)
    return supervised(source, settings, on_state)


def _unsupervised(
    settings: Settings,
    sink: Sink,
    on_state: StateListener | None,
    on_frame: FrameHook | None,
    latest: LatestTicks | None,
) -> Source:
    name = settings.source
    if name.startswith("replay:"):
        return ReplaySource(Path(name[7:]), sink, settings.replay_speed, on_state)
    if name == "sim":
        return SimSource(settings, sink, on_state, on_frame, latest=latest)
    if name == "binance":
        return ExchangeSource(
            settings.binance_url,
            settings_streams(settings),
            "binance",
            sink,
            client_options(settings),
            on_state,
            on_frame,
            rest_url=settings.binance_rest_url,
        )
    return AutoSource(settings, sink, on_state, on_frame, latest)
