"""Typical uses of the public API, type-checked by mypy; pytest never collects it.

Each function is a usage example that is never called. ``assert_type`` states
the type a user should see; a ``type: ignore[code]`` marks a misuse that must
stay an error (``warn_unused_ignores``, part of ``--strict``, fails the check
if it stops being one).
"""

from __future__ import annotations

import functools
import io
import sys
from typing import TYPE_CHECKING, Any, assert_type

import aiostream
from aiostream.core import Stream
from prometheus_client import CollectorRegistry

import eventkit
from eventkit import (
    Event,
    EventStream,
    EventType,
    SinkError,
    Stage,
    pipe,
    sinks,
    sources,
    stream,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


def same(event: Event, *_: Event) -> Event:
    """Return ``event``: a function for aiostream's ``map``."""
    return event


async def build_chains(events: list[Event]) -> None:
    """Chains built with ``|`` stay streams of events."""
    stage = pipe.reorder(max_delay=0.5)
    assert_type(stage, Stage)
    xs = (
        sources.iterate(events)
        | stage
        | pipe.only("stdout", "stderr", EventType.COMPLETED)
        | pipe.buffer_bytes(4096, max_age=0.25)
    )
    assert_type(xs, EventStream)
    assert_type(xs.stages, tuple[Stage, ...])

    ys = aiostream.stream.iterate(events) | pipe.track_progress(interval=1.0)
    assert_type(ys, EventStream)
    zs = ys | aiostream.pipe.map(same) | pipe.exclude("progress")
    assert_type(zs, EventStream)
    mapped = xs | aiostream.pipe.map(same)
    assert_type(mapped, Stream[Event])

    nested = eventkit.stream.buffer_bytes(
        eventkit.stream.reorder(sources.iterate(events), max_delay=None), 64
    )
    assert_type(nested, EventStream)

    assert_type(await xs, Event)
    async with xs.stream() as streamer:
        async for event in streamer:
            assert_type(event, Event)


async def run_pipelines(path: str) -> None:
    """``eventkit.run`` takes any source, eventkit and aiostream pipes, a sink."""
    registry = CollectorRegistry()
    collected = sinks.collect()
    await eventkit.run(
        sources.jsonl(path),
        pipe.reorder(),
        pipe.only("stdout", "stderr", "completed"),
        pipe.buffer_bytes(4096),
        pipe.track_progress(),
        pipe.export_metrics(registry, namespace="sandbox"),
        pipe.log_events(types={"error", "completed"}, level="info"),
        sink=collected,
    )
    assert_type(collected.events, list[Event])

    await eventkit.run(
        aiostream.stream.iterate(collected.events),
        aiostream.pipe.map(same),
        pipe.reorder(window=16),
        sink=sinks.jsonl(io.BytesIO()),
    )
    await eventkit.run(sources.iterate(collected.events) | pipe.track_progress())

    async def forward(event: Event) -> None:
        """An async callback."""

    await eventkit.run(sources.iterate([]), sink=sinks.call(forward))
    await eventkit.run(sources.iterate([]), sink=sinks.call(print))
    await eventkit.run(sources.iterate([]), sink=sinks.console(sys.stdout))

    try:
        await eventkit.run(sources.jsonl(path), sink=Printer())
    except SinkError as exc:
        assert_type(exc.undelivered, list[Event])
        assert_type(exc.__cause__, BaseException | None)


class Printer(sinks.Sink):
    """A sink of one's own: only ``send`` is required."""

    async def send(self, event: Event) -> None:
        """Print the event's data."""
        print(event["data"])


async def scale_out(url: str) -> None:
    """A producer and a worker on Redis Streams, as the docs show them."""
    producer = sinks.redis_stream(url, "jobs", shards=4, maxlen=1_000_000)
    assert_type(producer, eventkit.sinks.RedisStreamSink)
    await eventkit.run(sources.local("print(1)"), sink=producer)
    worker = sources.redis_stream(url, "jobs", group="g", shards=4)
    assert_type(worker, eventkit.sources.RedisStreamSource)
    assert_type(worker.stop(), None)
    await eventkit.run(worker, pipe.reorder(), sink=sinks.jsonl(io.StringIO()))
    async with sinks.prometheus_http(0) as metrics:
        assert_type(metrics.url, str)


async def watch(events: list[Event]) -> None:
    """A dashboard fed before and after a chain; a tap anywhere in one."""
    board = sinks.dashboard(0, token="t", keep_runs=10)
    assert_type(board, sinks.Dashboard)
    await board.start()
    assert_type(board.url, str | None)
    tapped = sources.iterate(events) | pipe.tap(board.upstream)
    assert_type(tapped, EventStream)
    await eventkit.run(tapped, pipe.only("stdout"), board.watch(), sink=board)
    assert_type(stream.tap(sources.iterate(events), sinks.collect()), EventStream)
    await board.stop()


class Decoding:
    """A source offering takes: what it received is decoded when a take is called."""

    def __init__(self, received: list[bytes]) -> None:
        self.received = received

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def events(self) -> AsyncIterator[Event]:
        async for take in self.takes():
            for event in take():
                yield event

    async def takes(self) -> AsyncIterator[Callable[[], list[Event]]]:
        for message in self.received:
            yield functools.partial(decode, message)


def decode(message: bytes) -> list[Event]:
    """Decode one message received."""
    return [Event(type="stdout", data=message.decode())]


async def fan_in(urls: list[str], received: list[bytes]) -> None:
    """Many sources merged; any source read as takes."""
    merged = eventkit.merge(*(sources.websocket(url, "print(1)") for url in urls))
    assert_type(merged, EventStream)
    both = eventkit.merge(merged, Decoding(received))
    await eventkit.run(both, pipe.track_progress(), sink=sinks.collect())
    async for take in eventkit.driver.takes(Decoding(received)):
        assert_type(take(), list[Event])


def read(event: Event) -> None:
    """Events read as records and as mappings."""
    assert_type(event.type, str)
    assert_type(event.data, str)
    assert_type(event.sequence, int)
    assert_type(event.timestamp, float)
    assert_type(event["exit_code"], Any)
    assert_type(event.get("success", False), Any)
    assert_type("exit_code" in event, bool)
    assert_type(event.size, int)
    if event.type == EventType.COMPLETED:
        assert_type(event.attrs.get("exit_code"), Any | None)


async def misuse(events: list[Event]) -> None:
    """Mistakes mypy must catch."""
    pipe.buffer_bytes("4096")  # type: ignore[arg-type]
    pipe.reorder(16)  # type: ignore[call-arg]
    pipe.only(EventType.STDOUT, 1)  # type: ignore[arg-type]
    await eventkit.run(events)  # type: ignore[arg-type]
    await eventkit.run(sources.iterate(events), sink=print)  # type: ignore[arg-type]
    event = Event(type="stdout")
    event.data = "changed"  # type: ignore[misc]
