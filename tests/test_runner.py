"""Tests for :func:`eventkit.run`: every way of composing gives the same output,
sink failures, draining."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Final

import aiostream
import pytest
from hypothesis import given, settings, strategies as st
from prometheus_client import CollectorRegistry

import eventkit
from eventkit import Event, EventStream, SinkError, Stage, pipe, sinks, sources
from eventkit.operators.buffer import BufferBytes
from eventkit.operators.metrics import ExportMetrics
from eventkit.operators.progress import TrackProgress
from eventkit.operators.reorder import Reorder
from eventkit.operators.select import Select
from tests.factories import out
from tests.scripted import Failing, RecordingSink, Source, collect

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Sequence

    from aiostream.core import Stream

    from eventkit.operators._base import Operator


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
            out(sequence, draw(st.sampled_from(TYPES)), data=draw(texts), run=run)
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
    """Feed each event alone down the chain, then flush each operator in order.

    The per-event reference: each operator sees one event at a time.
    """
    out: list[Event] = []

    def push(index: int, event: Event) -> None:
        if index == len(operators):
            out.append(event)
            return
        for item in operators[index].feed([event]):
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


# Sink failure


async def test_sink_error() -> None:
    """A sink that raises stops the run with SinkError; everything is closed."""
    boom = Failing("sink broke")

    def fail_on_third(event: Event) -> None:
        if len(sink.events) == 3:
            raise boom

    # Every event is ready at once: one batch, and the third event out, e2,
    # comes with the rest of it.
    source = Source([out(0), out(1), out(3), out(4), out(2), out(5), out(6)])
    sink = RecordingSink(fail_on_third)
    with pytest.raises(SinkError) as caught:
        await eventkit.run(source, pipe.reorder(max_delay=None), sink=sink)
    assert boom is caught.value.__cause__
    assert [out(2), out(3), out(4), out(5), out(6)] == caught.value.undelivered
    assert source.closed
    assert [out(0), out(1), out(3), out(4), out(2), out(5), out(6)] == source.events
    assert sink.opened
    assert sink.closed


async def test_sink_error_from_call_sink() -> None:
    """A ``sinks.call`` callback raising on the third event gives SinkError."""
    delivered: list[Event] = []

    def take(event: Event) -> None:
        if len(delivered) == 2:
            raise Failing("third")
        delivered.append(event)

    source = Source([out(i) for i in range(5)])
    with pytest.raises(SinkError) as caught:
        await eventkit.run(source, sink=sinks.call(take))
    assert isinstance(caught.value.__cause__, Failing)
    assert out(2) == caught.value.undelivered[0]
    assert [out(0), out(1)] == delivered
    assert source.closed


# Draining


async def test_run_without_sink_drains() -> None:
    """With no sink, run still pulls every event through the chain."""
    registry = CollectorRegistry()
    source = Source([out(0), out(2), out(1), out(3, "completed")])
    await eventkit.run(source, pipe.reorder(), pipe.export_metrics(registry))
    assert [out(0), out(2), out(1), out(3, "completed")] == source.events
    assert source.closed
    counted = {
        kind: registry.get_sample_value("eventkit_events_total", {"type": kind})
        for kind in ("stdout", "completed")
    }
    expected = {"stdout": 3.0, "completed": 1.0}
    assert expected == counted
