"""Coalesce output events into byte-bounded chunks."""

from __future__ import annotations

import time
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final

from msgspec.structs import replace

from eventkit.events import Event, data_size
from eventkit.operators._base import Internals

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventkit.operators._base import Clock

__all__ = ["BufferBytes"]

#: Why a chunk left the buffer: the keys of :attr:`BufferBytes.flushed`.
_REASONS: Final = ("size", "age", "terminal", "end")
#: The longest UTF-8 encoding of one character, hence the smallest usable limit.
_MIN_LIMIT: Final = 4

# A pending buffer is a list, not an object:
# [size, order, started, first event, last event, data, data, ...].
# List items cost less to read and write than slots, and the hot path touches
# them for every output event (measured: about 60 ns an event less); the data
# strings are kept as they are, so that a chunk is one join of a slice.
#: Bytes of UTF-8 held.
_SIZE: Final = 0
#: Start order, to flush a run's buffers in the order they started.
_ORDER: Final = 1
#: Clock reading at the start; only meaningful when max_age is set.
_STARTED: Final = 2
#: The first and the last event held.
_FIRST: Final = 3
_LAST: Final = 4
#: Index of the first held event's data; the data follow, one per input
#: event, empty ones included, so the count is len(pending) - _DATA.
_DATA: Final = 5

_Pending = list[Any]
_by_order = itemgetter(_ORDER)


class BufferBytes:
    """Coalesce the ``data`` of output events into chunks of at most ``limit`` bytes.

    Events whose type is in ``types`` are buffered per ``(run, type)`` and leave
    as chunk events: the same type and run, the concatenated ``data`` (at most
    ``limit`` bytes of UTF-8, never empty), the ``sequence`` and ``timestamp`` of
    the first event in the chunk, and ``attrs`` ``count`` (input events in the
    chunk), ``first_sequence`` and ``last_sequence``.

    A buffer is flushed:

    - ``"size"``: when the next event's data would take it past ``limit`` (the
      buffer leaves first, the event starts a new one), or as soon as it holds
      exactly ``limit`` bytes;
    - ``"terminal"``: when an event of another type arrives for the same run; the
      run's buffers leave before that event, in the order they started, so no
      output ever moves past the lifecycle event that followed it;
    - ``"age"``: on :meth:`tick`, once it has waited ``max_age`` seconds since
      its first piece;
    - ``"end"``: on :meth:`flush`, in the order the buffers started.

    An event larger than ``limit`` is split at character boundaries, never inside
    a multi-byte character: the pending buffer leaves first, every full piece
    leaves as a chunk of its own (``count`` 1, ``first_sequence`` and
    ``last_sequence`` both the event's), and the last piece starts a new buffer.

    An event of a buffered type with empty ``data`` joins the pending buffer of
    its run and type if there is one (it counts in ``count`` and moves
    ``last_sequence``); otherwise it is dropped, since a chunk is never empty, and
    counted in :attr:`empty_dropped`.

    Concatenating the chunks' ``data`` per ``(run, type)`` gives exactly the
    input's ``data`` per ``(run, type)``. Events of other types pass unchanged
    and in input order, each releasing only its own run's buffers; the buffers
    of other runs stay.

    Args:
        limit: The largest chunk, in bytes of UTF-8.
        types: The event types to buffer.
        max_age: Seconds on ``clock`` a buffer may wait for more data before
            :meth:`tick` flushes it; None to wait for size, another event of
            the run, or the end of input.
        clock: The monotonic clock :meth:`deadline` and :meth:`tick` refer to;
            read only when a buffer starts and ``max_age`` is set.

    Raises:
        ValueError: If ``limit`` is below 4 or ``max_age`` is negative.
    """

    #: Takes batches.
    batched = True

    __slots__ = (
        "_clock",
        "_limit",
        "_max_age",
        "_oldest",
        "_order",
        "_pending",
        "_types",
        "chunks",
        "empty_dropped",
        "flushed",
        "splits",
        "timed",
    )

    def __init__(
        self,
        limit: int = 1024,
        *,
        types: Iterable[str] = ("stdout", "stderr"),
        max_age: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if limit < _MIN_LIMIT:
            raise ValueError(
                f"limit must be at least {_MIN_LIMIT} bytes (the longest UTF-8 "
                f"character), got limit={limit!r}"
            )
        if max_age is not None and max_age < 0:
            raise ValueError(
                f"max_age must be None or at least 0 seconds, got max_age={max_age!r}"
            )
        self._limit = limit
        self._types = frozenset(str(t) for t in types)
        self._max_age = max_age
        #: Whether :meth:`deadline` can be other than None.
        self.timed = max_age is not None
        self._clock = clock
        # Insertion order is start order: the first entry is the oldest buffer,
        # which makes deadline() cheap. Entries are deleted on flush, so a buffer
        # that starts again goes to the end.
        self._pending: dict[tuple[str, str], _Pending] = {}
        # The first entry of _pending, or None when unknown or empty: finding it
        # takes an iterator, costlier than the rest of feed() for a driver that
        # asks for the deadline after every event.
        self._oldest: _Pending | None = None
        self._order = 0
        #: Chunks emitted, by reason: ``"size"``, ``"age"``, ``"terminal"``,
        #: ``"end"``.
        self.flushed: dict[str, int] = dict.fromkeys(_REASONS, 0)
        #: Input events larger than ``limit`` that were split.
        self.splits = 0
        #: Chunks emitted in all.
        self.chunks = 0
        #: Events of a buffered type with empty data and no buffer to join.
        self.empty_dropped = 0

    #: The stage's name, as in :mod:`eventkit.pipe`.
    name = "buffer_bytes"

    def internals(self) -> Internals:
        """Return chunks by reason, splits and bytes held (self-metrics)."""
        counters: dict[tuple[str, tuple[str, ...]], float] = {
            ("buffer_chunks_total", (reason,)): count
            for reason, count in dict(self.flushed).items()
        }
        counters["buffer_splits_total", ()] = self.splits
        return Internals(
            {"empty": self.empty_dropped},
            counters,
            {("buffer_pending_bytes", ()): self.pending_bytes},
        )

    @property
    def pending_bytes(self) -> int:
        """Bytes of UTF-8 held in buffers now, over all runs and types.

        Computed when asked (for a metrics scrape), so the hot path keeps no
        running total.
        """
        # list() copies the values in one C call: safe against the event
        # loop's thread adding a buffer while another thread reads.
        return sum(pending[_SIZE] for pending in list(self._pending.values()))

    def feed(self, events: list[Event]) -> list[Event]:
        """Buffer or pass each event; return the chunks and events due now.

        Returns:
            In order: the chunks that left, and the events whose type is not
            buffered, each after the chunks of its run that it flushed.
        """
        out: list[Event] = []
        emit = out.append
        types = self._types
        buffers = self._pending
        limit = self._limit
        for event in events:
            type_ = event.type
            if type_ not in types:
                if buffers:
                    out.extend(self._flush_run(event))
                else:
                    emit(event)
                continue
            # The hot path: one lookup, a size, an append and a few integer
            # adds; strings are joined only when a chunk leaves.
            data = event.data
            # data_size() inlined: the call alone would cost a tenth of this.
            size = len(data) if data.isascii() else len(data.encode())
            key = (event.run, type_)
            pending = buffers.get(key)
            if pending is not None:
                total = pending[0] + size  # _SIZE
                if total < limit:
                    # An empty event lands here too: it joins, counted, adding
                    # no bytes.
                    pending[0] = total
                    pending[4] = event  # _LAST
                    pending.append(data)
                elif total > limit and size < limit:
                    # The usual overflow, inline: the buffer leaves, the
                    # event starts the next one.
                    del buffers[key]
                    if pending is self._oldest:
                        self._oldest = None
                    emit(self._chunk(pending, "size"))
                    self._new(key, event, data, size)
                else:
                    out.extend(self._overflow(key, pending, event, data, size, total))
            elif size:
                out.extend(self._start(key, event, data, size))
            else:
                self.empty_dropped += 1
        return out

    def _overflow(
        self,
        key: tuple[str, str],
        pending: _Pending,
        event: Event,
        data: str,
        size: int,
        total: int,
    ) -> tuple[Event, ...]:
        """``event`` fills the buffer ``pending`` to ``total`` bytes, or more."""
        self._remove(key, pending)
        if total == self._limit:
            pending[_SIZE] = total
            pending[_LAST] = event
            pending.append(data)
            return (self._chunk(pending, "size"),)
        return (self._chunk(pending, "size"), *self._start(key, event, data, size))

    def flush(self) -> list[Event]:
        """End of input: return every pending chunk, in the order buffers started."""
        if not self._pending:
            return []
        chunks = [self._chunk(p, "end") for p in self._pending.values()]
        self._pending.clear()
        self._oldest = None
        return chunks

    def deadline(self) -> float | None:
        """Return when the oldest buffer reaches ``max_age`` on the clock.

        Returns:
            None if ``max_age`` is None or nothing is pending.
        """
        if self._max_age is None:
            return None
        oldest = self._oldest
        if oldest is None:
            if not self._pending:
                return None
            oldest = self._oldest = next(iter(self._pending.values()))
        started: float = oldest[_STARTED]
        return started + self._max_age

    def tick(self, now: float) -> list[Event]:
        """Return the chunks of the buffers that have waited ``max_age`` by ``now``."""
        max_age = self._max_age
        if max_age is None or not self._pending:
            return []
        due: list[_Pending] = []
        # Start order is clock order, so the due buffers are a prefix.
        for pending in self._pending.values():
            if pending[_STARTED] + max_age > now:
                break
            due.append(pending)
        for pending in due:
            first = pending[_FIRST]
            del self._pending[first.run, first.type]
        if due:
            self._oldest = None
        return [self._chunk(p, "age") for p in due]

    def _start(
        self, key: tuple[str, str], event: Event, data: str, size: int
    ) -> tuple[Event, ...]:
        """Start the buffer ``key`` with non-empty ``data``; return full chunks."""
        limit = self._limit
        if size < limit:
            self._new(key, event, data, size)
            return ()
        if size == limit:
            return (self._piece(event, data),)
        self.splits += 1
        pieces = _split(data, limit)
        last = pieces.pop()
        chunks = [self._piece(event, piece) for piece in pieces]
        last_size = data_size(last)
        if last_size == limit:
            chunks.append(self._piece(event, last))
        else:
            self._new(key, replace(event, data=last), last, last_size)
        return tuple(chunks)

    def _new(self, key: tuple[str, str], event: Event, data: str, size: int) -> None:
        """Open the pending buffer ``key`` with ``event`` (``data``, ``size`` bytes).

        ``size`` is less than ``limit``.
        """
        # Read the clock only when someone will ask about age.
        started = self._clock() if self._max_age is not None else 0.0
        self._order += 1
        pending = [size, self._order, started, event, event, data]
        if not self._pending:
            self._oldest = pending
        self._pending[key] = pending

    def _remove(self, key: tuple[str, str], pending: _Pending) -> None:
        """Delete the buffer ``pending``, stored under ``key``."""
        del self._pending[key]
        if pending is self._oldest:
            self._oldest = None

    def _flush_run(self, event: Event) -> tuple[Event, ...]:
        """Return the run's pending chunks, in start order, then ``event``."""
        run = event.run
        pending = self._pending
        # Probe the run's few keys rather than scan the buffers of every run.
        found: list[_Pending] = []
        for type_ in self._types:
            buffer = pending.pop((run, type_), None)
            if buffer is not None:
                found.append(buffer)
        if not found:
            return (event,)
        if self._oldest in found:
            self._oldest = None
        if len(found) > 1:
            found.sort(key=_by_order)
        return (*(self._chunk(p, "terminal") for p in found), event)

    def _chunk(self, pending: _Pending, reason: str) -> Event:
        """Make the chunk event of ``pending`` and count it under ``reason``."""
        first = pending[_FIRST]
        self.chunks += 1
        self.flushed[reason] += 1
        return Event(
            type=first.type,
            data="".join(pending[_DATA:]),
            timestamp=first.timestamp,
            sequence=first.sequence,
            run=first.run,
            attrs={
                "count": len(pending) - _DATA,
                "first_sequence": first.sequence,
                "last_sequence": pending[_LAST].sequence,
            },
        )

    def _piece(self, event: Event, data: str) -> Event:
        """Make a chunk of one piece of ``event``, flushed for size."""
        self.chunks += 1
        self.flushed["size"] += 1
        sequence = event.sequence
        return Event(
            type=event.type,
            data=data,
            timestamp=event.timestamp,
            sequence=sequence,
            run=event.run,
            attrs={"count": 1, "first_sequence": sequence, "last_sequence": sequence},
        )


def _split(data: str, limit: int) -> list[str]:
    """Cut ``data`` into greedy pieces of at most ``limit`` bytes of UTF-8.

    Cuts fall on character boundaries only; every piece but the last is as long
    as fits.
    """
    if data.isascii():
        return [data[i : i + limit] for i in range(0, len(data), limit)]
    raw = data.encode()
    end = len(raw)
    pieces: list[str] = []
    start = 0
    while end - start > limit:
        cut = start + limit
        # Back off continuation bytes (10xxxxxx) to the start of the character;
        # at most 3 of them, and limit >= 4, so the piece is never empty.
        while raw[cut] & 0xC0 == 0x80:
            cut -= 1
        pieces.append(raw[start:cut].decode())
        start = cut
    pieces.append(raw[start:].decode())
    return pieces
