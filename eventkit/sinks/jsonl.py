"""A sink that records events as eventkit JSON Lines."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING

from eventkit.events import TERMINAL_TYPES
from eventkit.protocol import jsonl as codec
from eventkit.sinks._base import Sink

if TYPE_CHECKING:
    from eventkit.events import Event

__all__ = ["JsonlSink", "jsonl"]


class JsonlSink(Sink):
    """Write each event as one JSON line (every field; ``eventkit replay`` reads it).

    Lines are buffered and flushed at each run's terminal event and at the end,
    so a finished run is on disk whole. A write error (disk full, closed pipe)
    stops the run (see :class:`~eventkit.sinks.Sink`).

    Args:
        target: A path (opened when the run starts, closed at the end) or an
            open file, binary or text (left open, flushed at the end).
        append: Add to the file at ``target`` instead of replacing it, as a
            long-running worker does: what earlier runs recorded is kept. A
            last line left unfinished (a process killed mid-write) is ended
            with a newline first, so the lines appended read back whole.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[bytes] | IO[str],
        *,
        append: bool = False,
    ) -> None:
        self._target = target
        self._append = append
        self._file: IO[bytes] | IO[str] | None = None
        self._owned = False

    async def open(self) -> None:
        """Open the path, if a path was given."""
        if isinstance(self._target, str | os.PathLike):
            path = Path(self._target)
            # Blocking opens of a local file, kept open until close().
            if self._append:
                file = path.open("ab")  # noqa: ASYNC230
                if file.tell() and not _ends_a_line(path):
                    file.write(b"\n")
            else:
                file = path.open("wb")  # noqa: ASYNC230
            self._file = file
            self._owned = True
        else:
            self._file = self._target

    async def send(self, event: Event) -> None:
        """Write ``event`` as a line."""
        file = self._file
        if file is None:
            raise RuntimeError("the jsonl sink is not open")
        line = codec.encode(event)
        if isinstance(file, io.TextIOBase):
            file.write(line.decode())
        else:
            file.write(line)  # type: ignore[arg-type]
        if event.type in TERMINAL_TYPES:
            file.flush()

    async def send_batch(self, events: list[Event]) -> None:
        """Write the batch's lines at once; flush if it ends a run."""
        file = self._file
        if file is None:
            raise RuntimeError("the jsonl sink is not open")
        lines = b"".join(map(codec.encode, events))
        if isinstance(file, io.TextIOBase):
            file.write(lines.decode())
        else:
            file.write(lines)  # type: ignore[arg-type]
        if any(event.type in TERMINAL_TYPES for event in events):
            file.flush()

    async def close(self) -> None:
        """Flush, and close the file if this sink opened it."""
        if self._file is None:
            return
        try:
            self._file.flush()
        finally:
            if self._owned:
                self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"<jsonl sink {self._target!r}>"


def _ends_a_line(path: Path) -> bool:
    """Tell whether the non-empty file at ``path`` ends with a newline."""
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


def jsonl(
    target: str | os.PathLike[str] | IO[bytes] | IO[str], *, append: bool = False
) -> JsonlSink:
    """Return a sink recording events as JSON Lines to a path or open file.

    See :class:`JsonlSink`; ``append=True`` adds to an existing file.
    """
    return JsonlSink(target, append=append)
