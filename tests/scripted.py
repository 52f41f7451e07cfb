"""Scripted sources and recording sinks for the tests of the runner and driver.

Times are read from the running loop (:func:`tests.virtual_time.loop_time`):
exact on a virtual-time loop, :func:`time.monotonic` on asyncio's own.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from msgspec.structs import replace

from eventkit import Event, EventStream, Stage, sinks, sources
from tests.virtual_time import loop_time

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence

    from aiostream.core import Stream

__all__ = [
    "WAIT",
    "Failing",
    "RecordingSink",
    "Source",
    "chunk",
    "collect",
    "piped",
]

#: In a :class:`Source` script: wait until cancelled or closed.
WAIT: Final = "wait"


def chunk(event: Event) -> Event:
    """Make the chunk BufferBytes emits for ``event`` alone."""
    return replace(
        event,
        attrs={
            "count": 1,
            "first_sequence": event.sequence,
            "last_sequence": event.sequence,
        },
    )


class Source:
    """An async source playing a script, recording what happens to it.

    The script holds events to yield, floats to sleep for, exceptions to raise,
    and :data:`WAIT` to wait until the source is cancelled or closed.
    """

    def __init__(self, script: Sequence[Event | float | str | Exception]) -> None:
        self.script = script
        #: ``(loop time, event)`` just before each event is yielded.
        self.yielded: list[tuple[float, Event]] = []
        #: Set when the source starts to wait for good.
        self.waiting = asyncio.Event()
        self.cancelled = False
        self.closed = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        try:
            for item in self.script:
                if isinstance(item, Event):
                    self.yielded.append((loop_time(), item))
                    yield item
                elif isinstance(item, float):
                    await asyncio.sleep(item)
                elif isinstance(item, Exception):
                    raise item
                else:
                    self.waiting.set()
                    await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.closed = True

    @property
    def events(self) -> list[Event]:
        """The events yielded so far."""
        return [event for _, event in self.yielded]


class Failing(Exception):
    """Raised by test sources and sinks."""


class RecordingSink(sinks.Call):
    """A callback sink that records when it is opened and closed."""

    def __init__(self, fn: Callable[[Event], object] | None = None) -> None:
        self.events: list[Event] = []
        #: The loop time at which each event arrived.
        self.arrivals: list[float] = []
        self.received = asyncio.Event()
        self.opened = False
        self.closed = False
        self._then = fn
        super().__init__(self._record)

    def _record(self, event: Event) -> object:
        if not self.opened or self.closed:
            raise AssertionError("send() outside open() and close()")
        self.arrivals.append(loop_time())
        self.events.append(event)
        self.received.set()
        return None if self._then is None else self._then(event)

    async def open(self) -> None:
        """Record the call."""
        self.opened = True

    async def close(self) -> None:
        """Record the call."""
        self.closed = True

    def __repr__(self) -> str:
        return f"<recording sink: {len(self.events)} events>"


async def collect(xs: Stream[Event]) -> list[Event]:
    """Iterate ``xs`` safely and return its events."""
    async with xs.stream() as streamer:
        events = [event async for event in streamer]
    return events


def piped(source: AsyncIterable[Event], *stages: Stage) -> EventStream:
    """Return ``sources.iterate(source) | stage | ...``."""
    xs = sources.iterate(source)
    for stage in stages:
        xs = xs | stage
    return xs
