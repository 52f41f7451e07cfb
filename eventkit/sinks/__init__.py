"""Where events go: sinks for :func:`eventkit.run`.

Each sink states what happens when it fails; the default is to stop the run
with :exc:`eventkit.SinkError` (see :class:`Sink`). The sinks that need an
I/O library (prometheus_client, redis, aiohttp) load it, with their module, when
first used.
"""

import typing

from eventkit._lazy import lazy as _lazy
from eventkit.sinks._base import Sink
from eventkit.sinks.collect import Call, Collect, call, collect
from eventkit.sinks.console import ConsoleSink, console
from eventkit.sinks.jsonl import JsonlSink, jsonl
from eventkit.sinks.tee import Tee, tee

if typing.TYPE_CHECKING:
    from eventkit.dashboard import Dashboard, dashboard
    from eventkit.sinks.prometheus import (
        PrometheusHTTP,
        Pushgateway,
        prometheus_http,
        pushgateway,
    )
    from eventkit.sinks.redis_producer import RedisStreamSink, redis_stream

__all__ = [
    "Call",
    "Collect",
    "ConsoleSink",
    "Dashboard",
    "JsonlSink",
    "PrometheusHTTP",
    "Pushgateway",
    "RedisStreamSink",
    "Sink",
    "Tee",
    "call",
    "collect",
    "console",
    "dashboard",
    "jsonl",
    "prometheus_http",
    "pushgateway",
    "redis_stream",
    "tee",
]

__getattr__, __dir__ = _lazy(
    __name__,
    globals(),
    {
        "Dashboard": "eventkit.dashboard:Dashboard",
        "dashboard": "eventkit.dashboard:dashboard",
        "PrometheusHTTP": "eventkit.sinks.prometheus:PrometheusHTTP",
        "Pushgateway": "eventkit.sinks.prometheus:Pushgateway",
        "prometheus_http": "eventkit.sinks.prometheus:prometheus_http",
        "pushgateway": "eventkit.sinks.prometheus:pushgateway",
        "RedisStreamSink": "eventkit.sinks.redis_producer:RedisStreamSink",
        "redis_stream": "eventkit.sinks.redis_producer:redis_stream",
    },
)
