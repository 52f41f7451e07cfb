"""Fan-in: many sources as one stream, batch by batch, fair across them.

One process following many sandboxes at once (an agent fleet, evaluation or
RL rollouts with hundreds of concurrent runs) merges their streams with
:func:`merge` and runs one chain over the lot: every operator keeps its
state per run, so runs never mix.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import TYPE_CHECKING

from eventkit.driver import BATCH_LIMIT, takes
from eventkit.streams import EventStream, one_by_one

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Callable

    from eventkit.events import Event

__all__ = ["merge"]


class _Pump:
    """One source read in a task of its own, one take handed over at a time."""

    __slots__ = ("error", "source", "take", "taken", "task")

    def __init__(self, source: AsyncIterable[Event]) -> None:
        self.source = source
        #: The take waiting its turn, if any: called, it returns the batch.
        self.take: Callable[[], list[Event]] | None = None
        #: Set when the consumer called :attr:`take`.
        self.taken: asyncio.Future[None] | None = None
        #: What the source failed with, once it did.
        self.error: Exception | None = None
        self.task: asyncio.Task[None] | None = None


class _Merge:
    """Re-iterable: each iteration reads every source anew."""

    __slots__ = ("_sources",)

    def __init__(self, sources: tuple[AsyncIterable[Event], ...]) -> None:
        self._sources = sources

    def __aiter__(self) -> AsyncIterator[Event]:
        return one_by_one(self.batches())

    async def batches(self) -> AsyncIterator[list[Event]]:
        """Yield what the sources hand over, as it comes; see :func:`merge`."""
        if not self._sources:
            return
        loop = asyncio.get_running_loop()
        # Pumps with a take (or an end) to hand over, in the order they got
        # it: each source waits until its take is called before reading on,
        # and goes to the back of the line then, so every source gets its turn.
        ready: collections.deque[_Pump] = collections.deque()
        wakeup = asyncio.Event()
        pumps = [_Pump(source) for source in self._sources]
        # Owned here: cancelled and awaited however the iteration ends.
        for pump in pumps:
            pump.task = loop.create_task(_run(pump, ready, wakeup))
        running = len(pumps)
        try:
            while running:
                if not ready:
                    wakeup.clear()
                    await wakeup.wait()
                    continue
                batch: list[Event] = []
                while ready and len(batch) < BATCH_LIMIT:
                    pump = ready.popleft()
                    if pump.take is not None:
                        take, pump.take = pump.take, None
                        try:
                            # Decoded now, as it is handed over.
                            batch += take()
                        except Exception:
                            # A source failing: what came before goes first.
                            if batch:
                                yield batch
                            raise
                        assert pump.taken is not None
                        pump.taken.set_result(None)
                    elif pump.error is not None:
                        # What came before the failure goes out first.
                        if batch:
                            yield batch
                        raise pump.error
                    else:
                        running -= 1
                if batch:
                    yield batch
        finally:
            tasks = [pump.task for pump in pumps if pump.task is not None]
            for task in tasks:
                task.cancel()
            # Each pump closes its source as it is cancelled: wait for them.
            await asyncio.gather(*tasks, return_exceptions=True)


async def _run(
    pump: _Pump, ready: collections.deque[_Pump], wakeup: asyncio.Event
) -> None:
    """Hand the takes of a source over one at a time, then how it ended."""
    loop = asyncio.get_running_loop()
    try:
        async with contextlib.aclosing(takes(pump.source)) as feed:  # type: ignore[type-var]
            async for take in feed:
                pump.take = take
                pump.taken = loop.create_future()
                ready.append(pump)
                wakeup.set()
                await pump.taken
    except Exception as exc:
        pump.error = exc
    ready.append(pump)
    wakeup.set()


def merge(*sources: AsyncIterable[Event]) -> EventStream:
    """Return one stream of the events of every source, as they come.

    Each source is read in a task of its own, batch by batch (see
    :meth:`EventStream.batches <eventkit.streams.EventStream.batches>`); the
    merged stream hands over, at once, everything the sources have brought,
    up to 1,024 events a batch. Each source's events keep their order; the
    sources interleave as their events arrive. Each source hands over one
    batch at a time and reads on only once it was taken, then waits its turn
    behind the others: a fast source cannot run ahead of a slow consumer,
    nor crowd out the other sources.

    A source that offers takes (see :func:`eventkit.driver.takes`; the
    WebSocket source does) decodes its batch only as the merge hands it
    over: while it waits its turn it holds its messages as received, so a
    thousand waiting streams cost about what a thousand bare clients do.

    Example::

        runs = [eventkit.sources.local(code) for code in programs]
        await eventkit.run(
            eventkit.merge(*runs), eventkit.pipe.track_progress(), sink=sink
        )

    Failure behaviour: if a source raises, the events it handed over before
    come out, then its exception, and every other source is closed. When
    the consumer stops early (``break``, an error, a cancellation), every
    source is closed before the iteration's ``aclose()`` returns. Iterating
    the merged stream again reads every source again.

    Args:
        sources: The streams (any async iterables of events).
    """
    return EventStream(_Merge(sources))
