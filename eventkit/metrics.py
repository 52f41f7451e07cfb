"""Prometheus exposition of eventkit's numbers, read at scrape time.

Nothing here runs per event. Operators, chains, sources and the local server
keep plain Python counters; one collector per (registry, namespace) reads and
sums them when Prometheus scrapes (or a push happens), plus what finished
operators and chains left behind, so counters never go down.

What is exposed (every name is listed, with its labels, in
``docs/metrics.md`` and in :data:`METRICS`):

- **events**, from :func:`eventkit.pipe.export_metrics`: events, bytes, runs,
  resource limits and errors, the run duration histogram;
- **self-metrics** (``export_metrics(self_metrics=True)``, the default): per
  stage of the chain holding ``export_metrics``, events received, sent and
  dropped (by ``reason``) and each operator's internals; the process's
  sources (:func:`source_stats`) and local server (:func:`server_stats`);
- **per-run series** (``export_metrics(run_labels=True)``): a ``run`` label,
  kept short-lived and capped.

A ``stage`` label names a position in the chain and the operator there, such
as ``"2:buffer_bytes"``: a handful of values per pipeline.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, Protocol

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from eventkit.operators.buffer import BufferBytes
from eventkit.operators.log import LogEvents, LogSummaries
from eventkit.operators.metrics import (
    MAX_LABEL_VALUES,
    ExportMetrics,
    ExportRunMetrics,
    MetricCounts,
)
from eventkit.operators.progress import TrackProgress
from eventkit.operators.reorder import Reorder
from eventkit.operators.select import Select

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

    from eventkit.operators._base import Operator
    from eventkit.runner import ChainStats

__all__ = [
    "METRICS",
    "Admissions",
    "EventMetricsCollector",
    "MetricInfo",
    "ServerStats",
    "SourceStats",
    "collector_for",
    "server_stats",
    "source_stats",
    "stage_name",
]


class MetricInfo(NamedTuple):
    """One metric eventkit exposes, as listed in ``docs/metrics.md``.

    Attributes:
        name: The name after the namespace and ``_`` (``events_total``).
        kind: ``counter``, ``gauge`` or ``histogram``.
        labels: Its label names.
        group: What turns it on: ``events`` (``export_metrics``), ``self``
            (``self_metrics=True``) or ``run`` (``run_labels=True``).
        help: Its HELP text.
    """

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    group: Literal["events", "self", "run"]
    help: str


#: Every metric, in exposition order. The one table of names: the docs list
#: the same, and a test checks that they agree.
METRICS: Final = (
    MetricInfo("events_total", "counter", ("type",), "events", "Events, by type."),
    MetricInfo(
        "event_bytes_total",
        "counter",
        ("type",),
        "events",
        "UTF-8 bytes of event data, by type.",
    ),
    MetricInfo(
        "runs_total", "counter", ("outcome",), "events", "Completed runs, by outcome."
    ),
    MetricInfo(
        "resource_limits_total",
        "counter",
        ("limit",),
        "events",
        "Resource limits hit, by limit.",
    ),
    MetricInfo(
        "errors_total", "counter", ("code",), "events", "Error events, by code."
    ),
    MetricInfo(
        "run_duration_seconds",
        "histogram",
        (),
        "events",
        "Run durations: result's execution_time, else completed minus started.",
    ),
    MetricInfo(
        "stage_received_events_total",
        "counter",
        ("stage",),
        "self",
        "Events that entered the stage.",
    ),
    MetricInfo(
        "stage_sent_events_total",
        "counter",
        ("stage",),
        "self",
        "Events the stage emitted.",
    ),
    MetricInfo(
        "stage_dropped_events_total",
        "counter",
        ("stage", "reason"),
        "self",
        "Events the stage dropped, by reason.",
    ),
    MetricInfo(
        "reorder_held_events",
        "gauge",
        ("stage",),
        "self",
        "Events reorder holds, waiting for earlier sequences.",
    ),
    MetricInfo(
        "reorder_gaps_total",
        "counter",
        ("stage",),
        "self",
        "Holes in sequences that reorder gave up on.",
    ),
    MetricInfo(
        "reorder_missing_events_total",
        "counter",
        ("stage",),
        "self",
        "Sequences in the holes reorder gave up on.",
    ),
    MetricInfo(
        "buffer_chunks_total",
        "counter",
        ("stage", "reason"),
        "self",
        "Chunks buffer_bytes emitted, by why they left.",
    ),
    MetricInfo(
        "buffer_splits_total",
        "counter",
        ("stage",),
        "self",
        "Events larger than the limit that buffer_bytes split.",
    ),
    MetricInfo(
        "buffer_pending_bytes",
        "gauge",
        ("stage",),
        "self",
        "UTF-8 bytes buffer_bytes holds now.",
    ),
    MetricInfo(
        "progress_active_runs",
        "gauge",
        ("stage",),
        "self",
        "Runs track_progress follows now (seen, not completed).",
    ),
    MetricInfo(
        "source_connections_total",
        "counter",
        ("source",),
        "self",
        "Connections (or processes) sources opened.",
    ),
    MetricInfo(
        "source_open_connections",
        "gauge",
        ("source",),
        "self",
        "Connections (or processes) sources have open now.",
    ),
    MetricInfo(
        "source_frames_total",
        "counter",
        ("source",),
        "self",
        "Frames (messages, lines) sources received.",
    ),
    MetricInfo(
        "source_invalid_frames_total",
        "counter",
        ("source",),
        "self",
        "Frames sources could not decode.",
    ),
    MetricInfo(
        "source_closed_before_complete_total",
        "counter",
        ("source",),
        "self",
        "Streams that ended before their run completed.",
    ),
    MetricInfo(
        "server_running_executions",
        "gauge",
        (),
        "self",
        "Executions the local server runs now.",
    ),
    MetricInfo(
        "server_queued_executions",
        "gauge",
        (),
        "self",
        "Executions waiting for a slot on the local server.",
    ),
    MetricInfo(
        "server_executions_total",
        "counter",
        (),
        "self",
        "Executions the local server started.",
    ),
    MetricInfo(
        "server_refusals_total",
        "counter",
        ("reason",),
        "self",
        "Requests the local server refused, by reason.",
    ),
    MetricInfo(
        "run_events_total",
        "counter",
        ("run",),
        "run",
        "Events of a live or recent run (progress events excluded).",
    ),
    MetricInfo(
        "run_event_bytes_total",
        "counter",
        ("run",),
        "run",
        "UTF-8 bytes of the data of a live or recent run.",
    ),
    MetricInfo(
        "run_start_time_seconds",
        "gauge",
        ("run",),
        "run",
        "Unix time of a live or recent run's first event.",
    ),
    MetricInfo(
        "run_progress_ratio",
        "gauge",
        ("run",),
        "run",
        "Last progress of a live or recent run, 0 to 1.",
    ),
    MetricInfo(
        "labelled_runs", "gauge", (), "run", "Runs that have per-run series now."
    ),
    MetricInfo(
        "run_series_refused_total",
        "counter",
        (),
        "run",
        "Runs refused per-run series because the cap was reached.",
    ),
)

_INFO: Final = {info.name: info for info in METRICS}

# (metric name, label values) -> value: how chain, source and server numbers
# are summed and retired.
_Key = tuple[str, tuple[str, ...]]
_Samples = dict[_Key, float]


# Sources and the local server ------------------------------------------------


class SourceStats:
    """Counters a kind of source keeps for the whole process.

    A source increments the :func:`source_stats` of its kind with plain
    integer arithmetic (no Prometheus call on the hot path); every collector
    with self-metrics reads them at scrape time, labelled ``source=kind``.
    Counters only grow; :attr:`open_connections` goes up and down.

    Each iteration of a source counts one connection when it is open: a
    WebSocket after its handshake, an NDJSON response once answered 2xx (for
    ``aicomputer``, its execute stream only), a local process once spawned.
    A refused handshake, an error status or a spawn failure opens none.

    Attributes:
        kind: The ``source`` label: ``"websocket"``, ``"ndjson"``, ``"local"``,
            ``"redis"``.
        connections: Connections (for the local executor, processes) opened.
        open_connections: Connections open now; a connection is closed once,
            however its stream ends (a consumer's break or cancellation too).
        frames: Frames received: WebSocket messages, NDJSON lines (blank ones
            and those after the run's end included), and for the local
            executor its ``stdout`` and ``stderr`` events.
        invalid_frames: Frames that could not be decoded (each also becomes
            an ``error`` event); added when the stream ends.
        closed_before_complete: Streams that ended before their run's
            ``completed`` because the other side closed (the connection, the
            body), whether raised or turned into events. Not a consumer that
            stops early, and never the local executor: its process's exit
            always gives the outcome, and a timeout or a cap is a resource
            limit (``eventkit_resource_limits_total``).
    """

    __slots__ = (
        "closed_before_complete",
        "connections",
        "frames",
        "invalid_frames",
        "kind",
        "open_connections",
    )

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.connections = 0
        self.open_connections = 0
        self.frames = 0
        self.invalid_frames = 0
        self.closed_before_complete = 0

    def __repr__(self) -> str:
        return (
            f"<SourceStats {self.kind}: {self.connections} connections "
            f"({self.open_connections} open), {self.frames} frames, "
            f"{self.invalid_frames} invalid, "
            f"{self.closed_before_complete} closed before complete>"
        )


class Admissions(Protocol):
    """What :meth:`ServerStats.track` reads: the server's admission control."""

    @property
    def running(self) -> int:
        """Executions holding a slot now."""
        ...

    @property
    def waiting(self) -> int:
        """Admitted executions waiting for a slot now."""
        ...


class ServerStats:
    """Counters and gauges of the local sandbox server, for the whole process.

    The server updates :func:`server_stats` when an execution starts and when
    it refuses a request, and hands its admission control to :meth:`track`
    so that the running and queued gauges are read from it at scrape time
    (or counts them by hand in :attr:`running` and :attr:`queued`); every
    collector with self-metrics reads them.

    Attributes:
        running: Executions running now, besides those of tracked admissions.
        queued: Executions waiting for a slot now, likewise.
        executions: Executions started, ever.
        refusals: Requests refused, by reason: a short fixed word such as
            ``"busy"`` (no slot and a full queue), ``"unauthorized"``,
            ``"invalid"``. Past 32 reasons the rest count as ``"other"``.
            The local server counts ``busy`` (429, or an error frame and close
            1013), ``unauthorized`` (401), ``invalid`` (400, 413, an execute
            message refused with close 1008 or 1009), ``sandbox_limit`` (429
            at ``max_sandboxes``) and ``forbidden`` (403, a ``Host`` it does
            not serve).
    """

    __slots__ = ("_tracked", "executions", "queued", "refusals", "running")

    def __init__(self) -> None:
        self.running = 0
        self.queued = 0
        self.executions = 0
        self.refusals: dict[str, int] = {}
        self._tracked: list[Admissions] = []

    def refuse(self, reason: str) -> None:
        """Count one refused request under ``reason``."""
        refusals = self.refusals
        if reason not in refusals and len(refusals) >= MAX_LABEL_VALUES:
            reason = "other"
        refusals[reason] = refusals.get(reason, 0) + 1

    def track(self, admissions: Admissions) -> None:
        """Read ``admissions.running`` and ``.waiting`` into the gauges from now on.

        Call :meth:`untrack` when the server stops.
        """
        self._tracked.append(admissions)

    def untrack(self, admissions: Admissions) -> None:
        """Stop reading ``admissions``; nothing happens if it was not tracked."""
        with contextlib.suppress(ValueError):
            self._tracked.remove(admissions)

    def gauges(self) -> tuple[int, int]:
        """Return ``(running, queued)`` now, tracked admissions included."""
        running, queued = self.running, self.queued
        for admissions in list(self._tracked):
            running += admissions.running
            queued += admissions.waiting
        return running, queued


# Made on first use, so that a process without sources or a server exposes
# none of their series.
_sources: dict[str, SourceStats] = {}
_server: ServerStats | None = None
_stats_lock = threading.Lock()


def source_stats(kind: str) -> SourceStats:
    """Return the process-wide counters of the sources of ``kind``.

    Sources call it once (per stream, say) and then update the counters;
    see :class:`SourceStats`.

    Args:
        kind: The ``source`` label value; keep it to a few fixed words.
    """
    with _stats_lock:
        stats = _sources.get(kind)
        if stats is None:
            stats = _sources[kind] = SourceStats(kind)
    return stats


def server_stats() -> ServerStats:
    """Return the process-wide numbers of the local server; see :class:`ServerStats`.

    Its series are exposed from the first call on.
    """
    global _server
    with _stats_lock:
        if _server is None:
            _server = ServerStats()
        return _server


# The collector ---------------------------------------------------------------


#: Operator names for the ``stage`` label, by class; others use their class
#: name in lower case.
_STAGE_NAMES: Final[dict[type, str]] = {
    Reorder: "reorder",
    BufferBytes: "buffer_bytes",
    TrackProgress: "track_progress",
    ExportMetrics: "export_metrics",
    ExportRunMetrics: "export_metrics",
    LogEvents: "log_events",
    LogSummaries: "log_events",
}


def stage_name(operator: Operator) -> str:
    """Return the operator's name as in ``eventkit.pipe`` (``"buffer_bytes"``)."""
    if isinstance(operator, Select):
        return "only" if operator.keep else "exclude"
    name = _STAGE_NAMES.get(type(operator))
    return name if name is not None else type(operator).__name__.lower()


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
        it builds a chain (see :class:`eventkit.runner.ChainStats`). Tracking
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
            info = _INFO[name]
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
        info = _INFO["run_duration_seconds"]
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
        with _stats_lock:
            sources = list(_sources.values())
            server = _server
        for source in sources:
            label = (source.kind,)
            for name, value in (
                ("source_connections_total", source.connections),
                ("source_frames_total", source.frames),
                ("source_invalid_frames_total", source.invalid_frames),
                ("source_closed_before_complete_total", source.closed_before_complete),
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
        dropped: dict[str, int] = {}
        if isinstance(op, Select):
            dropped["filtered"] = sum(dict(op.dropped).values())
        elif isinstance(op, Reorder):
            dropped["duplicate"] = op.duplicates
            dropped["late"] = op.late
            counters["reorder_gaps_total", stage] = op.gaps
            counters["reorder_missing_events_total", stage] = op.missing
            gauges["reorder_held_events", stage] = op.held
        elif isinstance(op, BufferBytes):
            dropped["empty"] = op.empty_dropped
            for reason, count in dict(op.flushed).items():
                counters["buffer_chunks_total", (*stage, reason)] = count
            counters["buffer_splits_total", stage] = op.splits
            gauges["buffer_pending_bytes", stage] = op.pending_bytes
        elif isinstance(op, TrackProgress):
            gauges["progress_active_runs", stage] = op.active_runs
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
