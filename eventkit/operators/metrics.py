"""Count what flows past, for export to Prometheus.

The operator only counts, in plain dicts: a labelled Prometheus ``inc()`` costs
about a microsecond per call, a dict increment a few tens of nanoseconds. The
exporter in :mod:`eventkit.metrics` reads these counts when scraped.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

from eventkit.events import TERMINAL_TYPES
from eventkit.operators._base import Stateless

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventkit.events import Event
    from eventkit.operators._base import Clock

__all__ = [
    "DURATION_BUCKETS",
    "MAX_LABEL_VALUES",
    "ExportMetrics",
    "ExportRunMetrics",
    "MetricCounts",
    "RunSeries",
]

#: Upper bounds (seconds) of the run duration histogram: sandbox runs last from
#: milliseconds to an hour.
DURATION_BUCKETS: Final = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
)  # fmt: skip

#: Label values allowed per label before the rest are counted as "other":
#: event types come from the wire, and an unbounded label is a memory leak.
MAX_LABEL_VALUES: Final = 32

_LIFECYCLE: Final = frozenset(
    {"started", "result", "completed", "resource_limit", "error"}
)
#: Runs refused per-run series that are remembered, so each is refused once.
_REFUSED_REMEMBERED: Final = 4096
#: Events between two sweeps of expired per-run series.
_SWEEP_EVERY: Final = 4096


class MetricCounts:
    """Cumulative counts; they only ever grow.

    Attributes:
        events: Events by type.
        bytes: UTF-8 bytes of ``data`` by type.
        runs: Completed runs by outcome (``success``, ``failure``).
        resource_limits: ``resource_limit`` events by ``limit``.
        errors: ``error`` events by their ``code`` attr (``""`` when none).
        refused_run_series: Runs refused per-run series by
            :class:`ExportRunMetrics` because its cap was reached.
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
        "errors",
        "events",
        "refused_run_series",
        "resource_limits",
        "runs",
    )

    def __init__(self) -> None:
        self.bounds = DURATION_BUCKETS
        self.events: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.runs: dict[str, int] = {}
        self.resource_limits: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.refused_run_series = 0
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
    ``completed``'s ``success``; ``resource_limit`` events by ``limit``;
    ``error`` events by ``code`` (``invalid_frame``, ``invalid_line``,
    ``closed_before_complete``, ...); run durations, from ``result``'s
    ``execution_time``, else ``completed`` minus ``started`` timestamps. Type,
    limit and code label values past :data:`MAX_LABEL_VALUES` distinct ones
    are counted as ``"other"``.

    Args:
        max_runs: Runs whose ``started`` time is remembered while waiting for
            their end; past it the oldest is forgotten (its duration is then
            taken from ``result`` only).
        observe_chain: Called with the chain's statistics when the runner
            builds a chain holding this operator (the runner's self-metrics
            hook, see :class:`eventkit.chain.ChainStats`); None to leave the
            chain uncounted.
    """

    __slots__ = ("__weakref__", "_max_runs", "_started", "counts", "observe_chain")

    def __init__(
        self,
        *,
        max_runs: int = 10_000,
        observe_chain: Callable[[Any], None] | None = None,
    ) -> None:
        if max_runs < 1:
            raise ValueError(f"max_runs must be at least 1, not {max_runs!r}")
        self.counts = MetricCounts()
        #: The runner's self-metrics hook; see the class docstring.
        self.observe_chain = observe_chain
        self._max_runs = max_runs
        # run -> (started timestamp, execution_time from its result, if any)
        self._started: OrderedDict[str, list[float | None]] = OrderedDict()

    #: The stage's name, as in :mod:`eventkit.pipe`.
    name = "export_metrics"

    def feed(self, events: list[Event]) -> list[Event]:
        """Count the events; return them as they are."""
        counts = self.counts
        by_type = counts.events
        sizes = counts.bytes
        lifecycle = _LIFECYCLE
        for event in events:
            kind = event.type
            if kind in lifecycle:
                self._lifecycle(kind, event)
            count = by_type.get(kind)
            if count is None:
                kind = _label(by_type, kind)
                count = by_type.get(kind, 0)
            by_type[kind] = count + 1
            data = event.data
            if data:
                size = len(data) if data.isascii() else len(data.encode())
                sizes[kind] = sizes.get(kind, 0) + size
        return events

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
        elif kind == "error":
            code = _label(counts.errors, str(event.attrs.get("code") or ""))
            counts.errors[code] = counts.errors.get(code, 0) + 1
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


class RunSeries:
    """The per-run numbers :class:`ExportRunMetrics` keeps for one run.

    Attributes:
        events: Events of the run so far.
        bytes: UTF-8 bytes of their data.
        start_time: Timestamp (Unix seconds) of the run's first event.
        progress: The last ``percent`` of a ``progress`` event, as a ratio
            from 0 to 1, or None before any.
        last_seen: Clock reading at the run's last event.
        expires: Clock reading at which the series go, set once the run's
            terminal event has passed; None while the run is live.
    """

    __slots__ = ("bytes", "events", "expires", "last_seen", "progress", "start_time")

    def __init__(self, start_time: float, now: float) -> None:
        self.events = 0
        self.bytes = 0
        self.start_time = start_time
        self.progress: float | None = None
        self.last_seen = now
        self.expires: float | None = None


class ExportRunMetrics(ExportMetrics):
    """:class:`ExportMetrics` plus bounded per-run series, for a few live runs.

    Besides the aggregate counts, keeps a :class:`RunSeries` per run in
    :attr:`runs`: what Prometheus exposes with a ``run`` label. A run label is
    unbounded by nature, so the series are kept short-lived and capped:

    - a run's series go ``run_ttl`` seconds after its terminal event, long
      enough for a scrape to see their final values (0: at once);
    - a run with no event for ``idle_ttl`` seconds is dropped (None: never);
    - at most ``max_run_series`` runs have series at once; a run arriving
      when that many are live (expired ones are swept first) gets none, and is
      counted once in ``counts.refused_run_series``.

    Expiry is applied in :meth:`feed` (lazily, without a timer) and by the
    exporter at scrape time, which skips series past their time.

    Args:
        run_ttl: Seconds a completed run's series stay.
        idle_ttl: Seconds without an event after which a run's series go.
        max_run_series: Most runs with series at once.
        clock: The monotonic clock the TTLs are on.
        max_runs: As for :class:`ExportMetrics`.
        observe_chain: As for :class:`ExportMetrics`.

    Raises:
        ValueError: If a TTL is negative or ``max_run_series`` below 1.
    """

    __slots__ = (
        "_fed",
        "_refused_runs",
        "clock",
        "idle_ttl",
        "max_run_series",
        "run_ttl",
        "runs",
    )

    def __init__(
        self,
        *,
        run_ttl: float = 30.0,
        idle_ttl: float | None = 600.0,
        max_run_series: int = 1000,
        clock: Clock = time.monotonic,
        max_runs: int = 10_000,
        observe_chain: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__(max_runs=max_runs, observe_chain=observe_chain)
        # Written as negated >= so that NaN is refused too.
        if not run_ttl >= 0:
            raise ValueError(f"run_ttl must be 0 or more seconds, not {run_ttl!r}")
        if idle_ttl is not None and not idle_ttl >= 0:
            raise ValueError(
                f"idle_ttl must be 0 or more seconds, or None, not {idle_ttl!r}"
            )
        if max_run_series < 1:
            raise ValueError(
                f"max_run_series must be at least 1, not {max_run_series!r}"
            )
        self.run_ttl = run_ttl
        self.idle_ttl = idle_ttl
        self.max_run_series = max_run_series
        #: The clock the TTLs are on.
        self.clock = clock
        #: Series by run, for the runs that have them.
        self.runs: dict[str, RunSeries] = {}
        self._refused_runs: OrderedDict[str, None] = OrderedDict()
        self._fed = 0

    def feed(self, events: list[Event]) -> list[Event]:
        """Count the events, in the aggregates and their runs' series; return them."""
        now = self.clock()
        runs = self.runs
        for event in events:
            series = runs.get(event.run)
            if series is None:
                series = self._admit(event, now)
            if series is not None:
                series.last_seen = now
                kind = event.type
                if kind == "progress":
                    percent = event.attrs.get("percent")
                    if isinstance(percent, int | float):
                        series.progress = min(max(float(percent) / 100.0, 0.0), 1.0)
                else:
                    series.events += 1
                    data = event.data
                    if data:
                        series.bytes += (
                            len(data) if data.isascii() else len(data.encode())
                        )
                    if kind in TERMINAL_TYPES and series.expires is None:
                        series.expires = now + self.run_ttl
            elif event.type in TERMINAL_TYPES:
                self._refused_runs.pop(event.run, None)
        self._fed += len(events)
        if self._fed >= _SWEEP_EVERY:
            self._fed = 0
            self.sweep(now)
        return super().feed(events)

    def live(self, series: RunSeries, now: float) -> bool:
        """Tell whether ``series`` is still to be exposed at clock time ``now``."""
        if series.expires is not None and series.expires <= now:
            return False
        idle = self.idle_ttl
        return idle is None or series.last_seen + idle > now

    def sweep(self, now: float | None = None) -> None:
        """Drop the series that expired by ``now`` (default: the clock's now)."""
        if now is None:
            now = self.clock()
        expired = [run for run, s in self.runs.items() if not self.live(s, now)]
        for run in expired:
            del self.runs[run]

    def _admit(self, event: Event, now: float) -> RunSeries | None:
        """Start series for the event's run, or refuse it when at the cap."""
        run = event.run
        if run in self._refused_runs:
            return None
        if len(self.runs) >= self.max_run_series:
            self.sweep(now)
            if len(self.runs) >= self.max_run_series:
                self.counts.refused_run_series += 1
                refused = self._refused_runs
                refused[run] = None
                if len(refused) > _REFUSED_REMEMBERED:
                    refused.popitem(last=False)
                return None
        series = self.runs[run] = RunSeries(event.timestamp, now)
        return series
