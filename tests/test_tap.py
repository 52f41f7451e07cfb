"""``pipe.tap``: a copy of the events at one point of a chain, sent to a sink."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

import eventkit
from eventkit import pipe, sinks, sources, stream
from eventkit.exceptions import SinkError
from tests.factories import ev, out

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventkit import Event


class Recorder(sinks.Sink):
    """Keeps what it was given, and when it was opened and closed."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.batches: list[list[Event]] = []
        self.calls: list[str] = []
        self.fail_at = fail_at

    async def open(self) -> None:
        self.calls.append("open")

    async def send(self, event: Event) -> None:
        raise AssertionError("batches only")

    async def send_batch(self, events: list[Event]) -> None:
        if self.fail_at is not None and len(self.batches) == self.fail_at:
            raise RuntimeError("full")
        self.batches.append(events)

    async def close(self) -> None:
        self.calls.append("close")

    @property
    def events(self) -> list[Event]:
        return [event for batch in self.batches for event in batch]


EVENTS = [
    ev("started"),
    out(1),
    out(2, "stderr"),
    ev("completed", "", 3, success=True),
]


async def test_tap_sees_events_before_the_stages_after_it() -> None:
    """The sink gets every event; the stages after the tap still run."""
    tapped = Recorder()
    kept = sinks.collect()
    await eventkit.run(
        sources.iterate(EVENTS), pipe.tap(tapped), pipe.only("stderr"), sink=kept
    )
    assert EVENTS == tapped.events
    assert [EVENTS[2]] == kept.events
    assert ["open", "close"] == tapped.calls


async def test_tap_in_the_middle_sees_what_the_stages_before_made() -> None:
    """After reorder, the tap gets the events in order."""
    shuffled = [EVENTS[0], EVENTS[2], EVENTS[1], EVENTS[3]]
    tapped = Recorder()
    result = [
        event
        async for event in sources.iterate(shuffled)
        | pipe.reorder()
        | pipe.tap(tapped)
        | pipe.only("stdout")
    ]
    assert EVENTS == tapped.events
    assert [EVENTS[1]] == result


async def test_tap_works_on_plain_async_iterables_and_as_stream_tap() -> None:
    """``agen | pipe.tap(s)`` and ``stream.tap(agen, s)`` both tap."""

    async def produce() -> AsyncIterator[Event]:
        for event in EVENTS:
            yield event

    first, second = Recorder(), Recorder()
    assert EVENTS == [event async for event in produce() | pipe.tap(first)]
    assert EVENTS == [event async for event in stream.tap(produce(), second)]
    assert EVENTS == first.events == second.events


async def test_the_sink_gets_a_list_of_its_own() -> None:
    """The stages after a tap may change their list: the sink's is a copy."""
    tapped = Recorder()
    async for batch in (sources.iterate(EVENTS) | pipe.tap(tapped)).batches():
        batch.clear()
    assert EVENTS == tapped.events


async def test_a_failing_sink_stops_the_stream_with_sinkerror() -> None:
    """The sink's exception becomes SinkError with the batch undelivered; closed."""
    tapped = Recorder(fail_at=0)
    with pytest.raises(SinkError) as caught:
        await eventkit.run(sources.iterate(EVENTS), pipe.tap(tapped))
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert EVENTS == caught.value.undelivered
    assert ["open", "close"] == tapped.calls


async def test_leaving_early_closes_the_sink() -> None:
    """A consumer that breaks off: the sink is closed when the stream is."""
    tapped = Recorder()
    events = sources.iterate(EVENTS) | pipe.tap(tapped)
    async with contextlib.aclosing(events.batches()) as batches:  # type: ignore[type-var]
        async for _ in batches:
            break
    assert ["open", "close"] == tapped.calls


async def test_each_iteration_taps_again() -> None:
    """Iterating twice reads the source twice, opening the sink each time."""
    tapped = Recorder()
    events = sources.iterate(EVENTS) | pipe.tap(tapped)
    for _ in range(2):
        assert EVENTS == [event async for event in events]
    assert ["open", "close", "open", "close"] == tapped.calls
    assert "<eventkit tap" in repr(pipe.tap(tapped))
