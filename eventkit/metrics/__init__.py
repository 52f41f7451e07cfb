"""Prometheus exposition of eventkit's numbers, read at scrape time.

What is exposed (every name is listed, with its labels, in
``docs/metrics.md`` and in :data:`METRICS`):

- **events**, from :func:`eventkit.pipe.export_metrics`: events, bytes, runs,
  resource limits and errors, the run duration histogram;
- **self-metrics** (``export_metrics(self_metrics=True)``, the default): per
  stage of the chain holding ``export_metrics``, events received, sent and
  dropped (by ``reason``) and each operator's internals; the process's
  sources and local server (:mod:`eventkit.stats`);
- **per-run series** (``export_metrics(run_labels=True)``): a ``run`` label,
  kept short-lived and capped.

A ``stage`` label names a position in the chain and the operator there, such
as ``"2:buffer_bytes"``: a handful of values per pipeline.

The package holds the table of metrics (:mod:`eventkit.metrics.table`) and
the collector (:mod:`eventkit.metrics.collector`); the counters it reads are
kept, free of Prometheus, in the operators and in :mod:`eventkit.stats`.
"""

from eventkit.metrics.collector import EventMetricsCollector, collector_for, stage_name
from eventkit.metrics.table import METRICS, MetricInfo
from eventkit.stats import (
    Admissions,
    ServerStats,
    SourceStats,
    server_stats,
    source_stats,
)

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
