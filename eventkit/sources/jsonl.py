"""A source replaying events recorded as eventkit JSON Lines."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from eventkit.protocol import jsonl as codec
from eventkit.protocol.jsonl import DecodeError
from eventkit.streams import EventStream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from eventkit.events import Event

__all__ = ["jsonl"]

#: Bytes read per trip to the reading thread.
_BLOCK: Final = 1 << 18


class _JsonlSource:
    __slots__ = ("_on_invalid", "_target")

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[bytes] | IO[str],
        on_invalid: Callable[[DecodeError], None] | None,
    ) -> None:
        self._target = target
        self._on_invalid = on_invalid

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        async with contextlib.aclosing(self.batches()) as batches:  # type: ignore[type-var]
            async for batch in batches:
                for event in batch:
                    yield event

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
        try:
            lineno = 0
            async for lines in _blocks(file):
                batch: list[Event] = []
                for line in lines:
                    lineno += 1
                    if not line.strip():
                        continue
                    try:
                        batch.append(decode(line, lineno=lineno))
                    except DecodeError as exc:
                        if on_invalid is None:
                            # What came before the bad line goes out first.
                            if batch:
                                yield batch
                            raise
                        on_invalid(exc)
                if batch:
                    yield batch
        finally:
            if owned:
                file.close()


async def _blocks(file: IO[bytes] | IO[str]) -> AsyncIterator[list[bytes]]:
    """Yield the lines of each block of ``file``, without newlines, read in a thread."""
    rest = b""
    while True:
        block: bytes | str = await asyncio.to_thread(file.read, _BLOCK)
        if not block:
            break
        data = block.encode() if isinstance(block, str) else block
        # Split on "\n" only: JSON text may hold other line separators.
        lines = data.split(b"\n")
        lines[0] = rest + lines[0]
        rest = lines.pop()
        if lines:
            yield lines
    if rest:
        yield [rest]


def jsonl(
    target: str | os.PathLike[str] | IO[bytes] | IO[str],
    *,
    on_invalid: Callable[[DecodeError], None] | None = None,
) -> EventStream:
    """Return a stream of the events recorded in a JSON Lines file.

    Blank lines are skipped. A line that is not a valid event raises
    :exc:`~eventkit.protocol.jsonl.DecodeError` naming its line number, unless
    ``on_invalid`` is given: then it is called with that error and the line is
    skipped — counted by the caller, never silently.

    Args:
        target: A path, or a file open for reading (binary or text).
        on_invalid: Called for each invalid line instead of raising.
    """
    return EventStream(_JsonlSource(target, on_invalid), ())
