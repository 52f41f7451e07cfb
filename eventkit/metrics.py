"""Prometheus exposition of what :func:`eventkit.pipe.export_metrics` counts.

One collector per (registry, namespace) sums the counts of every live
``export_metrics`` operator at scrape time, plus what finished operators left
behind, so counters never go down and the hot path never touches
prometheus_client.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from eventkit.operators.metrics import ExportMetrics, MetricCounts

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

__all__ = ["EventMetricsCollector", "collector_for"]

_collectors: weakref.WeakKeyDictionary[
    CollectorRegistry, dict[str, EventMetricsCollector]
] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()


class EventMetricsCollector(Collector):
    """Exposes the counts of :class:`~eventkit.operators.metrics.ExportMetrics`.

    Metrics (``eventkit`` replaced by the namespace):

    - ``eventkit_events_total{type}``: events seen, by type;
    - ``eventkit_event_bytes_total{type}``: UTF-8 bytes of their data;
    - ``eventkit_runs_total{outcome}``: completed runs, ``success`` or ``failure``;
    - ``eventkit_resource_limits_total{limit}``: resource limits hit;
    - ``eventkit_run_duration_seconds``: histogram of run durations.
    """

    def __init__(self, namespace: str = "eventkit") -> None:
        self.namespace = namespace
        self._lock = threading.Lock()
        self._live: list[tuple[weakref.ref[ExportMetrics], MetricCounts]] = []
        # What operators that are gone had counted.
        self._retired = MetricCounts()

    def track(self, operator: ExportMetrics) -> None:
        """Include ``operator``'s counts from now on, and after it is gone."""
        with self._lock:
            self._live.append((weakref.ref(operator), operator.counts))

    def snapshot(self) -> MetricCounts:
        """Return the sum of every tracked operator's counts."""
        with self._lock:
            alive = []
            for ref, counts in self._live:
                if ref() is None:
                    _add(self._retired, counts)
                else:
                    alive.append((ref, counts))
            self._live = alive
            total = MetricCounts()
            _add(total, self._retired)
            for _, counts in alive:
                _add(total, counts)
        return total

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families (called by the registry at scrape time)."""
        counts = self.snapshot()
        ns = self.namespace
        for name, doc, label, values in (
            ("events", "Events seen, by type.", "type", counts.events),
            (
                "event_bytes",
                "UTF-8 bytes of event data, by type.",
                "type",
                counts.bytes,
            ),
            ("runs", "Completed runs, by outcome.", "outcome", counts.runs),
            (
                "resource_limits",
                "Resource limits hit, by limit.",
                "limit",
                counts.resource_limits,
            ),
        ):
            family = CounterMetricFamily(f"{ns}_{name}", doc, labels=[label])
            for value, count in sorted(values.items()):
                family.add_metric([value], count)
            yield family
        cumulative, buckets = 0, []
        for bound, count in zip(
            (*counts.bounds, float("inf")), counts.duration_buckets, strict=True
        ):
            cumulative += count
            buckets.append((_bound(bound), cumulative))
        yield HistogramMetricFamily(
            f"{ns}_run_duration_seconds",
            "Run durations: result's execution_time, else completed minus started.",
            buckets=buckets,
            sum_value=counts.duration_sum,
        )

    def describe(self) -> Iterator[Metric]:
        """Describe without collecting: registration must not read counts."""
        return iter(())


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _add(total: MetricCounts, counts: MetricCounts) -> None:
    # dict(...) copies in one C call, safe against the event loop thread adding
    # keys while a scrape thread reads.
    for mine, theirs in (
        (total.events, dict(counts.events)),
        (total.bytes, dict(counts.bytes)),
        (total.runs, dict(counts.runs)),
        (total.resource_limits, dict(counts.resource_limits)),
    ):
        for key, value in theirs.items():
            mine[key] = mine.get(key, 0) + value
    for index, value in enumerate(list(counts.duration_buckets)):
        total.duration_buckets[index] += value
    total.duration_sum += counts.duration_sum
    total.duration_count += counts.duration_count


def collector_for(
    registry: CollectorRegistry | None = None, namespace: str = "eventkit"
) -> EventMetricsCollector:
    """Return the collector of ``namespace`` in ``registry``, registering it once.

    Args:
        registry: Default: prometheus_client's default registry.
        namespace: The metric name prefix.
    """
    registry = REGISTRY if registry is None else registry
    with _collectors_lock:
        by_namespace = _collectors.setdefault(registry, {})
        collector = by_namespace.get(namespace)
        if collector is None:
            collector = by_namespace[namespace] = EventMetricsCollector(namespace)
            registry.register(collector)
    return collector
