"""The terminal side: the summary table and the JSON summary."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

from rich.console import Console

from eventkit.cli.display import report
from eventkit.summary import SummaryTracker
from tests.factories import ev

if TYPE_CHECKING:
    import pytest

    from eventkit.summary import RunSummary


def summaries() -> list[RunSummary]:
    """One failed run with output on both streams and an error."""
    tracker = SummaryTracker()
    for event in [
        ev("stdout", "hello\n", 0, run="run-1"),
        ev("stderr", "oops\n", 1, run="run-1"),
        ev("error", "boom", 2, run="run-1"),
        ev("result", "", 3, run="run-1", exit_code=3),
        ev("completed", "", 4, run="run-1", success=False),
    ]:
        tracker.feed(event)
    return list(tracker.summaries())


def terminal() -> tuple[Console, io.StringIO]:
    """A wide console writing to a string, without colours."""
    text = io.StringIO()
    return Console(file=text, width=200, color_system=None), text


def test_table_tells_each_run() -> None:
    """The table shows the outcome, exit code, bytes and notes of a run."""
    console, text = terminal()
    report(summaries(), console, as_json=False)
    shown = text.getvalue()
    assert "Summary" in shown
    assert "run-1" in shown
    assert "failure" in shown
    assert "6 B / 5 B" in shown
    assert "1 error(s)" in shown


def test_table_counts_skipped_lines() -> None:
    """Skipped invalid lines are counted under the table."""
    console, text = terminal()
    report(summaries(), console, as_json=False, invalid=2)
    assert "2 invalid line(s) skipped" in text.getvalue()


def test_no_runs_says_so() -> None:
    """Without a run there is no table, only a word."""
    console, text = terminal()
    report([], console, as_json=False)
    assert "no events\n" == text.getvalue()


def test_json_summary_is_one_line_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--json: the runs and the skipped lines, one JSON object on stderr."""
    console, text = terminal()
    report(summaries(), console, as_json=True, invalid=1)
    out, err = capsys.readouterr()
    assert "" == out
    assert "" == text.getvalue()
    (line,) = err.splitlines()
    document = json.loads(line)
    assert 1 == document["invalid_lines"]
    (run,) = document["runs"]
    assert "run-1" == run["run"]
    assert run["success"] is False
