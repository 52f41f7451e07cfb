"""A source replaying events recorded as eventkit JSON Lines.

Failure behaviour: a line that is not a valid event, or is longer than
``max_line_bytes``, raises :exc:`~eventkit.DecodeError` naming its line
number (:exc:`~eventkit.exceptions.LineTooLongError` for a long one), after
every event before it was handed over; with ``on_invalid`` it is reported to
the callback and skipped, and reading goes on. Reading is linear in the size
of the file whatever its line lengths, and holds at most ``max_line_bytes``
of an unfinished line plus one block.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from eventkit.exceptions import DecodeError
from eventkit.protocol import jsonl as codec
from eventkit.protocol.lines import NumberedLines
from eventkit.streams import EventStream, one_by_one

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from eventkit.events import Event

__all__ = ["MAX_LINE_BYTES", "jsonl"]

#: Bytes read per trip to the reading thread.
_BLOCK: Final = 1 << 18
#: The longest line read by default: well above anything eventkit writes.
MAX_LINE_BYTES: Final = 64 << 20


class _JsonlSource:
    __slots__ = ("_max_line", "_on_invalid", "_target")

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[bytes] | IO[str],
        on_invalid: Callable[[DecodeError], None] | None,
        max_line: int,
    ) -> None:
        self._target = target
        self._on_invalid = on_invalid
        self._max_line = max_line

    def __aiter__(self) -> AsyncIterator[Event]:
        return one_by_one(self.batches())

    async def batches(self) -> AsyncIterator[list[Event]]:
        """Yield the events of each block read, decoded at once."""
        target = self._target
        if isinstance(target, str | os.PathLike):
            file: IO[bytes] | IO[str] = await asyncio.to_thread(Path(target).open, "rb")
            owned = True
        else:
            file, owned = target, False
        decode = codec.decode
        on_invalid = self._on_invalid
        lines = NumberedLines(self._max_line)
        try:
            while True:
                block: bytes | str = await asyncio.to_thread(file.read, _BLOCK)
                if block:
                    data = block.encode() if isinstance(block, str) else block
                    numbered = lines.receive(data)
                else:
                    numbered = lines.close()
                batch: list[Event] = []
                for number, line in numbered:
                    try:
                        if isinstance(line, DecodeError):
                            raise line
                        if not line.strip():
                            continue
                        batch.append(decode(line, lineno=number))
                    except DecodeError as exc:
                        if on_invalid is None:
                            # What came before the bad line goes out first.
                            if batch:
                                yield batch
                            raise
                        on_invalid(exc)
                if batch:
                    yield batch
                if not block:
                    return
        finally:
            if owned:
                file.close()


def jsonl(
    target: str | os.PathLike[str] | IO[bytes] | IO[str],
    *,
    on_invalid: Callable[[DecodeError], None] | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> EventStream:
    """Return a stream of the events recorded in a JSON Lines file.

    Blank lines are skipped. A line that is not a valid event raises
    :exc:`~eventkit.DecodeError` naming its line number, unless
    ``on_invalid`` is given: then it is called with that error and the line
    is skipped (counted by the caller, never silently). So does a line
    longer than ``max_line_bytes``
    (:exc:`~eventkit.exceptions.LineTooLongError`, a :exc:`DecodeError`).

    Args:
        target: A path, or a file open for reading (binary or text).
        on_invalid: Called for each invalid line instead of raising.
        max_line_bytes: The longest line read, newline not counted.

    Raises:
        ValueError: If ``max_line_bytes`` is not positive.
    """
    if max_line_bytes <= 0:
        raise ValueError(f"max_line_bytes must be positive, not {max_line_bytes!r}")
    return EventStream(_JsonlSource(target, on_invalid, max_line_bytes))
