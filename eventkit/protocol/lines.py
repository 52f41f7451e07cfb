"""Line-delimited dialects: cutting a body into lines, and what their decoders share.

AI Computer's ``execute/stream`` (:mod:`eventkit.protocol.aicomputer`),
E2B's ``/execute`` (:mod:`eventkit.protocol.e2b`) and eventkit's own JSON
Lines (:mod:`eventkit.protocol.jsonl`) arrive as a byte stream of one JSON
object per line. This module holds:

* :class:`LineSplitter`, which cuts bytes into lines whatever the chunk
  boundaries;
* :class:`LineDecoder`, the base of those dialects' decoders: it takes chunks
  of the body (:meth:`LineDecoder.receive`), splits them, counts the lines
  and hands each to the dialect's own line decoding;
* :class:`RunLineDecoder`, the base of the dialects that carry one run ending
  at a terminal event (AI Computer, E2B);
* the helpers they share to read a JSON object line and to report a line that
  cannot be read.

Failure behaviour: a line longer than ``max_line`` raises
:exc:`~eventkit.exceptions.LineTooLongError` as soon as that much has arrived
without a newline, so memory is bounded by ``max_line`` plus one chunk; the
decoder is out of step after it and must not be used further. Nothing else
raises: a line that cannot be decoded becomes an ``error`` event with
``attrs["code"] == "invalid_line"`` (:func:`invalid_line`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Final

import msgspec

from eventkit.events import NO_ATTRS
from eventkit.exceptions import LineTooLongError
from eventkit.protocol.run import RunEvents

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from eventkit.events import Event

__all__ = [
    "INVALID_LINE",
    "JSON_ERRORS",
    "MAX_INVALID_TEXT",
    "MAX_LINE",
    "LineDecoder",
    "LineSplitter",
    "NumberedLines",
    "RunLineDecoder",
    "as_text",
    "extra_attrs",
    "invalid_line",
    "json_error_reason",
]

#: Default longest line, in bytes: 16 MiB.
MAX_LINE: Final = 16 * 1024 * 1024
#: ``attrs["code"]`` of the error event made for a line that cannot be decoded.
INVALID_LINE: Final = "invalid_line"
#: Bytes of an invalid line kept as its error event's ``data`` (as for HOPX's
#: invalid frames).
MAX_INVALID_TEXT: Final = 64 * 1024
#: What parsing a line of bad JSON raises: msgspec's error, and for invalid
#: UTF-8 and absurd nesting the builtin ones.
JSON_ERRORS: Final = (msgspec.DecodeError, UnicodeError, RecursionError)


class LineSplitter:
    """Cuts a byte stream into lines, whatever the chunk boundaries.

    Lines end with ``b"\\n"``; a ``b"\\r"`` before it is removed too, so CRLF
    bodies give the same lines. Only ``b"\\n"`` splits: JSON text may contain
    other line separators. Bytes are not decoded here, so a multi-byte UTF-8
    character cut by a chunk boundary is whole again in its line.

    Args:
        max_line: The longest line accepted, in bytes, line ending not counted.

    Raises:
        ValueError: If ``max_line`` is not positive.
    """

    __slots__ = ("_tail", "max_line")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line <= 0:
            raise ValueError(f"max_line must be positive, not {max_line}")
        self.max_line = max_line
        self._tail = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received after the last complete line."""
        return len(self._tail)

    def receive(self, data: bytes) -> list[bytes]:
        """Take the next chunk; return the lines it completes, without endings.

        Call :meth:`close` at end of input.

        Raises:
            LineTooLongError: If a line is longer than :attr:`max_line`. The
                partial line is dropped; the stream is out of step after it,
                so stop using the splitter.
        """
        tail = self._tail
        if b"\n" not in data:
            tail += data
            # One more byte is allowed: it may be the CR of a CRLF ending.
            if len(tail) > self.max_line + 1:
                self._overflow(len(tail))
            return []
        lines = data.split(b"\n")
        rest = lines.pop()
        if tail:
            tail += lines[0]
            lines[0] = bytes(tail)
        limit = self.max_line
        for index, line in enumerate(lines):
            if line.endswith(b"\r"):
                line = lines[index] = line[:-1]
            if len(line) > limit:
                self._overflow(len(line))
        self._tail = bytearray(rest)
        if len(rest) > limit + 1:
            self._overflow(len(rest))
        return lines

    def close(self) -> list[bytes]:
        """Return the last line if the input did not end with a newline.

        Raises:
            LineTooLongError: If that line is longer than :attr:`max_line`.
        """
        if not self._tail:
            return []
        line = bytes(self._tail)
        self._tail = bytearray()
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_line:
            raise LineTooLongError(self.max_line, len(line))
        return [line]

    def _overflow(self, size: int) -> None:
        self._tail = bytearray()
        raise LineTooLongError(self.max_line, size)


class NumberedLines:
    """Cuts a byte stream into numbered lines, and goes on past a line too long.

    For files read whole, where one bad line must not stop the rest:
    :meth:`receive` returns ``(number, line)`` for each line a chunk
    completes (1-based, without its ``b"\\n"``), and for a line longer
    than ``max_line`` bytes a :exc:`~eventkit.exceptions.LineTooLongError`
    naming it in place of the line; its bytes are dropped as they come (held
    memory stays under ``max_line`` plus a chunk) and the next line follows.
    Linear in the input: a long line's pieces are joined once.

    Args:
        max_line: The longest line accepted, in bytes, newline not counted.

    Raises:
        ValueError: If ``max_line`` is not positive.
    """

    __slots__ = ("_parts", "_size", "_skipping", "line", "max_line")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line <= 0:
            raise ValueError(f"max_line must be positive, not {max_line}")
        self.max_line = max_line
        #: Lines completed so far.
        self.line = 0
        # The unfinished line: its pieces, or only its size once too long.
        self._parts: list[bytes] = []
        self._size = 0
        self._skipping = False

    def receive(self, data: bytes) -> list[tuple[int, bytes | LineTooLongError]]:
        """Take the next chunk; return the lines it completes, numbered."""
        out: list[tuple[int, bytes | LineTooLongError]] = []
        limit = self.max_line
        start = 0
        if self._parts or self._skipping:
            # Finish the unfinished line first.
            end = data.find(b"\n")
            if end < 0:
                self._hold(data)
                return out
            self._hold(data[:end])
            out.append(self._finish())
            start = end + 1
        pieces = data[start:].split(b"\n")
        rest = pieces.pop()
        number = self.line
        for piece in pieces:
            number += 1
            if len(piece) > limit:
                out.append((number, LineTooLongError(limit, len(piece), line=number)))
            else:
                out.append((number, piece))
        self.line = number
        if rest:
            self._hold(rest)
        return out

    def close(self) -> list[tuple[int, bytes | LineTooLongError]]:
        """End of input: return the last line if it had no newline."""
        if not (self._parts or self._skipping):
            return []
        return [self._finish()]

    def _hold(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._skipping:
            return
        if self._size > self.max_line:
            self._skipping = True
            self._parts = []
        else:
            self._parts.append(piece)

    def _finish(self) -> tuple[int, bytes | LineTooLongError]:
        self.line += 1
        size, parts, skipped = self._size, self._parts, self._skipping
        self._parts, self._size, self._skipping = [], 0, False
        if skipped:
            return self.line, LineTooLongError(self.max_line, size, line=self.line)
        return self.line, b"".join(parts)


def invalid_line(line: bytes, reason: str) -> tuple[str, Mapping[str, Any]]:
    """Return the data and attrs of the error event for a line that cannot be read.

    The data is the stripped line, cut at :data:`MAX_INVALID_TEXT` bytes, with
    a character cut in two and bad UTF-8 as U+FFFD; attrs has ``code`` =
    ``"invalid_line"`` and ``reason``.
    """
    text = line.strip()[:MAX_INVALID_TEXT].decode(errors="replace")
    return text, {"code": INVALID_LINE, "reason": reason}


def json_error_reason(exc: Exception) -> str:
    """Return what to say of an error from :data:`JSON_ERRORS`."""
    return str(exc) if isinstance(exc, msgspec.DecodeError) else repr(exc)


def as_text(value: Any) -> str:
    """Return ``value`` as the text a consumer of the official clients would print."""
    return value if isinstance(value, str) else str(value)


def extra_attrs(obj: dict[str, Any], known: tuple[str, ...]) -> Mapping[str, Any]:
    """Return the keys of ``obj`` outside ``known``, or the shared empty attrs.

    A wire ``sequence`` becomes ``server_sequence``, as in the HOPX dialect:
    the event's own sequence is eventkit's numbering.
    """
    rest = {key: value for key, value in obj.items() if key not in known}
    if "sequence" in rest:
        rest["server_sequence"] = rest.pop("sequence")
    return rest or NO_ATTRS


class LineDecoder(ABC):
    """The base of every line dialect's decoder: chunks in, events out.

    It splits what :meth:`receive` and :meth:`close` are given into lines
    (with a :class:`LineSplitter` of ``max_line``), counts them and passes
    each to the dialect's :meth:`_line`. The vocabulary is the one of every
    run decoder, documented in :mod:`eventkit.protocol`.

    Args:
        max_line: The longest line accepted, in bytes.

    Attributes:
        lines: Lines received so far, blank ones and ignored ones included.
        invalid_lines: Lines that gave an ``invalid_line`` error event.
        ignored: Non-blank lines received after the run's end and dropped.

    Raises:
        ValueError: If ``max_line`` is not positive.
    """

    __slots__ = ("_splitter", "ignored", "invalid_lines", "lines")

    def __init__(self, *, max_line: int = MAX_LINE) -> None:
        self._splitter = LineSplitter(max_line)
        self.lines = 0
        self.invalid_lines = 0
        self.ignored = 0

    @property
    def max_line(self) -> int:
        """The longest line accepted, in bytes."""
        return self._splitter.max_line

    @property
    def pending(self) -> int:
        """Bytes received after the last complete line: a line in the making."""
        return self._splitter.pending

    def receive(self, data: bytes) -> list[Event]:
        """Take the next chunk of the input; return the events of the lines it ends.

        Raises:
            LineTooLongError: If a line is longer than :attr:`max_line`; no
                event of the chunk is returned and the decoder must not be
                used further.
        """
        return self._decode(self._splitter.receive(data))

    def close(self) -> list[Event]:
        """Return the events of an unterminated last line, at end of input.

        It does not end the run: call :meth:`abort` then if it is not
        :attr:`finished`.

        Raises:
            LineTooLongError: If that line is longer than :attr:`max_line`.
        """
        return self._decode(self._splitter.close())

    def _decode(self, lines: list[bytes]) -> list[Event]:
        self.lines += len(lines)
        decode = self._line
        events: list[Event] = []
        for line in lines:
            events += decode(line)
        return events

    @property
    @abstractmethod
    def run(self) -> str:
        """The run id of the events made here rather than decoded."""

    @property
    @abstractmethod
    def finished(self) -> bool:
        """Whether the input may end now without cutting a run short."""

    @property
    @abstractmethod
    def done(self) -> bool:
        """Whether no further input can make an event: reading may stop."""

    @abstractmethod
    def start(self, attrs: Mapping[str, Any] = NO_ATTRS) -> list[Event]:
        """Return the events before any input (a synthetic ``started``, or none)."""

    @abstractmethod
    def abort(self, reason: str, code: int | None = None) -> list[Event]:
        """Return the events that end what the input left unfinished."""

    @abstractmethod
    def _line(self, line: bytes) -> list[Event]:
        """Return the events one line makes, without its ending; never raise."""


class RunLineDecoder(LineDecoder):
    """The base of the line dialects that carry one run and a terminal event.

    Every event is numbered in the decoder's run, from 0, in the order made;
    the wire has no ``started``, so :meth:`start` makes one. Once the terminal
    event is made, lines are ignored (counted in :attr:`ignored`) and
    :attr:`done` tells the reader to stop.

    Args:
        run: The run id; a fresh one when None.
        clock: The local wall clock, Unix seconds.
        max_line: The longest line accepted, in bytes.
    """

    __slots__ = ("_events",)

    def __init__(
        self,
        run: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_line: int = MAX_LINE,
    ) -> None:
        super().__init__(max_line=max_line)
        self._events = RunEvents(run, clock=clock)

    @property
    def run(self) -> str:
        """The run id of every event made."""
        return self._events.run

    @property
    def finished(self) -> bool:
        """Whether the terminal ``completed`` event was made."""
        return self._events.finished

    @property
    def done(self) -> bool:
        """Whether the run is over, so the body need not be read further."""
        return self._events.finished

    def start(self, attrs: Mapping[str, Any] = NO_ATTRS) -> list[Event]:
        """Return ``[started]``, a synthetic event: the wire has none.

        Call it when the request is accepted, before any input; the event's
        timestamp is the local time.

        Args:
            attrs: Its attrs, e.g. the sandbox id.
        """
        return [self._events.make("started", attrs=attrs)]

    def abort(self, reason: str, code: int | None = None) -> list[Event]:
        """Return the events ending a run whose input ended before it did.

        An ``error`` event (``data`` ``"stream closed before the run
        completed: <reason>"``, attrs ``code`` = ``"closed_before_complete"``,
        ``close_code`` and ``reason``, as for HOPX), then ``completed`` with
        ``attrs["success"] is False``; nothing if the run has finished.

        Args:
            reason: What happened, e.g. a connection error's text.
            code: A close code, if the transport has them (HTTP has none).
        """
        return self._events.abort(reason, code)

    def _invalid(self, line: bytes, reason: str) -> list[Event]:
        self.invalid_lines += 1
        data, attrs = invalid_line(line, reason)
        return [self._events.make("error", data, attrs=attrs)]

    def _ignore(self, line: bytes) -> list[Event]:
        if line.strip():
            self.ignored += 1
        return []
