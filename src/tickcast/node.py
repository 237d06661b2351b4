"""A tickcast node: the hub, the ingest and the upstream source, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from tickcast.hub.base import Hub
from tickcast.hub.memory import MemoryHub
from tickcast.ingest import Ingest
from tickcast.settings import Settings
from tickcast.tasks import cancel_and_wait
from tickcast.upstream.sources import ReplaySource, SupervisedSource, build_source

log = logging.getLogger(__name__)

# /readyz: the newest tick must be younger than this many stale-after periods.
READY_FRESHNESS_FACTOR = 3

UpstreamListener = Callable[[dict[str, object]], None]


class Node:
    """Owns the data path of one process: source -> ingest -> hub."""

    def __init__(self, settings: Settings, hub: Hub | None = None) -> None:
        self.settings = settings
        self.hub: Hub = hub if hub is not None else MemoryHub(settings.history_size)
        self.ingest = Ingest(self.hub, settings.symbols)
        # Supervised: a source that fails is restarted with backoff, and says so meanwhile.
        self.source: SupervisedSource = build_source(
            settings, self.ingest.apply, self._upstream_changed
        )
        self.started_at = time.time()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[UpstreamListener] = []

    async def start(self) -> None:
        if isinstance(self.source.inner, ReplaySource):
            # Fail at start-up, with the file's name, rather than serve nothing.
            await asyncio.to_thread(self.source.inner.load)
        await self.hub.start()
        self._task = asyncio.create_task(self._run_source(), name="source")

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            with contextlib.suppress(Exception):  # already logged by _run_source
                await cancel_and_wait(task)
        await self.hub.stop()

    async def _run_source(self) -> None:
        # The supervisor restarts a failed source; only a bug of its own gets here.
        try:
            await self.source.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the upstream supervisor failed")
            raise

    def on_upstream_change(self, listener: UpstreamListener) -> Callable[[], None]:
        """Call ``listener`` with ``upstream_status()`` whenever the upstream state changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _upstream_changed(self) -> None:
        status = self.upstream_status()
        for listener in tuple(self._listeners):
            try:
                listener(status)
            except Exception:
                log.exception("upstream listener failed")

    def upstream_status(self) -> dict[str, object]:
        """The short form sent to clients in ``status`` messages."""
        brief = self.source.brief()
        return {
            "type": "status",
            "upstream": brief["state"],
            "source": self.source.label,
            "since": brief.get("since"),
            "reconnects": brief.get("reconnects", 0),
            "last_message_age": brief.get("last_message_age"),
            "simulated": self.source.label == "sim",
        }

    def newest_tick_age(self) -> float | None:
        snapshot = self.hub.snapshot()
        if not snapshot:
            return None
        newest = max(t.timestamp_ms for t in snapshot.values())
        return max(0.0, time.time() - newest / 1000)

    def ready(self) -> tuple[bool, str]:
        """Fresh data and a connected hub: what a load balancer should check."""
        if not self.hub.connected:
            return False, "hub disconnected"
        age = self.newest_tick_age()
        if age is None:
            return False, "no data yet"
        if age > self.settings.stale_after * READY_FRESHNESS_FACTOR:
            return False, f"newest tick is {age:.1f}s old"
        return True, "ok"

    def status(self) -> dict[str, object]:
        return {
            "node_id": self.settings.node_id,
            "uptime": round(time.time() - self.started_at, 3),
            "source": self.source.label,
            "simulated": self.source.label == "sim",
            "upstream": self.source.status(),
            "ingest": dict(self.ingest.counts),
            "hub": self.hub.status(),
            "symbols": sorted(self.ingest.symbols),
        }
