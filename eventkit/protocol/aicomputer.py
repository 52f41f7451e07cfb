"""The AI Computer ``execute/stream`` dialect, both directions, without the HTTP.

AI Computer answers an execute call with an HTTP body of one JSON object per
line (NDJSON). :class:`AiComputerDecoder` reads such a body as the official
``ai-computer-client`` 0.3.4 reads it (the differences are listed on the
class); :class:`AiComputerEncoder` writes the events of a local run in the
form every published client reads (the local server's side). The I/O lives
in :mod:`eventkit.sources.aicomputer_api` and :mod:`eventkit.server.aicomputer`.

Failure behaviour: the decoder never raises on bad input but for a line over
its ``max_line`` (:exc:`~eventkit.exceptions.LineTooLongError`); a line that
cannot be read becomes an ``error`` event with ``attrs["code"] ==
"invalid_line"``. JSON is parsed strictly (RFC 8259, valid UTF-8):
``NaN``, ``Infinity``, numbers out of the float range and lone surrogate
escapes, which Python's :mod:`json` accepts, make such errors, since a lone
surrogate would break every sink that writes the event as UTF-8. The encoder
never raises on an event a local run makes; events of other types are
dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec

from eventkit.protocol.lines import (
    JSON_ERRORS,
    RunLineDecoder,
    as_text,
    extra_attrs,
    json_error_reason,
)

if TYPE_CHECKING:
    from eventkit.events import Event

__all__ = ["CHUNK_CHARS", "AiComputerDecoder", "AiComputerEncoder"]

#: Characters of output per line written: at most 96 KiB once encoded, well
#: under the 128 KiB line limit of older aiohttp clients.
CHUNK_CHARS: Final = 16 * 1024

_encode: Final = msgspec.json.encode


class AiComputerDecoder(RunLineDecoder):
    """Decodes AI Computer's ``execute/stream`` body into one run's events.

     Follows ``ai-computer-client`` 0.3.4 (``submodules/code.py``
     ``execute_stream``), line by line:

     1. Surrounding ASCII whitespace is stripped; empty lines are skipped.
     2. A line that starts with ``{`` and ends with ``}`` is a JSON object and
        gives an event of type ``obj.get("type", "info")`` and data
        ``obj.get("data", "")``. A ``data`` that is not a string is converted
        with :class:`str` (what printing it would show).
    A ``completed`` line may carry eventkit's extension (its own server
    writes it, see :class:`AiComputerEncoder`): an integer ``exit_code``
    gives a ``result`` event with it just before ``completed``, and a
    boolean ``success`` goes to ``completed``'s attrs; values of other
    types are dropped. Without them ``completed`` carries neither, as the
    wire says nothing of the outcome.
     3. Any other line gives a ``stdout`` event with the stripped text.
     4. ``completed`` ends the run: later lines are ignored and counted in
        :attr:`ignored`, and :attr:`done` is set. ``error`` does not end it.

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
       the run gets a synthetic ``started`` event from :meth:`start`.

     Args:
         run: The run id; a fresh one when None.
         clock: The local wall clock, Unix seconds.
         max_line: The longest line accepted, in bytes.
    """

    __slots__ = ()

    def _line(self, line: bytes) -> list[Event]:
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
        except JSON_ERRORS as exc:
            return self._invalid(line, json_error_reason(exc))
        type_ = obj.get("type", "info")
        if not isinstance(type_, str):
            return self._invalid(line, f"type is not a string: {type_!r}")
        data = as_text(obj.get("data", ""))
        if type_ == "completed":
            return self._completed(obj, data)
        attrs = extra_attrs(obj, ("type", "data"))
        return [self._events.make(type_, data, attrs=attrs)]

    def _completed(self, obj: dict[str, Any], data: str) -> list[Event]:
        """Return ``completed``, after a ``result`` when the line has an exit code."""
        attrs = dict(extra_attrs(obj, ("type", "data", "exit_code", "success")))
        events: list[Event] = []
        exit_code = obj.get("exit_code")
        if isinstance(exit_code, int) and not isinstance(exit_code, bool):
            events.append(self._events.make("result", attrs={"exit_code": exit_code}))
        success = obj.get("success")
        if isinstance(success, bool):
            attrs["success"] = success
        events.append(self._events.make("completed", data, attrs=attrs))
        return events


def _chunks(data: str, size: int) -> list[str]:
    if len(data) <= size:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


class AiComputerEncoder:
    """Writes one local run's events as AI Computer ``execute/stream`` lines.

    The lines keep to what every published client reads (``protocols.md``
    §3.3): ``type`` and ``data``, string values, an ``error`` only as the
    last event before ``completed``, and always a ``completed`` line with
    ``"data": ""`` at the end. Output is split at :data:`CHUNK_CHARS`
    characters per line.

    The wire has no exit code: the final line carries eventkit's extension,
    ``exit_code`` (when the run had one) and ``success`` (it exited 0 and
    hit no limit), which the official clients ignore and
    :class:`AiComputerDecoder` reads: ``{"type": "completed", "data": "",
    "exit_code": 0, "success": true}``.

    Failures (a limit, an executor error, a non-zero exit) become one
    ``error`` line held back until ``completed``, so that it is the last
    event before it, as clients older than 0.3.4 require (they stop at the
    first ``error``).

    Args:
        output: Whether to keep the output text in :attr:`text` too (for the
            non-streaming ``execute`` call).

    Attributes:
        output: Whether the output text is kept.
        text: The output so far, when :attr:`output` is set.
        error: The failure to report, if any yet.
        exit_code: The run's exit code, once known.
    """

    __slots__ = ("error", "exit_code", "output", "text")

    def __init__(self, *, output: bool = False) -> None:
        self.output = output
        self.text: list[str] = []
        self.error: str | None = None
        self.exit_code: int | None = None

    def encode(self, event: Event) -> list[bytes]:
        """Return the lines for ``event``, each ``\\n``-terminated; often none."""
        kind = event.type
        if kind == "stdout" or kind == "stderr":
            if self.output:
                self.text.append(event.data)
            return [
                _encode({"type": kind, "data": data}) + b"\n"
                for data in _chunks(event.data, CHUNK_CHARS)
            ]
        if kind == "resource_limit" or kind == "error":
            if self.error is None:
                self.error = event.data
        elif kind == "result":
            exit_code = event.attrs.get("exit_code")
            self.exit_code = exit_code if isinstance(exit_code, int) else None
            if self.error is None and exit_code != 0:
                self.error = _exit_message(exit_code)
        elif kind == "completed":
            return self.end()
        return []

    def end(self) -> list[bytes]:
        """Return the last lines: the ``error``, if any, then ``completed``."""
        completed: dict[str, Any] = {"type": "completed", "data": ""}
        if self.exit_code is not None:
            completed["exit_code"] = self.exit_code
        completed["success"] = self.error is None and self.exit_code == 0
        lines = [_encode(completed) + b"\n"]
        if self.error is not None:
            lines.insert(0, _encode({"type": "error", "data": self.error}) + b"\n")
        return lines


def _exit_message(exit_code: object) -> str:
    if isinstance(exit_code, int) and exit_code < 0:
        return f"process killed by signal {-exit_code}"
    return f"process exited with code {exit_code}"
