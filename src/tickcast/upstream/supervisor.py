"""The supervisor every source runs under: a failed ``run`` is logged with its reason and
started again after a backoff, and while it is down the source says so.

Without it, one exception that escaped a source (a parser bug, a failed frame hook) ended
ingest for good while ``/status`` kept the dead client's last word, ``connected``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from tickcast.messages.tick import SourceLabel
from tickcast.upstream.base import Source, StateListener
from tickcast.upstream.binance import UpstreamState
from tickcast.upstream.pacing import Backoff

log = logging.getLogger(__name__)


class SupervisedSource:
    """Runs ``inner`` for ever, restarting it with ``backoff`` whenever its run fails.

    ``backoff`` starts over when a run lasted ``healthy_after`` seconds. ``on_state`` is
    called when the source goes down and when it is started again.
    """

    def __init__(
        self,
        inner: Source,
        backoff: Backoff,
        on_state: StateListener | None = None,
        *,
        healthy_after: float = 60.0,
    ) -> None:
        self.inner = inner
        self._backoff = backoff
        self._on_state = on_state
        self._healthy_after = healthy_after
        self.restarts = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._down_since: float | None = None

    @property
    def label(self) -> SourceLabel | None:
        return self.inner.label

    @property
    def rest_url(self) -> str | None:
        return self.inner.rest_url

    @property
    def down(self) -> bool:
        return self._down_since is not None

    @property
    def state(self) -> UpstreamState:
        return UpstreamState.RECONNECTING if self.down else self.inner.state

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.inner.run()
                error: BaseException = RuntimeError("the source stopped by itself")
            except Exception as exc:
                error = exc
            if time.monotonic() - started >= self._healthy_after:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            self.restarts += 1
            self.last_error = f"{type(error).__name__}: {error}"
            self.last_error_at = time.time()
            log.error(
                "upstream source %s failed (%s); restarting in %.1fs",
                self.inner.label or type(self.inner).__name__,
                self.last_error,
                delay,
                exc_info=error,
            )
            self._set_down(time.time())
            await asyncio.sleep(delay)
            self._set_down(None)

    def set_streams(self, streams: Sequence[str]) -> None:
        """Forwarded to the source, which keeps the set across its restarts."""
        self.inner.set_streams(streams)

    def _set_down(self, since: float | None) -> None:
        self._down_since = since
        if self._on_state is not None:
            self._on_state()

    def _newest_error(self, inner: dict[str, object]) -> dict[str, object]:
        """The source's own last error or the failure of its last run, whichever is newer."""
        at = inner.get("last_error_at")
        if self.last_error_at is not None and not (
            isinstance(at, float) and at > self.last_error_at
        ):
            return {"last_error": self.last_error, "last_error_at": self.last_error_at}
        return {"last_error": inner.get("last_error"), "last_error_at": at}

    def brief(self) -> dict[str, object]:
        inner = self.inner.brief()
        brief = {**inner, "restarts": self.restarts, **self._newest_error(inner)}
        if self._down_since is not None:
            brief.update(state=UpstreamState.RECONNECTING.value, since=self._down_since)
        return brief

    def status(self) -> dict[str, object]:
        inner = self.inner.status()
        status = {
            **inner,
            "restarts": self.restarts,
            **self._newest_error(inner),
            "parse_errors": self.parse_errors(),
        }
        if self._down_since is not None:
            status.update(state=UpstreamState.RECONNECTING.value, since=self._down_since)
        return status

    def parse_errors(self) -> dict[str, int]:
        return self.inner.parse_errors()
