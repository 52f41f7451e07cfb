"""``eventkit.summary``: a run's outcome from its events, whatever the wire carries."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from eventkit.summary import SummaryTracker
from tests.factories import ev

if TYPE_CHECKING:
    from eventkit import Event
    from eventkit.summary import RunSummary


def summary_of(events: list[Event]) -> RunSummary:
    """Feed ``events`` (one run) and return the run's summary."""
    tracker = SummaryTracker()
    for event in events:
        tracker.feed(event)
    (summary,) = tracker.summaries()
    return summary


def test_local_and_hopx_runs_take_result_and_completed() -> None:
    """``result`` gives the exit code, ``completed`` the success."""
    summary = summary_of(
        [
            ev("started"),
            ev("result", sequence=1, exit_code=3),
            ev("completed", sequence=2, success=False),
        ]
    )
    assert (3, False) == (summary.exit_code, summary.success)


def test_aicomputer_completed_without_fields_succeeds_without_error() -> None:
    """AI Computer's ``completed`` carries nothing: no ``error`` means success.

    It failed before: ``success`` missing was read as False.
    """
    summary = summary_of(
        [ev("started"), ev("stdout", "1\n", 1), ev("completed", sequence=2)]
    )
    assert summary.success is True
    assert summary.exit_code is None


def test_aicomputer_error_line_means_failure() -> None:
    """Without fields, an ``error`` line before ``completed`` is a failure."""
    summary = summary_of(
        [
            ev("started"),
            ev("error", "process exited with code 3", 1),
            ev("completed", sequence=2),
        ]
    )
    assert summary.success is False


def test_completed_exit_code_and_success_are_used() -> None:
    """eventkit's server adds ``exit_code`` and ``success`` to ``completed``."""
    summary = summary_of(
        [
            ev("error", "process exited with code 3"),
            ev("completed", sequence=1, exit_code=3, success=False),
        ]
    )
    assert (3, False) == (summary.exit_code, summary.success)


def test_completed_exit_code_alone_gives_the_success() -> None:
    """An exit code without ``success``: success is exit code 0."""
    assert summary_of([ev("completed", exit_code=0)]).success is True
    assert summary_of([ev("completed", exit_code=2)]).success is False


@pytest.mark.parametrize("exit_code", [True, "0", 1.5, None])
def test_exit_code_of_the_wrong_type_is_ignored(exit_code: object) -> None:
    """Only an int (not a bool) is an exit code."""
    summary = summary_of([ev("completed", exit_code=exit_code)])
    assert summary.exit_code is None
    assert summary.success is True


def test_no_completed_no_outcome() -> None:
    """A run whose ``completed`` never came has no outcome; its reason is unset."""
    summary = summary_of([ev("started"), ev("result", sequence=1, exit_code=0)])
    assert summary.success is None
    assert summary.reason is None
    assert summary.as_dict()["reason"] is None


def test_pop_forgets_the_run_and_returns_its_summary() -> None:
    """``pop`` hands over a run's summary and keeps nothing of it."""
    tracker = SummaryTracker()
    tracker.feed(ev("started", run="a"))
    tracker.feed(ev("started", run="b"))
    ended = tracker.feed(ev("completed", sequence=1, run="a", success=True))
    assert ended is tracker.pop("a")
    assert ["b"] == [summary.run for summary in tracker.summaries()]
    with pytest.raises(KeyError):
        tracker.pop("a")
