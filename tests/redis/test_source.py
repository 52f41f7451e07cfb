"""Tests for :mod:`eventkit.sources.redis` against a real redis-server."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio

import eventkit
from eventkit import sinks, sources
from eventkit.events import Event
from eventkit.protocol import redis as codec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from eventkit.sources.redis import RedisStreamSource

    from .conftest import RedisServer

#: Short times, so that takeovers happen within the test's patience.
BLOCK_MS = 100
CLAIM_IDLE_MS = 600


def run_events(run: str, lines: int, *, complete: bool = True) -> list[Event]:
    """Return ``started``, ``lines`` stdout events and (maybe) ``completed``."""
    events = [Event(type="started", run=run, sequence=0, timestamp=1.0)]
    events += [
        Event(type="stdout", run=run, sequence=1 + n, data=f"{n}\n", timestamp=1.0)
        for n in range(lines)
    ]
    if complete:
        events.append(
            Event(type="completed", run=run, sequence=lines + 1, timestamp=2.0)
        )
    return events


def interleaved(runs: dict[str, list[Event]]) -> list[Event]:
    """The runs' events round robin, each run in order."""
    out: list[Event] = []
    iterators = [iter(events) for events in runs.values()]
    while iterators:
        for events in list(iterators):
            event = next(events, None)
            if event is None:
                iterators.remove(events)
            else:
                out.append(event)
    return out


def source(url: str, consumer: str, **options: Any) -> RedisStreamSource:
    """A source of the stream ``s`` in group ``g``, with the test's short times."""
    options.setdefault("block_ms", BLOCK_MS)
    options.setdefault("claim_idle_ms", CLAIM_IDLE_MS)
    return sources.redis_stream(url, "s", group="g", consumer=consumer, **options)


async def produce(url: str, events: list[Event], shards: int = 1) -> None:
    """Append ``events`` to the stream ``s`` with the eventkit sink."""
    await eventkit.run(
        sources.iterate(events), sink=sinks.redis_stream(url, "s", shards=shards)
    )


async def eventually(check: Callable[[], Awaitable[Any] | Any]) -> None:
    """Poll ``check()`` (awaited if need be) every 10 ms until it returns
    something true, for 5 s at most."""
    for _ in range(500):
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


class Worker:
    """A source run into a collecting sink, in a task, until stopped."""

    def __init__(self, source: RedisStreamSource) -> None:
        self.source = source
        self.events: list[Event] = []
        self.task = asyncio.create_task(
            eventkit.run(source, sink=sinks.call(self.events.append))
        )

    def runs(self) -> dict[str, list[int]]:
        """The sequences delivered, by run."""
        runs: dict[str, list[int]] = {}
        for event in self.events:
            runs.setdefault(event.run, []).append(event.sequence)
        return runs

    async def stop(self) -> None:
        """Stop the source and wait for the run to end."""
        self.source.stop()
        await self.task


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client of the server, to set things up and look at them."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def pending(client: redis.asyncio.Redis, key: str = "s") -> int:
    """Entries of ``key`` delivered to group ``g`` and not acknowledged."""
    info: Any = await client.xpending(key, "g")
    count: int = info["pending"]
    return count


async def owners(client: redis.asyncio.Redis, keys: list[str]) -> list[str | None]:
    """The consumer owning each key, or None."""
    values = await client.mget([codec.lease_key(key, "g") for key in keys])
    return [None if value is None else value.decode() for value in values]


async def test_group_created_when_missing(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """Entries written before the group existed are read; then all is acked."""
    events = run_events("a", 3)
    async with asyncio.timeout(10):
        await produce(redis_server.url, events)
        assert [] == await client.xinfo_groups("s")
        worker = Worker(source(redis_server.url, "one"))
        await eventually(lambda: len(worker.events) == len(events))
        await worker.stop()
        assert events == worker.events
        assert 0 == await pending(client)
        assert [None] == await owners(client, ["s"])


async def test_acknowledged_once_the_terminal_event_passed_the_sink(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A run's entries stay pending until its terminal event went through."""
    events = run_events("a", 1) + run_events("b", 1)
    seen: list[int] = []
    src = source(redis_server.url, "one", count=1)

    async def send(event: Event) -> None:
        seen.append(await pending(client))
        if len(seen) == len(events):
            src.stop()

    async with asyncio.timeout(10):
        await produce(redis_server.url, events)
        await eventkit.run(src, sink=sinks.call(send))
        # One entry read at a time: "a" is acknowledged before "b" is read.
        assert [1, 2, 3, 1, 2, 3] == seen
        assert 0 == await pending(client)


async def test_sink_failing_on_the_terminal_event_acknowledges_nothing(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A run whose terminal event the sink did not take is read again, whole."""
    events = run_events("a", 2)

    def fail_at_the_end(event: Event) -> None:
        if event.type == "completed":
            raise OSError("disk full")

    async with asyncio.timeout(10):
        await produce(redis_server.url, events)
        with pytest.raises(eventkit.SinkError):
            await eventkit.run(
                source(redis_server.url, "one"), sink=sinks.call(fail_at_the_end)
            )
        assert len(events) == await pending(client)
        # Released on the way out: the next worker starts at once.
        assert [None] == await owners(client, ["s"])
        worker = Worker(source(redis_server.url, "two"))
        await eventually(lambda: len(worker.events) == len(events))
        await worker.stop()
        assert events == worker.events
        assert 0 == await pending(client)


async def test_break_mid_run_leaves_the_run_pending(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """Leaving the loop mid-run: the run is read again from its start."""
    events = run_events("a", 5)
    async with asyncio.timeout(10):
        await produce(redis_server.url, events)
        first = source(redis_server.url, "one")
        async with first.stream() as stream:
            async for event in stream:
                if event.sequence == 2:
                    break
        assert len(events) == await pending(client)
        assert [None] == await owners(client, ["s"])
        worker = Worker(source(redis_server.url, "two"))
        await eventually(lambda: len(worker.events) == len(events))
        await worker.stop()
        assert events == worker.events
        assert 0 == await pending(client)


async def test_cancel_mid_run_leaves_the_run_pending(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A cancelled worker acknowledges nothing of the run it was in."""
    events = run_events("a", 5)
    reached = asyncio.Event()

    async def stuck(event: Event) -> None:
        if event.sequence == 2:
            reached.set()
            await asyncio.Event().wait()

    async with asyncio.timeout(10):
        await produce(redis_server.url, events)
        task = asyncio.create_task(
            eventkit.run(source(redis_server.url, "one"), sink=sinks.call(stuck))
        )
        await reached.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(events) == await pending(client)
        assert [None] == await owners(client, ["s"])
        worker = Worker(source(redis_server.url, "two"))
        await eventually(lambda: len(worker.events) == len(events))
        await worker.stop()
        assert events == worker.events


async def test_stop_finishes_the_batch_and_hands_over(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """stop(): what was read is delivered, finished runs acked, the shard freed."""
    done, started = run_events("a", 3), run_events("b", 6)
    async with asyncio.timeout(10):
        await produce(redis_server.url, done + started[:4])
        first = source(redis_server.url, "one")
        delivered: list[Event] = []
        gate = asyncio.Event()

        async def stop_when_told(event: Event) -> None:
            delivered.append(event)
            if len(delivered) == 1:
                await gate.wait()
                first.stop()

        task = asyncio.create_task(eventkit.run(first, sink=sinks.call(stop_when_told)))
        await eventually(lambda: delivered)
        second = Worker(source(redis_server.url, "two"))
        await asyncio.sleep(0.05)
        assert ["one"] == await owners(client, ["s"])
        gate.set()
        await task
        stopped = time.monotonic()
        # The whole batch read: "a" whole and the start of "b".
        assert done + started[:4] == delivered
        assert 4 == await pending(client)
        await eventually(lambda: second.events)
        # Taken over at the next lease tick, long before the lease would
        # have expired.
        assert time.monotonic() - stopped < CLAIM_IDLE_MS / 1000
        await produce(redis_server.url, started[4:])
        await eventually(lambda: len(second.events) == len(started))
        await second.stop()
        assert started == second.events
        assert 0 == await pending(client)


async def test_two_workers_share_the_shards(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """Shards split evenly, handed over cleanly; each run whole from one worker."""
    keys = codec.shard_keys("s", 4)
    runs = {f"run-{n}": run_events(f"run-{n}", 6) for n in range(60)}
    names = list(runs)
    # Five runs at a time, interleaved, as sandboxes running side by side.
    events = [
        event
        for start in range(0, len(names), 5)
        for event in interleaved({name: runs[name] for name in names[start:][:5]})
    ]
    split = asyncio.Event()

    async def paced() -> AsyncIterator[Event]:
        for number, event in enumerate(events):
            if number == len(events) // 2:
                await split.wait()
            yield event
            if number % 2:
                await asyncio.sleep(0.002)

    async with asyncio.timeout(15):
        one = Worker(source(redis_server.url, "one", shards=4))
        await eventually(lambda: all_owned_by(client, keys, {"one"}))
        producer = asyncio.create_task(
            eventkit.run(
                paced(), sink=sinks.redis_stream(redis_server.url, "s", shards=4)
            )
        )
        # The second worker joins while events flow: the first hands over two
        # shards, each once the runs it began there are over.
        await asyncio.sleep(0.1)
        two = Worker(source(redis_server.url, "two", shards=4))
        await eventually(lambda: all_owned_by(client, keys, {"one", "two"}, each=2))
        split.set()
        await producer

        def finished() -> set[str]:
            return {
                e.run for w in (one, two) for e in w.events if e.type == "completed"
            }

        await eventually(lambda: finished() == set(runs))
        await one.stop()
        await two.stop()
    by_one, by_two = one.runs(), two.runs()
    assert by_one
    assert by_two
    assert set() == by_one.keys() & by_two.keys()
    for run, sequences in {**by_one, **by_two}.items():
        assert list(range(8)) == sequences, run
    for key in keys:
        assert 0 == await pending(client, key)


async def all_owned_by(
    client: redis.asyncio.Redis, keys: list[str], names: set[str], each: int = 0
) -> bool:
    """Tell whether ``names`` own every key (``each`` keys apiece, if given)."""
    found = await owners(client, keys)
    if set(found) != names:
        return False
    return not each or all(found.count(name) == each for name in names)
