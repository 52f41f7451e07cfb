"""Log events as structured log entries: each, sampled, or one summary per run."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Final, Protocol

from eventkit.events import LIFECYCLE_TYPES, OUTPUT_TYPES, Event
from eventkit.operators._base import Stateless

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = [
    "DATA_LIMIT",
    "SUMMARY_EVENT",
    "SUMMARY_TYPES",
    "LogEvents",
    "LogSummaries",
    "Logger",
    "Summary",
    "SummaryTracker",
]

#: Characters of ``data`` kept in a log entry.
DATA_LIMIT: Final = 200
#: The ``event`` key of a summary entry.
SUMMARY_EVENT: Final = "run_summary"
#: The types :class:`LogSummaries` logs by default besides its summaries: the
#: lifecycle types but ``result`` and ``completed``, whose every field the
#: summary entry holds (a line fewer per run, each line costing microseconds).
SUMMARY_TYPES: Final = LIFECYCLE_TYPES - {"result", "completed"}
#: Summarised runs remembered, so that events after a run's end are not taken
#: for a new run.
_FINISHED_RUNS: Final = 4096

_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
# Keys the entry itself uses, and those structlog's processors give a meaning
# to (an attr named ``exception`` or ``stack`` would be taken for a traceback
# to render, and crash it): attrs with these names are logged as ``attrs.NAME``.
_RESERVED: Final = frozenset(
    {
        "event",
        "run",
        "sequence",
        "data",
        "level",
        "exception",
        "exc_info",
        "stack",
        "stack_info",
        "timestamp",
        "logger",
    }
)
_LEVEL_BY_TYPE: Final[dict[str, str]] = {
    "stderr": "warning",
    "error": "error",
    "resource_limit": "error",
}


class Logger(Protocol):
    """What :class:`LogEvents` needs of a logger: structlog's bound loggers fit."""

    def debug(self, event: str, **kw: Any) -> Any: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...
    def critical(self, event: str, **kw: Any) -> Any: ...


class Summary(Protocol):
    """A run's summary, as :class:`eventkit.summary.RunSummary` is."""

    #: Set by :class:`LogSummaries`, which sees every event of the run.
    first_timestamp: float
    #: Set by :class:`LogSummaries` when it counted later output itself.
    last_timestamp: float
    #: Set by :class:`LogSummaries` when it read later progress itself.
    percent: float | None

    # Read-only properties, so that a dataclass's fields fit.
    @property
    def run(self) -> str: ...
    @property
    def duration(self) -> float: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def success(self) -> bool | None: ...
    @property
    def completed(self) -> bool: ...
    @property
    def events(self) -> dict[str, int]: ...
    @property
    def bytes(self) -> dict[str, int]: ...
    @property
    def gaps(self) -> int: ...
    @property
    def missing(self) -> int: ...
    @property
    def limits(self) -> list[str]: ...
    @property
    def errors(self) -> list[str]: ...


class SummaryTracker(Protocol):
    """What :class:`LogSummaries` needs to summarise runs.

    :class:`eventkit.summary.SummaryTracker` fits; it is passed in rather than
    imported, to keep operators free of anything above them.
    """

    def feed(self, event: Event) -> Summary | None: ...

    def pop(self, run: str) -> Summary: ...


class LogEvents(Stateless):
    """Pass every event through unchanged, logging the selected ones.

    One entry per logged event: its ``event`` key is the event's type, with
    ``run``, ``sequence``, ``data`` (cut to :data:`DATA_LIMIT` characters) and
    the attrs as top-level keys. Level: ``info`` for output and lifecycle,
    ``warning`` for ``stderr``, ``error`` for ``error`` and ``resource_limit``.

    A structlog JSON line costs several microseconds, more than every other
    operator together: log lifecycle events, not every output chunk, on busy
    streams, or sample them with ``every``.

    Sampling: with ``every`` N, one selected event in N of each type is
    logged (the first, the N+1th, ...), counted over all runs; lifecycle
    events (``started``, ``result``, ``error``, ``resource_limit``,
    ``completed``) are always logged.

    The entry carries ``run`` and ``sequence`` as keys of its own, which
    works with any logger and with :func:`structlog.testing.capture_logs`;
    context the caller bound with :func:`structlog.contextvars.bind_contextvars`
    is merged in by the logging configuration (see
    :func:`eventkit.logging.configure`).

    Args:
        logger: Where entries go (a structlog bound logger or alike).
        types: Event types to log; None logs every event.
        level: A level name (``"debug"``, ``"info"``, ...) for every entry.
        every: Log one in ``every`` selected events of each type.

    Raises:
        ValueError: For an unknown level name or ``every`` below 1.
    """

    __slots__ = ("_every", "_logger", "_methods", "_seen", "_types")

    def __init__(
        self,
        logger: Logger,
        *,
        types: Iterable[str] | None = None,
        level: str | None = None,
        every: int = 1,
    ) -> None:
        if level is not None and level.lower() not in _LEVELS:
            raise ValueError(
                f"level must be one of {', '.join(_LEVELS)}, not {level!r}"
            )
        if every < 1:
            raise ValueError(f"every must be at least 1, not {every!r}")
        self._logger = logger
        self._types = None if types is None else frozenset(str(t) for t in types)
        self._every = every
        # Selected events seen per type, for sampling.
        self._seen: dict[str, int] = {}
        fixed = None if level is None else getattr(logger, level.lower())
        # Bound methods resolved once: per-event lookups add up.
        self._methods: dict[str, Any] = {
            name: fixed or getattr(logger, name) for name in _LEVELS
        }

    #: The stage's name, as in :mod:`eventkit.pipe`.
    name = "log_events"

    def feed(self, events: list[Event]) -> list[Event]:
        """Log the selected (and sampled) events; return them all as they are."""
        types = self._types
        every = self._every
        for event in events:
            if (types is None or event.type in types) and (
                every == 1 or self._sampled(event.type)
            ):
                self._log(event)
        return events

    def _sampled(self, kind: str) -> bool:
        """Tell whether this event of ``kind`` is one of the one-in-N logged."""
        if kind in LIFECYCLE_TYPES:
            return True
        seen = self._seen.get(kind, 0)
        self._seen[kind] = seen + 1
        return seen % self._every == 0

    def _log(self, event: Event) -> None:
        data = event.data
        if len(data) > DATA_LIMIT:
            data = data[:DATA_LIMIT] + "…"
        fields = {
            (f"attrs.{key}" if key in _RESERVED else key): value
            for key, value in event.attrs.items()
        }
        method = self._methods[_LEVEL_BY_TYPE.get(event.type, "info")]
        method(event.type, run=event.run, sequence=event.sequence, data=data, **fields)


class LogSummaries(LogEvents):
    """Log lifecycle events, and one summary entry per run when it ends.

    Every event passes unchanged. The selected events (by default
    :data:`SUMMARY_TYPES`: ``started``, ``error``, ``resource_limit``) are
    logged as by :class:`LogEvents`. A run's terminal event (``completed``)
    is logged as one ``"run_summary"`` entry, which says all a ``result``
    and a ``completed`` entry would and more (pass ``types`` with them in it
    to have those too):

    - ``run``; ``duration`` (seconds: ``execution_time``, else first to last
      event); ``exit_code``; ``success``; ``completed``;
    - ``events`` and ``bytes``: dicts by type;
    - ``gaps`` and ``missing`` (from ``gap`` events), ``limits`` (the
      ``resource_limit`` limits, in order), ``errors`` (the number of
      ``error`` events), and ``percent`` once progress was reported.

    The level is ``info`` for a successful run, ``warning`` otherwise. At end
    of input (:meth:`flush`) the runs that never completed get their summary
    too, with ``completed`` False. Events of a run after its summary (the
    final ``progress`` report, a straggler) are logged if selected but start
    no new summary (for the last 4096 runs summarised). Memory: one summary
    per run in progress; past ``max_runs`` of them the oldest is logged as it
    stands and forgotten.

    Args:
        logger: Where entries go.
        tracker: Makes the summary keeper, such as
            :class:`eventkit.summary.SummaryTracker`; called once per
            operator, which pops each run's summary from it when the run ends.
        types: Event types to log besides the summaries; None for
            :data:`SUMMARY_TYPES`.
        level: A level name for every entry, summaries included.
        every: As for :class:`LogEvents`.
        max_runs: Most runs summarised at once.

    Raises:
        ValueError: For an unknown level name, ``every`` or ``max_runs``
            below 1.
    """

    __slots__ = (
        "_finished",
        "_log_output",
        "_log_progress",
        "_max_runs",
        "_runs",
        "_tracker",
    )

    def __init__(
        self,
        logger: Logger,
        tracker: Callable[[], SummaryTracker],
        *,
        types: Iterable[str] | None = None,
        level: str | None = None,
        every: int = 1,
        max_runs: int = 10_000,
    ) -> None:
        super().__init__(
            logger,
            types=SUMMARY_TYPES if types is None else types,
            level=level,
            every=every,
        )
        if max_runs < 1:
            raise ValueError(f"max_runs must be at least 1, not {max_runs!r}")
        self._tracker = tracker()
        self._max_runs = max_runs
        # Whether output and progress events are logged too, not only counted.
        self._log_output = self._types is None or bool(self._types & OUTPUT_TYPES)
        self._log_progress = self._types is None or "progress" in self._types
        # The runs in progress, in order of first event, with their counts
        # (see _FRESH).
        self._runs: dict[str, list[Any]] = {}
        # Runs summarised lately: what follows their end (the final progress
        # report, a straggler) must not start a summary of its own.
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()

    def feed(self, events: list[Event]) -> list[Event]:
        """Account for the events; log the chosen ones and the ends of runs."""
        runs = self._runs
        counts_of = runs.get
        slot_of = _SLOTS.get
        types = self._types
        every = self._every
        log_output = self._log_output
        log_progress = self._log_progress
        for event in events:
            run = event.run
            counted = counts_of(run)
            if counted is None:
                if run in self._finished:
                    # Summarised lately: what follows a run's end (its final
                    # progress report, a straggler) is only logged.
                    kind = event.type
                    if (types is None or kind in types) and (
                        every == 1 or self._sampled(kind)
                    ):
                        self._log(event)
                    continue
                if len(runs) >= self._max_runs:
                    self._log_summary(self._forget(next(iter(runs))))
                counted = runs[run] = _FRESH.copy()
                counted[_FIRST] = event.timestamp
            slot = slot_of(event.type)
            if slot is not None:
                # Output, the bulk of a stream, is counted here: the same
                # numbers the tracker would keep, at a fraction of the cost;
                # the tracker gets every other event.
                data = event.data
                counted[slot] += 1
                counted[slot + 1] += len(data) if data.isascii() else len(data.encode())
                stamp = event.timestamp
                if stamp > counted[_LAST]:
                    counted[_LAST] = stamp
                if not log_output:
                    continue
            elif event.type == "progress":
                # As frequent as output once track_progress runs upstream:
                # read here too, for the last percentage only.
                percent = event.attrs.get("percent")
                if type(percent) is float or type(percent) is int:
                    counted[_PERCENT] = percent
                stamp = event.timestamp
                if stamp > counted[_LAST]:
                    counted[_LAST] = stamp
                if not log_progress:
                    continue
            elif self._tracker.feed(event) is not None:
                kind = event.type
                if (types is None or kind in types) and (
                    every == 1 or self._sampled(kind)
                ):
                    self._log(event)
                self._log_summary(self._forget(run))
                continue
            kind = event.type
            if (types is None or kind in types) and (every == 1 or self._sampled(kind)):
                self._log(event)
        return events

    def flush(self) -> list[Event]:
        """End of input: log the summary of every run still in progress."""
        for run in list(self._runs):
            self._log_summary(self._forget(run))
        return []

    def _forget(self, run: str) -> Summary:
        """Drop the run's state; return its summary as it stands.

        The run is remembered as summarised (the last 4096 of them).
        """
        finished = self._finished
        finished[run] = None
        if len(finished) > _FINISHED_RUNS:
            # Not del d[next(iter(d))]: on a dict that walks past every
            # entry deleted from the front since it last grew, O(n) a call.
            finished.popitem(last=False)
        counted = self._runs.pop(run)
        tracker = self._tracker
        try:
            summary = tracker.pop(run)
        except KeyError:
            # Only output and progress came, which the tracker is not fed: it
            # starts the summary from a progress event, which it never counts.
            tracker.feed(Event(type="progress", run=run, timestamp=counted[_FIRST]))
            summary = tracker.pop(run)
        summary.first_timestamp = counted[_FIRST]
        events, sizes = summary.events, summary.bytes
        for kind, slot in _SLOTS.items():
            count = counted[slot]
            if count:
                events[kind] = events.get(kind, 0) + count
                sizes[kind] = sizes.get(kind, 0) + counted[slot + 1]
        if counted[_LAST] > summary.last_timestamp:
            summary.last_timestamp = counted[_LAST]
        if counted[_PERCENT] is not None:
            summary.percent = float(counted[_PERCENT])
        return summary

    def _log_summary(self, summary: Summary) -> None:
        # Attributes read one by one: dataclasses.asdict() deep-copies, at
        # tens of microseconds a summary.
        # With a fixed level, every entry of _methods is that level's method.
        method = self._methods["info" if summary.success else "warning"]
        percent = summary.percent
        # Two calls with their keywords written out: merging in a dict for
        # the optional percent cost 0.4 us, 5 % of the summary's cost.
        if percent is None:
            method(
                SUMMARY_EVENT,
                run=summary.run,
                duration=summary.duration,
                exit_code=summary.exit_code,
                success=summary.success,
                completed=summary.completed,
                events=summary.events,
                bytes=summary.bytes,
                gaps=summary.gaps,
                missing=summary.missing,
                limits=summary.limits,
                errors=len(summary.errors),
            )
        else:
            method(
                SUMMARY_EVENT,
                run=summary.run,
                duration=summary.duration,
                exit_code=summary.exit_code,
                success=summary.success,
                completed=summary.completed,
                events=summary.events,
                bytes=summary.bytes,
                gaps=summary.gaps,
                missing=summary.missing,
                limits=summary.limits,
                errors=len(summary.errors),
                percent=percent,
            )


# What LogSummaries counts of a run itself, in one list per run (the cheapest
# to reach from the per-event loop), not yet in the tracker's summary: events
# and bytes of each output type, from the index in _SLOTS; the latest
# timestamp of that output and of progress; the last progress percentage; the
# timestamp of the run's first event, whatever its type.
_SLOTS: Final = {kind: 2 * i for i, kind in enumerate(sorted(OUTPUT_TYPES))}
_LAST: Final = 2 * len(_SLOTS)
_PERCENT: Final = _LAST + 1
_FIRST: Final = _LAST + 2


#: A fresh run's counts, copied for each run.
_FRESH: Final[list[Any]] = [0] * _LAST + [float("-inf"), None, 0.0]
