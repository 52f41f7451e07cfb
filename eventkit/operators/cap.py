"""Cap a run's output by its head and its tail, saying what was left out."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

from msgspec.structs import replace

from eventkit.events import TERMINAL_TYPES, Event, data_size
from eventkit.operators._base import Internals, Stateless
from eventkit.operators._text import split_head, split_tail

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["CapOutput"]

#: The type of the event that stands for what was left out.
TRUNCATED: Final = "truncated"


class _Stream:
    """One run's output of one type, as :class:`CapOutput` caps it."""

    __slots__ = ("first_cut", "held", "held_bytes", "omitted", "passed", "ring")

    def __init__(self) -> None:
        #: Bytes passed live, at most ``head``.
        self.passed = 0
        #: Held events (and whether each already lost bytes): the tail so
        #: far; None while the head is not full.
        self.ring: deque[list[object]] | None = None
        self.held_bytes = 0
        #: Bytes and events left out since the last release.
        self.omitted = [0, 0]
        #: The first event that lost bytes since the last release.
        self.first_cut: Event | None = None


class CapOutput(Stateless):
    """Keep the first ``head`` and the last ``tail`` bytes of each run's output.

    Per run and per type in ``types`` (``stdout`` and ``stderr`` by
    default, each capped on its own, so a flood on one never hides the
    other's tail): the first ``head`` bytes of UTF-8 pass at once, as they
    come; after that output is held in a ring of the last ``tail`` bytes.
    When the run's next event of another type comes (``result``, ``error``,
    ``resource_limit``, ``completed``, ...), or the input ends, the run's
    held output is released: for each type that lost bytes, one
    ``truncated`` event (``attrs``: ``stream``, the type; ``omitted_bytes``;
    ``omitted_events``, the events that lost bytes; its sequence and
    timestamp those of the first of them), then the held tail, then that
    event. So output never moves past a lifecycle event, and the end of the
    output, where the error usually is, is never lost.

    Cuts fall between characters: an event cut at the head or at the tail
    keeps its sequence and timestamp, with the part of its data that fits
    (at most ``head`` and ``tail`` bytes: a character the limit would cut in
    two is left out). Output after a release is held again (the run's head
    is spent). Other events pass untouched.

    Memory: at most ``tail`` bytes (and the events holding them) per run and
    type, until the run's next lifecycle event; a run's state goes with its
    terminal event.

    Args:
        head: Bytes of each run's output of each type passed live.
        tail: Bytes of the end kept.
        types: The output types capped.

    Raises:
        ValueError: If ``head`` or ``tail`` is negative, or ``types`` empty.
    """

    __slots__ = (
        "_head",
        "_runs",
        "_tail",
        "_types",
        "held_bytes",
        "omitted_bytes",
        "truncations",
    )

    #: The stage's name, as in :mod:`eventkit.pipe`.
    name = "cap_output"

    def __init__(
        self,
        head: int = 65536,
        tail: int = 65536,
        *,
        types: Iterable[str] = ("stdout", "stderr"),
    ) -> None:
        if head < 0 or tail < 0:
            raise ValueError(
                f"head and tail must be 0 or more bytes, not {head!r} and {tail!r}"
            )
        self._head = head
        self._tail = tail
        self._types = frozenset(str(t) for t in types)
        if not self._types:
            raise ValueError("give at least one output type to cap")
        # run -> type -> stream, for the runs with output seen.
        self._runs: dict[str, dict[str, _Stream]] = {}
        #: ``truncated`` events emitted.
        self.truncations = 0
        #: Bytes left out, over all runs.
        self.omitted_bytes = 0
        #: Bytes held now, over all runs.
        self.held_bytes = 0

    def internals(self) -> Internals:
        """Return truncations, bytes left out and bytes held (self-metrics)."""
        return Internals(
            {},
            {
                ("cap_truncations_total", ()): self.truncations,
                ("cap_omitted_bytes_total", ()): self.omitted_bytes,
            },
            {("cap_held_bytes", ()): self.held_bytes},
        )

    def feed(self, events: list[Event]) -> list[Event]:
        """Pass, hold or release each event; return what is due now, in order."""
        out: list[Event] = []
        emit = out.append
        runs = self._runs
        types = self._types
        head = self._head
        for event in events:
            kind = event.type
            if kind not in types:
                streams = runs.get(event.run)
                if streams is not None:
                    self._release(streams, out)
                    if kind in TERMINAL_TYPES:
                        del runs[event.run]
                emit(event)
                continue
            streams = runs.get(event.run)
            if streams is None:
                streams = runs[event.run] = {}
            stream = streams.get(kind)
            if stream is None:
                stream = streams[kind] = _Stream()
            if stream.ring is None:
                size = data_size(event.data)
                if stream.passed + size <= head:
                    stream.passed += size
                    emit(event)
                    continue
                # The head fills up within this event: its start passes.
                first, rest = split_head(event.data, head - stream.passed)
                stream.passed = head
                stream.ring = deque()
                if first:
                    emit(replace(event, data=first))
                if not rest:
                    continue
                event = replace(event, data=rest)
            self._hold(stream, event)
        return out

    def flush(self) -> list[Event]:
        """End of input: release what every run holds."""
        out: list[Event] = []
        for streams in self._runs.values():
            self._release(streams, out)
        self._runs.clear()
        return out

    def _hold(self, stream: _Stream, event: Event) -> None:
        """Add ``event`` to the stream's ring; drop from its front past ``tail``."""
        ring = stream.ring
        assert ring is not None
        size = data_size(event.data)
        ring.append([event, False])
        stream.held_bytes += size
        self.held_bytes += size
        excess = stream.held_bytes - self._tail
        while excess > 0:
            entry = ring[0]
            oldest: Event = entry[0]  # type: ignore[assignment]
            oldest_size = data_size(oldest.data)
            if not entry[1]:
                stream.omitted[1] += 1
                if stream.first_cut is None:
                    stream.first_cut = oldest
            cut, kept = split_tail(oldest.data, max(oldest_size - excess, 0))
            if kept:
                entry[0] = replace(oldest, data=kept)
                entry[1] = True
                dropped = data_size(cut)
            else:
                ring.popleft()
                dropped = oldest_size
            stream.omitted[0] += dropped
            self.omitted_bytes += dropped
            stream.held_bytes -= dropped
            self.held_bytes -= dropped
            excess -= dropped

    def _release(self, streams: dict[str, _Stream], out: list[Event]) -> None:
        """Append the run's ``truncated`` events and held tails, type by type."""
        for kind, stream in streams.items():
            ring = stream.ring
            if not ring and stream.first_cut is None:
                continue
            first = stream.first_cut
            if first is not None:
                self.truncations += 1
                out.append(
                    Event(
                        type=TRUNCATED,
                        timestamp=first.timestamp,
                        sequence=first.sequence,
                        run=first.run,
                        attrs={
                            "stream": kind,
                            "omitted_bytes": stream.omitted[0],
                            "omitted_events": stream.omitted[1],
                        },
                    )
                )
            if ring:
                out.extend(entry[0] for entry in ring)  # type: ignore[misc]
                ring.clear()
            self.held_bytes -= stream.held_bytes
            stream.held_bytes = 0
            stream.omitted = [0, 0]
            stream.first_cut = None
