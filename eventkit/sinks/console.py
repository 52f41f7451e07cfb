"""A sink for people: the program's output as it ran, lifecycle events marked.

Failure behaviour: never raises but for a closed stream.
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from eventkit.events import EventType
from eventkit.sinks._base import Sink

if TYPE_CHECKING:
    from eventkit.events import Event

__all__ = ["ConsoleSink", "console"]

_RED = "\x1b[31m"
_RESET = "\x1b[0m"

# How each lifecycle event is shown: a mark and a style.
_MARKS: dict[str, tuple[str, str]] = {
    EventType.STARTED: ("▶", "dim"),
    EventType.RESULT: ("●", "bold"),
    EventType.ERROR: ("✗", "bold red"),
    EventType.RESOURCE_LIMIT: ("⚠", "bold yellow"),
    EventType.COMPLETED: ("■", "bold"),
    EventType.GAP: ("…", "yellow"),
    "truncated": ("✂", "yellow"),
    EventType.PROGRESS: ("↻", "cyan"),
}


class ConsoleSink(Sink):
    """Show events in a terminal.

    ``stdout`` data is written as is to ``stdout``; ``stderr`` data goes to
    ``stderr`` in red (each line coloured on its own, so that no colour code
    follows a newline); every other event is one marked line on ``stderr``
    (``▶ started``, ``● result exit_code=0``, ``✗ error``, ``■ completed``),
    so the program's own output stays clean on standard output. Colour follows
    the terminal (off when piped, ``NO_COLOR`` honoured). Output text is never
    interpreted as markup. Never fails except on a closed stream.

    Args:
        stdout: Where program output goes (default ``sys.stdout``).
        stderr: Where error output and event lines go (default ``sys.stderr``).
        show_progress: Also show ``progress`` events.
        console: The rich console event lines are printed with (default: one
            on ``stderr``); pass the console of a live display to print above
            it.
    """

    def __init__(
        self,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        *,
        show_progress: bool = True,
        console: Console | None = None,
    ) -> None:
        # None: sys.stdout / sys.stderr as they are at each write, so that output
        # follows a redirection (a live progress display prints it above itself).
        self._stdout = stdout
        self._stderr = stderr
        self._console = console or Console(
            file=stderr, highlight=False, soft_wrap=True, stderr=True
        )
        # Colour the program's stderr only where the marks are coloured too.
        self._red = self._console.color_system is not None
        self._show_progress = show_progress
        # Whether the last thing written ended a line: marks start on a new one.
        self._at_line_start = True

    async def send(self, event: Event) -> None:
        """Show ``event``."""
        kind = event.type
        if kind == EventType.STDOUT:
            self._write(self._stdout or sys.stdout, event.data, red=False)
        elif kind == EventType.STDERR:
            self._write(self._stderr or sys.stderr, event.data, red=self._red)
        elif kind != EventType.PROGRESS or self._show_progress:
            self._mark(event)

    async def send_batch(self, events: list[Event]) -> None:
        """Show the batch: output of one stream in a row is written at once."""
        index, count = 0, len(events)
        while index < count:
            kind = events[index].type
            if kind != EventType.STDOUT and kind != EventType.STDERR:
                await self.send(events[index])
                index += 1
                continue
            end = index + 1
            while end < count and events[end].type == kind:
                end += 1
            data = "".join(event.data for event in events[index:end])
            if kind == EventType.STDOUT:
                self._write(self._stdout or sys.stdout, data, red=False)
            else:
                self._write(self._stderr or sys.stderr, data, red=self._red)
            index = end

    def _write(self, file: IO[str], data: str, *, red: bool) -> None:
        # Program output goes to the file as is: rich would expand tabs and
        # strip control characters such as the \r of a progress bar.
        if not data:
            return
        file.write(_red(data) if red else data)
        file.flush()
        self._at_line_start = data.endswith("\n")

    def _mark(self, event: Event) -> None:
        mark, style = _MARKS.get(event.type, ("·", "dim"))
        if not self._at_line_start:
            self._console.print()
        line = Text(f"{mark} {event.type}", style=style)
        details = describe(event)
        if details:
            line.append(f" {details}", style="dim")
        self._console.print(line)
        self._at_line_start = True


def _red(data: str) -> str:
    """``data`` in red, line by line: each newline comes after the colour ends.

    A colour code after the newline would be a line of its own to whatever
    splits the output into lines (a live display, a pager): an empty line.
    """
    return "\n".join(
        f"{_RED}{line}{_RESET}" if line else "" for line in data.split("\n")
    )


def describe(event: Event) -> str:
    """Return a short human description of a non-output event's content."""
    attrs = event.attrs
    if event.type == EventType.PROGRESS:
        parts = []
        if attrs.get("percent") is not None:
            parts.append(f"{attrs['percent']:.1f}%")
        if attrs.get("current") is not None and attrs.get("total") is not None:
            parts.append(f"({attrs['current']}/{attrs['total']})")
        if attrs.get("eta") is not None:
            parts.append(f"eta {attrs['eta']:.1f}s")
        parts.append(f"{attrs.get('events', 0)} events")
        if attrs.get("done"):
            parts.append("done")
        return " ".join(parts)
    fields = [f"{key}={_short(value)}" for key, value in attrs.items()]
    if event.data:
        fields.insert(0, event.data.rstrip("\n"))
    return " ".join(fields)


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return repr(value)


def console(
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    *,
    show_progress: bool = True,
    console: Console | None = None,
) -> ConsoleSink:
    """Return a sink showing events in a terminal, coloured by type."""
    return ConsoleSink(stdout, stderr, show_progress=show_progress, console=console)
