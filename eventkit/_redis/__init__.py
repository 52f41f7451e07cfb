"""What the Redis Streams sink and source share.

- :mod:`eventkit._redis.client`: the asyncio client (bytes replies, RESP2,
  no retries of its own) and the check of a server URL;
- :mod:`eventkit._redis.retry`: the one retry policy, backoff with jitter,
  and the outage state that logs and counts connections.

Loaded with the sink or the source that needs it, never by ``import eventkit``.
"""

from __future__ import annotations

__all__: list[str] = []
