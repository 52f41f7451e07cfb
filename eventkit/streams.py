"""The face every source and stage shows: :class:`EventStream` and :class:`Stage`.

A source returns an :class:`EventStream`: an aiostream stream (``await xs``,
``xs.stream()``, ``xs | pipe``) of the events of some async iterable. A
:class:`Stage` (what ``eventkit.pipe.NAME(...)`` returns) applied to a stream
gives another :class:`EventStream` that carries the stage along, so that a
whole chain of stages runs fused, as one async stage.

This module holds no driver code: a stream with stages, when iterated, hands
its source and stages to :func:`eventkit.driver.drive`, imported then. So a
source depends on this small module only, never on the runner.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING

from aiostream.aiter_utils import AsyncIteratorContext
from aiostream.core import Stream, Streamer, streamcontext

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventkit.events import Event
    from eventkit.operators._base import Operator

__all__ = ["EventStream", "Stage", "one_by_one"]


class Stage:
    """An operator ready to be composed: what ``eventkit.pipe.NAME(...)`` returns.

    A stage is a recipe, not a running operator: each iteration of a stream
    built from it gets a fresh operator state machine from :meth:`create`.
    Calling the stage on a source (aiostream's pipe protocol, so that
    ``source | stage`` works) returns an :class:`EventStream`; piping a stage
    onto an :class:`EventStream` fuses it into that stream's chain. Any async
    iterable of events may stand on the left of ``|``, an async generator
    included (through :meth:`__ror__`).

    Args:
        name: The operator's name, for ``repr`` and errors.
        factory: Builds a fresh operator. It is called once here, so invalid
            arguments raise :exc:`ValueError` when the stage is made.
        on_create: Called with each operator :meth:`create` makes, e.g. to
            register it with a metrics collector.
    """

    __slots__ = ("_factory", "_on_create", "name")

    def __init__(
        self,
        name: str,
        factory: Callable[[], Operator],
        *,
        on_create: Callable[[Operator], None] | None = None,
    ) -> None:
        factory()  # fail now on nonsense arguments, not mid-stream
        self.name = name
        self._factory = factory
        self._on_create = on_create

    def create(self) -> Operator:
        """Return a fresh operator state machine for one iteration."""
        operator = self._factory()
        if self._on_create is not None:
            self._on_create(operator)
        return operator

    def __call__(self, source: AsyncIterable[Event]) -> EventStream:
        """Apply the stage to ``source``, fusing with an eventkit chain."""
        if isinstance(source, EventStream):
            return EventStream(source.source, (*source.stages, self))
        return EventStream(source, (self,))

    def __ror__(self, source: AsyncIterable[Event]) -> EventStream:
        """``source | stage`` for an async iterable that is not an aiostream stream."""
        if not isinstance(source, AsyncIterable):
            return NotImplemented
        return self(source)

    def __repr__(self) -> str:
        return f"<eventkit stage {self.name}>"


class EventStream(Stream["Event"]):
    """An aiostream :class:`~aiostream.core.Stream` of events with a fused chain.

    Iterating it runs ``source`` through the chain of ``stages`` in one async
    stage. It is an ordinary aiostream stream: pipe it into aiostream's
    operators, ``await`` it for the last event, iterate it inside
    ``async with xs.stream() as s``.

    A plain ``async for event in xs`` works too, as the sandbox SDKs teach
    it, without aiostream's warning: leaving the loop early (``break``, an
    exception in its body, the consuming task cancelled) closes the source
    as soon as the event loop runs again, as ``xs.stream()`` closes it at
    the end of its block. A chain ending in a foreign aiostream operator
    (``xs | aiostream.pipe.map(f)``) is an aiostream stream, not an
    :class:`EventStream`: it follows aiostream's own rules (iterate it inside
    ``.stream()``).

    **Batches.** :meth:`batches` yields the events in lists, as they come:
    what the driver reads, and a cheap way to consume a busy stream. A source
    may offer batches of its own: any object with a ``batches()`` method
    returning an async iterator of non-empty lists of events, in order; every
    eventkit source does. Other async iterables are read event by event,
    every event already at hand gathered into one batch.

    **Takes.** A source may also offer ``takes()``: an async iterator of
    *takes*, calls without arguments that each return the next batch (maybe
    empty), yielded as soon as something is at hand. A take does its work
    (decoding, say) when called, and is called once, before the next is
    asked for. :func:`eventkit.merge` calls a source's take only when the
    batch is handed over, so a source waiting its turn holds what it
    received as it came, nothing decoded. The WebSocket source offers takes;
    :func:`eventkit.driver.takes` reads any source as takes.

    Attributes:
        source: Where the events come from.
        stages: The eventkit stages applied to it, in order.
    """

    def __init__(
        self, source: AsyncIterable[Event], stages: Sequence[Stage] = ()
    ) -> None:
        self.source = source
        self.stages = tuple(stages)
        # aiostream's factory is never asked: iteration goes through
        # __aiter__ and stream() below, so nothing is made before it starts.
        super().__init__(_nothing)

    def _iterate(self) -> AsyncIterator[Event]:
        if not self.stages:
            return _entered(aiter(self.source))
        # Imported here: the driver is only needed once a chain runs.
        from eventkit.driver import events

        return events(self.source, [stage.create() for stage in self.stages])

    def __aiter__(self) -> AsyncIterator[Event]:  # type: ignore[override]
        """Return a fresh iteration of the stream, for a plain ``async for``."""
        return self._iterate()

    def stream(self) -> Streamer[Event]:
        """Return a streamer context for safe iteration, aiostream's way."""
        return streamcontext(self._iterate())

    def batches(self) -> AsyncIterator[list[Event]]:
        """Return a fresh iteration of the stream's events in batches.

        Each batch is a non-empty list of the events at hand, in order; the
        lists are the caller's. Close it (``aclose()``, or
        :func:`contextlib.aclosing`) to stop early.
        """
        from eventkit.driver import batches

        return batches(self)


async def one_by_one(batches: AsyncIterator[list[Event]]) -> AsyncIterator[Event]:
    """Yield the events of ``batches`` one at a time; close it when left.

    What every batch-offering source, tap and merge is iterated as, event by
    event: ``def __aiter__(self): return one_by_one(self.batches())``.
    """
    async with contextlib.aclosing(batches) as held:  # type: ignore[type-var]
        async for batch in held:
            for event in batch:
                yield event


def at_hand(batch: list[Event]) -> Callable[[], list[Event]]:
    """Return a take (see :class:`EventStream`) of ``batch``, already at hand."""

    def take() -> list[Event]:
        return batch

    return take


async def _nothing() -> AsyncIterator[Event]:
    return
    yield  # an async generator that yields nothing


def _entered(iterator: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """Return ``iterator``, inside its own context if it is an aiostream streamer."""
    if isinstance(iterator, AsyncIteratorContext):
        return _inside(iterator)
    return iterator


async def _inside(streamer: AsyncIteratorContext[Event]) -> AsyncIterator[Event]:
    async with streamer as entered:
        async for event in entered:
            yield event
