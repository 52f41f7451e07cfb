"""Tests for :mod:`eventkit._redis.retry` and :mod:`eventkit._redis.client`, serverless.

The retry policy against a real server (restarts, outages) is tested with the
sink and the source; here its parts: the delays, the outage state, the
retry loop on made-up failures, and the URLs the client takes.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from redis.exceptions import (
    AuthenticationError,
    ConnectionError as RedisConnectionError,
    ResponseError,
)

from eventkit._redis.client import check_url
from eventkit._redis.retry import Outage, Stopped, backoff, retry
from eventkit.stats import SourceStats


class Log:
    """A logger that keeps (level, event) of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def info(self, event: str, **_: Any) -> None:
        self.calls.append(("info", event))

    def warning(self, event: str, **_: Any) -> None:
        self.calls.append(("warning", event))


def test_backoff_doubles_up_to_the_maximum() -> None:
    """Each base delay doubles up to the maximum; jitter spreads it down to half."""
    lowest = list(itertools.islice(backoff(jitter=lambda: 0.0), 8))
    assert [0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0] == lowest
    highest = list(itertools.islice(backoff(jitter=lambda: 1.0), 8))
    assert [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0] == highest


def test_outage_logs_once_and_counts_connections() -> None:
    """A warning per outage however many failures, a note at its end; counts."""
    log, stats = Log(), SourceStats("redis")
    outage = Outage(log, stats)
    outage.succeeded()
    outage.succeeded()
    assert (1, 1) == (stats.connections, stats.open_connections)
    for _ in range(3):
        outage.failed(RedisConnectionError("gone"))
    assert outage.down
    assert (1, 0) == (stats.connections, stats.open_connections)
    outage.succeeded()
    assert not outage.down
    assert (2, 1) == (stats.connections, stats.open_connections)
    assert [("warning", "redis_unavailable"), ("info", "redis_reconnected")] == (
        log.calls
    )
    outage.closed()
    assert 0 == stats.open_connections


async def test_retry_until_success() -> None:
    """Retryable errors are retried; the result comes back once a try succeeds."""
    failures = [RedisConnectionError("gone"), TimeoutError()]

    async def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    log = Log()
    async with asyncio.timeout(5):
        assert "done" == await retry(flaky, Outage(log))
    assert ["redis_unavailable", "redis_reconnected"] == [e for _, e in log.calls]


@pytest.mark.parametrize(
    "error", [AuthenticationError("wrong password"), ResponseError("WRONGTYPE")]
)
async def test_retry_lets_other_errors_through(error: Exception) -> None:
    """A refused login or an error reply is raised at the first try."""
    tries = 0

    async def refused() -> None:
        nonlocal tries
        tries += 1
        raise error

    with pytest.raises(type(error)):
        await retry(refused, Outage(Log()))
    assert 1 == tries


async def test_retry_gives_up_after_its_time() -> None:
    """Past give_up_after seconds, the last error is raised."""

    async def down() -> None:
        raise RedisConnectionError("gone")

    async with asyncio.timeout(5):
        with pytest.raises(RedisConnectionError):
            await retry(down, Outage(Log()), give_up_after=0.1)


async def test_retry_stopped_while_waiting() -> None:
    """Setting ``stop`` during an outage ends the retries with Stopped."""
    stop = asyncio.Event()

    async def down() -> None:
        stop.set()
        raise RedisConnectionError("gone")

    async with asyncio.timeout(5):
        with pytest.raises(Stopped) as caught:
            await retry(down, Outage(Log()), stop=stop)
    assert isinstance(caught.value.__cause__, RedisConnectionError)


@pytest.mark.parametrize(
    "url", ["redis://localhost", "rediss://h:6380/1", "unix:///tmp/redis.sock"]
)
def test_urls_the_client_takes(url: str) -> None:
    """redis://, rediss:// and unix:// URLs pass."""
    check_url(url)


@pytest.mark.parametrize("url", ["localhost:6379", "http://localhost", ""])
def test_urls_the_client_refuses(url: str) -> None:
    """Anything else raises ValueError at once."""
    with pytest.raises(ValueError, match="url must be"):
        check_url(url)
