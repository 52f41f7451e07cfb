"""Tests for :mod:`eventkit.driver`: deadlines, errors, cancellation, closing.

Timing tests run on virtual time (:mod:`tests.virtual_time`): the operators
and the driver read the loop's clock, so a deadline comes exactly when due
and no test waits for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import TYPE_CHECKING, Any

import pytest

import eventkit
from eventkit import Event, Stage, pipe
from eventkit.driver import drive
from eventkit.operators.buffer import BufferBytes
from eventkit.operators.reorder import Reorder
from tests.factories import out
from tests.scripted import WAIT, Failing, RecordingSink, Source, chunk, piped
from tests.virtual_time import loop_time, virtual

if TYPE_CHECKING:
    from eventkit.operators._base import Operator


def on_loop_time(operator: type[Operator], **options: Any) -> Stage:
    """Return a stage of ``operator`` on the running loop's clock."""
    return Stage(
        operator.__name__, functools.partial(operator, clock=loop_time, **options)
    )


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
            arrivals.append(loop_time())
            events.append(event)
    return arrivals, events


ways = pytest.mark.parametrize("how", ["run", "pipe"])


# Time


@ways
@virtual
async def test_buffer_max_age_flushes_while_source_is_silent(how: str) -> None:
    """A buffer reaching max_age leaves while upstream waits, not with what follows."""
    first, last = out(0), out(1, "completed")
    source = Source([first, 0.2, last])
    stage = on_loop_time(BufferBytes, max_age=0.05)
    arrivals, events = await consume(how, source, stage)
    assert [chunk(first), last] == events
    assert source.yielded[0][0] + 0.05 == pytest.approx(arrivals[0])
    assert source.yielded[0][0] + 0.2 == pytest.approx(source.yielded[1][0])


@ways
@virtual
async def test_reorder_max_delay_emits_gap_while_source_is_silent(how: str) -> None:
    """A hole is given up max_delay after its successor came, while upstream waits."""
    e0, e2, e3, e1 = out(0), out(2), out(3), out(1)
    source = Source([e0, e2, 0.2, e3, e1])
    gap = Event(
        type="gap",
        run="r",
        sequence=1,
        timestamp=e2.timestamp,
        attrs={"first_missing": 1, "last_missing": 1},
    )
    stage = on_loop_time(Reorder, max_delay=0.05)
    arrivals, events = await consume(how, source, stage)
    assert [e0, gap, e2, e3] == events
    assert source.yielded[1][0] + 0.05 == pytest.approx(arrivals[1])
    assert arrivals[1] < source.yielded[2][0]


@ways
@virtual
async def test_tick_never_cancels_the_pending_step(how: str) -> None:
    """Ticks while upstream sleeps leave its step alone: every event comes through."""
    source = Source([out(0), 0.08, out(1), 0.08, out(2), 0.08, out(3, "completed")])
    arrivals, events = await consume(
        how,
        source,
        on_loop_time(Reorder, max_delay=0.01),
        on_loop_time(BufferBytes, max_age=0.01),
    )
    assert not source.cancelled
    assert source.closed
    assert [out(0), out(1), out(2), out(3, "completed")] == source.events
    assert [*map(chunk, source.events[:3]), out(3, "completed")] == events
    # Each chunk left on a tick, in the middle of the following sleep.
    for index in range(3):
        assert source.yielded[index][0] + 0.01 == pytest.approx(arrivals[index])
        assert arrivals[index] < source.yielded[index + 1][0]


@virtual
async def test_driver_clock_is_the_loops_by_default() -> None:
    """Without a clock, the driver races deadlines on the event loop's time."""
    source = Source([out(0), WAIT])
    batches = drive(source, [BufferBytes(max_age=1.5, clock=loop_time)])
    async with contextlib.aclosing(batches):  # type: ignore[type-var]
        start = loop_time()
        assert [chunk(out(0))] == await anext(batches)
        assert start + 1.5 == pytest.approx(loop_time())


@pytest.mark.parametrize(
    "stages",
    [
        pytest.param(lambda: [pipe.reorder(max_delay=None)], id="untimed"),
        pytest.param(
            lambda: [on_loop_time(BufferBytes, max_age=10.0)], id="deadline-pending"
        ),
        pytest.param(
            lambda: [on_loop_time(BufferBytes, max_age=0.01)], id="deadline-passed"
        ),
    ],
)
@virtual
async def test_source_error_propagates(stages: Any) -> None:
    """An exception raised by the source mid-stream comes out of run."""
    boom = Failing("source broke")
    source = Source([out(0), 0.05, boom, out(1)])
    sink = RecordingSink()
    with pytest.raises(Failing) as caught:
        await eventkit.run(source, *stages(), sink=sink)
    assert boom is caught.value
    assert [out(0)] == source.events
    assert sink.closed


# Cancellation and closing


@pytest.mark.parametrize(
    ("stages", "ticks"),
    [
        pytest.param(lambda: [pipe.reorder(max_delay=None)], False, id="no-deadline"),
        pytest.param(
            lambda: [on_loop_time(BufferBytes, max_age=10.0)],
            False,
            id="deadline-pending",
        ),
        pytest.param(
            lambda: [on_loop_time(BufferBytes, max_age=0.01)], True, id="after-a-tick"
        ),
    ],
)
@virtual
async def test_cancel_while_upstream_waits(stages: Any, ticks: bool) -> None:
    """Cancelling run while upstream waits cancels the source and raises."""
    source = Source([out(0), WAIT])
    sink = RecordingSink()
    task = asyncio.create_task(eventkit.run(source, *stages(), sink=sink))
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
        pytest.param(lambda: [], id="no-stage"),
        pytest.param(lambda: [pipe.reorder(max_delay=None)], id="untimed"),
        pytest.param(lambda: [on_loop_time(Reorder, max_delay=10.0)], id="timed"),
    ],
)
@virtual
async def test_break_closes_the_source(stages: Any) -> None:
    """Leaving ``async with xs.stream()`` early closes the source."""
    source = Source([out(0), out(1), out(2), WAIT])
    async with piped(source, *stages()).stream() as streamer:
        async for event in streamer:
            assert out(0) == event
            break
    assert source.closed
    assert [out(0)] == source.events[:1]


@virtual
async def test_break_on_a_tick_cancels_the_pending_step() -> None:
    """Leaving early after a tick, while upstream waits, cancels the source."""
    source = Source([out(0), WAIT])
    xs = piped(source, on_loop_time(BufferBytes, max_age=0.01))
    async with xs.stream() as streamer:
        async for event in streamer:
            assert chunk(out(0)) == event
            break
    assert source.cancelled
    assert source.closed


@virtual
async def test_sink_error_on_a_tick_while_upstream_waits() -> None:
    """A sink failing on a chunk flushed by age while upstream waits gives SinkError."""
    boom = Failing("sink broke")

    def fail(event: Event) -> None:
        raise boom

    source = Source([out(0), WAIT])
    sink = RecordingSink(fail)
    with pytest.raises(eventkit.SinkError) as caught:
        await eventkit.run(source, on_loop_time(BufferBytes, max_age=0.01), sink=sink)
    assert boom is caught.value.__cause__
    assert [chunk(out(0))] == caught.value.undelivered
    assert source.cancelled
    assert source.closed
    assert sink.closed


@virtual
async def test_cancel_while_sink_awaits_a_tick() -> None:
    """Cancelling run while the sink takes a ticked chunk raises CancelledError."""
    source = Source([out(0), WAIT])
    sink = RecordingSink(lambda event: asyncio.Event().wait())
    task = asyncio.create_task(
        eventkit.run(source, on_loop_time(BufferBytes, max_age=0.01), sink=sink)
    )
    await sink.received.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.cancelled
    assert source.closed
    assert sink.closed
