"""The ``replay:PATH`` source: a capture written by ``tickcast record``, played in a loop.

A capture is JSONL, one upstream frame a line: ``{"t": receive time ms, "source": label,
"frame": text}``. ``source`` (``binance`` or ``sim``) says where the frame was captured;
captures written before it existed are read too, as of unknown origin.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import orjson

from tickcast.messages.book import DepthEvent
from tickcast.messages.stream import interval_ms
from tickcast.messages.tick import SourceLabel
from tickcast.upstream.base import Sink, StateListener
from tickcast.upstream.binance import UpstreamState
from tickcast.upstream.normalize import (
    KlineEvent,
    MarketEvent,
    Normalizer,
    TradeEvent,
    Update,
    wall_ms,
)

log = logging.getLogger(__name__)

# Pause between two passes, so a loop of a short capture does not spin.
PASS_PAUSE: Final = 0.5


@dataclass(frozen=True, slots=True)
class Record:
    """One captured frame: when it was received, what it said, where it came from."""

    t: int
    frame: str
    recorded_source: str | None

    @property
    def label(self) -> SourceLabel:
        # Simulated data stays marked simulated when replayed; anything else is a replay.
        return "sim" if self.recorded_source == "sim" else "replay"


def load_capture(path: Path) -> list[Record]:
    """The capture's records; raises ValueError naming a bad line, or an empty capture."""
    records: list[Record] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
                source = item.get("source")
                records.append(
                    Record(
                        int(item["t"]), str(item["frame"]), None if source is None else str(source)
                    )
                )
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{number}: not a capture line ({exc})") from exc
    if not records:
        raise ValueError(f"{path}: the capture holds no frames")
    return records


class _Timeline:
    """Makes each pass of a looped capture look like fresh data.

    Replayed verbatim, the second pass would repeat the first one's event times and update
    ids: the ingest would drop every update as a duplicate and ``/price`` would freeze. So
    each pass is moved in time and in order:

    - event time: ``E' = pass start (wall ms) + (E - t0) / speed``, where ``t0`` is the
      receive time of the capture's first frame. The pass lands at the current time (an
      old capture looks live, so ``/readyz`` stays ready) and keeps the recorded spacing at
      the playback speed; ``E'`` never decreases where ``E`` does not.
    - order (event time, book update id, trade id; per kind): ``order' = order + pass *
      span``, where ``span`` is the kind's range of orders in the capture plus one, so every
      order of a pass is above every order of the passes before it.

    A bookTicker carries no event time; its frame is stamped with its receive time ``t``.
    A trade moves like an update (its order is its trade id, its trade time moves with its
    event time). A candle moves by whole intervals, so that it still starts on its
    interval's boundary; its order is its open time, which that keeps increasing.
    """

    def __init__(self, t0: int, speed: float) -> None:
        self._t0 = t0
        self._speed = speed
        self._low: dict[str, int] = {}
        self._high: dict[str, int] = {}
        self.index = 0
        self.began_ms = 0

    def start_pass(self, index: int, began_ms: int) -> None:
        self.index, self.began_ms = index, began_ms

    def shift(self, event: MarketEvent) -> MarketEvent:
        if isinstance(event, Update):
            order = self._order(event.kind, event.order)
            return replace(event, order=order, event_time_ms=self._time(event.event_time_ms))
        if isinstance(event, TradeEvent):
            moved = self._time(event.event_time_ms)
            return replace(
                event,
                trade_id=self._order("aggTrade", event.trade_id),
                event_time_ms=moved,
                trade_time_ms=event.trade_time_ms + moved - event.event_time_ms,
            )
        if isinstance(event, DepthEvent):
            # Update ids stay: a book keeps them whole only within one pass.
            return replace(event, event_time_ms=self._time(event.event_time_ms))
        return self._shift_candle(event)

    def _shift_candle(self, event: KlineEvent) -> KlineEvent:
        length = interval_ms(event.interval)
        moved = self._time(event.event_time_ms)
        if length is None:  # a month has no fixed length: the candle stays where it was
            return replace(event, event_time_ms=moved)
        step = (moved - event.event_time_ms) // length * length
        return replace(
            event,
            open_time=event.open_time + step,
            close_time=event.close_time + step,
            event_time_ms=moved,
        )

    def _order(self, kind: str, order: int) -> int:
        if self.index == 0:  # the spans are learnt during the first pass
            self._low[kind] = min(self._low.get(kind, order), order)
            self._high[kind] = max(self._high.get(kind, order), order)
        span = self._high.get(kind, order) - self._low.get(kind, order) + 1
        return order + self.index * span

    def _time(self, event_time_ms: int) -> int:
        return self.began_ms + math.floor((event_time_ms - self._t0) / self._speed)


class ReplaySource:
    """Replays a capture written by ``tickcast record``, at its recorded pace, in a loop."""

    def __init__(
        self, path: Path, sink: Sink, speed: float = 1.0, on_state: StateListener | None = None
    ) -> None:
        self.path = path
        self._sink = sink
        self._speed = speed
        self._on_state = on_state
        self._state = UpstreamState.CONNECTING
        self._since = time.time()
        self._label: SourceLabel = "replay"
        self._records: list[Record] | None = None
        self._last_frame: float | None = None
        self.errors: Counter[str] = Counter()
        self.normalizer = Normalizer(errors=self.errors)
        self.passes = 0
        self.frames = 0

    @property
    def label(self) -> SourceLabel:
        return self._label

    @property
    def state(self) -> UpstreamState:
        return self._state

    @property
    def rest_url(self) -> str | None:
        """None: a capture has no exchange to ask for candle history."""
        return None

    def set_streams(self, streams: Sequence[str]) -> None:
        """Ignored: a capture replays the frames it holds, whatever streams are asked."""

    def load(self) -> list[Record]:
        """The capture's records (read once); raises ValueError naming a bad line."""
        if self._records is None:
            self._records = load_capture(self.path)
            self._label = self._records[0].label
        return self._records

    async def run(self) -> None:
        records = self._records
        if records is None:
            records = await asyncio.to_thread(self.load)
        timeline = _Timeline(records[0].t, self._speed)
        self._set_state(UpstreamState.CONNECTED)
        while True:
            timeline.start_pass(self.passes, wall_ms())
            self.passes += 1
            began, t0 = time.monotonic(), records[0].t
            for record in records:
                due = began + (record.t - t0) / 1000 / self._speed
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                self._play(record, timeline)
            await asyncio.sleep(PASS_PAUSE)

    def _play(self, record: Record, timeline: _Timeline) -> None:
        self.frames += 1
        self._last_frame = time.monotonic()
        recorded_at = functools.partial(int, record.t)
        for event in self.normalizer.parse(record.frame, now_ms=recorded_at):
            if not isinstance(event, Update | TradeEvent | KlineEvent):
                continue
            if record.label != self._label:
                self._label = record.label
                self._notify()
            try:
                self._sink(timeline.shift(event), record.label)
            except Exception:
                self.errors["sink_error"] += 1
                if self.errors["sink_error"] == 1:
                    log.exception("replayed event skipped (sink_error)")

    def _set_state(self, state: UpstreamState) -> None:
        self._state = state
        self._since = time.time()
        self._notify()

    def _notify(self) -> None:
        if self._on_state is not None:
            self._on_state()

    def _age(self) -> float | None:
        return None if self._last_frame is None else round(time.monotonic() - self._last_frame, 3)

    def brief(self) -> dict[str, object]:
        return {
            "state": self._state.value,
            "since": self._since,
            "reconnects": 0,
            "last_message_age": self._age(),
        }

    def status(self) -> dict[str, object]:
        recorded = Counter(r.recorded_source or "unlabelled" for r in self._records or ())
        return {
            **self.brief(),
            "source": self._label,
            "mode": "replay",
            "path": str(self.path),
            "recorded_sources": dict(recorded),
            "passes": self.passes,
            "frames": self.frames,
            "parse_errors": self.parse_errors(),
        }

    def parse_errors(self) -> dict[str, int]:
        return dict(self.errors)
