"""Sinks that hand events to Python code: a list, a callback."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from eventkit.sinks._base import Sink, failed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventkit.events import Event

__all__ = ["Call", "Collect", "call", "collect"]


class Collect(Sink):
    """Keep every event in :attr:`events`, in order. Never fails.

    Memory grows with the stream: meant for tests and short runs.
    """

    def __init__(self) -> None:
        #: The events received, in order.
        self.events: list[Event] = []

    async def send(self, event: Event) -> None:
        """Append ``event`` to :attr:`events`."""
        self.events.append(event)

    async def send_batch(self, events: list[Event]) -> None:
        """Append every event of the batch to :attr:`events`."""
        self.events.extend(events)

    def __repr__(self) -> str:
        return f"<collect sink: {len(self.events)} events>"


class Call(Sink):
    """Call a function with each event; await its result when it is awaitable.

    Whatever the function raises stops the run (see :class:`Sink`).
    """

    def __init__(self, fn: Callable[[Event], object]) -> None:
        self._fn = fn

    async def send(self, event: Event) -> None:
        """Call the function with ``event`` and await it if need be."""
        result = self._fn(event)
        # Most callbacks return None: skip the awaitable test for them.
        if result is not None and inspect.isawaitable(result):
            await result

    async def send_batch(self, events: list[Event]) -> None:
        """Call the function with each event in turn, awaiting where need be.

        Raises:
            SinkError: If the function raised; ``undelivered`` starts with the
                event it raised for.
        """
        fn = self._fn
        for index, event in enumerate(events):
            try:
                result = fn(event)
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception as exc:
                raise failed(self, events, index, exc) from exc

    def __repr__(self) -> str:
        return f"<call sink {self._fn!r}>"


def collect() -> Collect:
    """Return a sink that keeps every event in its ``.events`` list."""
    return Collect()


def call(fn: Callable[[Event], Awaitable[object] | object]) -> Call:
    """Return a sink calling ``fn(event)``, sync or async, for each event."""
    return Call(fn)
