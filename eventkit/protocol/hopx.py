"""The HOPX ``/execute/stream`` dialect, both directions, without the WebSocket.

HOPX runs code over one WebSocket per execution: the client sends one
``execute`` message (:func:`execute_message`), the agent answers with one JSON
object per message (``stdout``, ``stderr``, ``result``, ``error``,
``complete``) and nothing marks the end but ``complete``.
:class:`HopxDecoder` turns those messages into the events of one run (the
client's side, driven by :mod:`eventkit.sources.hopx`); :class:`HopxEncoder`
writes a local run's events as such messages (the local server's side,
:mod:`eventkit.server.hopx`).

How the wire maps onto :class:`~eventkit.Event` when decoding:

========== ============================================= =====================
wire type  event                                         attrs
========== ============================================= =====================
(sent)     ``started`` (:meth:`HopxDecoder.start`)
stdout     ``stdout``, ``data``
stderr     ``stderr``, ``data``
result     ``result``                                    ``exit_code``,
                                                         ``execution_time``
error      ``error``, ``data`` = the ``error`` text      ``code``
complete   ``completed``                                 ``success`` (bool)
other      the same type, ``data`` if it is a string     the other keys
(garbage)  ``error``, ``data`` = the frame's text        ``code`` =
                                                         ``"invalid_frame"``
(closed)   ``error``, then ``completed``                 ``code`` =
           (:meth:`HopxDecoder.abort`)                   ``"closed_before_
                                                         complete"``
========== ============================================= =====================

Keys a frame carries beyond these go to ``attrs`` unchanged; a ``sequence``
goes there as ``server_sequence`` (HOPX sends none today; eventkit numbers
the events itself, in the order received).

Resumable executions, an eventkit extension of the protocol that a local
server (``eventkit serve``) speaks and HOPX agents ignore: an ``execute``
message with ``"resumable": true`` is answered first with
``{"type": "execution", "execution_id": ID}``, then frames that all carry a
``sequence`` (from 0, one per frame). After a lost connection, a new one
sends :func:`resume_message` instead of ``execute`` and gets the frames after
the last one received. A decoder made with ``resumable=True`` reads the
``sequence`` as transport (it keeps the last in
:attr:`HopxDecoder.server_sequence` and drops a frame seen already, and puts
nothing in ``attrs``), and turns the server's ``RESUME_GAP`` error (frames
no longer held, ``first_available`` the first it still has) into one
``gap`` event whose range is exactly the events those frames would have
made; the events after it are numbered as if they had come.

``timestamp`` strings are read as ISO 8601 (RFC 3339, ``Z`` or an offset,
any number of fractional digits, to the microsecond: an RFC 3339 one
rounded, another form cut); the event's timestamp is the local receive time
when a frame has none, and also when it has one that cannot be read, which
is then kept in ``attrs["timestamp"]``.

How events map onto the wire when encoding:

=================== ===========================================================
event               frames
=================== ===========================================================
started             none (the wire has no such message)
stdout / stderr     ``{"type", "data", "timestamp", "sequence"}``, split so that
                    every frame stays under 1 MiB (the SDK's limit)
resource_limit      ``{"type": "error", "error", "code", "timestamp"}``, code
                    ``EXECUTION_TIMEOUT``, ``OUTPUT_LIMIT`` or ``MEMORY_LIMIT``
error               the same, code from the executor's (``EXECUTION_FAILED``
                    for a failed spawn, ``LANGUAGE_UNAVAILABLE``)
result              ``{"type", "exit_code", "execution_time", "timestamp"}``
completed           ``{"type": "complete", "success"}``, and ``"truncated":
                    true`` when the event's attrs say so (output cut by a
                    server's ``--output-policy truncate``)
=================== ===========================================================

A resumable encoder (``HopxEncoder(resumable=True)``) puts a ``sequence`` on
every frame, one counter for all.

Failure behaviour: the decoder never raises on bad input (what cannot be
read becomes an ``invalid_frame`` error event); the encoder never raises on
an event a local run makes and drops events of other types;
:func:`agent_url` raises :exc:`ValueError` for a URL it cannot use.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

import msgspec

from eventkit.events import NO_ATTRS, Event
from eventkit.protocol.run import RunEvents

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


__all__ = [
    "CHUNK_CHARS",
    "EXECUTE_PATH",
    "EXECUTION",
    "MAX_FRAME_BYTES",
    "MAX_INVALID_TEXT",
    "RESUME_GAP",
    "RESUME_UNAVAILABLE",
    "HopxDecoder",
    "HopxEncoder",
    "agent_url",
    "error_code",
    "execute_message",
    "hopx_error",
    "iso_timestamp",
    "parse_timestamp",
    "resume_message",
]

#: Where the agent serves the stream; the SDK always uses this path.
EXECUTE_PATH: Final = "/execute/stream"
#: Bytes of an invalid frame kept in its ``error`` event's ``data``.
MAX_INVALID_TEXT: Final = 64 * 1024
#: The official HOPX client closes the connection on a larger message.
MAX_FRAME_BYTES: Final = 1 << 20
#: Characters of output per frame written. JSON spells a character in at most
#: 6 bytes (``\u001f``), so a frame is at most 768 KiB plus its envelope.
CHUNK_CHARS: Final = 128 * 1024
#: The first frame of a resumable execution: ``{"type": "execution",
#: "execution_id": ID}``.
EXECUTION: Final = "execution"
#: The error code of a resume some of whose frames are gone; the frame's
#: ``first_available`` is the first frame the server still holds.
RESUME_GAP: Final = "RESUME_GAP"
#: The error code of a resume the server cannot serve (unknown or expired
#: execution); it closes with 1008 next.
RESUME_UNAVAILABLE: Final = "RESUME_UNAVAILABLE"


#: A message's bytes as a WebSocket library hands them over: UTF-8 text
#: undecoded, or a binary message.
Buffer = bytes | bytearray | memoryview


class _Output(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The shape of nearly every message: a chunk of output, nothing else.

    msgspec reads an RFC 3339 ``timestamp`` in C (rounded to the
    microsecond); any other text makes the message take the untyped path,
    where :func:`parse_timestamp` tries it.
    """

    type: str
    data: str = ""
    timestamp: datetime | None = None
    sequence: int | None = None


def _seconds(moment: datetime) -> float:
    """Return the Unix time of ``moment``, taken as UTC when it has no offset."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# Two decoders. Output messages are nearly all of a stream, and a typed Struct
# reads them ~0.2 µs faster than a dict and the pops that take it apart
# (measured ~0.84 against ~1.08 µs per 150-byte stdout message, timestamp
# parsing and the event included). Whatever does not fit that shape exactly
# (``result``, ``error``, ``complete``, unknown types, unknown keys, odd value
# types) goes through the untyped decoder, so that nothing is dropped; it
# costs a failed typed decode (~1-2 µs) a few times per run.
_decode_output: Final = msgspec.json.Decoder(_Output).decode
_decode_outputs: Final = msgspec.json.Decoder(list[_Output]).decode
_decode: Final = msgspec.json.Decoder().decode
_OUTPUT: Final = frozenset({"stdout", "stderr"})


def _decode_together(frames: list[Buffer]) -> list[_Output] | None:
    """Decode messages of the usual shape in one call, or None if one is not.

    One JSON array made of the messages, decoded at once, saves msgspec's
    per-call cost on every message but one. Sound because each message that
    is one JSON value adds exactly one item: one that is empty or holds
    several values either breaks the array's syntax or changes the count.
    """
    if len(frames) < 2:
        return None
    try:
        decoded = _decode_outputs(b"[" + b",".join(frames) + b"]")
    except ValueError:  # a message of another shape, or not JSON at all
        return None
    return decoded if len(decoded) == len(frames) else None


def execute_message(
    code: str,
    *,
    language: str = "python",
    timeout: int = 60,
    env: Mapping[str, str] | None = None,
    workdir: str | None = None,
    resumable: bool = False,
) -> str:
    """Return the ``execute`` message that starts a run, as the SDK writes it.

    The text is byte for byte what ``hopx-ai`` sends (``json.dumps`` with its
    default separators, keys in the SDK's order), so a server that logs or
    compares messages sees no difference.

    Args:
        code: The program.
        language: ``python``, ``javascript``, ``bash``, ``go``, ...
        timeout: Seconds the agent lets the program run; only the server
            enforces it.
        env: Extra environment variables; left out of the message when empty.
        workdir: The working directory; left out when None, so the agent's
            default applies (the SDK always sends one, ``/workspace`` by
            default).
        resumable: Ask for a resumable execution (``"resumable": true``,
            last), an eventkit extension that other agents ignore.

    Returns:
        The message text, to send as one text frame.
    """
    message: dict[str, Any] = {
        "type": "execute",
        "code": code,
        "language": language,
        "timeout": timeout,
    }
    if workdir is not None:
        message["workdir"] = workdir
    if env:
        message["env"] = dict(env)
    if resumable:
        message["resumable"] = True
    return json.dumps(message)


def resume_message(execution_id: str, after: int) -> str:
    """Return the message that resumes a resumable execution on a new connection.

    Args:
        execution_id: What the execution's first frame named.
        after: The last frame ``sequence`` received; -1 for none.

    Returns:
        The message text, to send as the connection's first text frame.
    """
    return json.dumps({"type": "resume", "execution_id": execution_id, "after": after})


def agent_url(url: str) -> str:
    """Return the WebSocket URL of the execution stream for ``url``.

    ``ws://`` and ``wss://`` URLs are used as given, with
    :data:`EXECUTE_PATH` added when they have no path. ``http://`` and
    ``https://`` URLs (an agent's ``public_host``) map to ``ws://`` and
    ``wss://`` on the same host and port, with their path, query and fragment
    dropped, as the SDK does.

    Args:
        url: The agent's address.

    Returns:
        The ``ws://`` or ``wss://`` URL to connect to.

    Raises:
        ValueError: If the scheme is not one of these four, the host is
            missing or the port is not a number.
    """
    parts = urlsplit(url)
    scheme = parts.scheme  # urlsplit lowercases it
    if scheme not in ("ws", "wss", "http", "https"):
        raise ValueError(
            f"unsupported URL scheme {parts.scheme!r} in {url!r}: "
            "expected ws, wss, http or https"
        )
    if not parts.hostname:
        raise ValueError(f"no host in URL {url!r}")
    _ = parts.port  # raises ValueError for a port that is not a number
    if scheme in ("http", "https"):
        ws_scheme = "wss" if scheme == "https" else "ws"
        return urlunsplit((ws_scheme, parts.netloc, EXECUTE_PATH, "", ""))
    if parts.path in ("", "/"):
        return urlunsplit((scheme, parts.netloc, EXECUTE_PATH, parts.query, ""))
    return url


# Timestamps ----------------------------------------------------------------

_fromisoformat: Final = datetime.fromisoformat


def parse_timestamp(text: str) -> float | None:
    """Return the Unix time an ISO 8601 timestamp names, or None if it is not one.

    Anything :meth:`datetime.fromisoformat` reads is accepted: ``Z`` or an
    offset, ``T`` or another separator, any number of fractional digits.
    Digits beyond the sixth are dropped, as ``fromisoformat`` does from
    Python 3.11 on, so RFC3339Nano (``2025-11-20T10:30:00.123456789Z``, what
    a Go agent writes) reads as ``.123456``; a float could not hold the
    nanoseconds of a current date anyway. A timestamp without an offset is
    taken as UTC, the agent's clock, not the local one.
    """
    # Measured ~0.24 µs per call; a hand-written fast path with a cache of the
    # "YYYY-MM-DDTHH:MM:SS" heads was slower (~0.5 µs): string slicing in
    # Python costs more than the whole C parser.
    try:
        moment = _fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    # Not ISO 8601 (a lone surrogate gives UnicodeEncodeError, a ValueError
    # too). timestamp() itself cannot fail on an aware datetime: it subtracts.
    except ValueError:
        return None


def iso_timestamp(timestamp: float) -> str:
    """Return Unix time ``timestamp`` as RFC 3339 UTC with microseconds and ``Z``."""
    text = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")
    return text[:-6] + "Z"  # "+00:00" -> "Z", as a Go agent writes it


# Decoder -------------------------------------------------------------------


class HopxDecoder:
    """Turns the messages of one HOPX execution stream into the run's events.

    A sans-I/O state machine with the vocabulary of every run decoder
    (:mod:`eventkit.protocol`): whoever owns the WebSocket sends
    :func:`execute_message`, passes on the events of :meth:`start`, then
    hands every message received to :meth:`receive` and passes on the events
    it returns, until :attr:`finished`. If the connection closes first,
    :meth:`abort` returns the events that end the run. Nothing here raises on
    bad input: what cannot be read becomes an ``error`` event with ``code``
    ``invalid_frame`` and the stream goes on, as the SDK skips such frames
    and goes on.

    Args:
        run: The run id; a fresh one when None.
        clock: Wall-clock time in Unix seconds, for the events whose message
            carries no readable timestamp.
        resumable: Read the frames of a resumable execution (see the module
            docstring): ``sequence`` as transport, ``execution`` and
            ``RESUME_GAP`` frames.

    Attributes:
        run: The run id.
        finished: Whether the run's ``completed`` event was made: no more
            will come.
        frames: Messages received, ignored and invalid ones included.
        invalid_frames: Messages that were not JSON objects with a string
            ``type`` (each became an ``invalid_frame`` error event).
        ignored: Messages received after ``complete`` and dropped, as the SDK
            never reads them, and, when resumable, frames received twice.
        execution_id: The resumable execution's id, once its first frame
            came; None otherwise.
        server_sequence: When resumable, the ``sequence`` of the last frame
            received (-1 before any): what to resume after.
    """

    # ``finished`` is a plain attribute, not a property over RunEvents: it is
    # read once per message on the hot path (~0.07 µs saved per message).
    __slots__ = (
        "_events",
        "_resumable",
        "execution_id",
        "finished",
        "frames",
        "ignored",
        "invalid_frames",
        "run",
        "server_sequence",
    )

    def __init__(
        self,
        run: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        resumable: bool = False,
    ) -> None:
        self._events = RunEvents(run, clock=clock)
        self.run = self._events.run
        self.frames = 0
        self.invalid_frames = 0
        self.ignored = 0
        self.finished = False
        self._resumable = resumable
        self.execution_id: str | None = None
        self.server_sequence = -1

    @property
    def done(self) -> bool:
        """Whether no further message can make an event: :attr:`finished`."""
        return self.finished

    def start(self, attrs: Mapping[str, Any] = NO_ATTRS) -> list[Event]:
        """Return ``[started]``; call it once the execute message is sent.

        It is the run's first event (sequence 0) when called before
        :meth:`receive`. Its timestamp is the local time: the wire has no
        ``started``.

        Args:
            attrs: The event's attrs.
        """
        return [self._events.make("started", attrs=attrs)]

    def receive(self, frame: str | Buffer) -> list[Event]:
        """Decode one WebSocket message; return the events it makes.

        Text and binary messages alike hold UTF-8 JSON. Empty and
        whitespace-only messages make no event; so does anything after
        ``complete`` (counted in :attr:`ignored`). Every other message makes
        exactly one event. Every message is counted in :attr:`frames`.

        Args:
            frame: The message, as received (``str`` for text, bytes in any
                buffer for binary or undecoded text).

        Returns:
            The events, at most one, numbered in the order received.
        """
        self.frames += 1
        if self.finished:
            self.ignored += 1
            return []
        try:
            output = _decode_output(frame)
        except msgspec.ValidationError:
            return self._receive_other(frame)
        # msgspec.DecodeError and the UnicodeError of invalid UTF-8 are both
        # ValueErrors.
        except ValueError:
            return self._invalid(frame)
        kind = output.type
        if kind != "stdout" and kind != "stderr":
            return self._receive_other(frame)
        # Output events never end a run: ``finished`` stays as it is.
        events = self._events
        moment = output.timestamp
        timestamp = None if moment is None else _seconds(moment)
        sequence = output.sequence
        if sequence is not None and self._resumable:
            # Transport: what to resume after, not an attr.
            if sequence <= self.server_sequence:
                self.ignored += 1  # sent again after a resume
                return []
            self.server_sequence = sequence
            sequence = None
        if sequence is None:
            # The usual case: no attrs, so no dict to make. With the agent's
            # timestamp, output() skips make()'s checks, which output never
            # needs (measured ~0.08 µs a message, more than counting costs).
            if timestamp is not None:
                return [events.output(kind, output.data, timestamp)]
            return [events.make(kind, output.data)]
        attrs = {"server_sequence": sequence}
        return [events.make(kind, output.data, timestamp=timestamp, attrs=attrs)]

    def receive_all(self, frames: list[Buffer]) -> list[Event]:
        """Decode several messages at once: :meth:`receive` each, in one loop.

        The same events as calling :meth:`receive` for each message in turn,
        for less: the bulk of a stream (output with the agent's timestamp)
        is decoded inline, anything else goes through :meth:`receive`.

        Args:
            frames: The messages, in the order received.

        Returns:
            The events, numbered in the order received.
        """
        out: list[Event] = []
        emit = out.append
        utc = UTC
        run = self.run
        events = self._events
        resumable = self._resumable
        decoded = _decode_together(frames)
        for index, frame in enumerate(frames):
            if self.finished:
                self.frames += len(frames) - index
                self.ignored += len(frames) - index
                break
            if decoded is not None:
                output = decoded[index]
            else:
                try:
                    output = _decode_output(frame)
                except ValueError:  # ValidationError, DecodeError, UnicodeError
                    out += self.receive(frame)
                    continue
            kind = output.type
            moment = output.timestamp
            sequence = output.sequence
            if (
                (kind == "stdout" or kind == "stderr")
                and moment is not None
                and (sequence is None or resumable)
            ):
                # The usual case, inline: no attrs, never terminal.
                self.frames += 1
                if sequence is not None:
                    if sequence <= self.server_sequence:
                        self.ignored += 1  # sent again after a resume
                        continue
                    self.server_sequence = sequence
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=utc)
                sequence = events.count
                events.count = sequence + 1
                emit(
                    Event(
                        type=kind,
                        data=output.data,
                        timestamp=moment.timestamp(),
                        sequence=sequence,
                        run=run,
                    )
                )
                continue
            out += self.receive(frame)
        return out

    def _receive_other(self, frame: str | Buffer) -> list[Event]:
        """Decode any message the typed fast path does not take."""
        try:
            message = _decode(frame)
        # Absurdly deep nesting gives RecursionError.
        except (ValueError, RecursionError):
            return self._invalid(frame)
        if type(message) is not dict:
            return self._invalid(frame)
        kind = message.pop("type", None)
        if type(kind) is not str:
            return self._invalid(frame)

        timestamp: float | None = None
        if "timestamp" in message:
            raw = message.pop("timestamp")
            if type(raw) is str:
                timestamp = parse_timestamp(raw)
            if timestamp is None and raw is not None:
                message["timestamp"] = raw  # kept, since the event's is local
        if self._resumable:
            resumed = self._resumed(kind, message)
            if resumed is not None:
                return resumed
        elif message.get("sequence") is not None:
            message["server_sequence"] = message.pop("sequence")
        else:
            message.pop("sequence", None)  # null: as if absent, like the fast path

        if kind in _OUTPUT:
            data = message.pop("data", "")
            if type(data) is not str:
                return self._invalid(frame)
        elif kind == "complete":
            kind = "completed"
            data = ""
            # Anything but a JSON true is a failure, a missing value included.
            message["success"] = message.get("success") is True
        elif kind == "error":
            data = message.pop("error", "")
            if type(data) is not str:
                return self._invalid(frame)
        elif kind == "result":
            data = ""
        else:
            # Unknown types pass through; a string ``data`` is their payload,
            # anything else stays in attrs.
            data = message.get("data", "")
            if type(data) is str:
                message.pop("data", None)
            else:
                data = ""
        attrs = message if message else NO_ATTRS
        events = self._events
        event = events.make(kind, data, timestamp=timestamp, attrs=attrs)
        # Not only ``complete``: a "completed" passed through ends it too.
        self.finished = events.finished
        return [event]

    def _resumed(self, kind: str, message: dict[str, Any]) -> list[Event] | None:
        """Read what a resumable execution adds to a message (not output).

        Takes the ``sequence`` out of ``message``. Returns the events the
        message makes when it is one of the extension's own (``execution``:
        none; ``RESUME_GAP``: a ``gap`` event), or a frame received already
        (none); None for an ordinary message, to decode as usual.
        """
        sequence = message.pop("sequence", None)
        if type(sequence) is int:
            if sequence <= self.server_sequence:
                self.ignored += 1
                return []
            self.server_sequence = sequence
        if kind == EXECUTION:
            execution_id = message.get("execution_id")
            if type(execution_id) is str:
                self.execution_id = execution_id
                return []
        elif kind == "error" and message.get("code") == RESUME_GAP:
            first = message.get("first_available")
            if type(first) is int:
                return self._skip_to(first)
        return None

    def _skip_to(self, first_available: int) -> list[Event]:
        """Return the ``gap`` event for the frames before ``first_available``.

        Each frame lost is an event lost: the gap covers as many sequences,
        and the events after it are numbered as if they had come.
        """
        lost = first_available - self.server_sequence - 1
        if lost <= 0:
            return []
        events = self._events
        first = events.count
        gap = events.make(
            "gap", attrs={"first_missing": first, "last_missing": first + lost - 1}
        )
        events.count = first + lost
        self.server_sequence = first_available - 1
        return [gap]

    def close(self) -> list[Event]:
        """Return nothing: a WebSocket message is whole, so nothing is pending.

        Part of the vocabulary of every run decoder; the end of the
        connection before :attr:`finished` is :meth:`abort`'s business.
        """
        return []

    def abort(self, reason: str, code: int | None = None) -> list[Event]:
        """Return the events that end a run whose connection closed too early.

        Call it when the connection closes before :attr:`finished`: it makes an
        ``error`` event (attrs ``code`` = ``"closed_before_complete"``,
        ``close_code``, ``reason``) then ``completed`` with ``success`` False.
        After ``complete`` it returns nothing.

        Args:
            reason: The close reason or a description of what happened.
            code: The WebSocket close code (1006 for a connection lost without
                a close frame, 1009 for a message over the size limit), or
                None if unknown.
        """
        if self.finished:
            return []
        self.finished = True
        return self._events.abort(reason, code)

    def _invalid(self, frame: str | Buffer) -> list[Event]:
        text = (
            frame if isinstance(frame, str) else bytes(frame).decode("utf-8", "replace")
        )
        # Whitespace as str.strip() sees it, as the SDK does.
        if not text.strip():
            return []
        # Cut at a byte count, dropping a character cut in two; lone
        # surrogates become "?", since nothing downstream could encode them.
        raw = text.encode("utf-8", "replace")[:MAX_INVALID_TEXT]
        text = raw.decode("utf-8", "ignore")
        self.invalid_frames += 1
        return [self._events.make("error", text, attrs={"code": "invalid_frame"})]


# Encoder -------------------------------------------------------------------

_LIMIT_CODES: Final[dict[object, str]] = {
    "timeout": "EXECUTION_TIMEOUT",
    "output": "OUTPUT_LIMIT",
    "memory": "MEMORY_LIMIT",
}
_ERROR_CODES: Final[dict[object, str]] = {
    "language_unavailable": "LANGUAGE_UNAVAILABLE",
    "spawn_failed": "EXECUTION_FAILED",
}
_encode: Final = msgspec.json.encode


def _chunks(data: str, size: int) -> list[str]:
    if len(data) <= size:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


def error_code(event: Event) -> str:
    """Return the agent's error code for a ``resource_limit`` or ``error`` event.

    ``EXECUTION_TIMEOUT``, ``OUTPUT_LIMIT``, ``MEMORY_LIMIT`` (or
    ``RESOURCE_LIMIT``) for a limit; ``LANGUAGE_UNAVAILABLE`` or
    ``EXECUTION_FAILED`` for an error.
    """
    code = event.attrs.get("code") if event.type == "error" else None
    if event.type == "resource_limit":
        return _LIMIT_CODES.get(event.attrs.get("limit"), "RESOURCE_LIMIT")
    return _ERROR_CODES.get(code, "EXECUTION_FAILED")


def hopx_error(message: str, code: str, timestamp: float) -> bytes:
    """Return a HOPX ``error`` frame, as the agent writes it."""
    return _encode(_error(message, code, timestamp))


def _error(message: str, code: str, timestamp: float) -> dict[str, Any]:
    return {
        "type": "error",
        "error": message,
        "code": code,
        "timestamp": iso_timestamp(timestamp),
    }


class HopxEncoder:
    """Writes one local run's events as HOPX ``/execute/stream`` frames.

    Args:
        resumable: Number every frame (a resumable execution's frames, see
            the module docstring), not only output ones.

    Attributes:
        sequence: Frames numbered so far: the next one's ``sequence``, from 0
            per run.
    """

    __slots__ = ("_resumable", "sequence")

    def __init__(self, *, resumable: bool = False) -> None:
        self.sequence = 0
        self._resumable = resumable

    def encode(self, event: Event) -> list[bytes]:
        """Return the frames for ``event``, each one WebSocket text message."""
        kind = event.type
        if kind == "stdout" or kind == "stderr":
            timestamp = iso_timestamp(event.timestamp)
            frames = []
            for data in _chunks(event.data, CHUNK_CHARS):
                frames.append(
                    _encode(
                        {
                            "type": kind,
                            "data": data,
                            "timestamp": timestamp,
                            "sequence": self.sequence,
                        }
                    )
                )
                self.sequence += 1
            return frames
        message = _message(event)
        if message is None:
            return []
        return [self._numbered(message)]

    def error(self, message: str, code: str, timestamp: float) -> bytes:
        """Return an ``error`` frame of the server's own (numbered if resumable)."""
        return self._numbered(_error(message, code, timestamp))

    def _numbered(self, message: dict[str, Any]) -> bytes:
        if self._resumable:
            message["sequence"] = self.sequence
            self.sequence += 1
        return _encode(message)


def _message(event: Event) -> dict[str, Any] | None:
    """Return the frame for an event that is not output, or None for none."""
    kind = event.type
    attrs = event.attrs
    if kind == "resource_limit" or kind == "error":
        return _error(event.data, error_code(event), event.timestamp)
    if kind == "result":
        return {
            "type": "result",
            "exit_code": attrs.get("exit_code"),
            "execution_time": attrs.get("execution_time"),
            "timestamp": iso_timestamp(event.timestamp),
        }
    if kind == "completed":
        complete: dict[str, Any] = {
            "type": "complete",
            "success": bool(attrs.get("success")),
        }
        if attrs.get("truncated") is True:
            complete["truncated"] = True
        return complete
    return None
