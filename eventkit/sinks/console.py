"""A sink for people: the program's output as it ran, lifecycle events marked."""

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
    EventType.PROGRESS: ("↻", "cyan"),
}


class ConsoleSink(Sink):
    """Show events in a terminal.

    ``stdout`` data is written as is to ``stdout``; ``stderr`` data goes to
    ``stderr`` in red; every other event is one marked line on ``stderr``
    (``▶ started``, ``● result exit_code=0``, ``✗ error``, ``■ completed``),
    so the program's own output stays clean on standard output. Colour follows
    the terminal (off when piped, ``NO_COLOR`` honoured). Output text is never
    interpreted as markup. Never fails except on a closed stream.

    Args:
        stdout: Where program output goes (default ``sys.stdout``).
        stderr: Where error output and event lines go (default ``sys.stderr``).
        show_progress: Also show ``progress`` events.
    """

    def __init__(
        self,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        *,
        show_progress: bool = True,
    ) -> None:
        self._out = Console(file=stdout or sys.stdout, highlight=False, soft_wrap=True)
        self._err = Console(
            file=stderr or sys.stderr, highlight=False, soft_wrap=True, stderr=True
        )
        self._show_progress = show_progress
        # Whether the last thing written ended a line: marks start on a new one.
        self._at_line_start = True

    async def send(self, event: Event) -> None:
        """Show ``event``."""
        kind = event.type
        if kind == EventType.STDOUT:
            self._write(self._out, event.data, colour=None)
        elif kind == EventType.STDERR:
            self._write(self._err, event.data, colour=_RED)
        elif kind != EventType.PROGRESS or self._show_progress:
            self._mark(event)

    def _write(self, console: Console, data: str, *, colour: str | None) -> None:
        # Program output goes to the file as is: rich would expand tabs and
        # strip control characters such as the \r of a progress bar.
        if not data:
            return
        file = console.file
        if colour is not None and console.color_system is not None:
            file.write(f"{colour}{data}{_RESET}")
        else:
            file.write(data)
        file.flush()
        self._at_line_start = data.endswith("\n")

    def _mark(self, event: Event) -> None:
        mark, style = _MARKS.get(event.type, ("·", "dim"))
        if not self._at_line_start:
            self._err.print()
        line = Text(f"{mark} {event.type}", style=style)
        details = describe(event)
        if details:
            line.append(f" {details}", style="dim")
        self._err.print(line)
        self._at_line_start = True


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
    fields = [f"{key}={value!r}" for key, value in attrs.items()]
    if event.data:
        fields.insert(0, event.data.rstrip("\n"))
    return " ".join(fields)


def console(
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    *,
    show_progress: bool = True,
) -> ConsoleSink:
    """Return a sink showing events in a terminal, coloured by type."""
    return ConsoleSink(stdout, stderr, show_progress=show_progress)
