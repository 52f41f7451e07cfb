"""What a sink is."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from eventkit.events import Event

__all__ = ["Sink"]


class Sink(abc.ABC):
    """Where a pipeline's events end up.

    :func:`eventkit.run` calls :meth:`open` before the first event, :meth:`send`
    for each event in order, and :meth:`close` at the end however the run ends.
    A slow :meth:`send` slows the whole pipeline down to its pace
    (backpressure); nothing is queued in between.

    If :meth:`send` raises, the run stops: upstream is closed and
    :exc:`eventkit.SinkError` is raised with the sink's exception as its cause
    and the events the sink did not take in ``undelivered``.
    """

    async def open(self) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Acquire resources (files, connections); called once, first."""

    @abc.abstractmethod
    async def send(self, event: Event) -> None:
        """Take one event."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Release resources; called once, last, even after an error."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
