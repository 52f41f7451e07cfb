"""Numbering one run's events, and ending a run cut short: what every decoder shares.

Wire dialects carry no sequence numbers (HOPX, AI Computer, E2B) and often no
``started`` event; a :class:`RunEvents` gives each event of a run its place,
from 0, in the order received, and the run id. When the input ends before the
run's ``completed`` event, :meth:`RunEvents.abort` makes the two events that
end it, the same for every dialect (:func:`closed_error`).

Nothing here raises.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Final

from eventkit.events import NO_ATTRS, TERMINAL_TYPES, Event
from eventkit.exceptions import StreamClosedError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["CLOSED_BEFORE_COMPLETE", "RunEvents", "closed_error", "new_run_id"]

#: ``attrs["code"]`` of the error event made for input that ended too early.
CLOSED_BEFORE_COMPLETE: Final = "closed_before_complete"


def new_run_id() -> str:
    """Return a fresh run id: 16 hex digits, unique enough for a fleet."""
    return uuid.uuid4().hex[:16]


def closed_error(reason: str, code: int | None = None) -> tuple[str, dict[str, Any]]:
    """Return the data and attrs of the error event for input that ended too early.

    The data is what :exc:`~eventkit.exceptions.StreamClosedError` says for
    the same code and reason, so a source that raises and a source that
    yields events report the case in the same words.

    Args:
        reason: What happened, e.g. a close reason or a connection error.
        code: The WebSocket close code, or None when the transport has none.

    Returns:
        ``(data, attrs)``; attrs has ``code`` = ``"closed_before_complete"``,
        ``close_code`` and ``reason``.
    """
    attrs = {"code": CLOSED_BEFORE_COMPLETE, "close_code": code, "reason": reason}
    return str(StreamClosedError(code, reason)), attrs


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

    def output(self, type: str, data: str, timestamp: float) -> Event:
        """Return the run's next event, one that is neither terminal nor has attrs.

        :meth:`make` for the bulk of a stream, output with a timestamp of its
        own, without its checks.
        """
        sequence = self.count
        self.count = sequence + 1
        return Event(
            type=type, data=data, timestamp=timestamp, sequence=sequence, run=self.run
        )

    def abort(self, reason: str, code: int | None = None) -> list[Event]:
        """Return the events that end the run, if its input ended before it did.

        An ``error`` event (data and attrs from :func:`closed_error`), then
        ``completed`` with ``attrs["success"]`` False; nothing once the run
        has finished.

        Args:
            reason: What happened.
            code: The WebSocket close code, or None.
        """
        if self.finished:
            return []
        data, attrs = closed_error(reason, code)
        return [
            self.make("error", data, attrs=attrs),
            self.make("completed", attrs={"success": False}),
        ]
