"""The E2B code interpreter ``/execute`` dialect, read side, without the HTTP.

E2B answers an execution with an HTTP body of one JSON object per line;
:class:`E2bDecoder` turns it into one run's events. The I/O lives in
:func:`eventkit.sources.ndjson` (``dialect="e2b"``).

Failure behaviour: nothing raises on bad input but a line over ``max_line``
(:exc:`~eventkit.exceptions.LineTooLongError`); a line that is not a JSON
object with a string ``type`` becomes an ``error`` event with
``attrs["code"] == "invalid_line"`` and decoding goes on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec

from eventkit.protocol.lines import (
    JSON_ERRORS,
    MAX_LINE,
    RunLineDecoder,
    as_text,
    extra_attrs,
    json_error_reason,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventkit.events import Event

__all__ = ["E2bDecoder"]


class E2bDecoder(RunLineDecoder):
    """Decodes E2B's code interpreter ``/execute`` body into one run's events.

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
      counted in :attr:`ignored`, and :attr:`done` is set.

    Only the output lines carry the server's clock: other events have the
    local receive time. Sequences are local, from 0, in the order received;
    :meth:`start` gives a synthetic ``started`` event. Blank lines are
    skipped; a line that is not a JSON object with a string ``type`` gives
    an ``error`` event with ``attrs["code"] == "invalid_line"`` (which does not
    count as an execution error).

    Args:
        run: The run id; a fresh one when None.
        clock: The local wall clock, Unix seconds.
        max_line: The longest line accepted, in bytes.

    Attributes:
        errors: ``error`` lines seen.
    """

    __slots__ = ("errors",)

    def __init__(
        self,
        run: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_line: int = MAX_LINE,
    ) -> None:
        super().__init__(run, clock=clock, max_line=max_line)
        self.errors = 0

    def _line(self, line: bytes) -> list[Event]:
        if self._events.finished:
            return self._ignore(line)
        if not line.strip():
            return []
        try:
            obj = msgspec.json.decode(line)
        except JSON_ERRORS as exc:
            return self._invalid(line, json_error_reason(exc))
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
                    as_text(obj.get("text", "")),
                    timestamp=timestamp,
                    attrs=extra_attrs(obj, ("type", "text", "timestamp")),
                )
            ]
        if type_ == "error":
            self.errors += 1
            name, value = obj.get("name"), as_text(obj.get("value", ""))
            data = f"{name}: {value}" if name else value
            return [make("error", data, attrs=extra_attrs(obj, ("type",)))]
        if type_ == "end_of_execution":
            attrs = {**extra_attrs(obj, ("type",)), "success": not self.errors}
            return [make("completed", attrs=attrs)]
        # result, number_of_executions and types unknown to eventkit.
        text = as_text(obj.get("text", ""))
        return [make(type_, text, attrs=extra_attrs(obj, ("type",)))]
