"""Per-run summaries: what a run did, in one record.

Pure bookkeeping, no I/O: feed events, get a :class:`RunSummary` when a run
ends. The CLI prints these as its closing table; logging writes one line each.

A run's outcome comes from its ``completed`` event: its ``success`` and
``exit_code`` when it carries them, else the ``result`` event's exit code,
else (AI Computer's wire has neither) success when no ``error`` came.

Failure behaviour: never raises on an event, whatever its attrs hold; values
of the wrong type are ignored.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from eventkit.events import OUTPUT_TYPES, TERMINAL_TYPES

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from eventkit.events import Event

__all__ = ["RunSummary", "SummaryTracker"]


@dataclasses.dataclass(slots=True)
class RunSummary:
    """What one run did.

    Attributes:
        run: The run.
        first_timestamp: Timestamp of its first event.
        last_timestamp: Timestamp of its last event.
        events: Events by type.
        bytes: UTF-8 bytes of ``data`` by output type.
        exit_code: From its ``result`` event, else its ``completed`` event,
            if any carries one.
        execution_time: From its ``result`` event, if any.
        success: Whether it succeeded, once its ``completed`` event came
            (see the module's docstring); None until then.
        gaps: ``gap`` events (holes given up by reorder).
        missing: Sequences those gaps left out.
        limits: The ``limit`` of each ``resource_limit`` event, in order.
        errors: The ``data`` of each ``error`` event, in order (at most 10).
        percent: The last progress percentage reported, if any.
        reason: Why the run ended without an outcome, when whoever fed the
            events knows (the stream closed early, the run was interrupted);
            set by them, never by :class:`SummaryTracker`.

    Events made by operators (``progress``, ``gap``) are not counted in
    :attr:`events`; they are what :attr:`percent` and :attr:`gaps` report.
    """

    run: str
    first_timestamp: float
    last_timestamp: float
    events: dict[str, int] = dataclasses.field(default_factory=dict)
    bytes: dict[str, int] = dataclasses.field(default_factory=dict)
    exit_code: int | None = None
    execution_time: float | None = None
    success: bool | None = None
    gaps: int = 0
    missing: int = 0
    limits: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    percent: float | None = None
    reason: str | None = None

    @property
    def duration(self) -> float:
        """Seconds: the run's ``execution_time``, else first to last event."""
        if self.execution_time is not None:
            return self.execution_time
        return max(self.last_timestamp - self.first_timestamp, 0.0)

    @property
    def completed(self) -> bool:
        """Whether the run's ``completed`` event was seen."""
        return self.success is not None

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data."""
        data = dataclasses.asdict(self)
        data["duration"] = self.duration
        data["completed"] = self.completed
        return data


class SummaryTracker:
    """Keeps a :class:`RunSummary` per run from the events fed to it.

    Args:
        max_errors: Error messages kept per run.
    """

    __slots__ = ("_max_errors", "_runs")

    def __init__(self, *, max_errors: int = 10) -> None:
        self._runs: dict[str, RunSummary] = {}
        self._max_errors = max_errors

    def feed(self, event: Event) -> RunSummary | None:
        """Account for ``event``; return its run's summary if the event ended it.

        A run's summary stays available from :meth:`summaries` after its end.
        """
        summary = self._runs.get(event.run)
        if summary is None:
            summary = self._runs[event.run] = RunSummary(
                event.run, event.timestamp, event.timestamp
            )
        kind = event.type
        attrs = event.attrs
        if event.timestamp > summary.last_timestamp:
            summary.last_timestamp = event.timestamp
        if kind == "progress":
            percent = attrs.get("percent")
            if isinstance(percent, int | float):
                summary.percent = float(percent)
            return None
        if kind != "gap":
            summary.events[kind] = summary.events.get(kind, 0) + 1
        if kind in OUTPUT_TYPES:
            data = event.data
            size = len(data) if data.isascii() else len(data.encode())
            summary.bytes[kind] = summary.bytes.get(kind, 0) + size
        elif kind == "result":
            exit_code = attrs.get("exit_code")
            summary.exit_code = exit_code if isinstance(exit_code, int) else None
            seconds = attrs.get("execution_time")
            if isinstance(seconds, int | float):
                summary.execution_time = float(seconds)
        elif kind == "gap":
            summary.gaps += 1
            first, last = attrs.get("first_missing"), attrs.get("last_missing")
            if isinstance(first, int) and isinstance(last, int):
                summary.missing += last - first + 1
        elif kind == "resource_limit":
            summary.limits.append(str(attrs.get("limit", "")))
        elif kind == "error":
            if len(summary.errors) < self._max_errors:
                summary.errors.append(event.data)
        elif kind in TERMINAL_TYPES:
            _conclude(summary, attrs)
            return summary
        return None

    def pop(self, run: str) -> RunSummary:
        """Forget ``run``; return its summary as it stands.

        Raises:
            KeyError: For a run never fed.
        """
        return self._runs.pop(run)

    def summaries(self) -> Iterator[RunSummary]:
        """Yield the summary of every run seen, in order of first appearance."""
        return iter(self._runs.values())


def _conclude(summary: RunSummary, attrs: Mapping[str, Any]) -> None:
    """Set the outcome of a run from its terminal event's attrs."""
    exit_code = attrs.get("exit_code")
    # bool is an int: True is no exit code.
    if isinstance(exit_code, int) and not isinstance(exit_code, bool):
        summary.exit_code = exit_code
    success = attrs.get("success")
    if isinstance(success, bool):
        summary.success = success
    elif summary.exit_code is not None:
        summary.success = summary.exit_code == 0
    else:
        # The AI Computer wire tells a failure by an ``error`` line only.
        summary.success = not summary.events.get("error")
