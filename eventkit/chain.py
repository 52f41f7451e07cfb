"""A chain of operators composed into plain function calls, and what it counts.

:class:`Chain` is the synchronous heart of the runner: it pushes batches of
events through every operator of a chain, flushes and ticks them, with no
event loop. Each operator is called once per batch, so what a stage costs
per event is its own work, not a call. :class:`ChainStats` is what a running
chain counts for the self-metrics. The async side (pulling from a source,
racing deadlines) is :mod:`eventkit.driver`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventkit.operators._base import batched

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventkit.events import Event
    from eventkit.operators._base import EventOperator, Operator

__all__ = ["Chain", "ChainStats"]


class ChainStats:
    """What a running chain counts, for the operators that ask for it.

    The self-metrics hook of the runner. An operator with an
    ``observe_chain`` attribute that is not None (a callable) is called with
    the chain's :class:`ChainStats` when a chain containing it is built; the
    chain then counts the events entering each operator and leaving the
    chain, an integer add per batch and operator.

    Attributes:
        operators: The chain's state machines, upstream first.
        counts: Entry ``i`` counts the events that entered operator ``i``
            (from upstream, or from the flush or tick of the operator before
            it); the last entry counts the events that left the chain, so
            operator ``i`` emitted entry ``i + 1``.
        finished: Whether the driver has ended, however it ended.
    """

    __slots__ = ("__weakref__", "_on_finish", "counts", "finished", "operators")

    def __init__(self, operators: Sequence[Operator]) -> None:
        self.operators = tuple(operators)
        self.counts = [0] * (len(self.operators) + 1)
        self.finished = False
        self._on_finish: list[Callable[[ChainStats], None]] = []

    def received(self) -> list[int]:
        """Return a copy of :attr:`counts` (one C-level copy: safe across threads)."""
        return list(self.counts)

    def on_finish(self, callback: Callable[[ChainStats], None]) -> None:
        """Call ``callback(self)`` once the driver ends (at once if it has)."""
        if self.finished:
            callback(self)
        else:
            self._on_finish.append(callback)

    def finish(self) -> None:
        """Mark the chain finished and run the :meth:`on_finish` callbacks.

        The driver calls it at its end, after the final flush; later calls do
        nothing.
        """
        if self.finished:
            return
        self.finished = True
        callbacks, self._on_finish = self._on_finish, []
        for callback in callbacks:
            callback(self)


class Chain:
    """Operators composed into plain function calls, a batch at a time.

    :meth:`feed` pushes a batch through every operator and returns what
    comes out of the last one; an operator that emits nothing ends the trip
    early. Operators taking one event at a time are wrapped in
    :class:`~eventkit.operators._base.PerEvent`.

    Args:
        operators: The state machines, upstream first.

    Attributes:
        operators: The chain's state machines, as called (wrapped if need be).
        stats: The chain's counts, or None when no operator asked for them.
    """

    __slots__ = ("_timed", "feed", "operators", "stats")

    def __init__(self, operators: Sequence[Operator | EventOperator]) -> None:
        self.operators = tuple(batched(op) for op in operators)
        observers: list[Callable[[ChainStats], None]] = [
            observe
            for op in operators
            if (observe := getattr(op, "observe_chain", None)) is not None
        ]
        self.stats = ChainStats(self.operators) if observers else None
        self._timed = tuple(
            (index, op)
            for index, op in enumerate(self.operators)
            if getattr(op, "timed", True)
        )
        #: Push a batch through the chain; return what comes out.
        self.feed: Callable[[list[Event]], list[Event]] = (
            self._feed if self.stats is None else self._feed_counted
        )
        if self.stats is not None:
            for observe in observers:
                observe(self.stats)

    @property
    def timed(self) -> bool:
        """Whether any operator may ask for :meth:`tick`."""
        return bool(self._timed)

    def _feed(self, events: list[Event]) -> list[Event]:
        for op in self.operators:
            events = op.feed(events)
            if not events:
                return events
        return events

    def _feed_counted(self, events: list[Event]) -> list[Event]:
        return self._feed_from(0, events)

    def _feed_from(self, start: int, events: list[Event]) -> list[Event]:
        """Push ``events`` into operator ``start`` and on, counting if asked."""
        counts = None if self.stats is None else self.stats.counts
        operators = self.operators
        for index in range(start, len(operators)):
            if not events:
                return events
            if counts is not None:
                counts[index] += len(events)
            events = operators[index].feed(events)
        if counts is not None:
            counts[-1] += len(events)
        return events

    def deadline(self) -> float | None:
        """Return the earliest deadline of any operator, or None."""
        earliest: float | None = None
        for _, op in self._timed:
            due = op.deadline()
            if due is not None and (earliest is None or due < earliest):
                earliest = due
        return earliest

    def tick(self, now: float) -> list[Event]:
        """Tick every timed operator, upstream first; return what comes out."""
        out: list[Event] = []
        # What an operator releases still has to cross the operators after
        # it, which are ticked after it: nothing overtakes what it held.
        for index, op in self._timed:
            ticked = op.tick(now)
            if ticked:
                out.extend(self._feed_from(index + 1, ticked))
        return out

    def flush(self) -> list[Event]:
        """Flush every operator, upstream first; return what comes out."""
        out: list[Event] = []
        for index, op in enumerate(self.operators):
            flushed = op.flush()
            if flushed:
                out.extend(self._feed_from(index + 1, flushed))
        return out

    def finish(self) -> None:
        """The driver is done with the chain: tell its :attr:`stats`, if any."""
        if self.stats is not None:
            self.stats.finish()
