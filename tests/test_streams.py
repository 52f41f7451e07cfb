"""Tests for :mod:`eventkit.streams`: stages compose into one fused stream."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import aiostream
import pytest
from prometheus_client import CollectorRegistry

import eventkit
from eventkit import Event, EventStream, Stage, pipe, sinks, sources
from tests.factories import out
from tests.scripted import WAIT, Failing, Source, collect, piped

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


def test_piping_fuses_into_one_event_stream() -> None:
    """Stages piped onto an EventStream make one EventStream of the whole chain."""
    stages = (pipe.reorder(), pipe.only("stdout"), pipe.buffer_bytes(8))
    base = sources.iterate([out(0)])
    xs = base | stages[0] | stages[1] | stages[2]
    assert isinstance(xs, EventStream)
    assert stages == xs.stages
    assert base.source is xs.source


def test_piping_onto_an_aiostream_stream_fuses() -> None:
    """Stages piped onto an aiostream stream fuse over that stream."""
    stages = (pipe.reorder(), pipe.track_progress())
    base = aiostream.stream.iterate([out(0)])
    xs = base | stages[0] | stages[1]
    assert isinstance(xs, EventStream)
    assert stages == xs.stages
    assert base is xs.source


async def test_piping_any_async_iterable() -> None:
    """An async generator, not an aiostream stream, pipes into a stage too."""

    async def generate() -> AsyncIterator[Event]:
        for event in (out(1), out(0), out(2, "completed")):
            yield event

    source = generate()
    xs = source | pipe.reorder(max_delay=None)
    assert isinstance(xs, EventStream)
    assert source is xs.source
    assert [out(0), out(1), out(2, "completed")] == await collect(xs)


def test_piping_something_else_is_a_type_error() -> None:
    """Only async iterables pipe into a stage."""
    with pytest.raises(TypeError):
        [out(0)] | pipe.reorder()  # type: ignore[operator]


def test_stream_functions_fuse() -> None:
    """Nested ``eventkit.stream`` calls make one EventStream too."""
    base = aiostream.stream.iterate([out(0)])
    xs = eventkit.stream.buffer_bytes(
        eventkit.stream.only(eventkit.stream.reorder(base), "stdout"), 8
    )
    expected = ["reorder", "only('stdout',)", "buffer_bytes(8)"]
    assert expected == [stage.name for stage in xs.stages]
    assert base is xs.source


async def test_foreign_pipe_between_stages() -> None:
    """An aiostream pipe between eventkit stages cuts the chain; output is the same."""
    events = [out(1), out(0), out(2, "started"), out(4), out(3, "completed")]

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


async def test_await_gives_the_last_event() -> None:
    """Awaiting an EventStream gives its last event."""
    xs = sources.iterate([out(2), out(0), out(1)]) | pipe.reorder(max_delay=None)
    assert out(2) == await xs


async def test_iterating_twice_starts_afresh() -> None:
    """Each iteration gets fresh operators: reorder counts from 0 again."""
    events = [out(1), out(0), out(3), out(2)]
    xs = sources.iterate(events) | pipe.reorder(max_delay=None)
    expected = [out(0), out(1), out(2), out(3)]
    assert expected == await collect(xs)
    assert expected == await collect(xs)
    assert out(3) == await xs


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


# A plain async for, as the SDK guides teach it


async def spin() -> None:
    """Let the event loop run a few rounds (finalizers, callbacks)."""
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    "stages",
    [pytest.param((), id="source"), pytest.param((pipe.reorder(),), id="chain")],
)
async def test_break_in_a_plain_async_for_closes_the_source(
    stages: tuple[Stage, ...],
) -> None:
    """No warning, and the source is closed as soon as the loop runs again."""
    source = Source([out(0), out(1), WAIT])
    xs = piped(source, *stages)
    async for event in xs:
        assert out(0) == event
        break
    await spin()
    assert source.closed


async def test_an_error_in_the_loop_body_closes_the_source() -> None:
    """An exception leaving a plain async for closes the source."""
    source = Source([out(0), WAIT])

    async def consume() -> None:
        async for _ in piped(source, pipe.reorder()):
            raise Failing("body")

    with pytest.raises(Failing):
        await consume()
    await spin()
    assert source.closed


async def test_cancelling_the_consumer_closes_the_source() -> None:
    """Cancelling the task running a plain async for closes the source at once."""
    source = Source([out(0), WAIT])

    async def consume() -> None:
        async for _ in piped(source, pipe.reorder()):
            pass

    task = asyncio.create_task(consume())
    await source.waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.cancelled
    assert source.closed


async def test_batches_of_a_stream() -> None:
    """batches() hands over the events in lists, chain applied."""
    xs = sources.iterate([out(1), out(0), out(2)]) | pipe.reorder(max_delay=None)
    async with contextlib.aclosing(xs.batches()) as batches:
        got = [batch async for batch in batches]
    assert [[out(0), out(1), out(2)]] == got
