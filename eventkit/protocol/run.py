"""Numbering one run's events: the part every source shares.

Wire dialects carry no sequence numbers (HOPX, AI Computer, E2B) and often no
``started`` event; a :class:`RunEvents` gives each event of a run its place,
from 0, in the order received, and the run id.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from eventkit.events import NO_ATTRS, TERMINAL_TYPES, Event

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["RunEvents", "new_run_id"]


def new_run_id() -> str:
    """Return a fresh run id: 16 hex digits, unique enough for a fleet."""
    return uuid.uuid4().hex[:16]


class RunEvents:
    """Makes the events of one run, numbered from 0 in the order made.

    Args:
        run: The run id; a fresh one when None.
        clock: Wall-clock time in Unix seconds, for events whose wire form
            carries no timestamp (their timestamp is then the local receive
            time).

    Attributes:
        run: The run id.
        count: Events made so far (the next sequence).
        finished: Whether the terminal ``completed`` event was made.
    """

    __slots__ = ("_clock", "count", "finished", "run")

    def __init__(
        self, run: str | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.run = new_run_id() if run is None else run
        self._clock = clock
        self.count = 0
        self.finished = False

    def make(
        self,
        type: str,
        data: str = "",
        *,
        timestamp: float | None = None,
        attrs: Mapping[str, Any] = NO_ATTRS,
    ) -> Event:
        """Return the run's next event.

        Args:
            type: The event type.
            data: Its payload text.
            timestamp: The source's own time, if the wire has one; else now.
            attrs: The rest.
        """
        event = Event(
            type=type,
            data=data,
            timestamp=self._clock() if timestamp is None else timestamp,
            sequence=self.count,
            run=self.run,
            attrs=attrs,
        )
        self.count += 1
        if type in TERMINAL_TYPES:
            self.finished = True
        return event
