"""Every error eventkit raises, under one root.

::

    Exception
     └── EventkitError                 anything eventkit raises of its own
          ├── StreamClosedError        a stream ended before its run completed
          ├── SinkError                a sink raised; the run stopped
          ├── HTTPError                an HTTP source got a status outside 2xx
          ├── SandboxError             a sandbox service answered nonsense
          ├── ShardCountError          a Redis stream's shard count is not ours
          └── DecodeError (ValueError) a line, frame or entry is not valid
               └── LineTooLongError    a line is longer than allowed

Argument errors are plain :exc:`ValueError` (raised when a source, stage or
sink is made, never mid-stream). The local sandbox server and the Redis
client have private exceptions of their own; they derive from
:exc:`EventkitError` too and never reach a caller of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from eventkit.events import Event

__all__ = [
    "DecodeError",
    "EventkitError",
    "HTTPError",
    "LineTooLongError",
    "OnClose",
    "SandboxError",
    "ShardCountError",
    "SinkError",
    "StreamClosedError",
]

#: What a source does when its stream ends before ``completed``: raise
#: :exc:`StreamClosedError`, or yield an ``error`` and a failed ``completed``.
OnClose = Literal["raise", "event"]


class EventkitError(Exception):
    """The root of every exception eventkit defines."""


class StreamClosedError(EventkitError):
    """The connection closed before the run's ``completed`` event.

    The official SDKs end their iterators quietly in this case; eventkit does
    not, since the run's outcome is unknown.

    Attributes:
        code: The WebSocket close code (1009 for a frame over ``max_size``,
            1006 for a connection lost without a close frame), or None when
            the transport has no codes.
        reason: The close reason, or a description.
    """

    def __init__(self, code: int | None, reason: str) -> None:
        what = "closed" if code is None else f"closed with code {code}"
        detail = f": {reason}" if reason else ""
        super().__init__(f"stream {what} before the run completed{detail}")
        self.code = code
        self.reason = reason


class SinkError(EventkitError):
    """The sink raised while taking an event; the run stopped.

    The sink's own exception is the ``__cause__``. Upstream is closed and the
    operators' held state is discarded; what had already left the operators
    but was not taken by the sink is in :attr:`undelivered`.

    Attributes:
        undelivered: The event the sink failed on, then the rest of its batch.
    """

    def __init__(self, message: str, undelivered: list[Event]) -> None:
        super().__init__(message)
        self.undelivered = undelivered


class DecodeError(EventkitError, ValueError):
    """A line, frame or entry is not a valid event.

    Attributes:
        line: 1-based line number, when known (0 otherwise).
        text: The offending line, decoded leniently and cut to 200 characters.
    """

    def __init__(self, reason: str, *, line: int = 0, text: str = "") -> None:
        where = f"line {line}: " if line else ""
        super().__init__(f"{where}{reason}")
        self.line = line
        self.text = text[:200]


class LineTooLongError(DecodeError):
    """A line is longer than the reader's limit.

    Attributes:
        limit: The limit in force, in bytes.
        size: How many bytes of the line had arrived (at least ``limit + 1``).
    """

    def __init__(self, limit: int, size: int, *, line: int = 0) -> None:
        super().__init__(
            f"line longer than {limit} bytes ({size} bytes so far)", line=line
        )
        self.limit = limit
        self.size = size


class HTTPError(EventkitError):
    """The server answered with a status outside 2xx.

    Attributes:
        method: The request method.
        url: The request URL.
        status: The HTTP status code.
        body: The start of the response body (its first KiB), decoded as
            UTF-8 with undecodable bytes replaced.
    """

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        detail = f": {body[:200]}" if body else ""
        super().__init__(f"{method} {url} answered HTTP {status}{detail}")
        self.method = method
        self.url = url
        self.status = status
        self.body = body


class SandboxError(EventkitError):
    """The sandbox service failed: a nonsense answer, or no ready sandbox.

    Attributes:
        sandbox_id: The sandbox concerned, or None before one was created.
        status: The last status the sandbox reported, if any.
    """

    def __init__(
        self, message: str, *, sandbox_id: str | None = None, status: str | None = None
    ) -> None:
        super().__init__(message)
        self.sandbox_id = sandbox_id
        self.status = status


class ShardCountError(EventkitError):
    """A Redis stream is published with another shard count than ours.

    The producers of a stream publish their ``shards`` in its ``S:meta`` key;
    a worker (:func:`eventkit.sources.redis_stream`) or a producer
    (:func:`eventkit.sinks.redis_stream`) made with another count would put
    or look for the runs in other keys, and never meet the rest: it stops.

    Attributes:
        stream: The logical stream.
        published: The shard count published in the stream.
        configured: The shard count this worker or producer was made with.
        role: ``"worker"`` or ``"producer"``.
    """

    def __init__(self, stream: str, published: int, configured: int, role: str) -> None:
        super().__init__(
            f"stream {stream!r} is published with {published} shards "
            f"({stream}:meta), but this {role} has shards={configured}"
        )
        self.stream = stream
        self.published = published
        self.configured = configured
        self.role = role
