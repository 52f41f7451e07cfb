"""eventkit: composable async operators for sandbox event streams.

The flat public API::

    import eventkit
    from eventkit import pipe, sinks, sources

    sink = sinks.collect()
    await eventkit.run(sources.jsonl("run.jsonl"), pipe.reorder(), sink=sink)

Importing :mod:`eventkit` is cheap: the event model and the exceptions load
at once; everything else (the runner, the sources and sinks and the I/O
libraries they use) loads when first used.
"""

import typing

from eventkit._lazy import lazy as _lazy
from eventkit.events import Event, EventType
from eventkit.exceptions import (
    DecodeError,
    EventkitError,
    SinkError,
    StreamClosedError,
)

if typing.TYPE_CHECKING:
    from eventkit import pipe, sinks, sources, stream
    from eventkit.fanin import merge
    from eventkit.runner import run
    from eventkit.streams import EventStream, Stage

__all__ = [
    "DecodeError",
    "Event",
    "EventStream",
    "EventType",
    "EventkitError",
    "SinkError",
    "Stage",
    "StreamClosedError",
    "merge",
    "pipe",
    "run",
    "sinks",
    "sources",
    "stream",
]

__getattr__, __dir__ = _lazy(
    __name__,
    globals(),
    {
        "EventStream": "eventkit.streams:EventStream",
        "Stage": "eventkit.streams:Stage",
        "merge": "eventkit.fanin:merge",
        "run": "eventkit.runner:run",
        "pipe": "eventkit.pipe",
        "sinks": "eventkit.sinks",
        "sources": "eventkit.sources",
        "stream": "eventkit.stream",
    },
)
