"""What a Redis Streams worker is made with: its settings, validated once.

:class:`~eventkit.sources.redis.source.RedisStreamSource` takes the
parameters (and documents them); it resolves the defaults that depend on
others (the consumer name, the dead-letter stream) and makes a
:class:`WorkerSettings`, which checks them. Every session of the source
reads the same settings.

Failure behaviour: :class:`WorkerSettings` raises :exc:`ValueError` at once
for a URL redis-py does not take, an empty name, a count or time that is
not a positive integer, or an ``idle_timeout`` that is not a positive
number of seconds.
"""

from __future__ import annotations

import dataclasses
import math

from eventkit._redis.client import check_url
from eventkit.protocol.redis_entries import shard_keys

__all__ = ["WorkerSettings"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """The validated settings of a Redis Streams worker.

    The meaning of each is in
    :class:`~eventkit.sources.redis.source.RedisStreamSource`.

    Attributes:
        url: The server.
        stream: The logical stream.
        group: The consumer group.
        consumer: This worker's name in the group.
        shards: How many keys the stream is spread over.
        block_ms: Longest wait of a read for new entries.
        claim_idle_ms: How long a lease lasts unless renewed.
        count: Most entries read per key and round trip.
        dead_letter: Where entries that do not decode go.
        max_deliveries: Failed deliveries that make a run poison.
        idle_timeout: Seconds a run may go without an entry before it is
            closed out.
        keys: The keys of the stream, one per shard, in shard order.

    Raises:
        ValueError: For a URL scheme other than redis, rediss or unix; an
            empty ``stream``, ``group``, ``consumer`` or ``dead_letter``; a
            ``shards``, ``block_ms``, ``claim_idle_ms``, ``count`` or
            ``max_deliveries`` that is not a positive integer; an
            ``idle_timeout`` that is not a positive, finite number.
    """

    url: str
    stream: str
    group: str
    consumer: str
    shards: int
    block_ms: int
    claim_idle_ms: int
    count: int
    dead_letter: str
    max_deliveries: int = 3
    idle_timeout: float = 300.0
    keys: tuple[str, ...] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        check_url(self.url)
        for name, text in (
            ("stream", self.stream),
            ("group", self.group),
            ("consumer", self.consumer),
            ("dead_letter", self.dead_letter),
        ):
            if not text:
                raise ValueError(f"{name} must not be empty")
        for name, value in (
            ("shards", self.shards),
            ("block_ms", self.block_ms),
            ("claim_idle_ms", self.claim_idle_ms),
            ("count", self.count),
            ("max_deliveries", self.max_deliveries),
        ):
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        timeout = self.idle_timeout
        if (
            type(timeout) not in (int, float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError(
                f"idle_timeout must be a positive number of seconds, not {timeout!r}"
            )
        # Frozen: set once, here, from the fields just checked.
        object.__setattr__(self, "keys", tuple(shard_keys(self.stream, self.shards)))
