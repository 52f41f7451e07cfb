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
        target: A path (opened for writing, truncated, closed at the end) or an
            open file, binary or text (left open, flushed at the end).
    """

    def __init__(self, target: str | os.PathLike[str] | IO[bytes] | IO[str]) -> None:
        self._target = target
        self._file: IO[bytes] | IO[str] | None = None
        self._owned = False

    async def open(self) -> None:
        """Open the path, if a path was given."""
        if isinstance(self._target, str | os.PathLike):
            # Blocking open of a local file, kept open until close().
            self._file = Path(self._target).open("wb")  # noqa: ASYNC230, SIM115
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


def jsonl(target: str | os.PathLike[str] | IO[bytes] | IO[str]) -> JsonlSink:
    """Return a sink recording events as JSON Lines to a path or open file."""
    return JsonlSink(target)
