"""Tests for :mod:`eventkit.sinks.redis_producer` against a real redis-server."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

import eventkit
from eventkit import sinks, sources
from eventkit.protocol import redis_entries as codec
from eventkit.sinks.redis_producer import RedisStreamSink
from tests.redis.streams import eventually, run_events

if TYPE_CHECKING:
    import redis.asyncio

    from eventkit.events import Event

    from .conftest import RedisServer


async def read_all(client: redis.asyncio.Redis, key: str) -> list[Event]:
    """Return the events of every entry of ``key``, in order."""
    entries: Any = await client.xrange(key)
    return [codec.decode(fields) for _, fields in entries]


async def test_batches_are_written_when_full(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """With a long linger, entries arrive batch_size at a time, in order."""
    events = run_events("r", 1198)
    async with asyncio.timeout(10):
        async with RedisStreamSink(
            redis_server.url, "s", batch_size=500, linger=60
        ) as sink:
            lengths = []
            for event in events[:-1]:
                await sink.send(event)
                lengths.append(await client.xlen("s"))
            assert [0] * 499 + [500] * 500 + [1000] * 200 == lengths
            await sink.send(events[-1])
            assert 1200 == await client.xlen("s")
        assert events == await read_all(client, "s")


async def test_terminal_event_flushes(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A run's terminal event writes its batch at once: the run is whole."""
    async with (
        asyncio.timeout(10),
        RedisStreamSink(redis_server.url, "s", linger=60) as sink,
    ):
        for event in run_events("r", 3):
            assert 0 == await client.xlen("s")
            await sink.send(event)
        assert run_events("r", 3) == await read_all(client, "s")


async def test_linger_flushes_in_the_background(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """Events are written ``linger`` seconds after the first was buffered."""
    async with (
        asyncio.timeout(10),
        RedisStreamSink(redis_server.url, "s", linger=0.2) as sink,
    ):
        events = run_events("r", 2, complete=False)
        start = time.monotonic()
        for event in events:
            await sink.send(event)
        assert 0 == await client.xlen("s")
        await eventually(lambda: client.xlen("s"))
        assert time.monotonic() - start >= 0.15
        assert events == await read_all(client, "s")


async def test_linger_while_a_batch_is_being_written(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """An event buffered during a slow write goes out after it, unprompted."""
    events = run_events("r", 1, complete=False)
    async with (
        asyncio.timeout(10),
        RedisStreamSink(redis_server.url, "s", linger=0.01) as sink,
    ):
        # Writes wait 300 ms on the server: the first batch is in flight
        # while the second lingers out.
        await client.client_pause(300, all=False)
        await sink.send(events[0])
        await asyncio.sleep(0.05)
        await sink.send(events[1])
        await eventually(lambda: _length_is(client, 2))
        assert events == await read_all(client, "s")


async def _length_is(client: redis.asyncio.Redis, length: int) -> bool:
    return await client.xlen("s") == length


async def test_close_writes_the_rest(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """What is buffered at close is written."""
    events = run_events("r", 5, complete=False)
    async with asyncio.timeout(10):
        await eventkit.run(
            sources.iterate(events),
            sink=sinks.redis_stream(redis_server.url, "s", linger=60),
        )
        assert events == await read_all(client, "s")


async def test_maxlen_trims_approximately(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """``maxlen`` keeps about that many entries: at least it, far below all."""
    events = run_events("r", 3000)
    async with asyncio.timeout(10):
        await eventkit.run(
            sources.iterate(events),
            sink=sinks.redis_stream(redis_server.url, "s", maxlen=100),
        )
        length = await client.xlen("s")
        assert 100 <= length < 1000
        assert events[-length:] == await read_all(client, "s")


async def test_shards_route_by_run(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """Each run goes whole, in order, to the key of its shard."""
    runs = {f"run-{n}": run_events(f"run-{n}", 4) for n in range(20)}
    mixed = [event for group in zip(*runs.values(), strict=True) for event in group]
    async with asyncio.timeout(10):
        await eventkit.run(
            sources.iterate(mixed),
            sink=sinks.redis_stream(redis_server.url, "s", shards=4),
        )
        assert 0 == await client.exists("s")
        for index in range(4):
            written = await read_all(client, f"s:{index}")
            mine = [r for r in runs if codec.shard_of(r, 4) == index]
            assert mine, "every shard has runs, for the test to mean something"
            assert [e for e in mixed if e.run in mine] == written


async def test_retries_across_a_restart(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A batch failing while the server restarts is written once it is back."""
    first, second = run_events("a", 3), run_events("b", 3)
    async with asyncio.timeout(20):
        sink = RedisStreamSink(redis_server.url, "s", linger=60)
        await sink.open()
        try:
            for event in first:
                await sink.send(event)
            redis_server.stop()
            restart = asyncio.get_running_loop().call_later(0.5, redis_server.start)
            with capture_logs() as logs:
                started = time.monotonic()
                for event in second:
                    await sink.send(event)
            restart.cancel()
            assert time.monotonic() - started >= 0.4
        finally:
            await sink.close()
        assert first + second == await read_all(client, "s")
        assert ["redis_unavailable", "redis_reconnected"] == [
            log["event"] for log in logs
        ]
        assert "warning" == logs[0]["log_level"]


async def test_gives_up_after_retry_timeout(redis_server: RedisServer) -> None:
    """Past retry_timeout the error stops the run, as a SinkError."""
    redis_server.stop()
    sink = RedisStreamSink(redis_server.url, "s", retry_timeout=0.3)
    async with asyncio.timeout(10):
        started = time.monotonic()
        with capture_logs(), pytest.raises(eventkit.SinkError) as caught:
            await eventkit.run(sources.iterate(run_events("r", 1)), sink=sink)
        assert 0.3 <= time.monotonic() - started < 3
        assert isinstance(caught.value.__cause__, RedisConnectionError)
        with pytest.raises(RedisConnectionError):
            await sink.send(run_events("r", 1)[0])


async def test_background_failure_raised_by_next_send(
    redis_server: RedisServer,
) -> None:
    """A lingering batch that cannot be written makes the next send() raise."""
    redis_server.stop()
    sink = RedisStreamSink(redis_server.url, "s", linger=0.01, retry_timeout=0.2)
    async with asyncio.timeout(10):
        await sink.open()
        await sink.send(run_events("r", 1, complete=False)[0])
        with capture_logs():
            await asyncio.sleep(0.5)
            with pytest.raises(RedisConnectionError):
                await sink.send(run_events("r", 1, complete=False)[1])
            # Raised once is enough: the run stopped on it.
            await sink.close()


async def test_background_failure_raised_at_close_when_unseen(
    redis_server: RedisServer,
) -> None:
    """A failure no send() saw is raised by close()."""
    redis_server.stop()
    sink = RedisStreamSink(redis_server.url, "s", linger=0.01, retry_timeout=0.2)
    async with asyncio.timeout(10):
        await sink.open()
        await sink.send(run_events("r", 1, complete=False)[0])
        with capture_logs():
            await asyncio.sleep(0.5)
            with pytest.raises(RedisConnectionError):
                await sink.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "http://localhost"}, "url must be"),
        ({"shards": 0}, "shards must be at least 1"),
        ({"maxlen": 0}, "maxlen must be positive"),
        ({"batch_size": 0}, "batch_size must be positive"),
        ({"linger": -1.0}, "linger must be >= 0"),
        ({"linger": float("nan")}, "linger must be >= 0"),
        ({"retry_timeout": 0}, "retry_timeout must be positive"),
    ],
)
def test_arguments_checked(options: dict[str, Any], message: str) -> None:
    """Nonsense arguments raise ValueError at once."""
    options.setdefault("url", "redis://localhost")
    with pytest.raises(ValueError, match=message):
        sinks.redis_stream(**options)
