"""The Prometheus collector: eventkit's numbers, read at scrape time.

Nothing here runs per event. Operators, chains, sources and the local server
keep plain Python counters; one collector per (registry, namespace) reads and
sums them when Prometheus scrapes (or a push happens), plus what finished
operators and chains left behind, so counters never go down.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from eventkit.metrics.table import INFO, METRICS, MetricInfo
from eventkit.operators.metrics import ExportMetrics, ExportRunMetrics, MetricCounts
from eventkit.stats import all_source_stats, current_server_stats

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

    from eventkit.chain import ChainStats
    from eventkit.operators._base import Operator

__all__ = ["EventMetricsCollector", "collector_for", "stage_name"]

# (metric name, label values) -> value: how chain, source and server numbers
# are summed and retired.
_Key = tuple[str, tuple[str, ...]]
_Samples = dict[_Key, float]


def stage_name(operator: Operator) -> str:
    """Return the operator's name as in ``eventkit.pipe`` (``"buffer_bytes"``).

    An operator says it with a ``name`` attribute; one without is known by
    its class name in lower case.
    """
    name = getattr(operator, "name", None)
    return name if isinstance(name, str) else type(operator).__name__.lower()


class EventMetricsCollector(Collector):
    """Exposes what eventkit counts; one per (registry, namespace).

    Get it with :func:`collector_for`; :func:`eventkit.pipe.export_metrics`
    does. It sums, at scrape time:

    - the counts of every :class:`~eventkit.operators.metrics.ExportMetrics`
      operator, live or gone;
    - with :attr:`self_metrics`, the numbers of every chain that holds such
      an operator (per stage), of the sources and of the local server;
    - the per-run series of live
      :class:`~eventkit.operators.metrics.ExportRunMetrics` operators.

    Metric names are :data:`METRICS` prefixed with the namespace.

    Args:
        namespace: The metric name prefix.
    """

    def __init__(self, namespace: str = "eventkit") -> None:
        self.namespace = namespace
        #: Whether the self-metrics families are exposed; turned on for good
        #: by :meth:`enable_self_metrics`.
        self.self_metrics = False
        self._lock = threading.Lock()
        self._live: list[tuple[weakref.ref[ExportMetrics], MetricCounts]] = []
        # What operators that are gone had counted.
        self._retired = MetricCounts()
        self._run_operators: weakref.WeakSet[ExportRunMetrics] = weakref.WeakSet()
        self._chains: dict[int, tuple[weakref.ref[ChainStats], tuple[str, ...]]] = {}
        # What finished chains had counted, by metric and labels.
        self._retired_chains: _Samples = {}
        # The counters last exposed per live chain: a count derived from an
        # operator's own counters, read while the event loop runs, can lag by
        # an event, and a counter must never be seen going down.
        self._exposed: dict[int, _Samples] = {}

    def track(self, operator: ExportMetrics) -> None:
        """Include ``operator``'s counts from now on, and after it is gone."""
        with self._lock:
            self._live.append((weakref.ref(operator), operator.counts))
            if isinstance(operator, ExportRunMetrics):
                self._run_operators.add(operator)

    def enable_self_metrics(self) -> None:
        """Expose the self-metrics families from now on (stages, sources, server)."""
        self.self_metrics = True

    def track_chain(self, stats: ChainStats) -> None:
        """Expose the per-stage numbers of a chain until it finishes, then keep them.

        The runner calls this, through an operator's ``observe_chain``, when
        it builds a chain (see :class:`eventkit.chain.ChainStats`). Tracking
        the same chain twice does nothing.
        """
        self.enable_self_metrics()
        labels = tuple(
            f"{index}:{stage_name(op)}" for index, op in enumerate(stats.operators)
        )
        with self._lock:
            if id(stats) in self._chains:
                return
            self._chains[id(stats)] = (weakref.ref(stats), labels)
        stats.on_finish(self._retire_chain)

    def _retire_chain(self, stats: ChainStats) -> None:
        with self._lock:
            entry = self._chains.pop(id(stats), None)
            exposed = self._exposed.pop(id(stats), {})
            if entry is None:
                return
            # Read in the event loop's thread after the last event: exact, and
            # never below what was exposed.
            counters, _ = _chain_samples(stats, entry[1])
            for key, value in exposed.items():
                counters[key] = max(counters.get(key, 0), value)
            _merge(self._retired_chains, counters)

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
        yield from self._event_families(counts)
        if self.self_metrics:
            counters, gauges = self._self_samples()
            for info in METRICS:
                if info.group == "self":
                    yield self._family(
                        info, counters if info.kind == "counter" else gauges
                    )
        with self._lock:
            run_operators = list(self._run_operators)
        if run_operators or counts.refused_run_series:
            yield from self._run_families(run_operators, counts)

    def describe(self) -> Iterator[Metric]:
        """Describe without collecting: registration must not read counts."""
        return iter(())

    def _name(self, info: MetricInfo) -> str:
        # client_python adds _total to a counter family's name itself.
        name = info.name.removesuffix("_total") if info.kind == "counter" else info.name
        return f"{self.namespace}_{name}"

    def _family(self, info: MetricInfo, samples: _Samples) -> Metric:
        family: CounterMetricFamily | GaugeMetricFamily
        if info.kind == "counter":
            family = CounterMetricFamily(
                self._name(info), info.help, labels=info.labels
            )
        else:
            family = GaugeMetricFamily(self._name(info), info.help, labels=info.labels)
        for (name, labels), value in sorted(samples.items()):
            if name == info.name:
                family.add_metric(labels, value)
        return family

    def _event_families(self, counts: MetricCounts) -> Iterator[Metric]:
        for name, values in (
            ("events_total", counts.events),
            ("event_bytes_total", counts.bytes),
            ("runs_total", counts.runs),
            ("resource_limits_total", counts.resource_limits),
            ("errors_total", counts.errors),
        ):
            info = INFO[name]
            family = CounterMetricFamily(
                self._name(info), info.help, labels=info.labels
            )
            for value, count in sorted(values.items()):
                family.add_metric([value], count)
            yield family
        cumulative, buckets = 0, []
        for bound, count in zip(
            (*counts.bounds, float("inf")), counts.duration_buckets, strict=True
        ):
            cumulative += count
            buckets.append((_bound(bound), cumulative))
        info = INFO["run_duration_seconds"]
        yield HistogramMetricFamily(
            self._name(info),
            info.help,
            buckets=buckets,
            sum_value=counts.duration_sum,
        )

    def _self_samples(self) -> tuple[_Samples, _Samples]:
        """Return the self-metrics counters and gauges, summed."""
        gauges: _Samples = {}
        with self._lock:
            counters = dict(self._retired_chains)
            for chain, (ref, labels) in list(self._chains.items()):
                stats = ref()
                if stats is None:
                    # Gone without finishing: nothing left to read.
                    del self._chains[chain]
                    self._exposed.pop(chain, None)
                    continue
                live_counters, live_gauges = _chain_samples(stats, labels)
                exposed = self._exposed.setdefault(chain, {})
                for sample, value in live_counters.items():
                    exposed[sample] = live_counters[sample] = max(
                        value, exposed.get(sample, 0)
                    )
                _merge(counters, live_counters)
                _merge(gauges, live_gauges)
        server = current_server_stats()
        for source in all_source_stats():
            label = (source.kind,)
            for name, value in (
                ("source_connections_total", source.connections),
                ("source_frames_total", source.frames),
                ("source_invalid_frames_total", source.invalid_frames),
                ("source_closed_before_complete_total", source.closed_before_complete),
                ("source_reconnects_total", source.reconnects),
            ):
                counters[name, label] = counters.get((name, label), 0) + value
            key = ("source_open_connections", label)
            gauges[key] = gauges.get(key, 0) + source.open_connections
        if server is not None:
            running, queued = server.gauges()
            gauges["server_running_executions", ()] = running
            gauges["server_queued_executions", ()] = queued
            counters["server_executions_total", ()] = server.executions
            for reason, count in dict(server.refusals).items():
                counters["server_refusals_total", (reason,)] = count
            for reason, count in dict(server.aborts).items():
                counters["server_aborts_total", (reason,)] = count
        return counters, gauges

    def _run_families(
        self, operators: list[ExportRunMetrics], counts: MetricCounts
    ) -> Iterator[Metric]:
        samples: _Samples = {}
        gauges: _Samples = {}
        live_runs: set[str] = set()
        for operator in operators:
            now = operator.clock()
            for run, series in list(operator.runs.items()):
                if not operator.live(series, now):
                    continue
                live_runs.add(run)
                label = (run,)
                for name, value in (
                    ("run_events_total", series.events),
                    ("run_event_bytes_total", series.bytes),
                ):
                    samples[name, label] = samples.get((name, label), 0) + value
                gauges["run_start_time_seconds", label] = series.start_time
                if series.progress is not None:
                    gauges["run_progress_ratio", label] = series.progress
        gauges["labelled_runs", ()] = len(live_runs)
        samples["run_series_refused_total", ()] = counts.refused_run_series
        for info in METRICS:
            if info.group == "run":
                yield self._family(info, samples if info.kind == "counter" else gauges)


def _chain_samples(
    stats: ChainStats, labels: tuple[str, ...]
) -> tuple[_Samples, _Samples]:
    """Read a chain's per-stage counters and gauges, as samples."""
    counters: _Samples = {}
    gauges: _Samples = {}
    received = stats.received()
    for index, op in enumerate(stats.operators):
        stage = (labels[index],)
        counters["stage_received_events_total", stage] = received[index]
        counters["stage_sent_events_total", stage] = received[index + 1]
        internals = getattr(op, "internals", None)
        if internals is None:
            continue
        dropped, own_counters, own_gauges = internals()
        for (name, extra), value in own_counters.items():
            counters[name, (*stage, *extra)] = value
        for (name, extra), value in own_gauges.items():
            gauges[name, (*stage, *extra)] = value
        for reason, count in dropped.items():
            counters["stage_dropped_events_total", (*stage, reason)] = count
    return counters, gauges


def _merge(total: _Samples, samples: _Samples) -> None:
    for key, value in samples.items():
        total[key] = total.get(key, 0) + value


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
        (total.errors, dict(counts.errors)),
    ):
        for key, value in theirs.items():
            mine[key] = mine.get(key, 0) + value
    for index, value in enumerate(list(counts.duration_buckets)):
        total.duration_buckets[index] += value
    total.duration_sum += counts.duration_sum
    total.duration_count += counts.duration_count
    total.refused_run_series += counts.refused_run_series


_collectors: weakref.WeakKeyDictionary[
    CollectorRegistry, dict[str, EventMetricsCollector]
] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()


def collector_for(
    registry: CollectorRegistry | None = None,
    namespace: str = "eventkit",
    *,
    self_metrics: bool = False,
) -> EventMetricsCollector:
    """Return the collector of ``namespace`` in ``registry``, registering it once.

    Programs without a pipeline (``eventkit serve``) call it with
    ``self_metrics=True`` to expose the sources' and the server's numbers.

    Args:
        registry: Default: prometheus_client's default registry.
        namespace: The metric name prefix.
        self_metrics: Turn the self-metrics families on (they stay on).
    """
    registry = REGISTRY if registry is None else registry
    with _collectors_lock:
        by_namespace = _collectors.setdefault(registry, {})
        collector = by_namespace.get(namespace)
        if collector is None:
            collector = by_namespace[namespace] = EventMetricsCollector(namespace)
            registry.register(collector)
    if self_metrics:
        collector.enable_self_metrics()
    return collector
