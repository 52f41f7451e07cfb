"""Regroup output into whole lines."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from eventkit.events import Event, data_size
from eventkit.operators._base import Internals
from eventkit.operators._text import split_head

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventkit.operators._base import Clock

__all__ = ["Lines"]


class _Partial:
    """The unfinished line of one run's output of one type."""

    __slots__ = ("count", "first", "last_sequence", "pieces", "size", "started")

    def __init__(self, first: Event, started: float) -> None:
        #: The event the line started with: the chunk's sequence and time.
        self.first = first
        self.pieces: list[str] = []
        #: UTF-8 bytes of the pieces.
        self.size = 0
        #: Input events that went into it.
        self.count = 0
        self.last_sequence = first.sequence
        #: Clock reading at its start, for ``max_age``.
        self.started = started


class Lines:
    """Regroup output, per run and type, into chunks of whole lines.

    For each run and each type in ``types`` (``stdout`` and ``stderr``), the
    output is cut after its last newline: what comes before leaves as one
    chunk (one or more whole lines), the rest waits for its newline. An
    unfinished line leaves without one when it reaches ``max_line_bytes``
    (cut between characters), when it has waited ``max_age`` seconds (so an
    ``input()`` prompt or a progress bar still shows), when the run's next
    event of another type comes (it leaves first: output never moves past a
    lifecycle event), and at the end of input.

    A chunk has the type and run of its output, the ``sequence`` and
    ``timestamp`` of its first piece, and ``attrs`` ``count`` (input events
    in it), ``first_sequence`` and ``last_sequence``, as
    :func:`~eventkit.pipe.buffer_bytes` gives them. Joining a run's chunks of
    one type gives its output exactly, unless ``collapse_cr``.

    ``collapse_cr``: a line redrawn with carriage returns (progress bars of
    tqdm and pip: ``"\\r 10%\\r 20%\\r 30%\\n"``) keeps only its last state
    (``" 30%\\n"``); a ``\\r\\n`` line ending stays as it is. An unfinished
    line keeps only its last state too, so a bar that never ends a line holds
    little.

    Args:
        max_line_bytes: The longest unfinished line held, in UTF-8 bytes.
        max_age: Seconds on ``clock`` an unfinished line may wait; None for
            no limit.
        collapse_cr: Keep only the last state of lines redrawn with ``\\r``.
        types: The output types regrouped; others pass untouched.
        clock: The monotonic clock :meth:`deadline` and :meth:`tick` use.

    Raises:
        ValueError: If ``max_line_bytes`` is below 4, ``max_age`` negative,
            or ``types`` empty.
    """

    __slots__ = (
        "_clock",
        "_collapse",
        "_max_age",
        "_max_line",
        "_partials",
        "_types",
        "cut_lines",
        "empty_dropped",
        "timed",
    )

    #: Takes batches.
    batched = True
    #: The stage's name, as in :mod:`eventkit.pipe`.
    name = "lines"

    def __init__(
        self,
        *,
        max_line_bytes: int = 65536,
        max_age: float | None = None,
        collapse_cr: bool = False,
        types: Iterable[str] = ("stdout", "stderr"),
        clock: Clock = time.monotonic,
    ) -> None:
        if max_line_bytes < 4:
            raise ValueError(
                f"max_line_bytes must be at least 4 (the longest UTF-8 character), "
                f"not {max_line_bytes!r}"
            )
        if max_age is not None and not max_age >= 0:
            raise ValueError(f"max_age must be None or >= 0 seconds, not {max_age!r}")
        self._types = frozenset(str(t) for t in types)
        if not self._types:
            raise ValueError("give at least one output type to regroup")
        self._max_line = max_line_bytes
        self._max_age = max_age
        self._collapse = collapse_cr
        self._clock = clock
        #: Whether :meth:`deadline` can be other than None.
        self.timed = max_age is not None
        # (run, type) -> the unfinished line; insertion order is start order.
        self._partials: dict[tuple[str, str], _Partial] = {}
        #: Unfinished lines that left without their newline: at
        #: ``max_line_bytes``, ``max_age``, a lifecycle event or the end.
        self.cut_lines = 0
        #: Empty output events with no line to join.
        self.empty_dropped = 0

    def internals(self) -> Internals:
        """Return the lines cut and the empty events dropped (self-metrics)."""
        return Internals(
            {"empty": self.empty_dropped},
            {("lines_cut_total", ()): self.cut_lines},
            {},
        )

    def feed(self, events: list[Event]) -> list[Event]:
        """Regroup the batch; return the chunks and other events due, in order."""
        out: list[Event] = []
        types = self._types
        partials = self._partials
        for event in events:
            kind = event.type
            if kind not in types:
                if partials:
                    self._flush_run(event.run, out)
                out.append(event)
                continue
            key = (event.run, kind)
            partial = partials.get(key)
            data = event.data
            if not data:
                if partial is None:
                    self.empty_dropped += 1
                else:
                    partial.count += 1
                    partial.last_sequence = event.sequence
                continue
            end = data.rfind("\n")
            if end < 0:
                self._add(key, partial, event, data, out)
                continue
            # Whole lines up to the last newline leave now, with what waited.
            whole, rest = data[: end + 1], data[end + 1 :]
            if partial is None:
                out.append(self._chunk(event, [whole], 1, event.sequence))
            else:
                del partials[key]
                partial.pieces.append(whole)
                out.append(
                    self._chunk(
                        partial.first, partial.pieces, partial.count + 1, event.sequence
                    )
                )
            if rest:
                self._add(key, None, event, rest, out)
        return out

    def flush(self) -> list[Event]:
        """End of input: every unfinished line leaves, in the order they started."""
        out = [self._cut(partial) for partial in self._partials.values()]
        self._partials.clear()
        return out

    def deadline(self) -> float | None:
        """Return when the oldest unfinished line reaches ``max_age``, or None."""
        if self._max_age is None or not self._partials:
            return None
        oldest = next(iter(self._partials.values()))
        return oldest.started + self._max_age

    def tick(self, now: float) -> list[Event]:
        """Unfinished lines that waited ``max_age`` by ``now`` leave as they are."""
        max_age = self._max_age
        if max_age is None:
            return []
        due = []
        for key, partial in self._partials.items():
            if partial.started + max_age > now:
                break  # start order is clock order
            due.append(key)
        return [self._cut(self._partials.pop(key)) for key in due]

    def _add(
        self,
        key: tuple[str, str],
        partial: _Partial | None,
        event: Event,
        text: str,
        out: list[Event],
    ) -> None:
        """Add ``text`` of ``event`` to the unfinished line; cut it if too long."""
        if partial is None:
            started = self._clock() if self._max_age is not None else 0.0
            partial = self._partials[key] = _Partial(event, started)
        partial.count += 1
        partial.last_sequence = event.sequence
        if self._collapse and "\r" in text:
            # Only the last state of a redrawn line is worth keeping; a \r
            # at the very end may be half of a \r\n still to come.
            cut = text.rfind("\r", 0, len(text) - 1)
            if cut >= 0:
                partial.pieces.clear()
                partial.size = 0
                text = text[cut + 1 :]
        partial.pieces.append(text)
        partial.size += data_size(text)
        while partial.size > self._max_line:
            # The line is too long to wait: its first max_line_bytes leave.
            line = "".join(partial.pieces)
            head, rest = split_head(line, self._max_line)
            del self._partials[key]
            self.cut_lines += 1
            out.append(
                self._chunk(partial.first, [head], partial.count, partial.last_sequence)
            )
            if not rest:
                return
            started = self._clock() if self._max_age is not None else 0.0
            partial = self._partials[key] = _Partial(event, started)
            partial.count = 1
            partial.pieces.append(rest)
            partial.size = data_size(rest)

    def _flush_run(self, run: str, out: list[Event]) -> None:
        """The run's unfinished lines leave, in the order they started."""
        for key in [key for key in self._partials if key[0] == run]:
            out.append(self._cut(self._partials.pop(key)))

    def _cut(self, partial: _Partial) -> Event:
        """Return the chunk of an unfinished line leaving without its newline."""
        self.cut_lines += 1
        return self._chunk(
            partial.first, partial.pieces, partial.count, partial.last_sequence
        )

    def _chunk(
        self, first: Event, pieces: list[str], count: int, last_sequence: int
    ) -> Event:
        data = "".join(pieces)
        if self._collapse and "\r" in data:
            data = _collapse(data)
        return Event(
            type=first.type,
            data=data,
            timestamp=first.timestamp,
            sequence=first.sequence,
            run=first.run,
            attrs={
                "count": count,
                "first_sequence": first.sequence,
                "last_sequence": last_sequence,
            },
        )


def _collapse(text: str) -> str:
    """Keep the last state of each line redrawn with ``\\r``; keep ``\\r\\n``."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        ending = ""
        if line.endswith("\r") and index < len(lines) - 1:
            line, ending = line[:-1], "\r"
        cut = line.rfind("\r")
        if cut >= 0:
            line = line[cut + 1 :]
        lines[index] = line + ending
    return "\n".join(lines)
