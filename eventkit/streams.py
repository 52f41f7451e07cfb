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

from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING

from aiostream.core import Stream

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventkit.events import Event
    from eventkit.operators._base import Operator

__all__ = ["EventStream", "Stage"]


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

    Attributes:
        source: Where the events come from.
        stages: The eventkit stages applied to it, in order.
    """

    def __init__(
        self, source: AsyncIterable[Event], stages: Sequence[Stage] = ()
    ) -> None:
        self.source = source
        self.stages = tuple(stages)
        super().__init__(self._iterate)

    def _iterate(self) -> AsyncIterator[Event]:
        if not self.stages:
            return aiter(self.source)
        # Imported here: the driver is only needed once a chain runs.
        from eventkit.driver import events

        return events(self.source, [stage.create() for stage in self.stages])
