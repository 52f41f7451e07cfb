"""The Redis Streams producer: a sink appending events to Redis streams, in batches.

Workers read what it appends as a consumer group, with
:func:`eventkit.sources.redis_stream`; the entries and shard keys are those
of :mod:`eventkit.protocol.redis_entries`, the client and its retry policy
those of :mod:`eventkit._redis`. ``docs/redis.md`` tells the whole model.

Failure behaviour: see :class:`RedisStreamSink`: a batch is retried for up
to ``retry_timeout`` seconds while the server is away, then the error stops
the run; a stream published with another shard count stops it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import TYPE_CHECKING, Final

import structlog
from redis.exceptions import ResponseError

from eventkit._redis.client import check_url, connect
from eventkit._redis.retry import Outage, retry
from eventkit.events import TERMINAL_TYPES
from eventkit.protocol.redis_entries import (
    SHARDS_FIELD,
    check_shards,
    encode,
    meta_key,
    pack_xadd,
    shard_keys,
    shard_of,
    xadd_prefix,
)
from eventkit.sinks._base import Sink

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

    from eventkit.events import Event

__all__ = ["RedisStreamSink", "redis_stream"]

_log = structlog.get_logger("eventkit.sinks.redis")
#: Seconds a batch may take, sent and answered, before the connection
#: counts as dead.
_WRITE_TIMEOUT: Final = 10.0


class RedisStreamSink(Sink):
    """Append each event as an entry of a Redis stream (``XADD``).

    An entry has one field, ``event``: the event's eventkit JSON (see
    :mod:`eventkit.protocol.redis_entries`). With ``shards`` above 1, a run's events
    go to the key ``f"{stream}:{shard_of(run, shards)}"``, always the same
    one for a run; workers read them with
    :func:`eventkit.sources.redis_stream` and the same ``shards``. The
    first producer of a stream publishes its ``shards`` in the hash
    ``f"{stream}:meta"`` (``HSETNX``); every producer and worker checks it.

    Events are buffered and written in batches, one pipelined round trip of
    ``XADD`` commands per batch, in the order sent: when ``batch_size`` events
    are buffered, when a run's terminal event is sent (a finished run is in
    Redis whole, as :class:`~eventkit.sinks.JsonlSink` has it on disk),
    ``linger`` seconds after the first event of a batch was buffered (live
    output is not held back), and at :meth:`close`. One batch is written at
    a time. :meth:`send` waits for a write only when it makes one (a full
    batch, a terminal event); a lingering batch is written in the
    background meanwhile.

    Failure behaviour: a batch that fails because the server is unreachable,
    timing out or loading its data (a restart) is written again, whole,
    after a backoff delay (50 ms doubling up to 2 s, with jitter), for up to
    ``retry_timeout`` seconds; a warning is logged once per outage and a note
    when it ends. A retry can append entries twice, when the server had
    written them but the reply was lost: the source drops such duplicates
    (same run and sequence). After ``retry_timeout`` seconds the last error
    (:exc:`redis.exceptions.ConnectionError`, or :exc:`TimeoutError` for a
    batch unanswered for 10 s) is raised, by :meth:`send` or :meth:`close`,
    which stops the run with :exc:`eventkit.SinkError`; an error reply (a
    key of another type, out of memory) is raised at once, as
    :exc:`redis.exceptions.ResponseError`, the rest of its batch written.
    Either way the failed batch and what was buffered after it are not
    written (they are not in the error's ``undelivered``), and every later
    :meth:`send` raises again. A stream published with another shard count
    (checked before the first batch written on each connection) raises
    :exc:`~eventkit.exceptions.ShardCountError` likewise, without writing
    anything. A batch whose write is cancelled is kept, and
    written at :meth:`close` (perhaps twice).

    Args:
        url: The server: ``redis://[[user]:password@]host[:port][/db]``,
            ``rediss://`` for TLS, ``unix://path``.
        stream: The logical stream: the key, or the prefix of the shard keys.
        maxlen: Trim each key to about this many entries (``MAXLEN ~``);
            None keeps everything. Entries trimmed before a worker read them
            are lost.
        shards: How many keys the stream is spread over.
        batch_size: Most events per round trip.
        linger: Seconds an event may wait for more to share its round trip.
        retry_timeout: Seconds a batch is retried before the sink gives up.

    Raises:
        ValueError: For a URL scheme other than redis, rediss or unix, a
            ``shards``, ``batch_size``, ``maxlen`` or ``retry_timeout`` that
            is not positive, or a negative ``linger``.
    """

    def __init__(
        self,
        url: str,
        stream: str = "eventkit:events",
        *,
        maxlen: int | None = None,
        shards: int = 1,
        batch_size: int = 500,
        linger: float = 0.005,
        retry_timeout: float = 30.0,
    ) -> None:
        check_url(url)
        if maxlen is not None and not maxlen > 0:
            raise ValueError(f"maxlen must be positive or None, not {maxlen!r}")
        if not batch_size > 0:
            raise ValueError(f"batch_size must be positive, not {batch_size!r}")
        if not (linger >= 0 and math.isfinite(linger)):
            raise ValueError(f"linger must be >= 0 seconds, not {linger!r}")
        if not retry_timeout > 0:
            raise ValueError(f"retry_timeout must be positive, not {retry_timeout!r}")
        self.url = url
        self.stream = stream
        self.keys = shard_keys(stream, shards)
        self.maxlen = maxlen
        self.batch_size = batch_size
        self.linger = linger
        self.retry_timeout = retry_timeout
        # Each key's XADD command up to the field's value, packed.
        self._prefixes = [xadd_prefix(key, maxlen) for key in self.keys]
        self._meta = meta_key(stream)
        # Whether the connection in use checked the published shard count.
        self._shards_checked = False
        self._client: Redis | None = None
        self._outage = Outage(_log.bind(stream=stream))
        # The commands of the next batch, packed.
        self._buffer: list[bytes] = []
        # Held while a batch is taken from the buffer and written: batches go
        # out one at a time, in order.
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        # Flushes started by the timer, not finished yet: owned by the sink,
        # whose close() waits for them.
        self._lingering: set[asyncio.Task[None]] = set()
        # The error a batch failed with; whether send() or close() raised it.
        self._failure: Exception | None = None
        self._reported = False

    async def open(self) -> None:
        """Make the client; it connects with the first batch."""
        # No timeout per reply (a timer per event): one per batch instead.
        self._client = connect(self.url, read_timeout=None, single_connection=True)

    async def send(self, event: Event) -> None:
        """Buffer ``event``; write the batch if full or if the event ends a run.

        Raises:
            redis.exceptions.RedisError: If a batch, this one or an earlier
                one, could not be written.
            TimeoutError: Likewise, when the last try went unanswered.
        """
        if self._failure is not None:
            self._raise_failure()
        prefixes = self._prefixes
        prefix = (
            prefixes[0]
            if len(prefixes) == 1
            else prefixes[shard_of(event.run, len(prefixes))]
        )
        buffer = self._buffer
        buffer.append(pack_xadd(prefix, encode(event)))
        if len(buffer) >= self.batch_size or event.type in TERMINAL_TYPES:
            await self._flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.linger, self._linger_over)

    async def send_batch(self, events: list[Event]) -> None:
        """Buffer the batch; write when full, and at once if it ends a run.

        Raises:
            redis.exceptions.RedisError: As :meth:`send`.
            TimeoutError: As :meth:`send`.
        """
        if self._failure is not None:
            self._raise_failure()
        prefixes = self._prefixes
        shards = len(prefixes)
        buffer = self._buffer
        ends = False
        for event in events:
            prefix = (
                prefixes[0] if shards == 1 else prefixes[shard_of(event.run, shards)]
            )
            buffer.append(pack_xadd(prefix, encode(event)))
            if event.type in TERMINAL_TYPES:
                ends = True
            if len(buffer) >= self.batch_size:
                await self._flush()
                buffer = self._buffer
        if ends and buffer:
            await self._flush()
        elif buffer and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.linger, self._linger_over)

    def _linger_over(self) -> None:
        """Write the lingering batch in the background."""
        self._timer = None
        task = asyncio.ensure_future(self._flush_in_background())
        self._lingering.add(task)
        task.add_done_callback(self._lingering.discard)

    async def _flush_in_background(self) -> None:
        # A failure is kept, for the next send() or close() to raise.
        with contextlib.suppress(Exception):
            await self._flush(background=True)

    def _raise_failure(self) -> None:
        """Raise the error a batch failed with."""
        failure = self._failure
        if failure is not None:
            self._reported = True
            raise failure

    async def _flush(self, *, background: bool = False) -> None:
        """Write what is buffered, after any batch being written."""
        async with self._lock:
            if self._failure is not None:
                if background:
                    return
                self._raise_failure()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            batch, self._buffer = self._buffer, []
            if not batch:
                return
            try:
                await retry(
                    lambda: self._write(batch),
                    self._outage,
                    give_up_after=self.retry_timeout,
                )
            except Exception as exc:
                self._failure = exc
                self._reported = not background
                raise
            except BaseException:
                # Cancelled mid-write, the batch may be in Redis or not: keep
                # it, for close() to write (perhaps twice; readers drop
                # duplicates).
                self._buffer[:0] = batch
                raise

    async def _write(self, batch: list[bytes]) -> None:
        """Send one batch of packed commands at once; read every reply.

        Raises:
            TimeoutError: If it took over ``_WRITE_TIMEOUT`` seconds.
            redis.exceptions.ResponseError: The first error a command got.
        """
        client = self._client
        if client is None:
            raise RuntimeError("the redis sink is not open")
        await client.initialize()
        connection = client.connection
        if connection is None:  # pragma: no cover - initialize() makes it
            raise RuntimeError("the redis client has no connection")
        error: ResponseError | None = None
        try:
            async with asyncio.timeout(_WRITE_TIMEOUT):
                if not self._shards_checked:
                    await self._publish_shards(connection)
                await connection.send_packed_command(b"".join(batch), False)
                read = connection.read_response
                for _ in batch:
                    try:
                        await read()
                    except ResponseError as exc:
                        # The reply was read: the connection stays in step.
                        error = error or exc
        except BaseException:
            # Replies may be left unread: the connection is out of step. The
            # next batch connects again, and checks the shard count again (a
            # server restarted without its data lost it).
            self._shards_checked = False
            await connection.disconnect()
            raise
        if error is not None:
            raise error

    async def _publish_shards(self, connection: AbstractConnection) -> None:
        """Publish our shard count unless one is; raise if another one is.

        Raises:
            ShardCountError: If the stream is published with another count.
        """
        shards = len(self.keys)
        await connection.send_command("HSETNX", self._meta, SHARDS_FIELD, shards)
        await connection.send_command("HGET", self._meta, SHARDS_FIELD)
        await connection.read_response()
        published = await connection.read_response()
        check_shards(self.stream, published, shards, "producer")
        self._shards_checked = True

    async def close(self) -> None:
        """Write what is buffered, then close the client.

        Raises:
            redis.exceptions.RedisError: If the last batch could not be
                written, or an earlier one failed unseen.
        """
        client = self._client
        if client is None:
            return
        try:
            # Until none is left: the timer may start one meanwhile.
            while self._lingering:
                await asyncio.gather(*self._lingering)
            if self._failure is None:
                await self._flush()
            elif not self._reported:
                self._raise_failure()
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._client = None
            self._outage.closed()
            await client.aclose()

    def __repr__(self) -> str:
        return f"<redis stream sink {self.stream!r} ({len(self.keys)} keys)>"


def redis_stream(
    url: str,
    stream: str = "eventkit:events",
    *,
    maxlen: int | None = None,
    shards: int = 1,
    batch_size: int = 500,
    linger: float = 0.005,
    retry_timeout: float = 30.0,
) -> RedisStreamSink:
    """Return a sink appending events to the Redis stream ``stream``.

    Example::

        await eventkit.run(
            eventkit.sources.local("print(1)"),
            sink=eventkit.sinks.redis_stream("redis://localhost", shards=4),
        )

    See :class:`RedisStreamSink` for the arguments and what happens on
    failures, and ``docs/redis.md`` for the whole model.
    """
    return RedisStreamSink(
        url,
        stream,
        maxlen=maxlen,
        shards=shards,
        batch_size=batch_size,
        linger=linger,
        retry_timeout=retry_timeout,
    )
