"""Where events go: sinks for :func:`eventkit.run`.

Each sink states what happens when it fails; the default is to stop the run
with :exc:`eventkit.SinkError` (see :class:`Sink`).
"""

from eventkit.sinks._base import Sink
from eventkit.sinks.console import ConsoleSink, console
from eventkit.sinks.files import JsonlSink, jsonl
from eventkit.sinks.memory import Call, Collect, call, collect
from eventkit.sinks.prometheus import (
    PrometheusHTTP,
    Pushgateway,
    prometheus_http,
    pushgateway,
)
from eventkit.sinks.redis import RedisStreamSink, redis_stream
from eventkit.sinks.tee import Tee, tee

__all__ = [
    "Call",
    "Collect",
    "ConsoleSink",
    "JsonlSink",
    "PrometheusHTTP",
    "Pushgateway",
    "RedisStreamSink",
    "Sink",
    "Tee",
    "call",
    "collect",
    "console",
    "jsonl",
    "prometheus_http",
    "pushgateway",
    "redis_stream",
    "tee",
]
