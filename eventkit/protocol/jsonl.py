"""eventkit's own wire format: JSON Lines, one :class:`~eventkit.Event` per line.

Every field is written, so a stream recorded with :func:`encode` is read back
by :func:`decode` exactly as it was (``attrs`` values must be JSON values; a
tuple comes back as a list). :func:`encode` and :func:`decode` take one line;
:class:`EventkitDecoder` reads a whole stream of them (the ``"eventkit"``
dialect of :func:`eventkit.sources.ndjson`), with the vocabulary of every run
decoder (:mod:`eventkit.protocol`).

Failure behaviour: :func:`encode` raises :exc:`TypeError` for an attr value
that is not a JSON value; :func:`decode` raises
:exc:`~eventkit.exceptions.DecodeError` for a line that is not an event.
:class:`EventkitDecoder` raises nothing on bad input but a line over its
``max_line`` (:exc:`~eventkit.exceptions.LineTooLongError`): an invalid line
becomes an ``error`` event with ``attrs["code"] == "invalid_line"``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import msgspec

from eventkit.events import NO_ATTRS, Event
from eventkit.exceptions import DecodeError
from eventkit.protocol.lines import MAX_LINE, LineDecoder, invalid_line
from eventkit.protocol.run import RunEvents, closed_error

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DecodeError", "EventkitDecoder", "decode", "encode"]


def _encode_other(value: Any) -> Any:
    # Mappings such as the shared empty attrs (a MappingProxyType) go as objects.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


_encoder: Final = msgspec.json.Encoder(enc_hook=_encode_other)
_decoder: Final = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    """Return ``event`` as one JSON line, newline included."""
    return _encoder.encode(event) + b"\n"


def decode(line: bytes | str, *, lineno: int = 0) -> Event:
    """Parse one JSON line (trailing newline allowed) into an :class:`Event`.

    Args:
        line: The line's bytes or text.
        lineno: Its 1-based position in the file, named in errors.

    Raises:
        DecodeError: If the line is not a JSON object with the Event fields of
            the right types (``type`` is required).
    """
    try:
        return _decoder.decode(line)
    # ValidationError is a DecodeError; invalid UTF-8 and lone surrogates give
    # UnicodeError, absurd nesting RecursionError: all are bad input alike.
    except (msgspec.DecodeError, UnicodeError, RecursionError) as exc:
        text = (
            line.encode(errors="replace").decode()
            if isinstance(line, str)
            else line.decode(errors="replace")
        )
        reason = (
            f"{type(exc).__name__}: {exc}"
            if isinstance(exc, RecursionError)
            else str(exc)
        )
        raise DecodeError(reason, line=lineno, text=text.rstrip("\n")) from None


class EventkitDecoder(LineDecoder):
    """Decodes a stream of eventkit JSON Lines, events kept as they were sent.

    Events keep their own run, sequence and timestamp, and a stream may carry
    several runs. The input is read to its end (:attr:`done` is always
    False): it ends cleanly (:attr:`finished`) when at least one event came
    and every run seen has had its ``completed`` event.

    A line that is not a valid event gives an ``error`` event with
    ``attrs["code"] == "invalid_line"`` in the decoder's own run (:attr:`run`,
    numbered from 0), since the line's run cannot be known and no sequence of
    a real run may be taken. :meth:`abort` gives each unfinished run an
    ``error`` and a ``completed`` event numbered after the last of its
    sequences seen (or, when no event came at all, the decoder's run).
    :meth:`start` gives nothing: the stream has its own ``started`` events.
    Nothing is ignored: :attr:`ignored` stays 0.

    Args:
        run: The run id for events that belong to no run of the stream; a
            fresh one when None.
        clock: The local wall clock, Unix seconds.
        max_line: The longest line accepted, in bytes.
    """

    __slots__ = ("_clock", "_events", "_open", "_seen")

    def __init__(
        self,
        run: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_line: int = MAX_LINE,
    ) -> None:
        super().__init__(max_line=max_line)
        self._clock = clock
        self._events = RunEvents(run, clock=clock)
        # Runs seen and not completed, with their highest sequence.
        self._open: dict[str, int] = {}
        self._seen = False

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

    def start(self, attrs: Mapping[str, Any] = NO_ATTRS) -> list[Event]:
        """Return nothing: eventkit streams carry their own ``started``.

        Args:
            attrs: Unused: no event is made.
        """
        return []

    def _line(self, line: bytes) -> list[Event]:
        if not line.strip():
            return []
        try:
            event = decode(line)
        except DecodeError as exc:
            self.invalid_lines += 1
            data, attrs = invalid_line(line, str(exc))
            return [self._events.make("error", data, attrs=attrs)]
        self._seen = True
        if event.type == "completed":
            self._open.pop(event.run, None)
        else:
            last = self._open.get(event.run)
            if last is None or event.sequence > last:
                self._open[event.run] = event.sequence
        return [event]

    def abort(self, reason: str, code: int | None = None) -> list[Event]:
        """Return the events ending each run the input left open.

        For each run seen without its ``completed``: an ``error`` event
        (attrs ``code`` = ``"closed_before_complete"``, ``close_code`` and
        ``reason``) then ``completed`` with ``attrs["success"]`` False,
        numbered after the run's last sequence seen and timestamped now. When
        no event came at all, the two events are in the decoder's own run.
        Nothing once :attr:`finished`.

        Args:
            reason: What happened, e.g. a connection error's text.
            code: A close code, if the transport has them (HTTP has none).
        """
        if self.finished:
            return []
        if not self._seen:
            self._seen = True
            return self._events.abort(reason, code)
        data, attrs = closed_error(reason, code)
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
