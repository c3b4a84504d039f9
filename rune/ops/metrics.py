"""Prometheus metrics of one service (its own registry, so several services or tests in one
process do not share counters).

Two kinds: instruments updated on the hot path (decision counters and latency histograms,
HTTP counters) and a collector that reads the service's own counters and views at scrape time
(cache, Cedar evaluations, view sizes, watermarks, lag, dead letters, bundles), so nothing is
counted twice. docs/OPERATIONS.md describes every metric and the alerts built on them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from rune.connectors.base import TP

if TYPE_CHECKING:
    from rune.authorizer import Authorizer

__all__ = ["CONTENT_TYPE", "BatchHistogram", "Metrics", "ServiceView"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS: Final = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
EVALUATION_BUCKETS: Final = (
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


@dataclass(slots=True)
class ServiceView:
    """What the scrape-time collector reads; the service fills it in (``bind``)."""

    authorizer: Authorizer
    stats: Callable[[], Mapping[str, int]]
    dead_letters: Callable[[], Mapping[str, int]]
    ready: Callable[[], bool]
    log_available: Callable[[], bool] = lambda: True
    lag: dict[TP, int] = field(default_factory=dict)
    """Records behind the log end per ``(topic, partition)``, refreshed before each scrape."""


_STAT_COUNTERS: Final = {
    "events_applied": "Fact and entity events applied to the views",
    "events_rejected": "Events rejected (sent to the dead-letter topic)",
    "records_undecodable": "Records that could not be decoded",
    "bundles_loaded": "Policy bundles activated",
    "bundles_rejected": "Policy bundles rejected (the previous one stayed active)",
    "stale": "Requests denied because their consistency token was not reached in time",
    "changes_published": "Changefeed records published",
    "dead_letters_skipped": "Dead letters not published again when a restart replayed them",
}


class _ServiceCollector(Collector):
    def __init__(self, view: ServiceView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        v = self.view
        az = v.authorizer
        cache = az.cache_stats()
        hits = CounterMetricFamily("decision_cache_hits", "Decisions served from the cache")
        hits.add_metric([], cache.hits)
        misses = CounterMetricFamily("decision_cache_misses", "Decisions not in the cache")
        misses.add_metric([], cache.misses)
        entries = GaugeMetricFamily("decision_cache_entries", "Decisions held in the cache")
        entries.add_metric([], cache.entries)
        evals = CounterMetricFamily(
            "policy_evaluation_count", "Requests evaluated by Cedar policies (cache misses)"
        )
        evals.add_metric([], az.counters.cedar_evaluations)
        yield from (hits, misses, entries, evals)

        sizes = GaugeMetricFamily(
            "view_size", "Rows stored per relation (base and derived)", labels=["relation", "kind"]
        )
        for name, info in sorted(az.engine.relations().items()):
            if info.size is not None:
                sizes.add_metric([name, info.kind], info.size)
        yield sizes

        applied = GaugeMetricFamily(
            "applied_offset",
            "Offset of the last applied record per ingested partition",
            labels=["topic", "partition"],
        )
        for topic, parts in sorted(az.watermark.items()):
            for part, offset in sorted(parts.items()):
                applied.add_metric([topic, part], offset)
        yield applied
        lag = GaugeMetricFamily(
            "consumer_lag",
            "Records between the log end and the service's position, per partition",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(v.lag.items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag

        dead = CounterMetricFamily(
            "dead_letters", "Records sent to the dead-letter topic", labels=["stage"]
        )
        for stage, n in sorted(v.dead_letters().items()):
            dead.add_metric([stage], n)
        yield dead
        stats = v.stats()
        for name, text in _STAT_COUNTERS.items():
            c = CounterMetricFamily(name, text)
            c.add_metric([], stats.get(name, 0))
            yield c
        version = GaugeMetricFamily("bundle_version", "Version of the active policy bundle")
        if az.policy_version is not None:
            version.add_metric([], az.policy_version)
        yield version
        ready = GaugeMetricFamily(
            "rune_ready", "1 once caught up with a bundle active and the log reachable"
        )
        ready.add_metric([], 1 if v.ready() else 0)
        yield ready
        up = GaugeMetricFamily("log_available", "1 while the log (Kafka) is reachable")
        up.add_metric([], 1 if v.log_available() else 0)
        yield up


class BatchHistogram(Collector):
    """A histogram with one label, fed a batch at a time (``observe_many``): the decision
    path observes thousands of latencies per second, and prometheus_client's ``observe``
    takes a lock and walks the buckets per value. Exposed exactly like a ``Histogram``
    (``_bucket``/``_count``/``_sum`` per label value). Single-threaded writers only."""

    def __init__(self, name: str, doc: str, label: str, buckets: Sequence[float]) -> None:
        self.name, self.doc, self.label = name, doc, label
        self.bounds = list(buckets)
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe_many(self, value: str, seconds: Iterable[float]) -> None:
        counts = self._counts.get(value)
        if counts is None:
            counts = self._counts[value] = [0] * (len(self.bounds) + 1)
            self._sums[value] = 0.0
        total = 0.0
        bounds = self.bounds
        for s in seconds:
            counts[bisect_left(bounds, s)] += 1
            total += s
        self._sums[value] += total

    def count(self, value: str) -> int:
        return sum(self._counts.get(value, ()))

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.doc, labels=[self.label])

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.doc, labels=[self.label])
        for value, counts in self._counts.items():
            running = 0
            buckets: list[tuple[str, float]] = []
            for bound, n in zip([*self.bounds, float("inf")], counts, strict=True):
                running += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            family.add_metric([value], buckets, self._sums[value])
        yield family


class Metrics:
    """The instruments of one service and its registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "authorization_requests",
            "Decisions made, by outcome and by where the request came from",
            ["decision", "source"],
            registry=r,
        )
        self.latency = BatchHistogram(
            "authorization_latency_seconds",
            "Time to decide one request inside the service (the decision's latency_us)",
            "source",
            LATENCY_BUCKETS,
        )
        r.register(self.latency)
        self.datalog_time = Histogram(
            "datalog_evaluation_time_seconds",
            "Time the Datalog engine spent per applied ingest step or bundle load",
            ["kind"],
            buckets=EVALUATION_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "http_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request handling time by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_in_flight = Gauge(
            "http_requests_in_flight", "HTTP requests being handled", registry=r
        )
        self.rate_limited = Counter(
            "rate_limited", "HTTP requests refused with 429 by the per-client limit", registry=r
        )
        self.internal_errors = Counter(
            "internal_errors",
            "Faults contained to one record (a bug: the record is dead-lettered or denied)",
            ["stage"],
            registry=r,
        )
        self.delivery_retries = Counter(
            "delivery_retries",
            "Records produced again after a failed or aborted delivery",
            registry=r,
        )
        self.reloads = Counter(
            "config_reloads", "Settings reloads (SIGHUP, /admin/reload)", ["result"], registry=r
        )
        ProcessCollector(registry=r)  # process_resident_memory_bytes, cpu, open fds
        Info("rune", "RUNE build information", registry=r).info(
            {"version": metadata.version("rune")}
        )
        self.view: ServiceView | None = None

    def bind(self, view: ServiceView) -> None:
        """Export the service's own counters and views (once)."""
        if self.view is None:
            self.registry.register(_ServiceCollector(view))
        self.view = view

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
