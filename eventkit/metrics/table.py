"""The table of every metric eventkit exposes: names, kinds, labels, help.

The one list of names: ``docs/metrics.md`` lists the same, and a test checks
that they agree.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple

__all__ = ["INFO", "METRICS", "MetricInfo"]


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


#: Every metric, in exposition order.
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
        "cap_truncations_total",
        "counter",
        ("stage",),
        "self",
        "Truncated events cap_output emitted: output left out of a run.",
    ),
    MetricInfo(
        "cap_omitted_bytes_total",
        "counter",
        ("stage",),
        "self",
        "UTF-8 bytes of output cap_output left out.",
    ),
    MetricInfo(
        "cap_held_bytes",
        "gauge",
        ("stage",),
        "self",
        "UTF-8 bytes of output tails cap_output holds now.",
    ),
    MetricInfo(
        "lines_cut_total",
        "counter",
        ("stage",),
        "self",
        "Unfinished lines lines let out without their newline.",
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
        "source_reconnects_total",
        "counter",
        ("source",),
        "self",
        "Connections opened again to resume a run after a lost one.",
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
        "server_aborts_total",
        "counter",
        ("reason",),
        "self",
        "Connections and sandboxes the local server ended on its own, by reason.",
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

#: Each metric by name.
INFO: Final = {info.name: info for info in METRICS}
