"""Errors raised by eventkit sources and sinks.

::

    Exception
     ├── StreamClosedError       a stream ended before its run completed
     ├── SinkError               a sink raised (eventkit.runner)
     └── ValueError
          └── DecodeError        a line or frame is not valid (eventkit.protocol.jsonl)
"""

from __future__ import annotations

from typing import Literal

__all__ = ["OnClose", "StreamClosedError"]

#: What a source does when its stream ends before ``completed``: raise
#: :exc:`StreamClosedError`, or yield an ``error`` and a failed ``completed``.
OnClose = Literal["raise", "event"]


class StreamClosedError(Exception):
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
