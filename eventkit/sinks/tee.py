"""A sink that hands each event to several sinks."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from eventkit.sinks._base import Sink

if TYPE_CHECKING:
    from eventkit.events import Event

__all__ = ["Tee", "tee"]


class Tee(Sink):
    """Send each event to every sink, in the order given.

    Batches go to each sink whole, one sink after the other (sinks must not
    change the list they are given).

    Opening opens them all in order (closing those already open if one fails);
    closing closes them all, in reverse order, even if one raises. A failing
    sink stops the run like any sink failure; the sinks before it in the order
    had the event already.
    """

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = sinks
        self._stack: contextlib.AsyncExitStack | None = None

    async def open(self) -> None:
        """Open every sink."""
        async with contextlib.AsyncExitStack() as stack:
            for sink in self.sinks:
                await stack.enter_async_context(sink)
            self._stack = stack.pop_all()

    async def send(self, event: Event) -> None:
        """Send ``event`` to every sink."""
        for sink in self.sinks:
            await sink.send(event)

    async def send_batch(self, events: list[Event]) -> None:
        """Send the batch to every sink, one sink after the other."""
        for sink in self.sinks:
            await sink.send_batch(events)

    async def close(self) -> None:
        """Close every sink, last opened first."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    def __repr__(self) -> str:
        return f"<tee sink {self.sinks!r}>"


def tee(*sinks: Sink) -> Tee:
    """Return a sink sending each event to every one of ``sinks``."""
    return Tee(*sinks)
