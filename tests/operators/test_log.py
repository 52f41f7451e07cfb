"""Tests for :mod:`eventkit.operators.log`, directly and through the pipe."""

from __future__ import annotations

import io
from typing import Any

import pytest
import structlog
from hypothesis import given, settings, strategies as st
from structlog.testing import capture_logs

import eventkit
from eventkit import pipe, sources
from eventkit.events import Event
from eventkit.logging import configure
from eventkit.operators._base import Operator
from eventkit.operators.log import DATA_LIMIT, SUMMARY_TYPES, LogEvents, LogSummaries
from eventkit.summary import SummaryTracker
from tests.factories import ev

EVENTS = [
    ev("started"),
    ev("stdout", "hello\n", 1),
    ev("stderr", "warn\n", 2),
    ev("error", "Traceback ...", 3, code="E1"),
    ev("resource_limit", "", 4, limit="memory"),
    ev("result", "", 5, exit_code=0, execution_time=0.5),
    ev("completed", "", 6, success=True),
]


class RecordingLogger:
    """A logger that records each call as (method, event, keywords)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def debug(self, event: str, **kw: Any) -> None:
        """Record a debug entry."""
        self.calls.append(("debug", event, kw))

    def info(self, event: str, **kw: Any) -> None:
        """Record an info entry."""
        self.calls.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        """Record a warning entry."""
        self.calls.append(("warning", event, kw))

    def error(self, event: str, **kw: Any) -> None:
        """Record an error entry."""
        self.calls.append(("error", event, kw))

    def critical(self, event: str, **kw: Any) -> None:
        """Record a critical entry."""
        self.calls.append(("critical", event, kw))


async def log_run(events: list[Event], *stages: eventkit.Stage) -> list[Event]:
    """Run ``events`` through ``stages``; return what came out."""
    sink = eventkit.sinks.collect()
    await eventkit.run(sources.iterate(events), *stages, sink=sink)
    return sink.events


def test_is_a_stateless_operator() -> None:
    """LogEvents is an operator without deadlines."""
    operator = LogEvents(RecordingLogger())
    assert isinstance(operator, Operator)
    assert operator.timed is False
    assert operator.deadline() is None
    assert tuple(operator.flush()) == ()


async def test_default_logger_entries() -> None:
    """``log_events()`` logs each event with structlog's default logger."""
    with capture_logs() as logs:
        await log_run(EVENTS[:3], pipe.log_events())
    assert logs == [
        {
            "event": "started",
            "run": "r",
            "sequence": 0,
            "data": "",
            "log_level": "info",
        },
        {
            "event": "stdout",
            "run": "r",
            "sequence": 1,
            "data": "hello\n",
            "log_level": "info",
        },
        {
            "event": "stderr",
            "run": "r",
            "sequence": 2,
            "data": "warn\n",
            "log_level": "warning",
        },
    ]


async def test_explicit_logger() -> None:
    """Entries go to the logger given, with its bound context."""
    logger = structlog.get_logger("test").bind(component="sandbox")
    with capture_logs() as logs:
        await log_run(EVENTS[-1:], pipe.log_events(logger))
    assert logs == [
        {
            "component": "sandbox",
            "event": "completed",
            "run": "r",
            "sequence": 6,
            "data": "",
            "success": True,
            "log_level": "info",
        }
    ]


def test_entries_with_a_plain_logger() -> None:
    """Any object with the level methods will do; no event loop needed."""
    logger = RecordingLogger()
    operator = LogEvents(logger)
    operator.feed([ev("result", "out", 5, run="run-7", exit_code=0)])
    expected = (
        "info",
        "result",
        {"run": "run-7", "sequence": 5, "data": "out", "exit_code": 0},
    )
    assert [expected] == logger.calls


def test_attrs_are_top_level_keys() -> None:
    """Each attr is a key of the entry, its value untouched."""
    logger = RecordingLogger()
    attrs: dict[str, Any] = {
        "exit_code": 1,
        "success": False,
        "tags": ["a", None],
        "nested": {"k": 1},
    }
    LogEvents(logger).feed([ev("result", **attrs)])
    (_, _, fields) = logger.calls[0]
    assert {"run": "r", "sequence": 0, "data": "", **attrs} == fields


def test_reserved_attr_names_are_prefixed() -> None:
    """Attrs named like the entry's own keys get an ``attrs.`` prefix."""
    with capture_logs() as logs:
        operator = LogEvents(structlog.get_logger())
        operator.feed(
            [
                Event(
                    type="stdout",
                    data="real data",
                    timestamp=1.0,
                    sequence=3,
                    run="r",
                    attrs={
                        "event": "e",
                        "run": "other",
                        "sequence": 99,
                        "data": "d",
                        "level": "l",
                        "keep": 1,
                    },
                )
            ]
        )
    assert logs == [
        {
            "event": "stdout",
            "run": "r",
            "sequence": 3,
            "data": "real data",
            "attrs.event": "e",
            "attrs.run": "other",
            "attrs.sequence": 99,
            "attrs.data": "d",
            "attrs.level": "l",
            "keep": 1,
            "log_level": "info",
        }
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("", ""),
        ("short", "short"),
        ("x" * DATA_LIMIT, "x" * DATA_LIMIT),
        ("x" * (DATA_LIMIT + 1), "x" * DATA_LIMIT + "\u2026"),
        ("é" * 1000, "é" * DATA_LIMIT + "\u2026"),
    ],
    ids=["empty", "short", "at-limit", "one-over", "long-multibyte"],
)
def test_data_is_cut_to_200_characters(data: str, expected: str) -> None:
    """Data longer than 200 characters is cut to 200 and an ellipsis added."""
    assert DATA_LIMIT == 200
    logger = RecordingLogger()
    LogEvents(logger).feed([ev("stdout", data)])
    assert expected == logger.calls[0][2]["data"]


@pytest.mark.parametrize(
    ("kind", "level"),
    [
        ("started", "info"),
        ("stdout", "info"),
        ("stderr", "warning"),
        ("result", "info"),
        ("error", "error"),
        ("resource_limit", "error"),
        ("completed", "info"),
        ("progress", "info"),
        ("gap", "info"),
        ("custom", "info"),
    ],
)
def test_level_by_type(kind: str, level: str) -> None:
    """stderr logs at warning, error and resource_limit at error, the rest info."""
    with capture_logs() as logs:
        LogEvents(structlog.get_logger()).feed([ev(kind)])
    assert [(kind, level)] == [(entry["event"], entry["log_level"]) for entry in logs]


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error", "critical"])
async def test_level_overrides_every_type(level: str) -> None:
    """A fixed level is used for every entry, whatever the type."""
    with capture_logs() as logs:
        await log_run(EVENTS, pipe.log_events(level=level))
    assert [level] * len(EVENTS) == [entry["log_level"] for entry in logs]


def test_level_debug_with_a_plain_logger() -> None:
    """``level="debug"`` calls only the logger's debug method."""
    logger = RecordingLogger()
    operator = LogEvents(logger, level="debug")
    for event in EVENTS:
        operator.feed([event])
    assert ["debug"] * len(EVENTS) == [method for method, _, _ in logger.calls]


async def test_types_filter() -> None:
    """Only events of the given types are logged; every event passes."""
    with capture_logs() as logs:
        out = await log_run(
            EVENTS, pipe.log_events(types=["started", "completed", "nonexistent"])
        )
    assert [entry["event"] for entry in logs] == ["started", "completed"]
    assert out == EVENTS


async def test_empty_types_logs_nothing() -> None:
    """An empty ``types`` logs no event at all."""
    with capture_logs() as logs:
        out = await log_run(EVENTS, pipe.log_events(types=()))
    assert logs == []
    assert out == EVENTS


async def test_events_pass_through_unchanged() -> None:
    """Every event comes out as it went in, in order."""
    with capture_logs() as logs:
        out = await log_run(EVENTS, pipe.log_events())
    assert out == EVENTS
    assert [event.type for event in EVENTS] == [entry["event"] for entry in logs]


def test_feed_returns_the_event_itself() -> None:
    """``feed`` returns a one-tuple of the very event, logged or not."""
    operator = LogEvents(RecordingLogger(), types=["stdout"])
    for event in EVENTS:
        (out,) = operator.feed([event])
        assert out is event


@pytest.mark.parametrize("level", ["loud", "", "warn", "fatal"])
def test_unknown_level_is_refused(level: str) -> None:
    """An unknown level name raises ValueError when the pipe is made."""
    with pytest.raises(ValueError, match="level"):
        pipe.log_events(level=level)
    with pytest.raises(ValueError, match="level"):
        LogEvents(RecordingLogger(), level=level)


# Sampling -------------------------------------------------------------------


def test_every_samples_each_type() -> None:
    """``every=3`` logs the 1st, 4th, 7th ... event of each type."""
    logger = RecordingLogger()
    operator = LogEvents(logger, every=3)
    events = [ev("stdout", str(i), i) for i in range(7)]
    events += [ev("stderr", str(i), 10 + i) for i in range(4)]
    for event in events:
        (out,) = operator.feed([event])
        assert out is event
    logged = [(entry["data"], name) for _, name, entry in logger.calls]
    assert [
        ("0", "stdout"),
        ("3", "stdout"),
        ("6", "stdout"),
        ("0", "stderr"),
        ("3", "stderr"),
    ] == logged


def test_every_keeps_every_lifecycle_event() -> None:
    """Lifecycle events are always logged, whatever ``every``."""
    logger = RecordingLogger()
    operator = LogEvents(logger, every=1000)
    for event in EVENTS:
        operator.feed([event])
    assert ["started", "stdout", "stderr", *[e.type for e in EVENTS[3:]]] == [
        name for _, name, _ in logger.calls
    ]


async def test_every_through_the_pipe() -> None:
    """``pipe.log_events(every=N)`` samples with the selected types."""
    events = [ev("stdout", str(i), i) for i in range(10)]
    with capture_logs() as logs:
        out = await log_run(events, pipe.log_events(types=["stdout"], every=5))
    assert ["0", "5"] == [entry["data"] for entry in logs]
    assert events == out


@pytest.mark.parametrize("every", [0, -1])
def test_every_must_be_positive(every: int) -> None:
    """``every`` below 1 is refused when the pipe is made."""
    with pytest.raises(ValueError, match="every"):
        pipe.log_events(every=every)


# Summary mode -----------------------------------------------------------------


def run_events(run: str, *, success: bool = True) -> list[Event]:
    """Return the events of one run, with a gap, a limit and an error."""
    return [
        ev("started", run=run),
        ev("stdout", "hello\n", 1, run=run),
        ev("stdout", "é€😀", 2, run=run),
        ev("stderr", "warn\n", 3, run=run),
        ev("gap", "", 4, run=run, first_missing=4, last_missing=5),
        ev("progress", "", 6, run=run, percent=40.0),
        ev("error", "Traceback", 7, run=run, code="E1"),
        ev("resource_limit", "", 8, run=run, limit="memory"),
        ev("result", "", 9, run=run, exit_code=0 if success else 1, execution_time=0.5),
        ev("completed", "", 10, run=run, success=success),
    ]  # fmt: skip


def summaries(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the run_summary entries."""
    return [entry for entry in logs if entry["event"] == "run_summary"]


async def test_summary_mode_logs_lifecycle_and_one_summary() -> None:
    """Lifecycle events, then the summary in place of completed."""
    with capture_logs() as logs:
        out = await log_run(run_events("a"), pipe.log_events(mode="summary"))
    assert ["started", "error", "resource_limit", "run_summary"] == [
        entry["event"] for entry in logs
    ]
    assert {
        "event": "run_summary",
        "log_level": "info",
        "run": "a",
        "duration": 0.5,
        "exit_code": 0,
        "success": True,
        "completed": True,
        "events": {
            "started": 1,
            "stdout": 2,
            "stderr": 1,
            "error": 1,
            "resource_limit": 1,
            "result": 1,
            "completed": 1,
        },
        "bytes": {"stdout": 6 + 9, "stderr": 5},
        "gaps": 1,
        "missing": 2,
        "limits": ["memory"],
        "errors": 1,
        "percent": 40.0,
    } == logs[-1]
    assert run_events("a") == out


async def test_summary_of_a_failed_run_is_a_warning() -> None:
    """A run that did not succeed is summarised at warning level."""
    with capture_logs() as logs:
        await log_run(run_events("a", success=False), pipe.log_events(mode="summary"))
    (summary,) = summaries(logs)
    assert ("warning", False, 1) == (
        summary["log_level"],
        summary["success"],
        summary["exit_code"],
    )


async def test_summary_per_run_with_interleaved_runs() -> None:
    """Interleaved runs each get their own summary when they end."""
    a, b = run_events("a"), run_events("b", success=False)
    events = [event for pair in zip(a, b, strict=True) for event in pair]
    with capture_logs() as logs:
        await log_run(events, pipe.log_events(mode="summary", types=()))
    assert [("a", True), ("b", False)] == [
        (entry["run"], entry["success"]) for entry in logs
    ]
    assert all(entry["events"]["stdout"] == 2 for entry in logs)


async def test_incomplete_runs_are_summarised_at_the_end() -> None:
    """Runs still open when input ends get a summary with completed False."""
    events = [ev("started", run="x"), ev("stdout", "abc", 1, run="x")]
    with capture_logs() as logs:
        await log_run(events, pipe.log_events(mode="summary"))
    (summary,) = summaries(logs)
    assert (False, None, {"stdout": 3}, "warning") == (
        summary["completed"],
        summary["success"],
        summary["bytes"],
        summary["log_level"],
    )
    assert "percent" not in summary
    assert 1.0 == summary["duration"]


async def test_events_after_the_end_start_no_summary() -> None:
    """The final progress report after completed is not a new run."""
    with capture_logs() as logs:
        await log_run(
            run_events("a"),
            pipe.track_progress(),
            pipe.log_events(mode="summary"),
        )
    assert 1 == len(summaries(logs))


def test_summary_runs_are_bounded() -> None:
    """Past max_runs runs in progress, the oldest is summarised and forgotten."""
    logger = RecordingLogger()
    operator = LogSummaries(logger, SummaryTracker, max_runs=2, types=())
    for run in ("a", "b", "c"):
        operator.feed([ev("stdout", "x", run=run)])
    assert [("warning", "run_summary", "a")] == [
        (method, name, fields["run"]) for method, name, fields in logger.calls
    ]
    operator.flush()
    assert ["a", "b", "c"] == [fields["run"] for _, _, fields in logger.calls]


def test_summary_with_a_fixed_level() -> None:
    """``level`` applies to the summaries too."""
    logger = RecordingLogger()
    operator = LogSummaries(logger, SummaryTracker, level="debug")
    for event in run_events("a"):
        operator.feed([event])
    assert {"debug"} == {method for method, _, _ in logger.calls}


async def test_summary_with_completed_in_types() -> None:
    """Asking for completed logs it as well as the summary."""
    with capture_logs() as logs:
        await log_run(
            run_events("a"), pipe.log_events(mode="summary", types=["completed"])
        )
    assert ["completed", "run_summary"] == [entry["event"] for entry in logs]


def test_summary_types_default() -> None:
    """The summary mode's default: lifecycle types the summary does not hold."""
    assert {"started", "error", "resource_limit"} == set(SUMMARY_TYPES)


def test_unknown_mode_is_refused() -> None:
    """A mode other than events or summary raises ValueError."""
    with pytest.raises(ValueError, match="mode"):
        pipe.log_events(mode="all")  # type: ignore[arg-type]


@pytest.mark.parametrize("max_runs", [0, -5])
def test_summary_max_runs_must_be_positive(max_runs: int) -> None:
    """``max_runs`` below 1 is refused."""
    with pytest.raises(ValueError, match="max_runs"):
        LogSummaries(RecordingLogger(), SummaryTracker, max_runs=max_runs)


@pytest.mark.parametrize("mode", ["events", "summary"])
@pytest.mark.parametrize(
    "name",
    ["exception", "exc_info", "stack", "stack_info", "timestamp", "logger", "event"],
)
def test_attrs_named_like_structlogs_keys_never_crash(mode: str, name: str) -> None:
    """An attr structlog would take for its own is logged as ``attrs.NAME``."""
    for renderer in ("json", "console"):
        out = io.StringIO()
        configure(renderer, file=out)  # type: ignore[arg-type]
        try:
            operator = pipe.log_events(mode=mode, types=["error"]).create()
            attrs = {name: "not a traceback"}
            error = Event(type="error", data="boom", run="r", attrs=attrs)
            completed = ev("completed", "", 1, success=False)
            operator.feed([error, completed])  # type: ignore[arg-type]
            operator.flush()
        finally:
            structlog.reset_defaults()
        assert f"attrs.{name}" in out.getvalue()


_KINDS = st.sampled_from(
    [
        *("started", "stdout", "stdout", "stderr", "progress", "gap", "error"),
        *("resource_limit", "result", "completed"),
    ]
)


@st.composite
def _mixed_runs(draw: st.DrawFn) -> list[Event]:
    """Events of up to three runs, interleaved, in any order of time."""
    events = []
    for sequence in range(draw(st.integers(0, 40))):
        kind = draw(_KINDS)
        attrs: dict[str, Any] = {}
        if kind == "progress":
            attrs["percent"] = draw(st.floats(0, 100))
        elif kind == "gap":
            attrs.update(first_missing=sequence, last_missing=sequence + 2)
        elif kind == "resource_limit":
            attrs["limit"] = "memory"
        elif kind == "result":
            attrs.update(exit_code=draw(st.integers(0, 2)), execution_time=0.25)
        elif kind == "completed" and draw(st.booleans()):
            attrs["success"] = draw(st.booleans())
        events.append(
            ev(
                kind,
                draw(st.text(max_size=5)) if kind in ("stdout", "stderr") else "",
                sequence,
                run=draw(st.sampled_from("abc")),
                timestamp=draw(st.floats(0, 100)),
                **attrs,
            )
        )
    return events


@settings(max_examples=300)
@given(_mixed_runs())
def test_summaries_are_the_trackers(events: list[Event]) -> None:
    """Each summary says what SummaryTracker says of the run's events to its end.

    LogSummaries counts output and progress itself and feeds the tracker the
    rest; the summary is the same as the tracker's fed every event, up to the
    run's completed (what follows is a straggler).
    """
    reference = SummaryTracker()
    ended: set[str] = set()
    for event in events:
        if event.run not in ended and reference.feed(event) is not None:
            ended.add(event.run)
    expected = {
        summary.run: {
            "run": summary.run,
            "duration": summary.duration,
            "exit_code": summary.exit_code,
            "success": summary.success,
            "completed": summary.completed,
            "events": summary.events,
            "bytes": summary.bytes,
            "gaps": summary.gaps,
            "missing": summary.missing,
            "limits": summary.limits,
            "errors": len(summary.errors),
            **({} if summary.percent is None else {"percent": summary.percent}),
        }
        for summary in reference.summaries()
    }
    logger = RecordingLogger()
    operator = LogSummaries(logger, SummaryTracker, types=())
    for event in events:
        operator.feed([event])
    operator.flush()
    logged = {fields["run"]: fields for _, _, fields in logger.calls}
    assert expected == logged
