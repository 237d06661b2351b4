"""Prometheus metrics. Counters live as plain integers in the objects that own them and
are read at scrape time, so the fan-out never takes a metrics lock per delivery."""

from __future__ import annotations

import platform
import typing
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tickcast import __version__
from tickcast.edge.fanout import Edge
from tickcast.edge.tokens import Refusal
from tickcast.messages.message import Message
from tickcast.messages.tick import SourceLabel, Tick
from tickcast.node import Node
from tickcast.upstream.binance import UpstreamState

FANOUT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
AGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One registry per app, so several apps can live in one process (tests)."""

    def __init__(self, node: Node, edge: Edge) -> None:
        self.registry = CollectorRegistry()
        self.fanout = Histogram(
            "tickcast_fanout_seconds",
            "Time to hand one tick to every subscribed client",
            buckets=FANOUT_BUCKETS,
            registry=self.registry,
        )
        self.tick_age = Histogram(
            "tickcast_tick_age_seconds",
            "Exchange event time to the start of its fan-out",
            buckets=AGE_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(node, edge))

    def observe_fanout(self, message: Message, seconds: float, now_ms: int) -> None:
        self.fanout.observe(seconds)
        if type(message) is Tick:
            self.tick_age.observe(max(0.0, (now_ms - message.timestamp_ms) / 1000))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, node: Node, edge: Edge) -> None:
        self._node = node
        self._edge = edge

    def collect(self) -> Iterator[Metric]:
        node, edge = self._node, self._edge
        yield _counter(
            "tickcast_ticks_in", "Ticks published by the ingest", node.ingest.counts["published"]
        )
        yield _counter(
            "tickcast_duplicates_dropped",
            "Upstream duplicates dropped",
            node.ingest.counts["duplicates"],
        )
        totals = edge.session_totals()  # one pass over the sessions for both
        yield _counter("tickcast_deliveries", "Ticks written to clients", totals["delivered"])
        yield _counter(
            "tickcast_conflated_updates",
            "Ticks replaced by a newer one before a slow client took them",
            totals["conflated"],
        )
        brief = node.source.brief()
        reconnects = brief.get("reconnects")
        count = reconnects if isinstance(reconnects, int) else 0
        yield _counter("tickcast_upstream_reconnects", "Upstream reconnects", count)
        yield _counter(
            "tickcast_upstream_restarts",
            "Upstream source restarts after a failure",
            node.source.restarts,
        )
        yield from _upstream_times(brief)
        clients = GaugeMetricFamily("tickcast_clients", "Connected clients", labels=["transport"])
        for transport, count in edge.clients_by_transport().items():
            clients.add_metric([transport], count)
        yield clients
        closes = CounterMetricFamily(
            "tickcast_client_closes", "Clients closed by the server", labels=["reason"]
        )
        for reason, count in edge.closes.items():
            closes.add_metric([reason], count)
        yield closes
        refused = CounterMetricFamily(
            "tickcast_handshakes_refused",
            "Connections closed before their request head was complete, by reason",
            labels=["reason"],
        )
        for reason in ("timeout", "too_large", "per_ip"):
            refused.add_metric([reason], float(edge.guard.refused[reason]))
        yield refused
        auth = CounterMetricFamily(
            "tickcast_auth_refused",
            "Tokens refused (at the handshake, or in an auth or refresh op), by reason",
            labels=["reason"],
        )
        for reason in Refusal:
            auth.add_metric([reason.value], float(edge.access.refused[reason.value]))
        yield auth
        yield GaugeMetricFamily(
            "tickcast_handshakes_in_progress",
            "Connections whose request head is still arriving",
            value=sum(edge.guard.in_handshake.values()),
        )
        state = GaugeMetricFamily(
            "tickcast_upstream_state", "Upstream state (1 = current)", labels=["state"]
        )
        for candidate in UpstreamState:
            state.add_metric([candidate.value], 1.0 if node.source.state == candidate else 0.0)
        yield state
        errors = CounterMetricFamily(
            "tickcast_upstream_parse_errors", "Upstream frames skipped, by kind", labels=["kind"]
        )
        for kind, count in sorted(node.source.parse_errors().items()):
            errors.add_metric([kind], float(count))
        yield errors
        yield from _cluster(node)
        yield from _identity(node)
        yield from _books(node)


def _books(node: Node) -> Iterator[Metric]:
    """Order books: how many are whole here, per state; on the leader the snapshots and
    resyncs it needed, and the books carried across connections with none."""
    if node.books is None:
        return
    held = node.hub.books()
    states = GaugeMetricFamily(
        "tickcast_books", "Order books by the state this node serves them in", labels=["state"]
    )
    counts = {"synced": 0, "syncing": 0, "broken": 0}
    for symbol in node.books.symbols:
        counts[held.state(symbol)] += 1
    for state, count in counts.items():
        states.add_metric([state], count)
    yield states
    if node.leading:
        keeper = node.books.status()
        for name, documentation in (
            ("snapshots", "REST depth snapshots taken"),
            ("resyncs", "Books resynced after a gap, a crossed book or a fresh connection"),
            ("carried", "Books carried across a fresh connection or leader with no snapshot"),
        ):
            yield _counter(f"tickcast_book_{name}", documentation, _number(keeper[name]))


def _identity(node: Node) -> Iterator[Metric]:
    """What is served and by what: an alert on ``tickcast_source{source="sim"} == 1``
    catches simulated prices served where live ones are expected."""
    serving = node.upstream_status()["source"]
    source = GaugeMetricFamily(
        "tickcast_source",
        "Where the data served now comes from (1 = current; all 0 while nothing is served)",
        labels=["source"],
    )
    for label in typing.get_args(SourceLabel):
        source.add_metric([label], 1.0 if serving == label else 0.0)
    yield source
    info = GaugeMetricFamily(
        "tickcast_build_info", "tickcast's version and the Python it runs on (always 1)",
        labels=["version", "python"],
    )  # fmt: skip
    info.add_metric([__version__, platform.python_version()], 1.0)
    yield info


def _cluster(node: Node) -> Iterator[Metric]:
    """SPEC §7: leadership, lease changes and the Redis hub's link, lag and refusals."""
    yield GaugeMetricFamily(
        "tickcast_cluster_leader", "1 while this node ingests (leads)", value=float(node.leading)
    )
    changes = CounterMetricFamily(
        "tickcast_lease_changes", "Leader lease gained or lost by this node", labels=["change"]
    )
    for change in ("elected", "deposed"):
        changes.add_metric([change], float(node.lease_changes[change]))
    yield changes
    if node.redis is None:
        return
    hub = node.redis.status()
    yield GaugeMetricFamily(
        "tickcast_hub_connected", "1 while the Redis hub's reader is connected",
        value=1.0 if hub["connected"] else 0.0,
    )  # fmt: skip
    yield GaugeMetricFamily(
        "tickcast_hub_reader_lag_entries", "Stream entries this node has not read yet",
        value=float(_number(hub["lag_seq"])),
    )  # fmt: skip
    yield GaugeMetricFamily(
        "tickcast_hub_reader_lag_seconds", "Age of the newest entry read when it was read",
        value=_number(hub["lag_ms"]) / 1000,
    )  # fmt: skip
    for name, documentation in (
        ("fenced", "Publishes refused by Redis: the lease was no longer this node's"),
        ("duplicates", "Updates Redis had applied already (takeover overlap, retried write)"),
        ("resyncs", "Reloads after the reader was trimmed past or Redis lost its data"),
        ("reconnects", "Reconnections of the Redis hub's reader"),
        ("dropped_full", "Ticks dropped because the publish queue was full"),
    ):
        yield _counter(f"tickcast_hub_{name}", documentation, _number(hub[name]))


def _number(value: object) -> int:
    return value if isinstance(value, int) else 0


def _upstream_times(brief: dict[str, object]) -> Iterator[Metric]:
    """SPEC §3: since when the upstream is in its state, and the age of its last message."""
    since = GaugeMetricFamily(
        "tickcast_upstream_state_since_seconds",
        "Unix time at which the upstream entered its current state",
    )
    if isinstance(since_value := brief.get("since"), int | float):
        since.add_metric([], float(since_value))
    yield since
    age = GaugeMetricFamily(
        "tickcast_upstream_last_message_age_seconds",
        "Seconds since the upstream last delivered data (absent before the first)",
    )
    if isinstance(age_value := brief.get("last_message_age"), int | float):
        age.add_metric([], float(age_value))
    yield age


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)
