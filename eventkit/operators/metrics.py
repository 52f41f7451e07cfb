"""Count what flows past, for export to Prometheus.

The operator only counts, in plain dicts: a labelled Prometheus ``inc()`` costs
about a microsecond per call, a dict increment a few tens of nanoseconds. The
exporter in :mod:`eventkit.metrics` reads these counts when scraped.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from typing import TYPE_CHECKING, Final

from eventkit.operators._base import Stateless

if TYPE_CHECKING:
    from eventkit.events import Event

__all__ = ["DURATION_BUCKETS", "ExportMetrics", "MetricCounts"]

#: Upper bounds (seconds) of the run duration histogram: sandbox runs last from
#: milliseconds to an hour.
DURATION_BUCKETS: Final = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
)  # fmt: skip

#: Label values allowed per label before the rest are counted as "other":
#: event types come from the wire, and an unbounded label is a memory leak.
MAX_LABEL_VALUES: Final = 32

_LIFECYCLE: Final = frozenset({"started", "result", "completed", "resource_limit"})


class MetricCounts:
    """Cumulative counts; they only ever grow.

    Attributes:
        events: Events by type.
        bytes: UTF-8 bytes of ``data`` by type.
        runs: Completed runs by outcome (``success``, ``failure``).
        resource_limits: ``resource_limit`` events by ``limit``.
        duration_buckets: Runs per duration bucket (not cumulative), the last
            entry for durations above every bound.
        duration_sum: Sum of run durations, seconds.
        duration_count: Number of run durations observed.
    """

    __slots__ = (
        "bounds",
        "bytes",
        "duration_buckets",
        "duration_count",
        "duration_sum",
        "events",
        "resource_limits",
        "runs",
    )

    def __init__(self) -> None:
        self.bounds = DURATION_BUCKETS
        self.events: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.runs: dict[str, int] = {}
        self.resource_limits: dict[str, int] = {}
        self.duration_buckets = [0] * (len(self.bounds) + 1)
        self.duration_sum = 0.0
        self.duration_count = 0

    def observe_duration(self, seconds: float) -> None:
        """Add one run duration to the histogram."""
        self.duration_buckets[bisect.bisect_left(self.bounds, seconds)] += 1
        self.duration_sum += seconds
        self.duration_count += 1


class ExportMetrics(Stateless):
    """Pass every event through unchanged, counting it in :attr:`counts`.

    Counted: events and data bytes by type; runs by outcome, from
    ``completed``'s ``success``; ``resource_limit`` events by ``limit``; run
    durations, from ``result``'s ``execution_time``, else ``completed`` minus
    ``started`` timestamps. Type and limit label values past
    :data:`MAX_LABEL_VALUES` distinct ones are counted as ``"other"``.

    Args:
        max_runs: Runs whose ``started`` time is remembered while waiting for
            their end; past it the oldest is forgotten (its duration is then
            taken from ``result`` only).
    """

    __slots__ = ("__weakref__", "_max_runs", "_started", "counts")

    def __init__(self, *, max_runs: int = 10_000) -> None:
        if max_runs < 1:
            raise ValueError(f"max_runs must be at least 1, not {max_runs!r}")
        self.counts = MetricCounts()
        self._max_runs = max_runs
        # run -> (started timestamp, execution_time from its result, if any)
        self._started: OrderedDict[str, list[float | None]] = OrderedDict()

    def feed(self, event: Event) -> tuple[Event, ...]:
        """Count ``event``; return ``(event,)``."""
        kind = event.type
        if kind in _LIFECYCLE:
            self._lifecycle(kind, event)
        events = self.counts.events
        count = events.get(kind)
        if count is None:
            kind = _label(events, kind)
            count = events.get(kind, 0)
        events[kind] = count + 1
        data = event.data
        if data:
            sizes = self.counts.bytes
            size = len(data) if data.isascii() else len(data.encode())
            sizes[kind] = sizes.get(kind, 0) + size
        return (event,)

    def _remember(self, run: str) -> list[float | None]:
        """Return the run's ``[started, execution_time]``, bounded by ``max_runs``."""
        state = self._started.get(run)
        if state is None:
            state = self._started[run] = [None, None]
            if len(self._started) > self._max_runs:
                self._started.popitem(last=False)
        return state

    def _lifecycle(self, kind: str, event: Event) -> None:
        counts = self.counts
        if kind == "started":
            self._remember(event.run)[0] = event.timestamp
        elif kind == "result":
            seconds = event.attrs.get("execution_time")
            if isinstance(seconds, int | float):
                self._remember(event.run)[1] = float(seconds)
        elif kind == "resource_limit":
            limit = _label(counts.resource_limits, str(event.attrs.get("limit", "")))
            counts.resource_limits[limit] = counts.resource_limits.get(limit, 0) + 1
        else:  # completed
            outcome = "success" if event.attrs.get("success") else "failure"
            counts.runs[outcome] = counts.runs.get(outcome, 0) + 1
            started, executed = self._started.pop(event.run, (None, None))
            if executed is not None:
                counts.observe_duration(executed)
            elif started is not None:
                counts.observe_duration(max(event.timestamp - started, 0.0))


def _label(counts: dict[str, int], value: str) -> str:
    """Return ``value`` as a label value, or ``"other"`` once there are too many."""
    if value in counts or len(counts) < MAX_LABEL_VALUES:
        return value
    return "other"
