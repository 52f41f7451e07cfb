"""The terminal side: the live view, the summary at any width, the JSON summary."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from rich.console import Console

from eventkit.cli.display import (
    TerminalLine,
    TerminalView,
    error_console,
    print_error,
    report,
)
from eventkit.protocol import jsonl
from eventkit.sinks.console import ConsoleSink
from eventkit.summary import SummaryTracker
from tests.cli.terminal import run_in_terminal, screen
from tests.factories import ev

if TYPE_CHECKING:
    from pathlib import Path

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


RUN_ID = "9acfabd7167f4f87"


def eventful() -> list[RunSummary]:
    """A failed run with every note, and a run that never completed."""
    tracker = SummaryTracker()
    for event in [
        ev("stdout", "hello\n", 0, run=RUN_ID),
        ev("error", "boom", 1, run=RUN_ID),
        ev("resource_limit", "", 2, run=RUN_ID, limit="timeout"),
        ev("result", "", 3, run=RUN_ID, exit_code=-9, execution_time=12.5),
        ev("completed", "", 4, run=RUN_ID, success=False),
        ev("stdout", "x" * 5000, 0, run="second-run"),
    ]:
        tracker.feed(event)
    runs = list(tracker.summaries())
    runs[0].percent = 45.0
    runs[1].reason = "stream closed with code 1006 before the run completed"
    return runs


def shown(width: int, *, terminal: bool) -> list[str]:
    """The summary of eventful() as printed at ``width`` columns."""
    text = io.StringIO()
    console = Console(
        file=text, width=width, color_system=None, force_terminal=terminal
    )
    report(eventful(), console, as_json=False)
    return text.getvalue().splitlines()


@pytest.mark.parametrize("width", [60, 80, 120])
def test_summary_fits_the_terminal(width: int) -> None:
    """At 60, 80 and 120 columns no line is wider than the terminal, the run
    ids are whole and every note is there, no word cut in two.

    Before: headers cut to ``outco…`` at 60, notes wrapped mid-word at 80,
    ids cut to 12 characters at every width.
    """
    lines = shown(width, terminal=True)
    assert all(len(line) <= width for line in lines)
    text = " ".join(" ".join(lines).split())
    assert RUN_ID in text
    assert "second-run" in text
    for note in [
        "killed by SIGKILL",
        "progress 45%",
        "limits: timeout",
        "1 error(s)",
        "stream closed with code 1006 before the run completed",
    ]:
        assert note in text
    assert "…" not in text


def test_summary_is_a_table_where_it_fits() -> None:
    """At 120 columns: a header, a row per run; the status of a signal as 128+N."""
    lines = shown(120, terminal=True)
    assert lines[1].split() == [
        "run", "outcome", "exit", "duration", "events", "out", "/", "err", "notes",
    ]  # fmt: skip
    row = lines[3].split()
    assert [RUN_ID, "failure", "137", "12.50s", "5"] == row[:5]


def test_summary_is_blocks_where_a_table_does_not_fit() -> None:
    """At 60 columns each run is a block of ``name  value`` lines."""
    lines = [line.rstrip() for line in shown(60, terminal=True)]
    assert f"run       {RUN_ID}" == lines[1]
    assert "outcome   failure (exit 137)" == lines[2]


def test_run_id_is_shortened_only_when_nothing_else_fits() -> None:
    """At 20 columns even a block cannot hold the id: it ends with an ellipsis."""
    lines = [line.rstrip() for line in shown(20, terminal=True)]
    assert lines[1].startswith("run       9acfab")
    assert lines[1].endswith("…")


def test_piped_summary_wraps_nothing() -> None:
    """Piped: a row is one line, however long, with no trailing spaces."""
    lines = shown(80, terminal=False)
    (row,) = [line for line in lines if line.startswith(RUN_ID)]
    assert row.endswith("killed by SIGKILL; progress 45%; limits: timeout; 1 error(s)")
    (second,) = [line for line in lines if line.startswith("second-run")]
    assert second.endswith("stream closed with code 1006 before the run completed")
    assert all(line == line.rstrip() for line in lines)


def test_piped_marks_and_errors_wrap_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Piped: a long lifecycle line and an error are one line each."""
    err = error_console()
    message = " ".join(["word"] * 40)
    view = TerminalView(err)
    asyncio.run(view.send(ev("error", message, 0)))
    print_error(err, message)
    _, text = capsys.readouterr()
    assert [f"✗ error {message}", f"error: {message}"] == text.splitlines()


@pytest.mark.parametrize(
    ("writes", "expected"),
    [
        (["10%", "\r20%", "\r30%"], "30%"),
        (["downloading 100%", "\r50%"], "50%nloading 100%"),
        (["a\rb\rc"], "c"),
        (["ab", "", "c"], "abc"),
        (["\x1b[31mred\x1b[0m", "\rR"], "Red"),
    ],
)
def test_terminal_line_overwrites_after_carriage_return(
    writes: list[str], expected: str
) -> None:
    """``\\r`` goes back to the start; later text overwrites, as on a terminal."""
    line = TerminalLine()
    for data in writes:
        line.feed(data)
    assert expected == line.text.plain


def test_stderr_is_coloured_line_by_line() -> None:
    """Each line of stderr is coloured on its own: no colour code after a newline.

    Before, ``\\x1b[0m`` came after the newline: a live display printed it as
    an empty line after each line of stderr.
    """
    stderr = io.StringIO()
    sink = ConsoleSink(
        io.StringIO(), stderr, console=Console(file=io.StringIO(), force_terminal=True)
    )
    asyncio.run(sink.send(ev("stderr", "one\ntwo\n", 0)))
    assert "\x1b[31mone\x1b[0m\n\x1b[31mtwo\x1b[0m\n" == stderr.getvalue()


REDRAWING = """\
import sys, time
print("Progress: 10% (1/10)", flush=True)
for size in (10, 20, 30):
    sys.stdout.write(f"\\rdownload {size} MB")
    sys.stdout.flush()
    time.sleep(0.2)
print()
print("warning one", file=sys.stderr, flush=True)
print("warning two", file=sys.stderr, flush=True)
time.sleep(0.2)
print("Progress: 100% (10/10)", flush=True)
"""


@pytest.mark.parametrize("width", [60, 80, 120])
def test_progress_view_on_a_terminal(width: int, tmp_path: Path) -> None:
    """On a terminal with --progress: ``\\r`` redraws stay one line, shown in
    place; no empty line after stderr; lines fit the terminal.

    Before: each redraw was a line of its own and an empty line followed each
    line of stderr.
    """
    program = tmp_path / "redraw.py"
    program.write_text(REDRAWING)
    status, output = run_in_terminal(
        [sys.executable, "-m", "eventkit", "run", str(program), "--progress"],
        columns=width,
        env=dict(os.environ),
    )
    assert 0 == status, output
    lines = screen(output, columns=width)
    program_lines = [
        line for line in lines[: lines.index("Summary")] if line[:1] not in "▶●■"
    ]
    assert [
        "Progress: 10% (1/10)",
        "download 30 MB",
        "warning one",
        "warning two",
        "Progress: 100% (10/10)",
    ] == program_lines
    assert all(len(line) <= width for line in lines)
    assert any("success" in line for line in lines[lines.index("Summary") :])


def test_output_bytes_unchanged_when_not_a_terminal(tmp_path: Path) -> None:
    """Piped stdout and the recording get the program's bytes as they were."""
    program = tmp_path / "redraw.py"
    program.write_text(REDRAWING)
    recording = tmp_path / "run.jsonl"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "eventkit", "run", str(program)),
            *("--progress", "--jsonl", str(recording)),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    expected = (
        "Progress: 10% (1/10)\n\rdownload 10 MB\rdownload 20 MB\rdownload 30 MB\n"
        "Progress: 100% (10/10)\n"
    )
    # Bytes: text mode would turn each \r into a newline.
    assert expected == done.stdout.decode()
    events = [jsonl.decode(line) for line in recording.read_bytes().splitlines()]
    assert expected == "".join(e.data for e in events if e.type == "stdout")
    assert "warning one\nwarning two\n" == "".join(
        e.data for e in events if e.type == "stderr"
    )
