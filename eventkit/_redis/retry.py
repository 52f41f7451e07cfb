"""The retry policy of the Redis Streams sink and source.

One policy for the whole of eventkit: redis-py's own retries are off (see
:mod:`eventkit._redis.client`), and the adapters retry whole operations with
:func:`retry`: exponential delays with jitter (:func:`backoff`), a warning
once per outage and a note when it ends (:class:`Outage`).

Failure behaviour: only :data:`RETRYABLE` errors (the server away,
restarting, loading its data, or slow to answer) are retried; :data:`REFUSED`
ones (a wrong password, missing permissions) and any other go through at
once. :func:`retry` raises the last error after ``give_up_after`` seconds, and
:exc:`Stopped` when its ``stop`` event is set during an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ConnectionError as RedisConnectionError,
    TimeoutError as RedisTimeoutError,
)

from eventkit.exceptions import EventkitError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from eventkit.stats import SourceStats

__all__ = [
    "REFUSED",
    "RETRYABLE",
    "Outage",
    "Stopped",
    "backoff",
    "retry",
]

T = TypeVar("T")

#: Errors worth retrying: the server is away, restarting, loading its data, or
#: slow to answer. (redis-py's ConnectionError and TimeoutError wrap the
#: OSErrors of sockets; the builtin TimeoutError is an asyncio.timeout's.)
RETRYABLE: Final = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    TimeoutError,
)
#: Errors that look like connection errors to redis-py but that waiting does
#: not cure: a wrong password or missing permissions. Raised at once.
REFUSED: Final = (AuthenticationError, AuthorizationError)


def backoff(
    initial: float = 0.05,
    maximum: float = 2.0,
    factor: float = 2.0,
    *,
    jitter: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Yield the delays before successive retries, in seconds, without end.

    The base delay starts at ``initial`` and is multiplied by ``factor`` up
    to ``maximum``; each delay is drawn between half the base and the base,
    so that clients that failed together do not come back together.

    Args:
        initial: The first base delay.
        maximum: The largest base delay.
        factor: Growth from one base delay to the next.
        jitter: Returns a number in [0, 1); the spread of each delay.
    """
    delay = initial
    while True:
        yield delay * (1.0 + jitter()) / 2.0
        delay = min(delay * factor, maximum)


class Outage:
    """The connection state of one client, as its commands succeed or fail.

    Logs a warning when the server becomes unreachable (once per outage,
    however many commands fail) and a note when a command succeeds again;
    counts connections in ``stats`` when given:
    ``connections`` on the first success and on each recovery,
    ``open_connections`` while commands succeed.

    Args:
        log: A structlog-style logger, with its context bound.
        stats: The counters of the source, if any.
    """

    __slots__ = ("_log", "_since", "_stats", "down", "recovered_at", "up")

    def __init__(self, log: Any, stats: SourceStats | None = None) -> None:
        self._log = log
        self._stats = stats
        self._since = 0.0
        #: Whether commands fail now (since the last success, if any).
        self.down = False
        #: Whether the last command succeeded (counted as an open connection).
        self.up = False
        #: When (monotonic) the last outage ended; -inf before any.
        self.recovered_at = -math.inf

    def succeeded(self) -> None:
        """A command succeeded."""
        if self.up:
            return
        self.up = True
        if self._stats is not None:
            self._stats.connections += 1
            self._stats.open_connections += 1
        if self.down:
            self.down = False
            self.recovered_at = time.monotonic()
            self._log.info(
                "redis_reconnected", outage_seconds=self.recovered_at - self._since
            )

    def failed(self, error: BaseException) -> None:
        """A command failed with a retryable error."""
        if self.up:
            self.up = False
            if self._stats is not None:
                self._stats.open_connections -= 1
        if not self.down:
            self.down = True
            self._since = time.monotonic()
            self._log.warning("redis_unavailable", error=repr(error))

    def closed(self) -> None:
        """The client is closed: no connection is open any more."""
        if self.up:
            self.up = False
            if self._stats is not None:
                self._stats.open_connections -= 1


class Stopped(EventkitError):
    """:func:`retry` gave up waiting because its ``stop`` event was set."""


async def retry(
    call: Callable[[], Awaitable[T]],
    outage: Outage,
    *,
    give_up_after: float | None = None,
    stop: asyncio.Event | None = None,
) -> T:
    """Await ``call()`` until it succeeds, waiting a backoff delay after each failure.

    Only :data:`RETRYABLE` errors are retried, after :func:`backoff` delays;
    :data:`REFUSED` ones and any other go through.

    Args:
        call: Makes the operation to try, each time anew.
        outage: Tracks the client's state.
        give_up_after: Seconds after which the last error is raised; None:
            never.
        stop: When set (before or while waiting to retry), stop trying.

    Raises:
        Stopped: If ``stop`` was set after a failure; the error is its cause.
    """
    deadline = None if give_up_after is None else time.monotonic() + give_up_after
    delays = backoff()
    while True:
        try:
            result = await call()
        except REFUSED:
            raise
        except RETRYABLE as error:
            outage.failed(error)
            delay = next(delays)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                delay = min(delay, remaining)
            if stop is None:
                await asyncio.sleep(delay)
                continue
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
            if stop.is_set():
                raise Stopped("stopped while the server was unavailable") from error
        else:
            outage.succeeded()
            return result
