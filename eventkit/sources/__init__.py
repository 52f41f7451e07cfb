"""Where events come from. Every source is an aiostream stream of events.

- :func:`local`: run code in a local subprocess, the embedded default sandbox;
- :func:`websocket`: a HOPX agent's ``/execute/stream`` WebSocket;
- :func:`aicomputer`: an AI Computer sandbox (HTTP, NDJSON);
- :func:`ndjson`: any NDJSON stream (AI Computer, E2B or eventkit dialect);
- :func:`jsonl`: a recorded eventkit JSON Lines file;
- :func:`redis_stream`: a Redis stream, read as a worker of a consumer group;
- :func:`iterate`: events already in hand.

The sources that need an I/O library (websockets, aiohttp, redis) load it,
with their module, when first used.
"""

import typing

from eventkit._lazy import lazy as _lazy
from eventkit.exceptions import HTTPError, SandboxError
from eventkit.sources.iterate import iterate
from eventkit.sources.jsonl import jsonl
from eventkit.sources.local import local

if typing.TYPE_CHECKING:
    from eventkit.sources.aicomputer_api import aicomputer
    from eventkit.sources.hopx import websocket
    from eventkit.sources.http import ndjson
    from eventkit.sources.redis.source import RedisStreamSource, redis_stream

__all__ = [
    "HTTPError",
    "RedisStreamSource",
    "SandboxError",
    "aicomputer",
    "iterate",
    "jsonl",
    "local",
    "ndjson",
    "redis_stream",
    "websocket",
]

__getattr__, __dir__ = _lazy(
    __name__,
    globals(),
    {
        "websocket": "eventkit.sources.hopx:websocket",
        "aicomputer": "eventkit.sources.aicomputer_api:aicomputer",
        "ndjson": "eventkit.sources.http:ndjson",
        "RedisStreamSource": "eventkit.sources.redis.source:RedisStreamSource",
        "redis_stream": "eventkit.sources.redis.source:redis_stream",
    },
)
