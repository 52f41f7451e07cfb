"""Tapping a stream: a copy of the events at one point of a chain, sent to a sink.

:func:`tap` wraps a stream: iterating the result iterates the stream, and
each batch goes to the sink before it goes on. It is how a sink (the
dashboard, a recording) sees the events at a point of a chain other than its
end: operators are synchronous state machines and sinks are async, so a tap
is not an operator but a stream of its own, like :func:`eventkit.merge`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from eventkit.driver import batches
from eventkit.exceptions import SinkError
from eventkit.sinks._base import failed
from eventkit.streams import EventStream, one_by_one

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator

    from eventkit.events import Event
    from eventkit.sinks._base import Sink

__all__ = ["Tap", "tap"]


class _Tapped:
    """Re-iterable: each iteration reads the source anew, the sink opened again."""

    __slots__ = ("_sink", "_source")

    def __init__(self, source: AsyncIterable[Event], sink: Sink) -> None:
        self._source = source
        self._sink = sink

    def __aiter__(self) -> AsyncIterator[Event]:
        return one_by_one(self.batches())

    async def batches(self) -> AsyncIterator[list[Event]]:
        """Yield the source's batches, each sent to the sink first; see :func:`tap`."""
        sink = self._sink
        await sink.open()
        try:
            async with contextlib.aclosing(batches(self._source)) as upstream:  # type: ignore[type-var]
                send_batch = sink.send_batch
                async for batch in upstream:
                    try:
                        # A copy: the operators downstream may change the list.
                        await send_batch(list(batch))
                    except SinkError:
                        raise
                    except Exception as exc:
                        raise failed(sink, batch, 0, exc) from exc
                    yield batch
        finally:
            await sink.close()


def tap(source: AsyncIterable[Event], sink: Sink) -> EventStream:
    """Return ``source``'s events, each batch sent to ``sink`` on the way.

    Example::

        recording = eventkit.sinks.jsonl("raw.jsonl")
        await eventkit.run(
            source,
            eventkit.pipe.reorder(),
            eventkit.pipe.tap(recording),  # the events in order, before only()
            eventkit.pipe.only("stdout"),
            sink=eventkit.sinks.console(),
        )

    The sink is opened when the stream is first read and closed when the
    stream ends, however it ends; it gets each batch (a list of its own)
    before the events go on, so a slow sink slows the stream
    (backpressure), as at the end of a chain. It is not an operator: the
    stages before it and after it run as chains of their own (a tap cuts
    fusion in two, like :func:`eventkit.merge`); at the very start of a
    chain it cuts nothing.

    Failure behaviour: if the sink raises, the stream stops with
    :exc:`eventkit.SinkError` (the sink's exception as its cause, the batch
    in ``undelivered``) and the source is closed, as :func:`eventkit.run`
    does for its own sink. Iterating the stream again reads the source
    again, and opens the sink again.

    Args:
        source: The stream (any async iterable of events).
        sink: Where the copy goes.
    """
    return EventStream(_Tapped(source, sink))


class Tap:
    """What :func:`eventkit.pipe.tap` returns: ``source | Tap(sink)`` taps ``source``.

    Args:
        sink: Where the copy goes.
    """

    __slots__ = ("sink",)

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def __call__(self, source: AsyncIterable[Event]) -> EventStream:
        """Tap ``source``; see :func:`tap`."""
        return tap(source, self.sink)

    def __ror__(self, source: AsyncIterable[Event]) -> EventStream:
        """``source | tap`` for an async iterable that is not an aiostream stream."""
        return self(source)

    def __repr__(self) -> str:
        return f"<eventkit tap {self.sink!r}>"
