"""Tests for :mod:`eventkit.protocol.run`: numbering a run, ending it early."""

from __future__ import annotations

import pytest

from eventkit.events import Event
from eventkit.exceptions import StreamClosedError
from eventkit.protocol.run import CLOSED_BEFORE_COMPLETE, RunEvents, closed_error


def test_output_numbers_like_make() -> None:
    """``output()`` makes the same events ``make()`` would, numbered in turn."""
    events = RunEvents("r", clock=lambda: 5.0)
    made = [
        events.make("started"),
        events.output("stdout", "a", 7.5),
        events.make("stderr", "b", timestamp=8.0),
    ]
    assert [
        Event(type="started", timestamp=5.0, sequence=0, run="r"),
        Event(type="stdout", data="a", timestamp=7.5, sequence=1, run="r"),
        Event(type="stderr", data="b", timestamp=8.0, sequence=2, run="r"),
    ] == made
    assert (events.count, events.finished) == (3, False)


@pytest.mark.parametrize(("reason", "code"), [("bye", 1011), ("", None), ("x", None)])
def test_closed_error_reads_like_the_exception(reason: str, code: int | None) -> None:
    """The error's data is StreamClosedError's message; its attrs say why."""
    data, attrs = closed_error(reason, code)
    assert str(StreamClosedError(code, reason)) == data
    assert {
        "code": CLOSED_BEFORE_COMPLETE,
        "close_code": code,
        "reason": reason,
    } == attrs


def test_abort_ends_the_run_once() -> None:
    """``abort()`` makes an error and a failed completed, then nothing."""
    events = RunEvents("r", clock=lambda: 5.0)
    events.make("started")
    error, completed = events.abort("gone")
    assert (error.type, error.sequence, error["code"]) == (
        "error",
        1,
        CLOSED_BEFORE_COMPLETE,
    )
    assert (completed.type, completed.sequence, completed["success"]) == (
        "completed",
        2,
        False,
    )
    assert events.finished
    assert events.abort("again") == []


def test_abort_after_completed_makes_nothing() -> None:
    """A run that completed is not ended again."""
    events = RunEvents("r")
    events.make("completed", attrs={"success": True})
    assert events.abort("gone") == []
