"""eventkit: composable async operators for sandbox event streams.

The flat public API::

    import eventkit
    from eventkit import pipe, sinks, sources

    sink = sinks.collect()
    await eventkit.run(sources.jsonl("run.jsonl"), pipe.reorder(), sink=sink)
"""

from eventkit import pipe, sinks, sources, stream
from eventkit.events import Event, EventType
from eventkit.exceptions import StreamClosedError
from eventkit.protocol.jsonl import DecodeError
from eventkit.runner import EventStream, SinkError, Stage, run

__all__ = [
    "DecodeError",
    "Event",
    "EventStream",
    "EventType",
    "SinkError",
    "Stage",
    "StreamClosedError",
    "pipe",
    "run",
    "sinks",
    "sources",
    "stream",
]
