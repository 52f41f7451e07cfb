"""What a sink is."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Self

from eventkit.exceptions import SinkError

if TYPE_CHECKING:
    from eventkit.events import Event

__all__ = ["Sink", "failed"]


class Sink(abc.ABC):
    """Where a pipeline's events end up.

    :func:`eventkit.run` calls :meth:`open` before the first event,
    :meth:`send_batch` for each batch of events in order, and :meth:`close`
    at the end however the run ends. A slow sink slows the whole pipeline
    down to its pace (backpressure); nothing is queued in between.

    Only :meth:`send` is required. :meth:`send_batch` sends each event of the
    batch with :meth:`send`; a sink that can take a batch at once (one
    write, one round trip) overrides it.

    If sending raises, the run stops: upstream is closed and
    :exc:`eventkit.SinkError` is raised with the sink's exception as its cause
    and the events the sink did not take in ``undelivered``: from the event
    it failed on, when the sink knows (:meth:`send_batch` raising a
    :exc:`~eventkit.SinkError` of its own says so, as the default does),
    else the whole batch.
    """

    async def open(self) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Acquire resources (files, connections); called once, first."""

    @abc.abstractmethod
    async def send(self, event: Event) -> None:
        """Take one event."""

    async def send_batch(self, events: list[Event]) -> None:
        """Take a batch of events, in order: :meth:`send` each, by default.

        Raises:
            SinkError: If :meth:`send` raised; its ``undelivered`` starts with
                the event it raised for.
        """
        send = self.send
        for index, event in enumerate(events):
            try:
                await send(event)
            except Exception as exc:
                raise failed(self, events, index, exc) from exc

    async def close(self) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Release resources; called once, last, even after an error."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def failed(
    sink: Sink, events: list[Event], index: int, exc: BaseException
) -> SinkError:
    """Return the :exc:`~eventkit.SinkError` of ``sink`` failing on ``events[index]``.

    Raise it ``from exc``. Its ``undelivered`` is ``events[index:]``.
    """
    event = events[index]
    return SinkError(
        f"sink {sink!r} failed on {event.type} event {event.sequence} of run "
        f"{event.run!r}: {exc!r}",
        events[index:],
    )
