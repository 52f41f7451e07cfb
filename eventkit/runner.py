"""Fusion of operator chains and the deadline-aware driver.

A chain of eventkit operators runs as **one** async stage: the driver pulls an
event from upstream, pushes it through every operator as plain function calls,
and hands the results on. Adjacent eventkit stages are fused wherever they
meet, whether composed with ``|`` (aiostream's pipe convention) or passed to
:func:`run`.

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
import time
import types
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from aiostream.aiter_utils import AsyncIteratorContext
from aiostream.core import Stream

from eventkit.operators.select import Select

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterable,
        AsyncIterator,
        Callable,
        Generator,
        Iterable,
        Sequence,
    )

    from eventkit.events import Event
    from eventkit.operators._base import Operator
    from eventkit.sinks import Sink

__all__ = ["Chain", "ChainStats", "EventStream", "SinkError", "Stage", "drive", "run"]

#: Python refuses more than 20 statically nested blocks; stay well below.
_MAX_NESTED: Final = 16
#: Marks the end of upstream where an event would be.
_END: Final[Any] = object()


class SinkError(Exception):
    """The sink raised while taking an event; the run stopped.

    The sink's own exception is the ``__cause__``. Upstream is closed and the
    operators' held state is discarded; what had already left the operators
    but was not taken by the sink is in :attr:`undelivered`.

    Attributes:
        undelivered: The event the sink failed on, then the rest of its batch.
    """

    def __init__(self, message: str, undelivered: list[Event]) -> None:
        super().__init__(message)
        self.undelivered = undelivered


class Stage:
    """An operator ready to be composed: what ``eventkit.pipe.NAME(...)`` returns.

    A stage is a recipe, not a running operator: each iteration of a stream
    built from it gets a fresh operator state machine from :meth:`create`.
    Calling the stage on a source (aiostream's pipe protocol, so that
    ``source | stage`` works) returns an :class:`EventStream`; piping a stage
    onto an :class:`EventStream` fuses it into that stream's chain.

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

    def __init__(self, source: AsyncIterable[Event], stages: Sequence[Stage]) -> None:
        self.source = source
        self.stages = tuple(stages)
        super().__init__(self._iterate)

    def _iterate(self) -> AsyncIterator[Event]:
        if not self.stages:
            return aiter(self.source)
        return _flatten(drive(self.source, [s.create() for s in self.stages]))


async def _flatten(batches: AsyncIterator[list[Event]]) -> AsyncIterator[Event]:
    async with contextlib.aclosing(batches):  # type: ignore[type-var]
        async for batch in batches:
            for event in batch:
                yield event


class ChainStats:
    """What a running chain counts, for the operators that ask for it.

    The self-metrics hook of the runner. An operator with an
    ``observe_chain`` attribute that is not None (a callable) is called with
    the chain's :class:`ChainStats` when a chain containing it is built; the
    chain then counts the events entering each operator (:meth:`received`).
    Chains without such an operator count nothing and cost nothing more.

    Counting costs an integer add per event and operator. An operator that
    knows how many events it emitted from how many it received says so with
    an ``emitted(received: int) -> int`` method (type filters, ``reorder``,
    pass-through operators); the chain then does not count behind it, and
    :meth:`received` asks it instead.

    Attributes:
        operators: The chain's state machines, upstream first.
        counts: The raw counters, one per position as in :meth:`received`;
            those behind an operator with ``emitted`` stay 0.
        finished: Whether the driver has ended, however it ended.
    """

    __slots__ = (
        "__weakref__",
        "_derived",
        "_on_finish",
        "counts",
        "finished",
        "operators",
    )

    def __init__(self, operators: Sequence[Operator]) -> None:
        self.operators = tuple(operators)
        self.counts = [0] * (len(self.operators) + 1)
        # _derived[i]: how to tell the events entering position i from those
        # entering position i - 1, or None to count them.
        self._derived: list[Callable[[int], int] | None] = [None]
        self._derived.extend(getattr(op, "emitted", None) for op in self.operators)
        self.finished = False
        self._on_finish: list[Callable[[ChainStats], None]] = []

    @property
    def counted(self) -> list[bool]:
        """Which positions the chain counts itself (the others are derived)."""
        return [derive is None for derive in self._derived]

    def received(self) -> list[int]:
        """Return the events that entered each operator, and left the chain.

        Entry ``i`` is the number of events that entered operator ``i``
        (from upstream, or from the flush or tick of the operator before it);
        the last entry counts the events that left the chain, so operator
        ``i`` emitted entry ``i + 1``. Read from another thread, an entry
        derived from an operator's own counters can lag by an event.
        """
        raw = list(self.counts)  # one C-level copy, safe across threads
        received: list[int] = []
        for index, derive in enumerate(self._derived):
            received.append(raw[index] if derive is None else derive(received[-1]))
        return received

    def on_finish(self, callback: Callable[[ChainStats], None]) -> None:
        """Call ``callback(self)`` once the driver ends (at once if it has)."""
        if self.finished:
            callback(self)
        else:
            self._on_finish.append(callback)

    def finish(self) -> None:
        """Mark the chain finished and run the :meth:`on_finish` callbacks.

        The driver calls it at its end, after the final flush; later calls do
        nothing.
        """
        if self.finished:
            return
        self.finished = True
        callbacks, self._on_finish = self._on_finish, []
        for callback in callbacks:
            callback(self)


class Chain:
    """Operators composed into plain function calls.

    :attr:`feed` pushes one event through every operator and returns what
    comes out of the last one. It is generated as one function of nested
    ``for`` loops, so an event crosses the whole chain in a single Python frame
    with one call per operator.

    When an operator asks to observe the chain (see :class:`ChainStats`), the
    generated code also counts the events entering each operator; otherwise it
    is exactly the uncounted code.

    Args:
        operators: The state machines, upstream first.

    Attributes:
        stats: The chain's counts, or None when no operator asked for them.
    """

    __slots__ = ("_feeds", "_operators", "_timed", "deadline", "feed", "stats")

    def __init__(self, operators: Sequence[Operator]) -> None:
        self._operators = tuple(operators)
        observers: list[Callable[[ChainStats], None]] = [
            observe
            for op in self._operators
            if (observe := getattr(op, "observe_chain", None)) is not None
        ]
        self.stats = ChainStats(self._operators) if observers else None
        counting = None
        if self.stats is not None:
            counting = _Counting(self.stats.counts, self.stats.counted)
        # _feeds[i] pushes an event into operator i (the last one: out as is),
        # which is where whatever operator i - 1 emits on flush or tick goes.
        self._feeds = [
            _compile(self._operators[i:], counting, i)
            for i in range(len(self._operators) + 1)
        ]
        self.feed: Callable[[Event], list[Event]] = self._feeds[0]
        self._timed = tuple(op for op in self._operators if getattr(op, "timed", True))
        #: Return the earliest deadline of any operator, or None.
        self.deadline: Callable[[], float | None] = (
            self._timed[0].deadline if len(self._timed) == 1 else self._earliest
        )
        if self.stats is not None:
            for observe in observers:
                observe(self.stats)

    @property
    def timed(self) -> bool:
        """Whether any operator may ask for :meth:`tick`."""
        return bool(self._timed)

    def _earliest(self) -> float | None:
        earliest: float | None = None
        for op in self._timed:
            due = op.deadline()
            if due is not None and (earliest is None or due < earliest):
                earliest = due
        return earliest

    def tick(self, now: float) -> list[Event]:
        """Tick every timed operator, upstream first; return what comes out."""
        return self._drain(lambda op: op.tick(now), self._timed)

    def flush(self) -> list[Event]:
        """Flush every operator, upstream first; return what comes out."""
        return self._drain(lambda op: op.flush(), self._operators)

    def finish(self) -> None:
        """The driver is done with the chain: tell its :attr:`stats`, if any."""
        if self.stats is not None:
            self.stats.finish()

    def _drain(
        self,
        take: Callable[[Operator], Iterable[Event]],
        operators: Iterable[Operator],
    ) -> list[Event]:
        # What an operator releases still has to cross the operators after it,
        # and those are drained after it, so nothing overtakes what it held.
        out: list[Event] = []
        chosen = {id(op) for op in operators}
        for index, op in enumerate(self._operators):
            if id(op) in chosen:
                downstream = self._feeds[index + 1]
                for event in take(op):
                    out.extend(downstream(event))
        return out


class _Counting(NamedTuple):
    """The counters a compiled chain adds to, and which positions it counts."""

    counts: list[int]
    counted: list[bool]


def _compile(
    operators: Sequence[Operator],
    counting: _Counting | None = None,
    offset: int = 0,
    *,
    count_out: bool = True,
) -> Callable[[Event], list[Event]]:
    """Generate the function that pushes one event through ``operators``.

    With ``counting``, the function also adds one to ``counts[offset + k]``
    for each event entering operator ``k`` and, when ``count_out``, the number
    of events out to ``counts[offset + len(operators)]``; at the positions
    ``counted`` marks, only.
    """
    if len(operators) > _MAX_NESTED:
        head = _compile(operators[:_MAX_NESTED], counting, offset, count_out=False)
        tail = _compile(
            operators[_MAX_NESTED:],
            counting,
            offset + _MAX_NESTED,
            count_out=count_out,
        )

        def feed(event: Event) -> list[Event]:
            out: list[Event] = []
            for item in head(event):
                out.extend(tail(item))
            return out

        return feed
    # Generated code, like dataclasses and namedtuple do: one frame per event
    # for the whole chain instead of one per operator. A type filter is a test
    # in that frame rather than a call.
    counted = [False] * (len(operators) + 1)
    if counting is not None:
        counted = counting.counted[offset : offset + len(operators) + 1]
        counted[-1] = counted[-1] and count_out
    # The counters are a default argument: a local is the fastest to reach.
    signature = "def feed(e0, c=c):" if any(counted) else "def feed(e0):"
    lines = [signature, "    out = []", "    emit = out.append"]
    namespace: dict[str, Any] = {"c": None if counting is None else counting.counts}

    def nest(k: int, indent: str) -> None:
        if k == len(operators):
            lines.append(f"{indent}emit(e{k})")
            return
        if counted[k]:
            lines.append(f"{indent}c[{offset + k}] += 1")
        op = operators[k]
        if isinstance(op, Select):
            namespace[f"t{k}"] = op.types
            namespace[f"d{k}"] = op.drop
            test = "in" if op.keep else "not in"
            lines.append(f"{indent}if e{k}.type {test} t{k}:")
            lines.append(f"{indent}    e{k + 1} = e{k}")
            nest(k + 1, indent + "    ")
            lines.append(f"{indent}else:")
            lines.append(f"{indent}    d{k}(e{k})")
        else:
            namespace[f"f{k}"] = op.feed
            lines.append(f"{indent}for e{k + 1} in f{k}(e{k}):")
            nest(k + 1, indent + "    ")

    nest(0, "    ")
    if counted[-1]:
        lines.append(f"    c[{offset + len(operators)}] += len(out)")
    lines.append("    return out")
    exec("\n".join(lines), namespace)
    compiled: Callable[[Event], list[Event]] = namespace["feed"]
    return compiled


def _wake(waiter: asyncio.Future[None], _: object = None) -> None:
    if not waiter.done():
        waiter.set_result(None)


@types.coroutine
def _advance(
    step: Generator[Any, Any, Event],
    waiting_on: Any,
    due: float | None,
    clock: Callable[[], float],
) -> Generator[Any, Any, tuple[bool, Any]]:
    """Go on with an upstream step that suspended on ``waiting_on``.

    The driver starts each upstream step by hand (``send(None)``), so an event
    that is ready costs neither a task nor a trip through the event loop. A
    step that has to wait is continued here, in the driver's own task, exactly
    as ``await`` would, except that when ``due`` comes first we hand control
    back to the driver with the step still suspended, to be continued later.

    Returns:
        ``(True, event)`` when the step finished, ``(False, waiting_on)`` when
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
    step: Generator[Any, Any, Event], waiting_on: Any
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
    operators: Sequence[Operator],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[list[Event]]:
    """Run ``source`` through ``operators``; yield each non-empty batch of output.

    A batch is what one input event, one tick or the final flush produced, in
    order. Upstream is closed when the driver ends, however it ends.

    Args:
        source: The events.
        operators: The state machines, upstream first, each fed by the one
            before it.
        clock: The clock the operators' deadlines are on.

    Yields:
        Lists of events, never empty.
    """
    chain = Chain(operators)
    feed = chain.feed
    try:
        async with _opened(source) as upstream:
            if not chain.timed:
                # No operator has a deadline: plain iteration, the cheapest.
                async for event in upstream:
                    out = feed(event)
                    if out:
                        yield out
            else:
                # Closed explicitly, so that a step it left pending is
                # cancelled before upstream itself is closed.
                timed = _drive_timed(upstream, chain, clock)
                async with contextlib.aclosing(timed):  # type: ignore[type-var]
                    async for batch in timed:
                        yield batch
            flushed = chain.flush()
            if flushed:
                yield flushed
    finally:
        chain.finish()


async def _drive_timed(
    upstream: AsyncIterator[Event], chain: Chain, clock: Callable[[], float]
) -> AsyncIterator[list[Event]]:
    """The driver's loop when operators may have deadlines."""
    feed = chain.feed
    deadline = chain.deadline
    anext_ = upstream.__anext__
    # An upstream step suspended across one of our yields, if any.
    step: Generator[Any, Any, Event] | None = None
    waiting_on: Any = None
    try:
        while True:
            due = deadline()
            if due is None:
                # Nothing is due: iterate plainly until something is.
                async for event in upstream:
                    out = feed(event)
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


@contextlib.asynccontextmanager
async def _opened(source: AsyncIterable[Event]) -> AsyncIterator[AsyncIterator[Event]]:
    while isinstance(source, EventStream) and not source.stages:
        # Skip aiostream's streamer wrapper: it costs more per event than a
        # whole operator.
        source = source.source
    iterator = aiter(source)
    if isinstance(iterator, AsyncIteratorContext):
        # An aiostream streamer must be iterated inside its own context.
        async with iterator as streamer:
            yield streamer
        return
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def _plan(
    source: AsyncIterable[Event], stages: Iterable[Callable[[Any], Any]]
) -> tuple[AsyncIterable[Event], list[Stage]]:
    """Fuse adjacent eventkit stages; apply any other pipe as it comes."""
    pending: list[Stage] = []
    if isinstance(source, EventStream):
        pending = list(source.stages)
        source = source.source
    for stage in stages:
        if isinstance(stage, Stage):
            pending.append(stage)
            continue
        # A foreign operator (an aiostream pipe): it needs a stream in hand.
        if pending:
            source = EventStream(source, pending)
            pending = []
        source = stage(source)
    return source, pending


async def run(
    source: AsyncIterable[Event],
    *stages: Callable[[Any], Any],
    sink: Sink | None = None,
) -> None:
    """Run ``source`` through ``stages`` into ``sink``, fused, until the end.

    Adjacent eventkit stages (``eventkit.pipe.NAME(...)``) run fused as one
    async stage. Other pipes (aiostream's ``pipe.timeout(5)``, say) are
    applied where they stand, cutting the chain in two.

    Example::

        sink = eventkit.sinks.collect()
        await eventkit.run(
            eventkit.sources.local("print(1)"),
            eventkit.pipe.reorder(),
            eventkit.pipe.buffer_bytes(4096),
            sink=sink,
        )

    Args:
        source: Any async iterable of events, e.g. an ``eventkit.sources``
            source or an aiostream stream.
        stages: Pipes, applied in order.
        sink: Where the output goes (opened before the first event, closed at
            the end); None discards it.

    Raises:
        SinkError: If the sink raised; its exception is the cause.
    """
    source, pending = _plan(source, stages)
    operators = [stage.create() for stage in pending]
    if sink is None:
        async with contextlib.aclosing(drive(source, operators)) as batches:  # type: ignore[type-var]
            async for _ in batches:
                pass
        return
    await sink.open()
    try:
        async with contextlib.aclosing(drive(source, operators)) as batches:  # type: ignore[type-var]
            send = sink.send
            async for batch in batches:
                for index, event in enumerate(batch):
                    try:
                        await send(event)
                    except Exception as exc:
                        raise SinkError(
                            f"sink {sink!r} failed on {event.type} event "
                            f"{event.sequence} of run {event.run!r}: {exc!r}",
                            batch[index:],
                        ) from exc
    finally:
        await sink.close()
