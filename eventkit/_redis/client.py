"""The Redis client of the Redis Streams sink and source, and the URLs it takes.

:func:`connect` makes a redis-py asyncio client with redis-py's own retries
off: a retried ``XADD`` whose reply was lost would write its entry twice,
unseen, so the adapters retry whole operations with
:func:`eventkit._redis.retry.retry` instead. Nothing connects until the first
command; :func:`check_url` refuses, at once, a URL redis-py would not connect
to.
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["CONNECT_TIMEOUT", "SCHEMES", "check_url", "connect"]

#: Seconds allowed to open a TCP connection.
CONNECT_TIMEOUT: Final = 5.0
#: The URL schemes redis-py connects to.
SCHEMES: Final = ("redis", "rediss", "unix")


def check_url(url: str) -> None:
    """Raise :exc:`ValueError` unless ``url`` is a URL redis-py connects to."""
    scheme, separator, _ = url.partition("://")
    if not separator or scheme not in SCHEMES:
        raise ValueError(f"url must be redis://, rediss:// or unix://, not {url!r}")


def connect(
    url: str, *, read_timeout: float | None, single_connection: bool = False
) -> Redis:
    """Return an asyncio client for ``url``: bytes replies, no retries of its own.

    Nothing connects until the first command. The hiredis parser is used when
    installed (redis-py picks it).

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://``
            for TLS, or ``unix://path``.
        read_timeout: Seconds a reply may take before the connection is
            taken for dead (a half-open TCP connection otherwise waits for
            the keepalive, 45 s); None for no limit (the caller sets its own).
        single_connection: One connection for everything, ``client.connection``
            once ``await client.initialize()`` made it, instead of a pool.
    """
    client: Redis = Redis.from_url(
        url,
        decode_responses=False,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=read_timeout,
        socket_connect_timeout=CONNECT_TIMEOUT,
        single_connection_client=single_connection,
        # The reply shapes eventkit reads (XREADGROUP: a list of [key,
        # entries]) are RESP2's.
        protocol=2,
    )
    return client
