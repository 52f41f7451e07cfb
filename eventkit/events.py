"""The event model: one immutable record for every wire dialect.

Codecs in :mod:`eventkit.protocol` translate each sandbox's wire format into
:class:`Event` at the edge; everything inside eventkit speaks :class:`Event`.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import msgspec

__all__ = [
    "LIFECYCLE_TYPES",
    "NO_ATTRS",
    "OUTPUT_TYPES",
    "TERMINAL_TYPES",
    "Event",
    "EventType",
    "data_size",
    "is_terminal",
]


class EventType(enum.StrEnum):
    """The canonical event types.

    Members compare equal to their string values (``EventType.STDOUT ==
    "stdout"``), so plain strings work wherever an :class:`EventType` is
    expected. Types outside this vocabulary are allowed everywhere and pass
    through every operator untouched (except the type filters).
    """

    STARTED = "started"
    STDOUT = "stdout"
    STDERR = "stderr"
    RESULT = "result"
    ERROR = "error"
    RESOURCE_LIMIT = "resource_limit"
    COMPLETED = "completed"
    #: Made by :func:`eventkit.pipe.track_progress`.
    PROGRESS = "progress"
    #: Made by :func:`eventkit.pipe.reorder` for sequences given up on.
    GAP = "gap"


# Plain ``str`` sets, not enum members: set look-ups with ``str`` keys stay on
# CPython's fast path for exact strings.
#: Types whose ``data`` is program output.
OUTPUT_TYPES: Final[frozenset[str]] = frozenset({"stdout", "stderr"})
#: Types that end a run.
TERMINAL_TYPES: Final[frozenset[str]] = frozenset({"completed"})
#: Types that mark a step in a run's life rather than carry output.
LIFECYCLE_TYPES: Final[frozenset[str]] = frozenset(
    {"started", "result", "error", "resource_limit", "completed"}
)

_MISSING: Final[Any] = object()
#: The attrs of an event made without any: one shared, read-only, empty mapping.
NO_ATTRS: Final[Mapping[str, Any]] = MappingProxyType({})


class Event(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One event of a sandbox execution stream.

    Events are immutable and slotted; build new ones with
    :func:`msgspec.structs.replace`. Besides attribute access, an event reads as
    a mapping, for code ported from the sandbox SDKs, whose messages are dicts::

        >>> event = Event(type="result", data="", attrs={"exit_code": 0})
        >>> event["type"], event["exit_code"], event.get("success")
        ('result', 0, None)

    Keys that are not fields fall back to :attr:`attrs`.

    Attributes:
        type: What happened; see :class:`EventType` for the vocabulary.
        data: The payload text: an output chunk, an error message.
        timestamp: Unix epoch seconds: the source's own time when the wire
            carries one, else the local receive time. Defaults to now.
        sequence: Position in the run, from 0, in the order the producer
            emitted; assigned at receipt when the wire carries none.
        run: The execution this event belongs to; the key of all per-run state.
        attrs: Everything else: ``exit_code``, ``execution_time``, ``success``,
            ``code``, ``limit``, and what operators add. Treat it as read-only.
    """

    type: str
    data: str = ""
    timestamp: float = msgspec.field(default_factory=time.time)
    sequence: int = 0
    run: str = ""
    attrs: Mapping[str, Any] = NO_ATTRS

    def __getitem__(self, key: str) -> Any:
        """Return the field ``key``, else ``attrs[key]``.

        Raises:
            KeyError: If ``key`` is neither a field nor in :attr:`attrs`.
        """
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """Return the field ``key``, else ``attrs[key]``, else ``default``."""
        if key in self.__struct_fields__:
            return getattr(self, key)
        return self.attrs.get(key, default)

    def __contains__(self, key: object) -> bool:
        """Tell whether ``event[key]`` would succeed."""
        return key in self.__struct_fields__ or key in self.attrs

    @property
    def size(self) -> int:
        """UTF-8 size of :attr:`data` in bytes."""
        return data_size(self.data)


def data_size(data: str) -> int:
    """Return the UTF-8 size of ``data`` in bytes, without encoding ASCII text."""
    # str.isascii() reads a flag CPython keeps on every string: O(1).
    return len(data) if data.isascii() else len(data.encode())


def is_terminal(event: Event) -> bool:
    """Tell whether ``event`` ends its run."""
    return event.type in TERMINAL_TYPES
