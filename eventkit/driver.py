"""The deadline-aware driver: a source pulled through a :class:`~eventkit.chain.Chain`.

The driver works on **batches**. A source that offers ``batches()`` (every
eventkit source does: see :class:`eventkit.streams.EventStream`) hands over
lists of the events it has at hand; from any other async iterable the
driver gathers every event that is ready without waiting, up to
:data:`BATCH_LIMIT`, into one batch. It never waits to fill a batch: a lone
event goes through at once.

Only the driver knows about time. When upstream has to wait for I/O and an
operator has a deadline (a buffer's ``max_age``, a reorder gap's
``max_delay``), the driver races the pending upstream step against that
deadline and calls the operators' ``tick`` when it comes, without cancelling
the upstream step: the same pending step is awaited again afterwards, so no
event is lost and no source is interrupted mid-read.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final

from aiostream.aiter_utils import AsyncIteratorContext

from eventkit._steps import NOT_READY, Ready, abandon, advance
from eventkit.chain import Chain
from eventkit.streams import EventStream, at_hand

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterable,
        AsyncIterator,
        Callable,
        Generator,
        Sequence,
    )

    from eventkit.events import Event
    from eventkit.operators._base import EventOperator, Operator

__all__ = ["BATCH_LIMIT", "batches", "drive", "events", "takes"]

#: The most events gathered into one batch from a source that yields one
#: event at a time.
BATCH_LIMIT: Final = 1024
#: Marks the end of upstream where a batch would be.
_END: Final[Any] = object()


async def events(
    source: AsyncIterable[Event], operators: Sequence[Operator | EventOperator]
) -> AsyncIterator[Event]:
    """Run ``source`` through ``operators``; yield the output one event at a time.

    What an :class:`~eventkit.streams.EventStream` with stages iterates.
    """
    async with contextlib.aclosing(drive(source, operators)) as out:  # type: ignore[type-var]
        async for batch in out:
            for event in batch:
                yield event


async def takes(
    source: AsyncIterable[Event],
) -> AsyncIterator[Callable[[], list[Event]]]:
    """Yield the events of ``source`` as takes: calls that return the next batch.

    A source with a ``takes()`` method gives its own, which decode what it
    received only when called; any other is read with :func:`batches`, each
    batch handed over as it is. Each take is called once, before the next is
    asked for. Upstream is closed when this ends, however it ends.
    """
    while isinstance(source, EventStream) and not source.stages:
        source = source.source
    own = getattr(source, "takes", None)
    if own is None:
        async with contextlib.aclosing(batches(source)) as held:  # type: ignore[type-var]
            async for batch in held:
                yield at_hand(batch)
        return
    offered: AsyncIterator[Callable[[], list[Event]]] = own()
    async with _closing(offered):
        async for take in offered:
            yield take


async def batches(source: AsyncIterable[Event]) -> AsyncIterator[list[Event]]:
    """Yield the events of ``source`` in non-empty batches, never waiting to fill one.

    An :class:`~eventkit.streams.EventStream` with stages is driven; a
    source with a ``batches()`` method gives its own; any other async
    iterable of events is gathered. Upstream is closed when this ends,
    however it ends.
    """
    while isinstance(source, EventStream) and not source.stages:
        # Skip aiostream's streamer wrapper: it costs more per event than a
        # whole operator.
        source = source.source
    if isinstance(source, EventStream):
        # A stream with stages: drive its chain (nested chains keep batching).
        inner = drive(source.source, [stage.create() for stage in source.stages])
        async with contextlib.aclosing(inner):  # type: ignore[type-var]
            async for batch in inner:
                yield batch
        return
    own = getattr(source, "batches", None)
    if own is not None:
        offered: AsyncIterator[list[Event]] = own()
        async with _closing(offered):
            async for batch in offered:
                if batch:
                    yield batch
        return
    iterator = aiter(source)
    if isinstance(iterator, AsyncIteratorContext):
        # An aiostream streamer must be iterated inside its own context.
        async with (
            iterator as streamer,
            contextlib.aclosing(_gathered(streamer)) as gathered,  # type: ignore[type-var]
        ):
            async for batch in gathered:
                yield batch
        return
    async with (
        _closing(iterator),
        contextlib.aclosing(_gathered(iterator)) as gathered,  # type: ignore[type-var]
    ):
        async for batch in gathered:
            yield batch


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[Any]) -> AsyncIterator[None]:
    """Close ``iterator`` on the way out, if it can be: any async iterator."""
    try:
        yield
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def _gathered(upstream: AsyncIterator[Event]) -> AsyncIterator[list[Event]]:
    """Yield batches of the events ``upstream`` gives without waiting.

    Each step of ``upstream`` is started by hand (see :mod:`eventkit._steps`):
    an event that is ready joins the batch at the cost of a function call;
    the first step that would wait ends the batch, and is continued after
    the batch went out.
    """
    ready = Ready(upstream.__anext__)
    try:
        while True:
            try:
                first = await ready.next()
            except StopAsyncIteration:
                return
            batch = [first]
            append = batch.append
            failure: Exception | None = None
            while len(batch) < BATCH_LIMIT:
                try:
                    event = ready.now()
                except StopAsyncIteration:
                    yield batch
                    return
                except Exception as exc:
                    # What came before the error goes out first: nothing lost.
                    failure = exc
                    break
                if event is NOT_READY:
                    break
                append(event)
            yield batch
            if failure is not None:
                raise failure
    finally:
        await ready.aclose()


async def drive(
    source: AsyncIterable[Event],
    operators: Sequence[Operator | EventOperator],
    *,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[list[Event]]:
    """Run ``source`` through ``operators``; yield each non-empty batch of output.

    A batch is what one input batch, one tick or the final flush produced, in
    order. Upstream is closed when the driver ends, however it ends.

    Args:
        source: The events.
        operators: The state machines, upstream first, each fed by the one
            before it.
        clock: The clock the operators' deadlines are on; by default the
            event loop's (:func:`time.monotonic` on asyncio's loops, the
            operators' default clock too).

    Yields:
        Lists of events, never empty.
    """
    if clock is None:
        clock = asyncio.get_running_loop().time
    chain = Chain(operators)
    feed = chain.feed
    try:
        async with contextlib.aclosing(batches(source)) as upstream:  # type: ignore[type-var]
            if not chain.timed:
                # No operator has a deadline: plain iteration, the cheapest.
                async for batch in upstream:
                    out = feed(batch)
                    if out:
                        yield out
            else:
                # Closed explicitly, so that a step it left pending is
                # cancelled before upstream itself is closed.
                timed = _drive_timed(upstream, chain, clock)
                async with contextlib.aclosing(timed):  # type: ignore[type-var]
                    async for out in timed:
                        yield out
            flushed = chain.flush()
            if flushed:
                yield flushed
    finally:
        chain.finish()


async def _drive_timed(
    upstream: AsyncIterator[list[Event]], chain: Chain, clock: Callable[[], float]
) -> AsyncIterator[list[Event]]:
    """The driver's loop when operators may have deadlines."""
    feed = chain.feed
    deadline = chain.deadline
    anext_ = upstream.__anext__
    # An upstream step suspended across one of our yields, if any.
    step: Generator[Any, Any, list[Event]] | None = None
    waiting_on: Any = None
    try:
        while True:
            due = deadline()
            if due is None:
                # Nothing is due: iterate plainly until something is.
                async for batch in upstream:
                    out = feed(batch)
                    if out:
                        yield out
                    if deadline() is not None:
                        break
                else:
                    return
                continue
            if due <= clock():
                ticked = chain.tick(clock())
                if ticked:
                    yield ticked
                continue
            # Something is due: start the step by hand, and if upstream has to
            # wait, race it against the deadline without cancelling it.
            step = anext_().__await__()
            try:
                waiting_on = step.send(None)
            except StopIteration as ready:
                value = ready.value
            except StopAsyncIteration:
                value = _END
            else:
                while True:
                    try:
                        finished, value = await advance(step, waiting_on, due, clock)
                    except StopAsyncIteration:
                        finished, value = True, _END
                    except BaseException:
                        step = None  # the error came out of the step: it is over
                        raise
                    if finished:
                        break
                    waiting_on = value
                    ticked = chain.tick(clock())
                    if ticked:
                        yield ticked
                    due = deadline()
            step = None
            if value is _END:
                return
            out = feed(value)
            if out:
                yield out
    finally:
        if step is not None:
            await abandon(step, waiting_on)
