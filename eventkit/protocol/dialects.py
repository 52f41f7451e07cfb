"""The line dialects by name: which decoder reads which NDJSON stream.

:func:`eventkit.sources.ndjson` takes a dialect name; :func:`decoder_for`
turns it into a fresh decoder. Unknown names raise :exc:`ValueError`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final, Literal

from eventkit.protocol.aicomputer import AiComputerDecoder
from eventkit.protocol.e2b import E2bDecoder
from eventkit.protocol.jsonl import EventkitDecoder
from eventkit.protocol.lines import MAX_LINE

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventkit.protocol.lines import LineDecoder

__all__ = ["DIALECTS", "Dialect", "decoder_for"]

#: A dialect's name.
Dialect = Literal["aicomputer", "e2b", "eventkit"]
#: The dialects :func:`decoder_for` knows.
DIALECTS: Final[tuple[Dialect, ...]] = ("aicomputer", "e2b", "eventkit")


def decoder_for(
    dialect: str,
    run: str | None = None,
    *,
    clock: Callable[[], float] = time.time,
    max_line: int = MAX_LINE,
) -> LineDecoder:
    """Return a fresh decoder for ``dialect``.

    Args:
        dialect: ``"aicomputer"``
            (:class:`~eventkit.protocol.aicomputer.AiComputerDecoder`),
            ``"e2b"`` (:class:`~eventkit.protocol.e2b.E2bDecoder`) or
            ``"eventkit"`` (:class:`~eventkit.protocol.jsonl.EventkitDecoder`).
        run: The run id of the events the decoder makes; a fresh one when None.
        clock: The local wall clock, Unix seconds.
        max_line: The longest line accepted, in bytes.

    Raises:
        ValueError: If the dialect is unknown or ``max_line`` is not positive.
    """
    if dialect == "aicomputer":
        return AiComputerDecoder(run, clock=clock, max_line=max_line)
    if dialect == "e2b":
        return E2bDecoder(run, clock=clock, max_line=max_line)
    if dialect == "eventkit":
        return EventkitDecoder(run, clock=clock, max_line=max_line)
    raise ValueError(f"unknown dialect {dialect!r}: expected one of {DIALECTS}")
