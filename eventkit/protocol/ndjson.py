"""Sans-I/O codecs for sandbox streams sent as newline-delimited JSON over HTTP.

Three dialects arrive as an HTTP response body of one JSON object per line:

* ``"aicomputer"``: AI Computer's ``execute/stream`` (:class:`AiComputerDecoder`),
  parsed exactly as the official ``ai-computer-client`` 0.3.4 parses it, with
  the differences listed on the class;
* ``"e2b"``: E2B's code interpreter ``/execute`` (:class:`E2bDecoder`);
* ``"eventkit"``: eventkit's own JSON Lines (:class:`EventkitDecoder`).

Use: feed the body's bytes to a :class:`LineSplitter`, pass each line it
returns to the decoder's ``decode_line()``, and emit what comes out. Before the
first line call ``begin()``; when the body ends call the splitter's ``close()``
(and decode its lines), then, if the decoder is not ``finished``, the body
ended before the run did: call ``end(reason)`` or report the failure your own
way. :func:`decoder_for` picks the decoder by dialect name.

Failure behaviour:

* A line that cannot be decoded never raises: it becomes an ``error`` event
  with ``attrs["code"] == "invalid_line"``, the line's text (its first 64 KiB)
  as ``data`` and the parser's message in ``attrs["reason"]``, and is counted
  in the decoder's ``invalid_lines``; decoding goes on.
* A line longer than the splitter's ``max_line`` raises
  :exc:`LineTooLongError` as soon as that much has arrived without a newline;
  memory is bounded by ``max_line`` plus one received chunk.
* Lines after a run's terminal event are ignored and counted in ``ignored``
  (AI Computer and E2B).
* ``end(reason)`` gives, for a body that ended early, an ``error`` event with
  ``attrs["code"] == "closed_before_complete"`` (and ``close_code`` None and
  ``reason``, as :mod:`eventkit.protocol.hopx` makes them) and a
  ``completed`` event with ``attrs["success"] is False``.

JSON is parsed strictly (RFC 8259, valid UTF-8, with msgspec like the rest of
eventkit): ``NaN``, ``Infinity``, numbers out of the float range and lone
surrogate escapes, which Python's :mod:`json` accepts, give ``invalid_line``
errors. A lone surrogate in an event's text would break every sink that
encodes it as UTF-8.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import msgspec

from eventkit.events import NO_ATTRS, Event
from eventkit.exceptions import LineTooLongError
from eventkit.protocol import jsonl
from eventkit.protocol.run import RunEvents

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "CLOSED_BEFORE_COMPLETE",
    "DIALECTS",
    "INVALID_LINE",
    "MAX_LINE",
    "AiComputerDecoder",
    "Dialect",
    "E2bDecoder",
    "EventkitDecoder",
    "LineDecoder",
    "LineSplitter",
    "LineTooLongError",
    "decoder_for",
]

#: Default longest line, in bytes: 16 MiB.
MAX_LINE: Final = 16 * 1024 * 1024
#: A dialect's name.
Dialect = Literal["aicomputer", "e2b", "eventkit"]
#: The dialects :func:`decoder_for` knows.
DIALECTS: Final[tuple[Dialect, ...]] = ("aicomputer", "e2b", "eventkit")
#: ``attrs["code"]`` of the error event made for a line that cannot be decoded.
INVALID_LINE: Final = "invalid_line"
#: ``attrs["code"]`` of the error event made for a body that ended too early.
CLOSED_BEFORE_COMPLETE: Final = "closed_before_complete"
#: The reason given for a body that ended before the run, when none is given.
_ENDED_EARLY: Final = "body ended before completed"
#: Bytes of an invalid line kept as its error event's ``data`` (as for HOPX's
#: invalid frames).
_MAX_INVALID_TEXT: Final = 64 * 1024


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

        Then pass each line to a decoder; call :meth:`close` at end of input.

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


class LineDecoder(Protocol):
    """What every dialect's decoder offers; the HTTP sources drive this.

    Attributes:
        finished: Whether the terminal event was decoded: a body ending now
            ends cleanly.
        done: Whether nothing more will be decoded: the reader may stop
            reading the body (and should, since servers may keep it open).
        ignored: Non-blank lines ignored because they came after the end.
        invalid_lines: Lines that gave an ``invalid_line`` error event.
    """

    @property
    def finished(self) -> bool: ...

    @property
    def done(self) -> bool: ...

    @property
    def ignored(self) -> int: ...

    @property
    def invalid_lines(self) -> int: ...

    def begin(self) -> list[Event]:
        """Return the events to emit once the request is accepted."""
        ...

    def decode_line(self, line: bytes) -> list[Event]:
        """Return the events one line of the body carries (often one, or none)."""
        ...

    def end(self, reason: str = _ENDED_EARLY) -> list[Event]:
        """Return the events that end a run whose body ended early."""
        ...


#: What parsing a line of bad JSON raises: msgspec's error, and for invalid
#: UTF-8 and absurd nesting the builtin ones.
_JSON_ERRORS: Final = (msgspec.DecodeError, UnicodeError, RecursionError)


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, msgspec.DecodeError) else repr(exc)


def _text(value: Any) -> str:
    # What a consumer of the official clients would see printing the value.
    return value if isinstance(value, str) else str(value)


def _others(obj: dict[str, Any], known: tuple[str, ...]) -> Mapping[str, Any]:
    """Return the keys of ``obj`` outside ``known``, or the shared empty attrs.

    A wire ``sequence`` becomes ``server_sequence``, as in the HOPX codec: the
    event's own sequence is eventkit's numbering.
    """
    rest = {key: value for key, value in obj.items() if key not in known}
    if "sequence" in rest:
        rest["server_sequence"] = rest.pop("sequence")
    return rest or NO_ATTRS


def _invalid(line: bytes, reason: str) -> tuple[str, Mapping[str, Any]]:
    """Return the data and attrs of the error event for an invalid line."""
    # Cut at a byte count; a character cut in two and bad UTF-8 become U+FFFD.
    text = line.strip()[:_MAX_INVALID_TEXT].decode(errors="replace")
    return text, {"code": INVALID_LINE, "reason": reason}


def _closed(reason: str) -> tuple[str, Mapping[str, Any]]:
    """Return the data and attrs of the error event for a body that ended early.

    The data reads like :exc:`~eventkit.exceptions.StreamClosedError`'s
    message and the attrs are those of the HOPX codec's, so both sources
    report this case alike.
    """
    detail = f": {reason}" if reason else ""
    attrs = {"code": CLOSED_BEFORE_COMPLETE, "close_code": None, "reason": reason}
    return f"stream closed before the run completed{detail}", attrs


class _RunDecoder:
    """What the AI Computer and E2B decoders share: one run, a terminal event."""

    __slots__ = ("_events", "ignored", "invalid_lines")

    def __init__(
        self, run: str | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._events = RunEvents(run, clock=clock)
        self.ignored = 0
        self.invalid_lines = 0

    @property
    def run(self) -> str:
        """The run id of every event made."""
        return self._events.run

    @property
    def count(self) -> int:
        """Events made so far (the next sequence)."""
        return self._events.count

    @property
    def finished(self) -> bool:
        """Whether the terminal ``completed`` event was made."""
        return self._events.finished

    @property
    def done(self) -> bool:
        """Whether the run is over, so the body need not be read further."""
        return self._events.finished

    def started(self, attrs: Mapping[str, Any] = NO_ATTRS) -> Event:
        """Return a synthetic ``started`` event (the wire has none).

        Make it when the request is accepted, before any line; its timestamp
        is the local time.

        Args:
            attrs: Its attrs, e.g. the sandbox id.
        """
        return self._events.make("started", attrs=attrs)

    def begin(self) -> list[Event]:
        """Return ``[started()]``: the wire has no event of its own for this."""
        return [self.started()]

    def end(self, reason: str = _ENDED_EARLY) -> list[Event]:
        """Return the events ending a run whose body ended before it did.

        An ``error`` event (``data`` ``"stream closed before the run
        completed: <reason>"``, attrs ``code`` = ``"closed_before_complete"``,
        ``close_code`` = None and ``reason``, as the HOPX codec makes them),
        then ``completed`` with ``attrs["success"] is False``; nothing if the
        run has finished already.

        Args:
            reason: What happened, e.g. a connection error's text.
        """
        if self.finished:
            return []
        data, attrs = _closed(reason)
        return [
            self._events.make("error", data, attrs=attrs),
            self._events.make("completed", attrs={"success": False}),
        ]

    def _invalid(self, line: bytes, reason: str) -> list[Event]:
        self.invalid_lines += 1
        data, attrs = _invalid(line, reason)
        return [self._events.make("error", data, attrs=attrs)]

    def _ignore(self, line: bytes) -> list[Event]:
        if line.strip():
            self.ignored += 1
        return []


class AiComputerDecoder(_RunDecoder):
    """Decodes AI Computer's ``execute/stream`` body, line by line.

    Follows ``ai-computer-client`` 0.3.4 (``submodules/code.py``
    ``execute_stream``):

    1. Surrounding ASCII whitespace is stripped; empty lines are skipped.
    2. A line that starts with ``{`` and ends with ``}`` is a JSON object and
       gives an event of type ``obj.get("type", "info")`` and data
       ``obj.get("data", "")``. A ``data`` that is not a string is converted
       with :class:`str` (what printing it would show).
    3. Any other line gives a ``stdout`` event with the stripped text.
    4. ``completed`` ends the run: later lines are ignored and counted in
       :attr:`ignored`. ``error`` does not end it.

    Differences from 0.3.4, all deliberate:

    * Keys other than ``type`` and ``data`` are kept in ``attrs``; 0.3.4
      drops them. A wire ``timestamp`` lands in ``attrs["timestamp"]``, not in
      :attr:`Event.timestamp <eventkit.events.Event.timestamp>`, and a wire
      ``sequence`` in ``attrs["server_sequence"]``.
    * A line 0.3.4 cannot parse (bad JSON, bad UTF-8) makes it yield an
      ``error`` and stop; here it gives an ``error`` event with
      ``attrs["code"] == "invalid_line"`` and decoding goes on. A ``type``
      that is not a string is such an invalid line too (0.3.4 passes it on).
    * Events are numbered from 0 in the order received and timestamped with
      the local receive time (the wire carries neither: both are local), and
      the run gets a synthetic ``started`` event from :meth:`begin`.

    Args:
        run: The run id; a fresh one when None.
        clock: The local wall clock, Unix seconds.

    Attributes:
        ignored: Non-blank lines ignored after ``completed``.
        invalid_lines: Lines that gave an ``invalid_line`` error.
    """

    __slots__ = ()

    def decode_line(self, line: bytes) -> list[Event]:
        """Return the events one line carries: one, or none for a blank line.

        Never raises; see the class for the rules.
        """
        if self._events.finished:
            return self._ignore(line)
        line = line.strip()
        if not line:
            return []
        if not (line.startswith(b"{") and line.endswith(b"}")):
            try:
                text = line.decode()
            except UnicodeDecodeError as exc:
                return self._invalid(line, str(exc))
            return [self._events.make("stdout", text)]
        try:
            obj: dict[str, Any] = msgspec.json.decode(line)
        except _JSON_ERRORS as exc:
            return self._invalid(line, _reason(exc))
        type_ = obj.get("type", "info")
        if not isinstance(type_, str):
            return self._invalid(line, f"type is not a string: {type_!r}")
        data = _text(obj.get("data", ""))
        return [self._events.make(type_, data, attrs=_others(obj, ("type", "data")))]


class E2bDecoder(_RunDecoder):
    """Decodes E2B's code interpreter ``/execute`` body, line by line.

    Each line is a JSON object with a ``type``:

    * ``stdout``/``stderr``: ``data`` is the ``text`` key; the ``timestamp``
      key, Unix nanoseconds, becomes float seconds (the local time
      when missing or not a number); other keys go to ``attrs``.
    * ``result``: ``data`` is the ``text`` key if present; every key but
      ``type`` (the MIME bundle: ``text``, ``html``, ``png``, …, and
      ``is_main_result``) is in ``attrs``.
    * ``error``: ``data`` is ``"name: value"`` (``value`` alone without a
      name); ``attrs`` has ``name``, ``value`` and ``traceback`` as sent.
    * ``number_of_executions`` and unknown types pass with their type and
      their keys in ``attrs``; ``data`` is their ``text`` key if any.
    * ``end_of_execution`` gives ``completed`` with ``attrs["success"]``
      true unless an ``error`` line came before; later lines are ignored and
      counted in :attr:`ignored`.

    Only the output lines carry the server's clock: other events have the
    local receive time. Sequences are local, from 0, in the order received;
    :meth:`begin` gives a synthetic ``started`` event. Blank lines are
    skipped; a line that is not a JSON object with a string ``type`` gives
    an ``error`` event with ``attrs["code"] == "invalid_line"`` (which does not
    count as an execution error).

    Args:
        run: The run id; a fresh one when None.
        clock: The local wall clock, Unix seconds.

    Attributes:
        ignored: Non-blank lines ignored after ``end_of_execution``.
        invalid_lines: Lines that gave an ``invalid_line`` error.
        errors: ``error`` lines seen.
    """

    __slots__ = ("errors",)

    def __init__(
        self, run: str | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(run, clock=clock)
        self.errors = 0

    def decode_line(self, line: bytes) -> list[Event]:
        """Return the events one line carries: one, or none for a blank line.

        Never raises; see the class for the rules.
        """
        if self._events.finished:
            return self._ignore(line)
        if not line.strip():
            return []
        try:
            obj = msgspec.json.decode(line)
        except _JSON_ERRORS as exc:
            return self._invalid(line, _reason(exc))
        if not isinstance(obj, dict):
            return self._invalid(line, f"not a JSON object: {type(obj).__name__}")
        type_ = obj.get("type")
        if not isinstance(type_, str):
            return self._invalid(line, f"type is not a string: {type_!r}")
        make = self._events.make
        if type_ in ("stdout", "stderr"):
            stamp = obj.get("timestamp")
            # An int over an int divides exactly, then rounds once: stamp / 1e9
            # would round the nanoseconds to a float first.
            timestamp = (
                stamp / 1_000_000_000
                if isinstance(stamp, int | float) and not isinstance(stamp, bool)
                else None
            )
            return [
                make(
                    type_,
                    _text(obj.get("text", "")),
                    timestamp=timestamp,
                    attrs=_others(obj, ("type", "text", "timestamp")),
                )
            ]
        if type_ == "error":
            self.errors += 1
            name, value = obj.get("name"), _text(obj.get("value", ""))
            data = f"{name}: {value}" if name else value
            return [make("error", data, attrs=_others(obj, ("type",)))]
        if type_ == "end_of_execution":
            attrs = {**_others(obj, ("type",)), "success": not self.errors}
            return [make("completed", attrs=attrs)]
        # result, number_of_executions and types unknown to eventkit.
        return [make(type_, _text(obj.get("text", "")), attrs=_others(obj, ("type",)))]


class EventkitDecoder:
    """Decodes eventkit's own JSON Lines (:mod:`eventkit.protocol.jsonl`).

    Events keep their own run, sequence and timestamp, and a body may carry
    several runs. The body is read to its end: it ends cleanly when at least
    one event came and every run seen has had its ``completed`` event.

    A line that is not a valid event gives an ``error`` event with
    ``attrs["code"] == "invalid_line"`` in the decoder's own run (``run``,
    numbered from 0), since the line's run cannot be known and no sequence of
    a real run may be taken. :meth:`end` gives each unfinished run an
    ``error`` and a ``completed`` event numbered after the last of its
    sequences seen (or, when no event came at all, the decoder's run).
    :meth:`begin` gives nothing: the stream has its own ``started`` events.

    Args:
        run: The run id for events that belong to no run of the stream; a
            fresh one when None.
        clock: The local wall clock, Unix seconds.

    Attributes:
        ignored: Always 0: nothing is ignored.
        invalid_lines: Lines that gave an ``invalid_line`` error.
    """

    __slots__ = ("_clock", "_events", "_open", "_seen", "ignored", "invalid_lines")

    def __init__(
        self, run: str | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._events = RunEvents(run, clock=clock)
        # Runs seen and not completed, with their highest sequence.
        self._open: dict[str, int] = {}
        self._seen = False
        self.ignored = 0
        self.invalid_lines = 0

    @property
    def run(self) -> str:
        """The run id of the events made here rather than decoded."""
        return self._events.run

    @property
    def finished(self) -> bool:
        """Whether events came and every run seen has completed."""
        return self._seen and not self._open

    @property
    def done(self) -> bool:
        """Always False: another run may start on a later line."""
        return False

    def begin(self) -> list[Event]:
        """Return nothing: eventkit streams carry their own ``started``."""
        return []

    def decode_line(self, line: bytes) -> list[Event]:
        """Return the event one line carries, or none for a blank line.

        Never raises: an invalid line gives an ``invalid_line`` error event.
        """
        if not line.strip():
            return []
        try:
            event = jsonl.decode(line)
        except jsonl.DecodeError as exc:
            self.invalid_lines += 1
            data, attrs = _invalid(line, str(exc))
            return [self._events.make("error", data, attrs=attrs)]
        self._seen = True
        if event.type == "completed":
            self._open.pop(event.run, None)
        else:
            last = self._open.get(event.run)
            if last is None or event.sequence > last:
                self._open[event.run] = event.sequence
        return [event]

    def end(self, reason: str = _ENDED_EARLY) -> list[Event]:
        """Return the events ending each run left open by a body that ended early.

        Args:
            reason: What happened, e.g. a connection error's text.
        """
        if self.finished:
            return []
        data, attrs = _closed(reason)
        if not self._seen:
            self._seen = True
            make = self._events.make
            return [
                make("error", data, attrs=attrs),
                make("completed", attrs={"success": False}),
            ]
        now = self._clock()
        out = []
        for run, last in self._open.items():
            out.append(
                Event(
                    type="error",
                    data=data,
                    timestamp=now,
                    sequence=last + 1,
                    run=run,
                    attrs=attrs,
                )
            )
            out.append(
                Event(
                    type="completed",
                    timestamp=now,
                    sequence=last + 2,
                    run=run,
                    attrs={"success": False},
                )
            )
        self._open.clear()
        return out


def decoder_for(
    dialect: str,
    run: str | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> LineDecoder:
    """Return a fresh decoder for ``dialect``.

    Args:
        dialect: ``"aicomputer"``, ``"e2b"`` or ``"eventkit"``.
        run: The run id of the events the decoder makes; a fresh one when None.
        clock: The local wall clock, Unix seconds.

    Raises:
        ValueError: If the dialect is unknown.
    """
    if dialect == "aicomputer":
        return AiComputerDecoder(run, clock=clock)
    if dialect == "e2b":
        return E2bDecoder(run, clock=clock)
    if dialect == "eventkit":
        return EventkitDecoder(run, clock=clock)
    raise ValueError(f"unknown dialect {dialect!r}: expected one of {DIALECTS}")
