"""Put each run's events back in sequence order."""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Final

from eventkit.events import TERMINAL_TYPES, Event, EventType
from eventkit.operators._base import Internals

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventkit.operators._base import Clock

__all__ = ["Reorder"]

# A plain str rather than the enum member, so gap events carry the same type
# object as events decoded from the wire.
_GAP: Final = EventType.GAP.value
#: Given-up holes remembered per run, to tell late events from duplicates.
_SKIPPED_RANGES: Final = 64
#: Finished runs whose next expected sequence is remembered.
_FINISHED_RUNS: Final = 4096


class _RunState:
    """What :class:`Reorder` knows about one run."""

    __slots__ = ("completed", "expected", "heap", "held", "run", "skipped")

    def __init__(self, run: str, expected: int) -> None:
        self.run = run
        #: The next sequence to emit.
        self.expected = expected
        #: Events waiting for the sequences before them, by sequence.
        self.held: dict[int, Event] = {}
        #: The keys of :attr:`held` as a min-heap, for the lowest one.
        self.heap: list[int] = []
        #: The last holes given up, as ``(first, last)``; made on the first gap.
        self.skipped: deque[tuple[int, int]] | None = None
        #: Whether the run's terminal event has been emitted.
        self.completed = False


class Reorder:
    """Emit each run's events in :attr:`~eventkit.events.Event.sequence` order.

    Runs (:attr:`~eventkit.events.Event.run`) are ordered independently; event
    types play no part, so unknown types are ordered like all others. Each run
    starts at sequence ``start``. An event that is the next expected one is
    emitted at once, with every held event that follows it without a hole;
    an event further ahead is held until the sequences before it arrive.

    Holes: a run holds at most ``window`` events. When one more would have to
    be held, or when the run's longest-waiting held event has waited
    ``max_delay`` seconds (checked in :meth:`tick`), the first hole is given up:
    a ``gap`` event is emitted for it (unless ``emit_gaps`` is false), with
    ``sequence`` and ``attrs["first_missing"]`` the first missing sequence,
    ``attrs["last_missing"]`` the last one, and the timestamp of the event
    after the hole; then the held events after the hole are released. At end
    of input, :meth:`flush` gives up every remaining hole the same way.

    Duplicates and late events: an event whose sequence is held already, or
    was emitted already, is dropped and counted in :attr:`duplicates`; one
    whose sequence falls in a hole given up recently (the last 64 per run) is
    dropped and counted in :attr:`late`. Nothing leaves unaccounted for.

    Memory: at most ``window`` events per run. A run's state is forgotten
    once its ``completed`` event has been emitted and nothing is held for it;
    the next expected sequence of the last 4096 finished runs is remembered,
    so a straggler for a finished run is dropped and counted rather than
    taken for a new run.

    Place reorder before any operator that drops events, such as ``only`` or
    ``exclude``: a sequence dropped upstream never arrives, so it would look
    like a hole, delay every later event of its run by up to ``max_delay`` and
    come out as a ``gap``.

    Time is read only from ``clock``, when an event is held; time-based give-ups
    happen in :meth:`tick`, which the driver calls once :meth:`deadline` has
    passed.

    Args:
        window: Most events held per run.
        max_delay: Seconds on ``clock`` a held event may wait for the
            sequences before it; None to wait until the window is full.
        start: The first sequence of every run; None to start each run at the
            sequence of its first event.
        emit_gaps: Whether to emit a ``gap`` event for each hole given up.
        clock: The clock :meth:`deadline` and :meth:`tick` refer to.

    Raises:
        ValueError: If ``window`` is not positive or ``max_delay`` is negative.
    """

    #: Takes batches.
    batched = True

    __slots__ = (
        "_arrivals",
        "_clock",
        "_emit_gaps",
        "_finished",
        "_held_count",
        "_max_delay",
        "_runs",
        "_start",
        "_window",
        "duplicates",
        "gaps",
        "late",
        "missing",
        "timed",
    )

    def __init__(
        self,
        *,
        window: int = 1024,
        max_delay: float | None = 1.0,
        start: int | None = 0,
        emit_gaps: bool = True,
        clock: Clock = time.monotonic,
    ) -> None:
        if window <= 0:
            raise ValueError(
                f"window must be a positive number of events, got {window!r}"
            )
        # Written as a negated >= so that NaN is refused too.
        if max_delay is not None and not max_delay >= 0:
            raise ValueError(
                f"max_delay must be zero or more seconds, or None, got {max_delay!r}"
            )
        self._window = window
        self._max_delay = max_delay
        #: Whether :meth:`deadline` can be other than None.
        self.timed = max_delay is not None
        self._start = start
        self._emit_gaps = emit_gaps
        self._clock = clock
        # Insertion order is the order of first appearance, which flush follows.
        self._runs: dict[str, _RunState] = {}
        self._finished: OrderedDict[str, _RunState] = OrderedDict()
        # Held events in arrival order as (arrival, state, sequence). Entries
        # are not removed on release but skipped once their sequence is no
        # longer held by that state object, which keeps release cheap and
        # deadline() amortized O(1). Only kept when max_delay is set.
        self._arrivals: deque[tuple[float, _RunState, int]] = deque()
        self._held_count = 0
        #: Holes given up.
        self.gaps = 0
        #: Sequences given up, over all holes.
        self.missing = 0
        #: Events dropped because their sequence was held or emitted already.
        self.duplicates = 0
        #: Events dropped because their sequence was in a hole given up.
        self.late = 0

    #: The stage's name, as in :mod:`eventkit.pipe`.
    name = "reorder"

    @property
    def held(self) -> int:
        """Number of events held now, over all runs."""
        return self._held_count

    def internals(self) -> Internals:
        """Return duplicates, late events, gaps and held events (self-metrics)."""
        return Internals(
            {"duplicate": self.duplicates, "late": self.late},
            {
                ("reorder_gaps_total", ()): self.gaps,
                ("reorder_missing_events_total", ()): self.missing,
            },
            {("reorder_held_events", ()): self._held_count},
        )

    def feed(self, events: list[Event]) -> list[Event]:
        """Take a batch; return the events it frees, in order.

        Call :meth:`deadline` afterwards: holding an event may set one.
        """
        out: list[Event] = []
        emit = out.append
        runs = self._runs
        for event in events:
            state = runs.get(event.run)
            # The hot path: the next expected event of a run with nothing held.
            if (
                state is not None
                and event.sequence == state.expected
                and not state.held
                and event.type != _GAP
            ):
                state.expected += 1
                if event.type in TERMINAL_TYPES:
                    self._retire(state)
                emit(event)
            else:
                out.extend(self._feed_slow(event, state))
        return out

    def _feed_slow(self, event: Event, state: _RunState | None) -> Sequence[Event]:
        """Handle every case of :meth:`feed` but the hot path, for one event."""
        run = event.run
        sequence = event.sequence
        if state is None:
            state = self._finished.get(run)
            if state is None:
                first = sequence if self._start is None else self._start
                state = _RunState(run, first)
            elif sequence < state.expected:
                # A straggler for a finished run: count it without reviving
                # the run.
                self._finished.move_to_end(run)
                self._count_dropped(state, sequence)
                return ()
            else:
                # Events after the terminal one: the run goes on, so order
                # them as before; it is retired again once nothing is held.
                del self._finished[run]
            self._runs[run] = state
        if sequence < state.expected:
            self._count_dropped(state, sequence)
            return ()
        held = state.held
        if sequence in held:
            self.duplicates += 1
            return ()
        out: list[Event] = []
        if sequence == state.expected:
            out.append(event)
            state.expected = self._covered(state, event) + 1
            if event.type in TERMINAL_TYPES:
                state.completed = True
            self._release(state, out)
        else:
            held[sequence] = event
            heapq.heappush(state.heap, sequence)
            self._held_count += 1
            if self._max_delay is not None:
                self._record_arrival(state, sequence)
            # Holding first and then trimming also covers an event that falls
            # inside the first hole: it becomes the lowest held event and is
            # released right after the part of the hole before it.
            while len(held) > self._window:
                self._give_up(state, out)
        if state.completed and not held:
            self._retire(state)
        return out

    def deadline(self) -> float | None:
        """Return when the longest-waiting held event reaches ``max_delay``.

        None when nothing is held or ``max_delay`` is None. The value is on
        ``clock``; call :meth:`tick` once it has passed.
        """
        if not self._held_count or self._max_delay is None:
            return None
        arrivals = self._arrivals
        # Some event is held, and each held event has an entry, so the loop
        # ends on a live entry before the deque runs out.
        while True:
            arrival, state, sequence = arrivals[0]
            if sequence in state.held:
                return arrival + self._max_delay
            arrivals.popleft()

    def tick(self, now: float) -> list[Event]:
        """Give up the holes whose events have waited ``max_delay`` by ``now``.

        For every run whose longest-waiting held event arrived ``max_delay``
        or more before ``now``, give up holes until that is no longer so.

        Returns:
            The gap events and released events, in order.
        """
        max_delay = self._max_delay
        if max_delay is None or not self._held_count:
            return []
        out: list[Event] = []
        arrivals = self._arrivals
        while arrivals:
            arrival, state, sequence = arrivals[0]
            if sequence not in state.held:
                arrivals.popleft()
                continue
            # The same sum as deadline() returns, so tick(deadline()) is due.
            if arrival + max_delay > now:
                break
            # The overdue event is not necessarily the lowest held one; each
            # give-up releases at least one event, so this loop ends.
            self._give_up(state, out)
            if state.completed and not state.held:
                self._retire(state)
        return out

    def flush(self) -> list[Event]:
        """End of input: give up every hole and return all held events.

        Runs come in order of first appearance, each in sequence order, with
        a gap event before each hole's next event when ``emit_gaps`` is set.
        """
        out: list[Event] = []
        for state in list(self._runs.values()):
            while state.held:
                self._give_up(state, out)
            if state.completed:
                self._retire(state)
        self._arrivals.clear()
        return out

    def _release(self, state: _RunState, out: list[Event]) -> None:
        """Append the held events from ``state.expected`` on, up to a hole."""
        held = state.held
        heap = state.heap
        expected = state.expected
        released = 0
        while True:
            # A gap that came in stands for a range: what is held within it
            # is a duplicate of the missing, and goes.
            while heap and heap[0] < expected:
                held.pop(heapq.heappop(heap))
                self.duplicates += 1
                released += 1
            if expected not in held:
                break
            event = held.pop(expected)
            # Releases always take the lowest held sequence, so the heap's
            # top is the same event.
            heapq.heappop(heap)
            out.append(event)
            if event.type in TERMINAL_TYPES:
                state.completed = True
            expected = self._covered(state, event) + 1
            released += 1
        state.expected = expected
        self._held_count -= released

    def _covered(self, state: _RunState, event: Event) -> int:
        """Return the last sequence ``event`` stands for: its own, or a gap's end.

        A ``gap`` event coming in (from an operator upstream, or a source
        that knows what it lost) covers its whole range: no second gap is
        made for it, and nothing waits ``max_delay`` for the sequences in it;
        stragglers of the range count as late.
        """
        sequence = event.sequence
        if event.type != _GAP:
            return sequence
        first = event.attrs.get("first_missing")
        last = event.attrs.get("last_missing")
        if (
            type(first) is not int
            or type(last) is not int
            or first != sequence
            or last < first
        ):
            return sequence
        if state.skipped is None:
            state.skipped = deque(maxlen=_SKIPPED_RANGES)
        state.skipped.append((first, last))
        return last

    def _give_up(self, state: _RunState, out: list[Event]) -> None:
        """Give up the run's first hole, then release what follows it.

        The caller ensures something is held; the hole is never empty, since
        the expected sequence is never held.
        """
        lowest = state.heap[0]
        first = state.expected
        last = lowest - 1
        self.gaps += 1
        self.missing += lowest - first
        if state.skipped is None:
            state.skipped = deque(maxlen=_SKIPPED_RANGES)
        state.skipped.append((first, last))
        if self._emit_gaps:
            out.append(
                Event(
                    type=_GAP,
                    run=state.run,
                    sequence=first,
                    timestamp=state.held[lowest].timestamp,
                    attrs={"first_missing": first, "last_missing": last},
                )
            )
        state.expected = lowest
        self._release(state, out)

    def _count_dropped(self, state: _RunState, sequence: int) -> None:
        """Count an event below the expected sequence as late or duplicate."""
        if state.skipped is not None:
            for first, last in state.skipped:
                if first <= sequence <= last:
                    self.late += 1
                    return
        self.duplicates += 1

    def _record_arrival(self, state: _RunState, sequence: int) -> None:
        """Note when ``sequence`` was held, for :meth:`deadline` and :meth:`tick`."""
        arrivals = self._arrivals
        arrivals.append((self._clock(), state, sequence))
        # Stale entries leave only from the front, so behind one long-held
        # event they pile up when tick() is not called; rebuilding once they
        # outnumber the live entries keeps the deque bounded at O(1) amortized.
        if len(arrivals) > 2 * self._held_count + 64:
            self._arrivals = deque(
                entry for entry in arrivals if entry[2] in entry[1].held
            )

    def _retire(self, state: _RunState) -> None:
        """Forget a finished run, remembering its next expected sequence."""
        del self._runs[state.run]
        finished = self._finished
        finished[state.run] = state
        if len(finished) > _FINISHED_RUNS:
            finished.popitem(last=False)
