"""Where events come from. Every source is an aiostream stream of events.

- :func:`local`: run code in a local subprocess, the embedded default sandbox;
- :func:`websocket`: a HOPX agent's ``/execute/stream`` WebSocket;
- :func:`aicomputer`: an AI Computer sandbox (HTTP, NDJSON);
- :func:`ndjson`: any NDJSON stream (AI Computer, E2B or eventkit dialect);
- :func:`jsonl`: a recorded eventkit JSON Lines file;
- :func:`redis_stream`: a Redis stream, read as a worker of a consumer group;
- :func:`iterate`: events already in hand.
"""

from eventkit.sources.files import jsonl
from eventkit.sources.http import HTTPError, SandboxError, aicomputer, ndjson
from eventkit.sources.local import local
from eventkit.sources.memory import iterate
from eventkit.sources.redis import RedisStreamSource, redis_stream
from eventkit.sources.websocket import websocket

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
