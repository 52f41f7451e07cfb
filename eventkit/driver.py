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
import functools
import types
from typing import TYPE_CHECKING, Any, Final

from aiostream.aiter_utils import AsyncIteratorContext

from eventkit.chain import Chain
from eventkit.streams import EventStream

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

__all__ = ["BATCH_LIMIT", "batches", "drive", "events"]

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
        try:
            async for batch in offered:
                if batch:
                    yield batch
        finally:
            aclose = getattr(offered, "aclose", None)
            if aclose is not None:
                await aclose()
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
    try:
        async with contextlib.aclosing(_gathered(iterator)) as gathered:  # type: ignore[type-var]
            async for batch in gathered:
                yield batch
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def _gathered(upstream: AsyncIterator[Event]) -> AsyncIterator[list[Event]]:
    """Yield batches of the events ``upstream`` gives without waiting.

    Each step of ``upstream`` is started by hand: an event that is ready
    joins the batch at the cost of a function call; the first step that
    would wait ends the batch, and is continued (awaited) after it went out.
    """
    anext_ = upstream.__anext__
    # A step left suspended across our yield, and what it waits on.
    step: Generator[Any, Any, Event] | None = None
    waiting_on: Any = None
    try:
        while True:
            if step is None:
                try:
                    first = await anext_()
                except StopAsyncIteration:
                    return
            else:
                try:
                    _, first = await _advance(step, waiting_on, None, _no_clock)
                except StopAsyncIteration:
                    step = None
                    return
                except BaseException:
                    step = None  # the error came out of the step: it is over
                    raise
                step = None
            batch = [first]
            append = batch.append
            failure: Exception | None = None
            while len(batch) < BATCH_LIMIT:
                pending = anext_().__await__()
                try:
                    waiting_on = pending.send(None)
                except StopIteration as ready:
                    append(ready.value)
                    continue
                except StopAsyncIteration:
                    yield batch
                    return
                except Exception as exc:
                    # What came before the error goes out first: nothing lost.
                    failure = exc
                    break
                step = pending
                break
            yield batch
            if failure is not None:
                raise failure
    finally:
        if step is not None:
            await _abandon(step, waiting_on)


def _no_clock() -> float:  # pragma: no cover - only read when a deadline is set
    raise AssertionError("no deadline, no clock")


def _wake(waiter: asyncio.Future[None], _: object = None) -> None:
    if not waiter.done():
        waiter.set_result(None)


@types.coroutine
def _advance(
    step: Generator[Any, Any, Any],
    waiting_on: Any,
    due: float | None,
    clock: Callable[[], float],
) -> Generator[Any, Any, tuple[bool, Any]]:
    """Go on with an upstream step that suspended on ``waiting_on``.

    The driver starts upstream steps by hand (``send(None)``), so what is
    ready costs neither a task nor a trip through the event loop. A step
    that has to wait is continued here, in the driver's own task, exactly as
    ``await`` would, except that when ``due`` comes first we hand control
    back to the driver with the step still suspended, to be continued later.
    With ``due`` None it is a plain ``await`` of the step.

    Returns:
        ``(True, value)`` when the step finished, ``(False, waiting_on)`` when
        the deadline came first.

    Raises:
        StopAsyncIteration: When upstream is exhausted.
    """
    while True:
        if due is None or not asyncio.isfuture(waiting_on) or waiting_on.done():
            # Nothing to race: hand the awaited object to our task as is.
            try:
                sent = yield waiting_on
            except BaseException as exc:
                try:
                    waiting_on = step.throw(exc)
                except StopIteration as finished:
                    return True, finished.value
                continue
        else:
            # Race what upstream waits on against the deadline, without
            # touching upstream: a waiter of our own wakes at whichever is first.
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            wake = functools.partial(_wake, waiter)
            waiting_on.add_done_callback(wake)
            timer = loop.call_later(max(due - clock(), 0.0), wake)
            try:
                yield from waiter.__await__()
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    waiting_on.cancel()  # as the task would have done
                try:
                    waiting_on = step.throw(exc)
                except StopIteration as finished:
                    return True, finished.value
                continue
            finally:
                waiting_on.remove_done_callback(wake)
                timer.cancel()
            if not waiting_on.done():
                return False, waiting_on
            # The task would clear this flag on a future it was handed.
            waiting_on._asyncio_future_blocking = False
            sent = None
        try:
            waiting_on = step.send(sent)
        except StopIteration as finished:
            return True, finished.value


@types.coroutine
def _abandon(
    step: Generator[Any, Any, Any], waiting_on: Any
) -> Generator[Any, Any, None]:
    """Cancel a suspended upstream step and let it clean up, awaiting as needed."""
    if asyncio.isfuture(waiting_on):
        waiting_on.cancel()
    try:
        waiting_on = step.throw(asyncio.CancelledError())
        while True:
            sent = yield waiting_on
            waiting_on = step.send(sent)
    except (StopIteration, StopAsyncIteration, asyncio.CancelledError):
        return


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
                        finished, value = await _advance(step, waiting_on, due, clock)
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
            await _abandon(step, waiting_on)
