"""Tests for :func:`eventkit.merge`: fan-in of many sources."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pytest

import eventkit
from eventkit import pipe, sinks, sources
from eventkit.driver import takes
from tests.factories import out
from tests.scripted import WAIT, Failing, Source, collect

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from eventkit import Event


def by_run(events: list[Event]) -> dict[str, list[Event]]:
    """Group ``events`` by run, keeping their order."""
    grouped: dict[str, list[Event]] = {}
    for event in events:
        grouped.setdefault(event.run, []).append(event)
    return grouped


async def test_every_event_of_every_source_in_its_order() -> None:
    """The merged stream has each source's events, each source in order."""
    runs = {name: [out(i, run=name) for i in range(50)] for name in "abc"}
    merged = eventkit.merge(*(sources.iterate(events) for events in runs.values()))
    got = await collect(merged)
    assert runs == by_run(got)


async def test_slow_sources_are_not_starved() -> None:
    """A source with a steady trickle gets through while another never stops."""

    async def flood() -> AsyncIterator[Event]:
        sequence = 0
        while True:
            yield out(sequence, run="fast")
            sequence += 1

    slow = Source([x for i in range(5) for x in (out(i, run="slow"), 0.001)])
    seen = 0
    slow_seen = 0
    async with contextlib.aclosing(eventkit.merge(flood(), slow).batches()) as merged:
        async for batch in merged:
            seen += len(batch)
            slow_seen += sum(event.run == "slow" for event in batch)
            if slow_seen == 5:
                break
    assert slow.closed
    # 5 ms of sleeps: the flood had no more than its turns meanwhile.
    assert seen < 200_000


async def test_a_failing_source_ends_the_merge_after_its_events() -> None:
    """What a failing source gave comes out, then its error; the rest is closed."""
    boom = Failing("source broke")
    failing = Source([out(0, run="f"), out(1, run="f"), boom])
    waiting = Source([out(0, run="w"), WAIT])
    sink = sinks.collect()
    with pytest.raises(Failing) as caught:
        await eventkit.run(eventkit.merge(failing, waiting), sink=sink)
    assert boom is caught.value
    assert [out(0, run="f"), out(1, run="f")] == by_run(sink.events)["f"]
    assert waiting.closed


async def test_leaving_early_closes_every_source() -> None:
    """A break out of the merged stream closes each source before aclose returns."""
    first, second = Source([out(0, run="a"), WAIT]), Source([out(0, run="b"), WAIT])
    merged = eventkit.merge(first, second).batches()
    async with contextlib.aclosing(merged):
        await anext(merged)
    assert first.closed
    assert second.closed
    assert first.cancelled or second.cancelled


async def test_cancelling_the_consumer_closes_every_source() -> None:
    """Cancelling a run over a merge closes each source."""
    first, second = Source([out(0, run="a"), WAIT]), Source([WAIT])
    task = asyncio.create_task(eventkit.run(eventkit.merge(first, second)))
    await first.waiting.wait()
    await second.waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert first.closed
    assert second.closed


async def test_merged_chains_and_a_chain_on_the_merge() -> None:
    """Chains run on each source, and a chain runs on the merged stream."""
    a = sources.iterate([out(1, run="a"), out(0, run="a")]) | pipe.reorder()
    b = sources.iterate([out(0, run="b"), out(1, run="b", type="stderr")])
    xs = eventkit.merge(a, b) | pipe.only("stdout")
    got = by_run(await collect(xs))
    assert {"a": [out(0, run="a"), out(1, run="a")], "b": [out(0, run="b")]} == got


async def test_pipe_and_stream_forms() -> None:
    """``source | pipe.merge(other)`` and ``stream.merge`` merge too."""
    a = sources.iterate([out(0, run="a")])
    b = sources.iterate([out(0, run="b")])
    piped = await collect(a | pipe.merge(b))
    streamed = await collect(eventkit.stream.merge(a, b))
    assert sorted(e.run for e in piped) == ["a", "b"]
    assert sorted(e.run for e in streamed) == ["a", "b"]
    sink = sinks.collect()
    await eventkit.run(a, pipe.merge(b), pipe.only("stdout"), sink=sink)
    assert sorted(e.run for e in sink.events) == ["a", "b"]


async def test_merging_nothing() -> None:
    """A merge of no source is empty."""
    assert [] == await collect(eventkit.merge())


class Taking:
    """A source offering takes: it records which were called, and when."""

    def __init__(self, batches: list[list[Event] | Exception]) -> None:
        self.script = batches
        #: The indexes of the takes called so far.
        self.called: list[int] = []
        self.closed = False

    def __aiter__(self) -> AsyncIterator[Event]:
        raise AssertionError("a source with takes() is not read event by event")

    async def takes(self) -> AsyncIterator[Callable[[], list[Event]]]:
        try:
            for index, item in enumerate(self.script):

                def take(index: int = index, item: object = item) -> list[Event]:
                    self.called.append(index)
                    if isinstance(item, Exception):
                        raise item
                    assert isinstance(item, list)
                    return item

                yield take
                # The contract: each take is called before the next is asked.
                assert index == self.called[-1]
        finally:
            self.closed = True


async def test_a_source_with_takes_decodes_only_what_is_handed_over() -> None:
    """The merge calls a take as it hands the batch over, not while it waits."""
    source = Taking([[out(0)], [out(1)], [out(2)]])
    async with contextlib.aclosing(eventkit.merge(source).batches()) as merged:
        assert [out(0)] == await anext(merged)
        await asyncio.sleep(0.01)  # the source's next take is ready meanwhile
        assert [0] == source.called
        assert [out(1)] == await anext(merged)
        assert [0, 1] == source.called
    assert source.closed


async def test_a_failing_take_ends_the_merge_after_the_events_before() -> None:
    """A take that raises is the source failing: the events before it come first."""
    boom = Failing("frame broke")
    failing = Taking([[out(0, run="f")], boom])
    waiting = Source([out(0, run="w"), WAIT])
    sink = sinks.collect()
    with pytest.raises(Failing) as caught:
        await eventkit.run(eventkit.merge(failing, waiting), sink=sink)
    assert boom is caught.value
    assert [out(0, run="f")] == by_run(sink.events)["f"]
    assert failing.closed
    assert waiting.closed


async def test_takes_of_a_source_without_them_hand_its_batches_over() -> None:
    """Any source reads as takes: each returns the next batch, as it was read."""
    events = [out(i) for i in range(3)]
    async with contextlib.aclosing(takes(sources.iterate(events))) as offered:
        got = [event async for take in offered for event in take()]
    assert events == got
