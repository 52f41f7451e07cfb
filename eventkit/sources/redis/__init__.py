"""Redis Streams as a source: events read as one worker of a consumer group.

Producers append events with :func:`eventkit.sinks.redis_stream`; any number
of workers, on any number of machines, read them with :data:`redis_stream`
(:class:`RedisStreamSource`) under one group name. ``docs/redis.md`` tells
the whole model; in short:

- **Shards and leases.** The stream is ``shards`` keys and a run always goes
  to the same key. Each key is read by one worker at a time, its owner by a
  lease that the worker renews in the background every third of
  ``claim_idle_ms``; live workers share the keys evenly. So each run is read
  by one worker at a time, in stream order.
- **At least once, per run.** A run's entries are acknowledged (``XACK``)
  once its terminal event has gone through the pipeline, sink included.
  Entries of unfinished runs stay pending: when their worker dies, the next
  owner of the key claims them and processes those runs again from their
  first event. Duplicates of an event (same run and sequence) are dropped.
- **Poison entries** go to a dead-letter stream with the reason, and the
  worker goes on.
- **Server restarts.** Every Redis operation is retried with backoff until
  it succeeds or the source is stopped.

The modules:

- :mod:`~eventkit.sources.redis.source`: :class:`RedisStreamSource`, the
  parameters and the guarantees;
- :mod:`~eventkit.sources.redis.settings`: the settings, validated once;
- :mod:`~eventkit.sources.redis.session`: an iteration: reading, claiming,
  acknowledging, dead letters, and the I/O of the leases;
- :mod:`~eventkit.sources.redis.leases`: the lease policy (fair share,
  handovers, takeovers, validity), sans-I/O;
- :mod:`~eventkit.sources.redis.scripts`: the Lua scripts of the leases.

Importing this package loads nothing of redis-py: the source loads with its
first use, so that the sans-I/O lease policy imports alone.
"""

from __future__ import annotations

import typing

from eventkit._lazy import lazy as _lazy

if typing.TYPE_CHECKING:
    from eventkit.sources.redis.source import RedisStreamSource, redis_stream

__all__ = ["RedisStreamSource", "redis_stream"]

__getattr__, __dir__ = _lazy(
    __name__,
    globals(),
    {
        "RedisStreamSource": "eventkit.sources.redis.source:RedisStreamSource",
        "redis_stream": "eventkit.sources.redis.source:redis_stream",
    },
)
