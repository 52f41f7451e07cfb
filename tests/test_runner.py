"""Tests for :mod:`eventkit.runner`: fusion, the driver, :func:`eventkit.run`."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING, Final

import aiostream
import pytest
from hypothesis import given, settings, strategies as st
from msgspec.structs import replace
from prometheus_client import CollectorRegistry

import eventkit
from eventkit import Event, EventStream, SinkError, Stage, pipe, sinks, sources
from eventkit.operators.buffer import BufferBytes
from eventkit.operators.metrics import ExportMetrics
from eventkit.operators.progress import TrackProgress
from eventkit.operators.reorder import Reorder
from eventkit.operators.select import Select

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence

    from aiostream.core import Stream

    from eventkit.operators._base import Operator

#: In a :class:`Source` script: wait until cancelled or closed.
WAIT: Final = "wait"


def ev(
    sequence: int, type: str = "stdout", data: str | None = None, run: str = "r"
) -> Event:
    """Make an event with a timestamp derived from its sequence."""
    return Event(
        type=type,
        data=f"{run}:{sequence}" if data is None else data,
        timestamp=1000.0 + sequence,
        sequence=sequence,
        run=run,
    )


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
        #: ``(time.monotonic(), event)`` just before each event is yielded.
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
                    self.yielded.append((time.monotonic(), item))
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
        self.arrivals: list[float] = []
        self.received = asyncio.Event()
        self.opened = False
        self.closed = False
        self._then = fn
        super().__init__(self._record)

    def _record(self, event: Event) -> object:
        if not self.opened or self.closed:
            raise AssertionError("send() outside open() and close()")
        self.arrivals.append(time.monotonic())
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


# Fusion


def test_piping_fuses_into_one_event_stream() -> None:
    """Stages piped onto an EventStream make one EventStream of the whole chain."""
    stages = (pipe.reorder(), pipe.only("stdout"), pipe.buffer_bytes(8))
    base = sources.iterate([ev(0)])
    xs = base | stages[0] | stages[1] | stages[2]
    assert isinstance(xs, EventStream)
    assert stages == xs.stages
    assert base.source is xs.source


def test_piping_onto_an_aiostream_stream_fuses() -> None:
    """Stages piped onto an aiostream stream fuse over that stream."""
    stages = (pipe.reorder(), pipe.track_progress())
    base = aiostream.stream.iterate([ev(0)])
    xs = base | stages[0] | stages[1]
    assert isinstance(xs, EventStream)
    assert stages == xs.stages
    assert base is xs.source


def test_stream_functions_fuse() -> None:
    """Nested ``eventkit.stream`` calls make one EventStream too."""
    base = aiostream.stream.iterate([ev(0)])
    xs = eventkit.stream.buffer_bytes(
        eventkit.stream.only(eventkit.stream.reorder(base), "stdout"), 8
    )
    expected = ["reorder", "only('stdout',)", "buffer_bytes(8)"]
    assert expected == [stage.name for stage in xs.stages]
    assert base is xs.source


async def test_foreign_pipe_between_stages() -> None:
    """An aiostream pipe between eventkit stages cuts the chain; output is the same."""
    events = [ev(1), ev(0), ev(2, "started"), ev(4), ev(3, "completed")]

    def stages() -> list[Stage]:
        return [pipe.reorder(), pipe.only("stdout", "completed"), pipe.buffer_bytes(8)]

    expected = sinks.collect()
    await eventkit.run(sources.iterate(events), *stages(), sink=expected)
    assert expected.events

    first, second, third = stages()

    def same(event: Event, *_: Event) -> Event:
        return event

    identity = aiostream.pipe.map(same)
    actual = sinks.collect()
    await eventkit.run(
        sources.iterate(events), first, identity, second, third, sink=actual
    )
    assert expected.events == actual.events

    xs = sources.iterate(events) | first | identity | second | third
    assert isinstance(xs, EventStream)
    assert (second, third) == xs.stages
    assert expected.events == await collect(xs)


# The same output every way


TYPES: Final = (
    "started",
    "stdout",
    "stdout",
    "stderr",
    "result",
    "error",
    "resource_limit",
    "completed",
    "progress",
    "gap",
    "custom",
    "Stdout",
)
texts = st.text(alphabet="ab \n%/.0123456789é€😀中", max_size=24)


@st.composite
def event_lists(draw: st.DrawFn) -> list[Event]:
    """Draw the events of 1-3 runs, with holes, each run shuffled a little."""
    per_run: list[list[Event]] = []
    for run in ["a", "b", "c"][: draw(st.integers(1, 3))]:
        count = draw(st.integers(0, 12))
        missing = draw(st.sets(st.integers(0, max(count - 1, 0)), max_size=2))
        events = [
            ev(sequence, draw(st.sampled_from(TYPES)), draw(texts), run)
            for sequence in range(count)
            if sequence not in missing
        ]
        # Bounded displacement: each event moves at most 3 places back or forth.
        keys = [
            index + draw(st.integers(0, 3), label="shift")
            for index in range(len(events))
        ]
        order = sorted(range(len(events)), key=keys.__getitem__)
        per_run.append([events[index] for index in order])
    slots = [index for index, events in enumerate(per_run) for _ in events]
    taken = [iter(events) for events in per_run]
    return [next(taken[index]) for index in draw(st.permutations(slots))]


@dataclasses.dataclass(frozen=True)
class Step:
    """One operator of a drawn chain, buildable as a stage or a state machine."""

    name: str
    types: tuple[str, ...] = ()
    limit: int = 1024
    #: reorder's max_delay or buffer_bytes' max_age.
    delay: float | None = None

    def stage(self) -> Stage:
        """Return the ``eventkit.pipe`` stage."""
        if self.name == "reorder":
            return pipe.reorder(max_delay=self.delay)
        if self.name == "only":
            return pipe.only(*self.types)
        if self.name == "exclude":
            return pipe.exclude(*self.types)
        if self.name == "buffer_bytes":
            return pipe.buffer_bytes(self.limit, max_age=self.delay)
        if self.name == "track_progress":
            return pipe.track_progress()
        return pipe.export_metrics(CollectorRegistry())

    def apply(self, source: AsyncIterable[Event]) -> EventStream:
        """Return the ``eventkit.stream`` function applied to ``source``."""
        if self.name == "reorder":
            return eventkit.stream.reorder(source, max_delay=self.delay)
        if self.name == "only":
            return eventkit.stream.only(source, *self.types)
        if self.name == "exclude":
            return eventkit.stream.exclude(source, *self.types)
        if self.name == "buffer_bytes":
            return eventkit.stream.buffer_bytes(source, self.limit, max_age=self.delay)
        if self.name == "track_progress":
            return eventkit.stream.track_progress(source)
        return eventkit.stream.export_metrics(source, CollectorRegistry())

    def operator(self) -> Operator:
        """Return the bare state machine."""
        if self.name == "reorder":
            return Reorder(max_delay=self.delay)
        if self.name in ("only", "exclude"):
            return Select(self.types, keep=self.name == "only")
        if self.name == "buffer_bytes":
            return BufferBytes(self.limit, max_age=self.delay)
        if self.name == "track_progress":
            return TrackProgress()
        return ExportMetrics()


# A delay no example lives to see: it sends the driver down its timed path
# without ever making a tick due.
delays = st.sampled_from([None, 3600.0])
type_sets = st.sets(st.sampled_from(TYPES), min_size=1, max_size=4).map(
    lambda types: tuple(sorted(types))
)
steps = st.one_of(
    st.builds(Step, st.just("reorder"), delay=delays),
    st.builds(Step, st.sampled_from(["only", "exclude"]), types=type_sets),
    st.builds(Step, st.just("buffer_bytes"), limit=st.integers(4, 64), delay=delays),
    st.builds(Step, st.just("track_progress")),
    st.builds(Step, st.just("export_metrics")),
)


def by_hand(events: Sequence[Event], operators: Sequence[Operator]) -> list[Event]:
    """Feed each event down the chain, then flush each operator in order."""
    out: list[Event] = []

    def push(index: int, event: Event) -> None:
        if index == len(operators):
            out.append(event)
            return
        for item in operators[index].feed(event):
            push(index + 1, item)

    for event in events:
        push(0, event)
    for index, operator in enumerate(operators):
        for item in operator.flush():
            push(index + 1, item)
    return out


@settings(deadline=None, max_examples=50)
@given(events=event_lists(), chain=st.lists(steps, min_size=1, max_size=5))
async def test_every_way_gives_the_same_events(
    events: list[Event], chain: list[Step]
) -> None:
    """run, aiostream pipes, stream functions and the bare state machines agree."""
    expected = by_hand(events, [step.operator() for step in chain])

    sink = sinks.collect()
    await eventkit.run(
        sources.iterate(events), *[step.stage() for step in chain], sink=sink
    )
    assert expected == sink.events

    xs: Stream[Event] = aiostream.stream.iterate(events)
    for step in chain:
        xs = xs | step.stage()
    assert expected == await collect(xs)

    ys: AsyncIterable[Event] = sources.iterate(events)
    for step in chain:
        ys = step.apply(ys)
    assert isinstance(ys, EventStream)
    assert expected == await collect(ys)


# Time


async def consume(
    how: str, source: Source, *stages: Stage
) -> tuple[list[float], list[Event]]:
    """Run ``source`` through ``stages`` ``how``; return arrival times and events."""
    if how == "run":
        sink = RecordingSink()
        await eventkit.run(source, *stages, sink=sink)
        return sink.arrivals, sink.events
    arrivals: list[float] = []
    events: list[Event] = []
    async with piped(source, *stages).stream() as streamer:
        async for event in streamer:
            arrivals.append(time.monotonic())
            events.append(event)
    return arrivals, events


ways = pytest.mark.parametrize("how", ["run", "pipe"])


@ways
async def test_buffer_max_age_flushes_while_source_is_silent(how: str) -> None:
    """A buffer reaching max_age leaves while upstream waits, not with what follows."""
    first, last = ev(0), ev(1, "completed")
    source = Source([first, 0.2, last])
    arrivals, events = await consume(how, source, pipe.buffer_bytes(max_age=0.05))
    assert [chunk(first), last] == events
    assert arrivals[0] - source.yielded[0][0] >= 0.05
    assert arrivals[0] < source.yielded[1][0]


@ways
async def test_reorder_max_delay_emits_gap_while_source_is_silent(how: str) -> None:
    """A hole is given up max_delay after its successor came, while upstream waits."""
    e0, e2, e3, e1 = ev(0), ev(2), ev(3), ev(1)
    source = Source([e0, e2, 0.2, e3, e1])
    gap = Event(
        type="gap",
        run="r",
        sequence=1,
        timestamp=e2.timestamp,
        attrs={"first_missing": 1, "last_missing": 1},
    )
    arrivals, events = await consume(how, source, pipe.reorder(max_delay=0.05))
    assert [e0, gap, e2, e3] == events
    assert arrivals[1] < source.yielded[2][0]


@ways
async def test_tick_never_cancels_the_pending_step(how: str) -> None:
    """Ticks while upstream sleeps leave its step alone: every event comes through."""
    source = Source([ev(0), 0.08, ev(1), 0.08, ev(2), 0.08, ev(3, "completed")])
    arrivals, events = await consume(
        how, source, pipe.reorder(max_delay=0.01), pipe.buffer_bytes(max_age=0.01)
    )
    assert not source.cancelled
    assert source.closed
    assert [ev(0), ev(1), ev(2), ev(3, "completed")] == source.events
    assert [*map(chunk, source.events[:3]), ev(3, "completed")] == events
    # Each chunk left on a tick, in the middle of the following sleep.
    for index in range(3):
        assert arrivals[index] < source.yielded[index + 1][0]


@pytest.mark.parametrize(
    "stages",
    [
        pytest.param([pipe.reorder(max_delay=None)], id="untimed"),
        pytest.param([pipe.buffer_bytes(max_age=10.0)], id="deadline-pending"),
        pytest.param([pipe.buffer_bytes(max_age=0.01)], id="deadline-passed"),
    ],
)
async def test_source_error_propagates(stages: list[Stage]) -> None:
    """An exception raised by the source mid-stream comes out of run."""
    boom = Failing("source broke")
    source = Source([ev(0), 0.05, boom, ev(1)])
    sink = RecordingSink()
    with pytest.raises(Failing) as caught:
        await eventkit.run(source, *stages, sink=sink)
    assert boom is caught.value
    assert [ev(0)] == source.events
    assert sink.closed


# Cancellation and closing


@pytest.mark.parametrize(
    ("stages", "ticks"),
    [
        pytest.param([pipe.reorder(max_delay=None)], False, id="no-deadline"),
        pytest.param([pipe.buffer_bytes(max_age=10.0)], False, id="deadline-pending"),
        pytest.param([pipe.buffer_bytes(max_age=0.01)], True, id="after-a-tick"),
    ],
)
async def test_cancel_while_upstream_waits(stages: list[Stage], ticks: bool) -> None:
    """Cancelling run while upstream waits cancels the source and raises."""
    source = Source([ev(0), WAIT])
    sink = RecordingSink()
    task = asyncio.create_task(eventkit.run(source, *stages, sink=sink))
    await source.waiting.wait()
    if ticks:
        await sink.received.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.cancelled
    assert source.closed
    assert sink.closed


@pytest.mark.parametrize(
    "stages",
    [
        pytest.param([], id="no-stage"),
        pytest.param([pipe.reorder(max_delay=None)], id="untimed"),
        pytest.param([pipe.reorder(max_delay=10.0)], id="timed"),
    ],
)
async def test_break_closes_the_source(stages: list[Stage]) -> None:
    """Leaving ``async with xs.stream()`` early closes the source."""
    source = Source([ev(0), ev(1), ev(2), WAIT])
    async with piped(source, *stages).stream() as streamer:
        async for event in streamer:
            assert ev(0) == event
            break
    assert source.closed
    assert [ev(0)] == source.events[:1]


async def test_break_on_a_tick_cancels_the_pending_step() -> None:
    """Leaving early after a tick, while upstream waits, cancels the source."""
    source = Source([ev(0), WAIT])
    xs = piped(source, pipe.buffer_bytes(max_age=0.01))
    async with xs.stream() as streamer:
        async for event in streamer:
            assert chunk(ev(0)) == event
            break
    assert source.cancelled
    assert source.closed


# Sink failure


async def test_sink_error() -> None:
    """A sink that raises stops the run with SinkError; everything is closed."""
    boom = Failing("sink broke")

    def fail_on_third(event: Event) -> None:
        if len(sink.events) == 3:
            raise boom

    # The third event out, e2, is released together with e3 and e4.
    source = Source([ev(0), ev(1), ev(3), ev(4), ev(2), ev(5), ev(6)])
    sink = RecordingSink(fail_on_third)
    with pytest.raises(SinkError) as caught:
        await eventkit.run(source, pipe.reorder(max_delay=None), sink=sink)
    assert boom is caught.value.__cause__
    assert [ev(2), ev(3), ev(4)] == caught.value.undelivered
    assert source.closed
    assert [ev(0), ev(1), ev(3), ev(4), ev(2)] == source.events
    assert sink.opened
    assert sink.closed


async def test_sink_error_from_call_sink() -> None:
    """A ``sinks.call`` callback raising on the third event gives SinkError."""
    delivered: list[Event] = []

    def take(event: Event) -> None:
        if len(delivered) == 2:
            raise Failing("third")
        delivered.append(event)

    source = Source([ev(i) for i in range(5)])
    with pytest.raises(SinkError) as caught:
        await eventkit.run(source, sink=sinks.call(take))
    assert isinstance(caught.value.__cause__, Failing)
    assert ev(2) == caught.value.undelivered[0]
    assert [ev(0), ev(1)] == delivered
    assert source.closed


async def test_sink_error_on_a_tick_while_upstream_waits() -> None:
    """A sink failing on a chunk flushed by age while upstream waits gives SinkError."""
    boom = Failing("sink broke")

    def fail(event: Event) -> None:
        raise boom

    source = Source([ev(0), WAIT])
    sink = RecordingSink(fail)
    with pytest.raises(SinkError) as caught:
        await eventkit.run(source, pipe.buffer_bytes(max_age=0.01), sink=sink)
    assert boom is caught.value.__cause__
    assert [chunk(ev(0))] == caught.value.undelivered
    assert source.cancelled
    assert source.closed
    assert sink.closed


async def test_cancel_while_sink_awaits_a_tick() -> None:
    """Cancelling run while the sink takes a ticked chunk raises CancelledError."""
    source = Source([ev(0), WAIT])
    sink = RecordingSink(lambda event: asyncio.Event().wait())
    task = asyncio.create_task(
        eventkit.run(source, pipe.buffer_bytes(max_age=0.01), sink=sink)
    )
    await sink.received.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.cancelled
    assert source.closed
    assert sink.closed


# Draining, awaiting, iterating again


async def test_run_without_sink_drains() -> None:
    """With no sink, run still pulls every event through the chain."""
    registry = CollectorRegistry()
    source = Source([ev(0), ev(2), ev(1), ev(3, "completed")])
    await eventkit.run(source, pipe.reorder(), pipe.export_metrics(registry))
    assert [ev(0), ev(2), ev(1), ev(3, "completed")] == source.events
    assert source.closed
    counted = {
        kind: registry.get_sample_value("eventkit_events_total", {"type": kind})
        for kind in ("stdout", "completed")
    }
    expected = {"stdout": 3.0, "completed": 1.0}
    assert expected == counted


async def test_await_gives_the_last_event() -> None:
    """Awaiting an EventStream gives its last event."""
    xs = sources.iterate([ev(2), ev(0), ev(1)]) | pipe.reorder(max_delay=None)
    assert ev(2) == await xs


async def test_iterating_twice_starts_afresh() -> None:
    """Each iteration gets fresh operators: reorder counts from 0 again."""
    events = [ev(1), ev(0), ev(3), ev(2)]
    xs = sources.iterate(events) | pipe.reorder(max_delay=None)
    expected = [ev(0), ev(1), ev(2), ev(3)]
    assert expected == await collect(xs)
    assert expected == await collect(xs)
    assert ev(3) == await xs


# Arguments


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: pipe.buffer_bytes(limit=3), id="buffer_bytes-limit"),
        pytest.param(lambda: pipe.buffer_bytes(max_age=-1), id="buffer_bytes-age"),
        pytest.param(lambda: pipe.reorder(window=0), id="reorder-window-0"),
        pytest.param(lambda: pipe.reorder(window=-1), id="reorder-window-neg"),
        pytest.param(lambda: pipe.reorder(max_delay=-1), id="reorder-max_delay"),
        pytest.param(lambda: pipe.track_progress(interval=-1), id="progress"),
        pytest.param(lambda: pipe.only(), id="only-nothing"),
        pytest.param(lambda: pipe.exclude(), id="exclude-nothing"),
        pytest.param(lambda: pipe.log_events(level="loud"), id="log-level"),
        pytest.param(
            lambda: pipe.export_metrics(CollectorRegistry(), namespace="bad name"),
            id="metrics-namespace",
        ),
    ],
)
def test_invalid_arguments_fail_at_once(make: Callable[[], Stage]) -> None:
    """Nonsense arguments raise ValueError when the pipe is made."""
    with pytest.raises(ValueError):  # noqa: PT011 - messages are per operator
        make()
