"""What every source is: the ``Source`` protocol and the callbacks a source is given."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from tickcast.messages.tick import SourceLabel, Tick
from tickcast.upstream.binance import UpstreamState
from tickcast.upstream.normalize import MarketEvent

Sink = Callable[[MarketEvent, SourceLabel], object]
StateListener = Callable[[], None]
FrameHook = Callable[[SourceLabel, str], None]
# The latest tick of each symbol served so far (the hub's): where simulated data continues.
LatestTicks = Callable[[], Mapping[str, Tick]]


class Source(Protocol):
    """Where ticks come from. ``run`` feeds the sink until cancelled."""

    @property
    def label(self) -> SourceLabel | None:
        """Where the data served now comes from (``sim`` for simulated data); None while
        it is nothing that can be named (``auto`` before any data, or live lost)."""

    @property
    def state(self) -> UpstreamState: ...

    @property
    def rest_url(self) -> str | None:
        """The REST base (``http://host:port``, no trailing slash) of the exchange whose
        data is served now, for candle history; None while there is none (nothing served
        yet, or a replay)."""

    async def run(self) -> None: ...

    def set_streams(self, streams: Sequence[str]) -> None:
        """Make ``streams`` (Binance stream names) the set this source follows, before or
        while it runs: new listings are added and delistings removed on the open
        connections, with no reconnect. Once called, the latest set wins over the one
        the settings named, also for a run that starts later. A source that cannot
        choose its streams (a replay) ignores it."""

    def brief(self) -> dict[str, object]:
        """state, since, reconnects and last_message_age of what is serving now."""

    def status(self) -> dict[str, object]: ...

    def parse_errors(self) -> dict[str, int]:
        """Frames skipped since start, by kind, over everything this source has run."""
