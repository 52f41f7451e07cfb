"""Tests for :mod:`eventkit.sources.redis` against a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio
from structlog.testing import capture_logs

import eventkit
from eventkit import sinks, sources
from eventkit.events import Event
from eventkit.exceptions import ShardCountError
from eventkit.metrics import source_stats
from eventkit.protocol import redis_entries as codec
from tests.redis.streams import eventually, run_events

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventkit.sources.redis.source import RedisStreamSource

    from .conftest import RedisServer

#: Short times, so that takeovers happen within the test's patience.
BLOCK_MS = 100
CLAIM_IDLE_MS = 600


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


async def pending(client: redis.asyncio.Redis, key: str = "s") -> int:
    """Entries of ``key`` delivered to group ``g`` and not acknowledged."""
    info: Any = await client.xpending(key, "g")
    count: int = info["pending"]
    return count


async def nothing_pending(client: redis.asyncio.Redis) -> bool:
    """Tell whether group ``g`` has no entry of ``s`` pending."""
    return await pending(client) == 0


async def owners(client: redis.asyncio.Redis, keys: list[str]) -> list[str | None]:
    """The consumer owning each key, or None."""
    values: Any = await client.mget([codec.lease_key(key, "g") for key in keys])
    return [None if value is None else value.decode() for value in values]


async def read_again_whole(
    url: str, client: redis.asyncio.Redis, events: list[Event]
) -> None:
    """Check that a worker left ``events`` pending, leases released, and that
    the next worker reads them all again, from the first, and acknowledges."""
    assert len(events) == await pending(client)
    # Released on the way out: the next worker starts at once.
    assert [None] == await owners(client, ["s"])
    worker = Worker(source(url, "two"))
    await eventually(lambda: len(worker.events) == len(events))
    await worker.stop()
    assert events == worker.events
    assert 0 == await pending(client)


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
        await read_again_whole(redis_server.url, client, events)


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
        await read_again_whole(redis_server.url, client, events)


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
        await read_again_whole(redis_server.url, client, events)


async def test_second_cancellation_does_not_cut_the_release_short(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """Cancelled again while releasing its leases, a worker still releases them.

    The release is awaited to its end (at most 1 s) before the cancellation
    goes on: once the task is over, the lease is free and nothing of the
    worker runs on in the background.
    """
    events = run_events("a", 5)
    reached = asyncio.Event()

    async def stuck(event: Event) -> None:
        if event.sequence == 2:
            reached.set()
            await asyncio.Event().wait()

    async with asyncio.timeout(10):
        await produce(redis_server.url, events)
        before = asyncio.all_tasks()
        task = asyncio.create_task(
            eventkit.run(source(redis_server.url, "one"), sink=sinks.call(stuck))
        )
        await reached.wait()
        task.cancel()
        # One step: the iteration unwinds into the release of its leases.
        await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert set() == asyncio.all_tasks() - before
        assert [None] == await owners(client, ["s"])
        await read_again_whole(redis_server.url, client, events)


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


async def test_takeover_after_claim_idle_ms(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A worker gone without a word: its shard and pending run are taken later."""
    events = run_events("a", 3)
    async with asyncio.timeout(10):
        await produce(redis_server.url, events)
        # A worker that read part of the run, then died holding the lease.
        await client.xgroup_create("s", "g", id="0")
        await client.xreadgroup("g", "ghost", {"s": ">"}, count=2)
        await client.set(codec.lease_key("s", "g"), "ghost", px=CLAIM_IDLE_MS)
        assert 2 == await pending(client)
        started = time.monotonic()
        worker = Worker(source(redis_server.url, "heir"))
        await eventually(lambda: worker.events)
        # Not before the lease expired.
        assert time.monotonic() - started >= CLAIM_IDLE_MS / 1000 - 0.1
        await eventually(lambda: len(worker.events) == len(events))
        await worker.stop()
        # The run from its first event, the ghost's entries first.
        assert events == worker.events
        assert 0 == await pending(client)
        # The ghost's name, with nothing pending any more, was deleted.
        consumers = await client.xinfo_consumers("s", "g")
        assert [b"heir"] == [consumer["name"] for consumer in consumers]


async def test_entries_read_late_by_a_former_owner_are_claimed(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """Entries a stray read took after the drain are found and delivered."""
    events = run_events("a", 1)
    async with asyncio.timeout(10):
        worker = Worker(source(redis_server.url, "heir"))

        async def owned() -> bool:
            return await owners(client, ["s"]) == ["heir"]

        await eventually(owned)
        await asyncio.sleep(2 * BLOCK_MS / 1000)
        # A former owner's late read, served before the owner's own.
        pipe = client.pipeline(transaction=True)
        for event in events:
            pipe.xadd("s", {codec.FIELD: codec.encode(event)})
        pipe.xreadgroup("g", "ghost", {"s": ">"})
        await pipe.execute()
        assert [(b"ghost", 3)] == [
            (c["name"], c["pending"]) for c in await client.xinfo_consumers("s", "g")
        ]
        await eventually(lambda: events == worker.events)
        await eventually(lambda: nothing_pending(client))
        await worker.stop()


async def test_duplicates_dropped(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """An event appended twice is delivered once; every entry is acknowledged."""
    a, b = run_events("a", 2), run_events("b", 1)
    entries = [a[0], a[1], a[1], b[0], a[2], a[0], b[1], a[3], b[2], a[2], b[1]]
    async with asyncio.timeout(10):
        for event in entries:
            await client.xadd("s", {codec.FIELD: codec.encode(event)})
        worker = Worker(source(redis_server.url, "one"))
        await eventually(lambda: worker.runs() == {"a": [0, 1, 2, 3], "b": [0, 1, 2]})
        # Late duplicates of finished runs are acknowledged at once.
        await eventually(lambda: nothing_pending(client))
        await worker.stop()
        assert [a[0], a[1], b[0], a[2], b[1], a[3], b[2]] == worker.events


async def test_late_duplicate_of_a_run_another_worker_finished(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A duplicate reaching a worker that did not finish its run is dropped.

    The finishing worker records the run in the shard's finished set; the
    next owner looks unknown runs up there instead of starting a run that
    would never end.
    """
    a = run_events("a", 2)
    async with asyncio.timeout(10):
        await produce(redis_server.url, a)
        first = Worker(source(redis_server.url, "first"))
        await eventually(lambda: first.runs() == {"a": [0, 1, 2, 3]})
        await first.stop()
        assert await client.zscore(codec.finished_key("s", "g"), "a") is not None
        # A producer's retry whose first try went through after all.
        for event in a[2:]:
            last = await client.xadd("s", {codec.FIELD: codec.encode(event)})
        second = Worker(source(redis_server.url, "second"))

        async def all_read() -> bool:
            groups: Any = await client.xinfo_groups("s")
            return bool(groups[0]["last-delivered-id"] == last)

        await eventually(all_read)
        await eventually(lambda: nothing_pending(client))
        await second.stop()
        assert [] == second.events


async def test_terminal_event_held_by_reorder_is_not_acknowledged_early(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A terminal event ahead of others ends its run once they are through.

    ``reorder`` holds the early ``completed``: acknowledging at it would
    acknowledge events no sink has yet.
    """
    a = run_events("a", 2)
    async with asyncio.timeout(10):
        for event in [a[0], a[3], a[1]]:
            await client.xadd("s", {codec.FIELD: codec.encode(event)})
        delivered: list[Event] = []
        src = source(redis_server.url, "one")
        task = asyncio.create_task(
            eventkit.run(
                src, eventkit.pipe.reorder(), sink=sinks.call(delivered.append)
            )
        )
        await eventually(lambda: [0, 1] == [e.sequence for e in delivered])
        await asyncio.sleep(3 * BLOCK_MS / 1000)
        assert 3 == await pending(client)
        await client.xadd("s", {codec.FIELD: codec.encode(a[2])})
        await eventually(lambda: nothing_pending(client))
        assert [0, 1, 2, 3] == [e.sequence for e in delivered]
        src.stop()
        await task


async def test_poison_entries_dead_lettered(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """What does not decode goes to the dead-letter stream; the rest goes on."""
    events = run_events("a", 1)
    stats = source_stats("redis")
    invalid = stats.invalid_frames
    async with asyncio.timeout(10):
        bad = [
            await client.xadd("s", {"event": b"{not json"}),
            await client.xadd("s", {"other": b"x", "more": b"y"}),
        ]
        await produce(redis_server.url, events)
        with capture_logs() as logs:
            worker = Worker(source(redis_server.url, "one"))
            await eventually(lambda: len(worker.events) == len(events))
            await worker.stop()
        assert events == worker.events
        assert 0 == await pending(client)
        assert invalid + 2 == stats.invalid_frames
        dead: Any = await client.xrange("s:dead")
        assert 2 == len(dead)
        first, second = (fields for _, fields in dead)
        assert b"s" == first[b"stream"]
        assert bad[0] == first[b"id"]
        assert b"{not json" == first[b"event"]
        assert b"JSON" in first[b"reason"]
        assert {b"stream", b"id", b"reason", b"other", b"more"} == second.keys()
        assert bad[1] == second[b"id"]
        assert b"no 'event' field" in second[b"reason"]
    warnings = [log for log in logs if log["event"] == "redis_entry_invalid"]
    assert ["warning", "warning"] == [log["log_level"] for log in warnings]
    assert {"stream": "s", "group": "g", "consumer": "one"}.items() <= warnings[
        0
    ].items()


async def test_dead_letter_stream_named(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """``dead_letter`` names the dead-letter stream."""
    async with asyncio.timeout(10):
        await client.xadd("s", {"event": b"[]"})
        await produce(redis_server.url, run_events("a", 0))
        with capture_logs():
            worker = Worker(source(redis_server.url, "one", dead_letter="graveyard"))
            await eventually(lambda: len(worker.events) == 2)
            await worker.stop()
        assert 1 == await client.xlen("graveyard")
        assert 0 == await client.exists("s:dead")


async def test_redis_restart_mid_stream(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """The server restarts while events flow: nothing is lost or repeated."""
    runs = {f"run-{n}": run_events(f"run-{n}", 8) for n in range(30)}
    events = interleaved(runs)
    stats = source_stats("redis")
    connections = stats.connections
    restarted = asyncio.Event()

    async def paced() -> AsyncIterator[Event]:
        for number, event in enumerate(events):
            yield event
            if number == len(events) // 2:
                await restarted.wait()
            await asyncio.sleep(0.001)

    async with asyncio.timeout(20):
        with capture_logs() as logs:
            worker = Worker(source(redis_server.url, "one"))
            producer = asyncio.create_task(
                eventkit.run(paced(), sink=sinks.redis_stream(redis_server.url, "s"))
            )
            await eventually(lambda: len(worker.events) > 20)
            redis_server.stop()
            # Longer than claim_idle_ms: the lease expires meanwhile, and no
            # one else took the shard, so the worker keeps it.
            await asyncio.sleep(CLAIM_IDLE_MS / 1000 + 0.2)
            redis_server.start()
            restarted.set()
            await producer
            await eventually(lambda: len(worker.events) >= len(events))
            await worker.stop()
        # Each run once, whole and in order: the worker kept its shard (no
        # one else took it), and the runs it had in progress.
        assert {run: list(range(10)) for run in runs} == worker.runs()
        assert 0 == await pending(client)
    assert connections + 2 <= stats.connections
    kinds = [log["event"] for log in logs if log["event"].startswith("redis_")]
    assert "redis_unavailable" in kinds
    assert "redis_reconnected" in kinds
    assert "redis_shard_lost" not in kinds


async def test_group_lost_is_created_again(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A group that vanished (a server that lost its data) is made anew."""
    first, second = run_events("a", 1), run_events("b", 1)
    async with asyncio.timeout(10):
        await produce(redis_server.url, first)
        with capture_logs() as logs:
            worker = Worker(source(redis_server.url, "one"))
            await eventually(lambda: len(worker.events) == len(first))
            await client.xgroup_destroy("s", "g")
            await produce(redis_server.url, second)
            await eventually(lambda: worker.runs().get("b") == [0, 1, 2])
            await worker.stop()
        assert "redis_group_recreated" in [log["event"] for log in logs]
        assert 0 == await pending(client)


async def test_one_iteration_at_a_time(redis_server: RedisServer) -> None:
    """A second concurrent iteration raises; a later one works."""
    src = source(redis_server.url, "one")
    async with asyncio.timeout(10):
        worker = Worker(src)
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError, match="iterated already"):
            await eventkit.run(src)
        await worker.stop()
        await produce(redis_server.url, run_events("a", 0))
        again = Worker(src)
        await eventually(lambda: len(again.events) == 2)
        await again.stop()


async def test_stop_before_iterating(redis_server: RedisServer) -> None:
    """stop() before the iteration ends it at once; the next one runs."""
    src = source(redis_server.url, "one")
    src.stop()
    async with asyncio.timeout(10):
        await produce(redis_server.url, run_events("a", 0))
        started = time.monotonic()
        await eventkit.run(src)
        assert time.monotonic() - started < 0.5
        worker = Worker(src)
        await eventually(lambda: len(worker.events) == 2)
        await worker.stop()


async def test_stop_while_the_server_is_down(redis_server: RedisServer) -> None:
    """stop() during an outage ends the iteration within claim_idle_ms."""
    src = source(redis_server.url, "one")
    async with asyncio.timeout(10):
        worker = Worker(src)
        await asyncio.sleep(0.1)
        with capture_logs() as logs:
            redis_server.stop()
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await worker.stop()
        assert time.monotonic() - started < CLAIM_IDLE_MS / 1000 + 0.5
    assert "redis_unavailable" in [log["event"] for log in logs]


def test_repr_and_attributes() -> None:
    """The source tells what it reads."""
    src = sources.redis_stream(
        "redis://localhost", "jobs", group="g", consumer="c", shards=2
    )
    assert ("jobs:0", "jobs:1") == src.keys
    assert "jobs:dead" == src.dead_letter
    assert "<redis stream source 'jobs:0' (2 keys), group 'g', consumer 'c'>" == repr(
        src
    )
    default = sources.redis_stream("redis://localhost", group="g")
    assert default.consumer.endswith(f"-{os.getpid()}")
    assert ("eventkit:events",) == default.keys


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "localhost:6379"}, "url must be"),
        ({"group": ""}, "group must not be empty"),
        ({"consumer": ""}, "consumer must not be empty"),
        ({"stream": ""}, "stream must not be empty"),
        ({"dead_letter": ""}, "dead_letter must not be empty"),
        ({"shards": 0}, "shards must be a positive integer"),
        ({"block_ms": 0}, "block_ms must be a positive integer"),
        ({"block_ms": 1.5}, "block_ms must be a positive integer"),
        ({"claim_idle_ms": -1}, "claim_idle_ms must be a positive integer"),
        ({"count": True}, "count must be a positive integer"),
        ({"max_deliveries": 0}, "max_deliveries must be a positive integer"),
        ({"idle_timeout": 0}, "idle_timeout must be a positive number"),
        ({"idle_timeout": float("inf")}, "idle_timeout must be a positive number"),
        ({"idle_timeout": "5"}, "idle_timeout must be a positive number"),
    ],
)
def test_arguments_checked(options: dict[str, Any], message: str) -> None:
    """Nonsense arguments raise ValueError at once."""
    options.setdefault("url", "redis://localhost")
    options.setdefault("group", "g")
    with pytest.raises(ValueError, match=message):
        sources.redis_stream(**options)


async def test_reads_end_before_the_lease_may(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A read blocks no longer than the lease surely holds, whatever block_ms.

    A read served after the lease expired could give this worker entries
    after the next owner claimed the old ones: nobody would claim them.
    """
    blocks: list[int] = []

    async def watch() -> None:
        async with client.monitor() as monitor:
            async for command in monitor.listen():
                words = command["command"].split()
                if words[0] == "XREADGROUP":
                    blocks.append(int(words[words.index("BLOCK") + 1]))

    async with asyncio.timeout(10):
        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.05)
        worker = Worker(source(redis_server.url, "one", block_ms=60_000))
        await asyncio.sleep(2 * CLAIM_IDLE_MS / 1000)
        await worker.stop()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert len(blocks) >= 2
    assert max(blocks) <= CLAIM_IDLE_MS


async def test_workers_keep_their_shards_across_a_restart(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """After an outage longer than claim_idle_ms, each worker keeps its shards.

    Every heartbeat and lease looks stale then; the first worker back must
    not take the others' shards (and redo their runs in progress).
    """
    keys = codec.shard_keys("s", 2)
    runs = {f"run-{n}": run_events(f"run-{n}", 4) for n in range(20)}
    events = interleaved(runs)
    restarted = asyncio.Event()

    async def paced() -> AsyncIterator[Event]:
        for number, event in enumerate(events):
            if number == len(events) // 2:
                await restarted.wait()
            yield event
            await asyncio.sleep(0.001)

    async with asyncio.timeout(20):
        with capture_logs() as logs:
            one = Worker(source(redis_server.url, "one", shards=2))
            # Half a lease tick apart: whichever ticks first after the
            # restart finds the other's heartbeat stale.
            await asyncio.sleep(CLAIM_IDLE_MS / 6000)
            two = Worker(source(redis_server.url, "two", shards=2))
            await eventually(lambda: all_owned_by(client, keys, {"one", "two"}, 1))
            split = await owners(client, keys)
            producer = asyncio.create_task(
                eventkit.run(
                    paced(), sink=sinks.redis_stream(redis_server.url, "s", shards=2)
                )
            )
            await eventually(lambda: len(one.events) + len(two.events) > 20)
            # In a thread: the workers' lease ticks go on meanwhile, each on
            # its own schedule, as in separate processes.
            await asyncio.to_thread(redis_server.stop)
            await asyncio.sleep(CLAIM_IDLE_MS / 1000 + 0.2)
            await asyncio.to_thread(redis_server.start)
            await client.connection_pool.disconnect()
            restarted.set()
            await producer
            await eventually(lambda: len(one.events) + len(two.events) >= len(events))
            # Past the quiet time, when taking free shards is allowed again.
            await asyncio.sleep(CLAIM_IDLE_MS / 1000)
            assert split == await owners(client, keys)
            await one.stop()
            await two.stop()
    assert "redis_shard_lost" not in [log["event"] for log in logs]
    by_one, by_two = one.runs(), two.runs()
    assert set() == by_one.keys() & by_two.keys()
    assert {run: list(range(6)) for run in runs} == {**by_one, **by_two}


#: A worker in a process of its own, to be stalled with SIGSTOP.
STALLED_WORKER = """
import asyncio, signal, sys
import eventkit
from eventkit import sinks, sources

async def main():
    source = sources.redis_stream(
        sys.argv[1], "s", group="g", consumer="stalled",
        block_ms=int(sys.argv[2]), claim_idle_ms=int(sys.argv[3]),
    )
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, source.stop)
    await eventkit.run(source, sink=sinks.collect())

asyncio.run(main())
"""


async def test_stalled_worker_loses_its_shard(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A worker frozen past claim_idle_ms: another takes over; it yields on waking."""
    events = run_events("a", 4)
    async with asyncio.timeout(20):
        await produce(redis_server.url, events[:3])
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", STALLED_WORKER, redis_server.url,
            str(BLOCK_MS), str(CLAIM_IDLE_MS),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await eventually(lambda: all_owned_by(client, ["s"], {"stalled"}))
            await eventually(lambda: pending_of(client, "stalled"))
            process.send_signal(signal.SIGSTOP)
            heir = Worker(source(redis_server.url, "heir"))
            await eventually(lambda: len(heir.events) == 3)
            assert ["heir"] == await owners(client, ["s"])
            process.send_signal(signal.SIGCONT)
            # On waking, its renewal fails: it lets the shard go.
            assert process.stdout is not None
            while b"redis_shard_lost" not in await process.stdout.readline():
                pass
            await produce(redis_server.url, events[3:])
            await eventually(lambda: len(heir.events) == len(events))
            process.send_signal(signal.SIGTERM)
            await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await heir.stop()
    assert 0 == process.returncode
    assert events == heir.events
    assert 0 == await pending(client)


async def pending_of(client: redis.asyncio.Redis, consumer: str) -> int:
    """Entries of ``s`` pending with ``consumer`` in group ``g``.

    None before the group exists: a worker makes it just after taking the
    lease, so a poll may come in between.
    """
    try:
        info: Any = await client.xpending("s", "g")
    except redis.exceptions.ResponseError as exc:
        if str(exc).startswith("NOGROUP"):
            return 0
        raise
    for entry in info["consumers"]:
        if entry["name"] == consumer.encode():
            count: int = entry["pending"]
            return count
    return 0


async def test_wrong_password_raises_at_once(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A refused login is no outage: it is raised, not retried without end."""
    await client.config_set("requirepass", "secret")
    wrong = redis_server.url.replace("redis://", "redis://:wrong@")
    async with asyncio.timeout(5):
        with pytest.raises(redis.exceptions.AuthenticationError):
            await eventkit.run(source(wrong, "one"), sink=sinks.collect())
        with pytest.raises(eventkit.SinkError) as caught:
            await produce(wrong, run_events("a", 1))
        assert isinstance(caught.value.__cause__, redis.exceptions.AuthenticationError)


async def test_negative_sequence_dead_lettered(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A run whose first entry has a negative sequence: that entry set aside.

    It was delivered, and its run, numbered from -1, never whole: nothing of
    the run was ever acknowledged.
    """
    events = run_events("a", 2)
    bad = Event(type="stdout", data="before", sequence=-1, run="a", timestamp=1.0)
    async with asyncio.timeout(10):
        bad_id = await client.xadd("s", {codec.FIELD: codec.encode(bad)})
        await produce(redis_server.url, events)
        with capture_logs():
            worker = Worker(source(redis_server.url, "one"))
            await eventually(lambda: len(worker.events) == len(events))
            await eventually(lambda: nothing_pending(client))
            await worker.stop()
        assert events == worker.events
        dead: Any = await client.xrange("s:dead")
        assert [bad_id] == [fields[b"id"] for _, fields in dead]
        assert b"negative sequence -1" == dead[0][1][b"reason"]


async def test_idle_runs_expire(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """Runs without ``completed`` are closed out after idle_timeout, acknowledged.

    What the chain held of them comes out first (``buffer_bytes`` keeps
    output until the run's end here), then an error and a failed completed;
    a later entry of such a run goes to the dead-letter stream.
    """
    runs = {run: run_events(run, 2, complete=False) for run in ("a", "b")}
    done = run_events("c", 1)
    async with asyncio.timeout(10):
        await produce(redis_server.url, [*runs["a"], *runs["b"], *done])
        delivered: list[Event] = []
        src = source(redis_server.url, "one", idle_timeout=0.3)
        with capture_logs() as logs:
            task = asyncio.create_task(
                eventkit.run(
                    src,
                    eventkit.pipe.buffer_bytes(4096),
                    sink=sinks.call(delivered.append),
                )
            )
            await eventually(lambda: len(delivered) == 11)
            await eventually(lambda: nothing_pending(client))
            assert 0 == src.open_runs
            late = Event(type="stdout", data="late", sequence=3, run="a")
            late_id = await client.xadd("s", {codec.FIELD: codec.encode(late)})
            await eventually(lambda: client.exists("s:dead"))
            await eventually(lambda: nothing_pending(client))
            src.stop()
            await task
    for run in ("a", "b"):
        mine = [event for event in delivered if event.run == run]
        assert ["started", "stdout", "error", "completed"] == [e.type for e in mine]
        assert "0\n1\n" == mine[1].data
        error, completed = mine[2:]
        assert (3, "run_expired", 0.3) == (
            error.sequence,
            error.attrs["code"],
            error.attrs["idle_timeout"],
        )
        assert (4, False) == (completed.sequence, completed.attrs["success"])
    assert ["started", "stdout", "completed"] == [
        event.type for event in delivered if event.run == "c"
    ]
    dead: Any = await client.xrange("s:dead")
    assert [(late_id, b"run_expired")] == [
        (fields[b"id"], fields[b"reason"]) for _, fields in dead
    ]
    assert late == codec.decode({codec.FIELD: dead[0][1][codec.FIELD]})
    expired = [log for log in logs if log["event"] == "redis_runs_expired"]
    assert [2] == [log["runs"] for log in expired]


async def test_shard_count_published_and_checked(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """The first producer publishes its shards; other counts are refused."""
    async with asyncio.timeout(10):
        await produce(redis_server.url, run_events("a", 1), shards=3)
        assert b"3" == await client.hget("s:meta", "shards")
        # A producer with another count writes nothing.
        with pytest.raises(eventkit.SinkError) as caught:
            await produce(redis_server.url, run_events("b", 1), shards=2)
        error = caught.value.__cause__
        assert isinstance(error, ShardCountError)
        assert (3, 2, "producer") == (error.published, error.configured, error.role)
        # Only the first producer's run "a", three events.
        assert [3] == [
            n for n in [await client.xlen(key) for key in codec.shard_keys("s", 3)] if n
        ]
        # A worker with another count stops at once, saying both.
        with pytest.raises(ShardCountError, match=r"3 shards.*shards=1"):
            await eventkit.run(source(redis_server.url, "one"), sink=sinks.collect())
        worker = Worker(source(redis_server.url, "one", shards=3))
        await eventually(lambda: len(worker.events) == 3)
        await worker.stop()


async def test_worker_before_any_producer(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """Nothing published yet: the worker reads; a producer's other count stops it."""
    async with asyncio.timeout(10):
        worker = Worker(source(redis_server.url, "one", shards=2))
        await asyncio.sleep(CLAIM_IDLE_MS / 1000)
        assert not worker.task.done()
        # The worker publishes nothing: the first producer decides.
        assert 0 == await client.exists("s:meta")
        await produce(redis_server.url, run_events("a", 1), shards=3)
        with pytest.raises(ShardCountError, match="published with 3 shards"):
            await worker.task


async def test_idle_run_with_a_gap_closed_without_events(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A run whose completed came, a sequence before it never: closed, acknowledged.

    Its completed went through already: nothing is made for it; the missing
    sequence, coming late, goes to the dead-letter stream.
    """
    a = run_events("a", 1)
    async with asyncio.timeout(10):
        for event in (a[0], a[2]):
            await client.xadd("s", {codec.FIELD: codec.encode(event)})
        with capture_logs():
            worker = Worker(source(redis_server.url, "one", idle_timeout=0.3))
            await eventually(lambda: len(worker.events) == 2)
            await eventually(lambda: nothing_pending(client))
            await client.xadd("s", {codec.FIELD: codec.encode(a[1])})
            await eventually(lambda: client.exists("s:dead"))
            await eventually(lambda: nothing_pending(client))
            await worker.stop()
    assert [a[0], a[2]] == worker.events
    dead: Any = await client.xrange("s:dead")
    assert [b"run_expired"] == [fields[b"reason"] for _, fields in dead]


async def test_stop_during_an_iteration_cut_short_stops_the_next(
    redis_server: RedisServer,
) -> None:
    """stop() while the pipeline fails: the iteration a worker starts next ends at once.

    A worker that tries again after a failure must not miss the SIGTERM that
    came meanwhile.
    """
    src = source(redis_server.url, "one")

    def stop_then_fail(event: Event) -> None:
        src.stop()
        raise OSError("disk full")

    async with asyncio.timeout(10):
        await produce(redis_server.url, run_events("a", 0))
        with pytest.raises(eventkit.SinkError):
            await eventkit.run(src, sink=sinks.call(stop_then_fail))
        collected = sinks.collect()
        await eventkit.run(src, sink=collected)
        assert [] == collected.events
        # Stopped once: the next one reads again.
        worker = Worker(src)
        await eventually(lambda: len(worker.events) == 2)
        await worker.stop()
