"""The terminal side of the commands: error console, progress bar, summary table.

Everything here writes to standard error, which is for people: the program's
own standard output stays on standard output. rich is loaded with this module,
so only commands that run load it.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from eventkit import sinks

if TYPE_CHECKING:
    from eventkit.events import Event
    from eventkit.summary import RunSummary

__all__ = ["ProgressBar", "error_console", "print_error", "report"]


def error_console() -> Console:
    """Return a console on standard error, for messages, the bar and the summary."""
    # No highlighting: numbers and paths in messages stay the colour they were.
    return Console(stderr=True, highlight=False)


def print_error(err: Console, message: object) -> None:
    """Print ``error: MESSAGE`` in the command's error style."""
    err.print(f"[red]error:[/] {message}")


class ProgressBar(sinks.Sink):
    """A live progress bar on stderr, shown once the output reports progress.

    One bar per run that reports a percentage, removed when its progress is
    done. While it shows, rich prints everything written to stdout and stderr
    above it.

    Args:
        console: The terminal the bar is drawn on.
    """

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            # Program output printed above the bar, unless stdout goes elsewhere.
            redirect_stdout=sys.stdout.isatty(),
            redirect_stderr=True,
        )
        self._tasks: dict[str, TaskID] = {}

    async def send(self, event: Event) -> None:
        """Move the bar of the event's run, for ``progress`` events only."""
        if event.type != "progress":
            return
        percent = event.attrs.get("percent")
        task = self._tasks.get(event.run)
        if task is None:
            if percent is None:
                return
            if not self._tasks:
                self._progress.start()
            task = self._tasks[event.run] = self._progress.add_task(
                event.run, total=100.0
            )
        if percent is not None:
            self._progress.update(task, completed=percent)
        if event.attrs.get("done"):
            self._progress.remove_task(task)

    async def close(self) -> None:
        """Take the bar off the terminal, if it was ever shown."""
        if self._tasks:
            self._progress.stop()


def report(
    runs: list[RunSummary],
    err: Console,
    *,
    as_json: bool,
    invalid: int = 0,
) -> None:
    """Print the closing summary: a table for people, one JSON object with ``--json``.

    Args:
        runs: The runs' summaries, in the order they started.
        err: The console the table is printed on.
        as_json: Print ``{"runs": [...], "invalid_lines": N}`` on one line of
            standard error instead of the table.
        invalid: How many invalid input lines were skipped.
    """
    if as_json:
        document = {"runs": [run.as_dict() for run in runs], "invalid_lines": invalid}
        print(json.dumps(document), file=sys.stderr)
        return
    if not runs:
        err.print("no events")
        return
    table = Table(title="Summary", title_justify="left", expand=False)
    table.add_column("run", no_wrap=True, max_width=12, overflow="ellipsis")
    for column in ("outcome", "exit", "duration", "events", "out / err"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("notes", overflow="fold")
    for run in runs:
        table.add_row(*_row(run))
    err.print(table)
    if invalid:
        err.print(f"[yellow]{invalid} invalid line(s) skipped[/]")


def _row(run: RunSummary) -> list[str]:
    """One run's row of the summary table, with rich markup."""
    if run.success is None:
        outcome = "[yellow]incomplete[/]"
    elif run.success:
        outcome = "[green]success[/]"
    else:
        outcome = "[red]failure[/]"
    events = f"{sum(run.events.values()):,}"
    output = f"{run.bytes.get('stdout', 0):,} B / {run.bytes.get('stderr', 0):,} B"
    notes = []
    if run.percent is not None:
        notes.append(f"progress {run.percent:.0f}%")
    if run.gaps:
        notes.append(f"{run.gaps} gap(s), {run.missing} missing")
    if run.limits:
        notes.append("limits: " + ", ".join(run.limits))
    if run.errors:
        notes.append(f"{len(run.errors)} error(s)")
    return [
        run.run or "-",
        outcome,
        "-" if run.exit_code is None else str(run.exit_code),
        f"{run.duration:.2f}s",
        events,
        output,
        "; ".join(notes),
    ]
