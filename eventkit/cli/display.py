"""The terminal side of the commands: error console, the live view, the summary.

Everything here writes to standard error, which is for people: the program's
own standard output stays on standard output. rich is loaded with this module,
so only commands that run load it.

What reaches a file that is not a terminal (a pipe, a recording) is the
program's bytes unchanged, and nothing printed for people is wrapped there
(no line breaks in the middle of words). On a terminal, :class:`TerminalView`
shows output that redraws its line with ``\\r`` (tqdm, pip, curl) in place,
also above the live progress bar, and the summary takes the terminal's width:
a table where it fits, one block per run where it does not.

Failure behaviour: never raises but for a closed stream.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import IO, TYPE_CHECKING

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.control import Control
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.segment import ControlType
from rich.table import Table
from rich.text import Text

from eventkit.events import EventType
from eventkit.sinks.console import ConsoleSink

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rich.console import RenderableType

    from eventkit.events import Event
    from eventkit.summary import RunSummary

__all__ = ["TerminalLine", "TerminalView", "error_console", "print_error", "report"]

#: The style of the program's standard error on a terminal.
_STDERR_STYLE = "red"


def error_console() -> Console:
    """Return a console on standard error, for messages, the bar and the summary.

    Piped, it wraps nothing: a line for people is one line in a log file.
    """
    # No highlighting: numbers and paths in messages stay the colour they were.
    console = Console(stderr=True, highlight=False)
    console.soft_wrap = not console.is_terminal
    return console


def print_error(err: Console, message: object) -> None:
    """Print ``error: MESSAGE`` in the command's error style, on one line."""
    line = Text.assemble(("error:", "red"), " ", str(message))
    err.print(line, soft_wrap=not err.is_terminal)


class TerminalLine:
    """The line a terminal's cursor is on, as the terminal shows it.

    Fed what a program writes after its last newline: ``\\r`` takes the
    cursor back to the start of the line, and what comes after it overwrites
    what was there, character by character, as a terminal does. ANSI colour
    codes are kept as styles.

    :attr:`text` is replaced, never changed in place, so that a display
    drawing it from another thread always sees a whole line.
    """

    __slots__ = ("cursor", "text")

    def __init__(self) -> None:
        #: What the line shows.
        self.text = Text()
        #: Where the next character goes.
        self.cursor = 0

    def feed(self, data: str, style: str = "") -> None:
        """Write ``data``, which holds no newline, at the cursor."""
        text, cursor = self.text, self.cursor
        for index, segment in enumerate(data.split("\r")):
            if index:
                cursor = 0
            if not segment:
                continue
            piece = Text.from_ansi(segment, style=style, end="")
            end = cursor + len(piece)
            text = text[:cursor] + piece + text[end:]
            cursor = end
        self.text, self.cursor = text, cursor

    def clear(self) -> None:
        """A newline: the cursor is on a fresh line."""
        self.text = Text()
        self.cursor = 0


class _LiveProgress(Progress):
    """rich's progress display, with the program's unfinished line above the bars."""

    def __init__(self, line: TerminalLine, console: Console) -> None:
        # Set first: rich draws the display once while it is made.
        self._line = line
        super().__init__(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            # The program's output is printed above the bars by TerminalView;
            # stray writes to stderr (log lines) are caught and printed too.
            redirect_stdout=False,
            redirect_stderr=True,
        )

    def get_renderables(self) -> Iterable[RenderableType]:
        """The unfinished line, if any, then the bars."""
        # Read once: the line is replaced, not changed, by the event loop.
        text = self._line.text
        if text:
            yield Text(text.plain, spans=text.spans, no_wrap=True, overflow="ellipsis")
        yield from super().get_renderables()


class TerminalView(ConsoleSink):
    """The stream as people see it in a terminal, with a live progress bar.

    A :class:`~eventkit.sinks.console.ConsoleSink` (the program's stdout to
    stdout as is, its stderr to stderr in red, lifecycle events as marked
    lines on stderr) that also:

    - with ``progress_bar``, on a terminal, shows a bar per run that reports a
      percentage, from ``progress`` events, removed when the run's progress is
      done; the program's output is printed above the bars meanwhile, and its
      unfinished line (a ``\\r`` progress display) is drawn in place just
      above them;
    - keeps the bytes unchanged on a file that is not a terminal: only what
      goes to the terminal is drawn.

    Args:
        console: The terminal on standard error: marks, bars.
        progress_bar: Show the live progress bar (on a terminal only).
    """

    def __init__(self, console: Console, *, progress_bar: bool = False) -> None:
        super().__init__(show_progress=False, console=console)
        self._line = TerminalLine()
        self._progress = (
            _LiveProgress(self._line, console)
            if progress_bar and console.is_terminal
            else None
        )
        self._live = False
        # Whether the unfinished line is the program's stderr.
        self._line_red = False
        self._tasks: dict[str, TaskID] = {}
        self._terminals: dict[int, bool] = {}

    async def send(self, event: Event) -> None:
        """Show ``event``; move the bar of its run for a ``progress`` event."""
        if event.type == EventType.PROGRESS:
            if self._progress is not None:
                self._advance(event)
            return
        await super().send(event)

    def _advance(self, event: Event) -> None:
        """Move the bar of the event's run, starting the display if need be."""
        progress = self._progress
        assert progress is not None
        percent = event.attrs.get("percent")
        task = self._tasks.get(event.run)
        if task is None:
            if percent is None:
                return
            if not self._tasks:
                self._start()
            task = self._tasks[event.run] = progress.add_task(event.run, total=100.0)
        if percent is not None:
            progress.update(task, completed=percent)
        if event.attrs.get("done"):
            progress.remove_task(task)
            del self._tasks[event.run]
            if not self._tasks:
                self._stop()

    def _start(self) -> None:
        """Show the bars, the unfinished line redrawn just above them."""
        assert self._progress is not None
        if self._line.text:
            # rich draws from the cursor: back to the start of the line,
            # which the drawing shows again.
            self._console.control(
                Control.move_to_column(0), Control((ControlType.ERASE_IN_LINE, 2))
            )
        self._progress.start()
        self._live = True

    def _stop(self) -> None:
        """Take the bars off; the unfinished line goes back where it was."""
        if not self._live:
            return
        assert self._progress is not None
        self._progress.stop()
        self._live = False
        if self._line.text:
            self._console.print(self._line.text, end="", soft_wrap=True)

    def _is_terminal(self, file: IO[str]) -> bool:
        # rich's stand-in for stderr while the bars show stands for stderr.
        file = getattr(file, "rich_proxied_file", file)
        known = self._terminals.get(id(file))
        if known is None:
            isatty = getattr(file, "isatty", None)
            known = self._terminals[id(file)] = bool(isatty and isatty())
        return known

    def _write(self, file: IO[str], data: str, *, red: bool) -> None:
        if not data:
            return
        if not self._is_terminal(file):
            # Not the terminal: the bytes as they are, and the terminal's
            # line is where it was.
            at_line_start = self._at_line_start
            super()._write(file, data, red=red)
            self._at_line_start = at_line_start
            return
        style = _STDERR_STYLE if red else ""
        line = self._line
        if not self._live:
            super()._write(file, data, red=red)
            _, newline, tail = data.rpartition("\n")
            if newline:
                line.clear()
            if tail:
                line.feed(tail, style)
            self._line_red = red
            return
        # The bars show: finished lines go above them, the unfinished one
        # is drawn in place just above them.
        finished: list[Text] = []
        if line.text and red != self._line_red:
            # The other stream's unfinished line ends where this one starts.
            finished.append(line.text)
            line.clear()
        *ended, tail = data.split("\n")
        for part in ended:
            line.feed(part, style)
            finished.append(line.text)
            line.clear()
        if tail:
            line.feed(tail, style)
        self._line_red = red
        self._at_line_start = not line.text
        self._show(finished)

    def _show(self, finished: list[Text]) -> None:
        """Print ``finished`` lines above the bars; redraw the unfinished one."""
        assert self._progress is not None
        # The bars are redrawn from the line as it is now, before the lines
        # above them are printed: rich redraws the last drawing then.
        self._progress.refresh()
        if finished:
            self._console.print(Text("\n").join(finished), soft_wrap=True)

    def _mark(self, event: Event) -> None:
        if self._live and self._line.text:
            # A mark starts a line: the unfinished one is done.
            finished = self._line.text
            self._line.clear()
            self._show([finished])
            self._at_line_start = True
        self._line.clear()
        super()._mark(event)

    async def close(self) -> None:
        """Take the bars off; end the terminal's line for what comes next."""
        self._stop()
        if not self._at_line_start:
            self._console.print()
            self._at_line_start = True
        self._line.clear()


def report(
    runs: list[RunSummary],
    err: Console,
    *,
    as_json: bool,
    invalid: int = 0,
) -> None:
    """Print the closing summary: a table for people, one JSON object with ``--json``.

    On a terminal the table takes the terminal's width, only the notes
    wrapped (between words); where that leaves the notes too little room (60
    columns, say), each run is a block of ``name  value`` lines instead, and
    a run id is shortened only if even the block is too wide for it. Piped,
    nothing is wrapped: a row is a line.

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
    rows = [_cells(run) for run in runs]
    widths = {
        name: max(cell_len(name), *(cell_len(row[name].plain) for row in rows))
        for name in _COLUMNS
    }
    # Each column is followed by one space of padding, and each but the last
    # by the separator (a space too).
    fixed = sum(widths[name] + 2 for name in _COLUMNS[:-1]) + 1
    err.print(Text("Summary", style="bold"))
    if not err.is_terminal:
        # A log file has no width: each row on one line, nothing wrapped.
        wide = Console(
            file=err.file,
            width=max(fixed + widths["notes"] + 1, err.width),
            color_system=err.color_system,  # type: ignore[arg-type]
            highlight=False,
        )
        with wide.capture() as captured:
            wide.print(_table(rows, wrap=False))
        lines = [line.rstrip() for line in captured.get().splitlines()]
        err.file.write("".join(f"{line}\n" for line in lines if line))
    elif fixed + min(widths["notes"], _NOTES_MIN_WIDTH) <= err.width:
        err.print(_table(rows, wrap=True))
    else:
        for index, row in enumerate(rows):
            if index:
                err.print()
            err.print(_block(row))
    if invalid:
        err.print(f"[yellow]{invalid} invalid line(s) skipped[/]")


#: The summary's columns, in order; the notes last (the only one wrapped).
_COLUMNS = ("run", "outcome", "exit", "duration", "events", "out / err", "notes")
#: Right-aligned columns: numbers.
_NUMBERS = frozenset({"exit", "duration", "events", "out / err"})
#: The least room for the notes before the table gives way to blocks.
_NOTES_MIN_WIDTH = 12


def _table(rows: list[dict[str, Text]], *, wrap: bool) -> Table:
    """The runs as a table: a row each, only the notes wrapped (between words)."""
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        expand=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    for name in _COLUMNS:
        if name == "notes":
            table.add_column(name, no_wrap=not wrap, overflow="fold")
        else:
            table.add_column(
                name, justify="right" if name in _NUMBERS else "left", no_wrap=True
            )
    for row in rows:
        table.add_row(*(row[name] for name in _COLUMNS))
    return table


def _block(row: dict[str, Text]) -> Table:
    """One run as a block of ``name  value`` lines, for narrow terminals."""
    block = Table.grid(padding=(0, 2, 0, 0))
    block.add_column(style="dim", no_wrap=True)
    block.add_column(overflow="fold")
    run = row["run"].copy()
    run.no_wrap, run.overflow = True, "ellipsis"
    block.add_row("run", run)
    outcome = row["outcome"].copy()
    if row["exit"].plain != "-":
        outcome.append(f" (exit {row['exit'].plain})")
    block.add_row("outcome", outcome)
    block.add_row("duration", row["duration"])
    block.add_row("events", Text.assemble(row["events"], " (", row["out / err"], ")"))
    if row["notes"]:
        block.add_row("notes", row["notes"])
    return block


#: How each outcome is shown.
_OUTCOMES = {
    None: Text("incomplete", style="yellow"),
    True: Text("success", style="green"),
    False: Text("failure", style="red"),
}


def _cells(run: RunSummary) -> dict[str, Text]:
    """One run's cells in the summary, by column."""
    notes = []
    if run.reason is not None:
        notes.append(run.reason)
    exit_code = run.exit_code
    if exit_code is not None and exit_code < 0:
        # As a shell says it: 128 + N for signal N.
        notes.append(f"killed by {_signal_name(-exit_code)}")
        exit_code = 128 - exit_code
    if run.percent is not None:
        notes.append(f"progress {run.percent:.0f}%")
    if run.gaps:
        notes.append(f"{run.gaps} gap(s), {run.missing} missing")
    if run.limits:
        notes.append("limits: " + ", ".join(run.limits))
    if run.errors:
        notes.append(f"{len(run.errors)} error(s)")
    output = f"{run.bytes.get('stdout', 0):,} B / {run.bytes.get('stderr', 0):,} B"
    return {
        "run": Text(run.run or "-"),
        "outcome": _OUTCOMES[run.success].copy(),
        "exit": Text("-" if exit_code is None else str(exit_code)),
        "duration": Text(f"{run.duration:.2f}s"),
        "events": Text(f"{sum(run.events.values()):,}"),
        "out / err": Text(output),
        "notes": Text("; ".join(notes)),
    }


def _signal_name(number: int) -> str:
    """``SIGKILL`` for 9; ``signal N`` for a number with no name here."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
