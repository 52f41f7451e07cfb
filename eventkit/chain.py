"""A chain of operators composed into plain function calls, and what it counts.

:class:`Chain` is the synchronous heart of the runner: it pushes events
through every operator of a chain, flushes and ticks them, with no event
loop. :class:`ChainStats` is what a running chain counts for the
self-metrics. The async side (pulling from a source, racing deadlines) is
:mod:`eventkit.driver`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, NamedTuple

from eventkit.operators.select import Select

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from eventkit.events import Event
    from eventkit.operators._base import Operator

__all__ = ["Chain", "ChainStats"]

#: Python refuses more than 20 statically nested blocks; stay well below.
_MAX_NESTED: Final = 16


class ChainStats:
    """What a running chain counts, for the operators that ask for it.

    The self-metrics hook of the runner. An operator with an
    ``observe_chain`` attribute that is not None (a callable) is called with
    the chain's :class:`ChainStats` when a chain containing it is built; the
    chain then counts the events entering each operator (:meth:`received`).
    Chains without such an operator count nothing and cost nothing more.

    Counting costs an integer add per event and operator. An operator that
    knows how many events it emitted from how many it received says so with
    an ``emitted(received: int) -> int`` method (type filters, ``reorder``,
    pass-through operators); the chain then does not count behind it, and
    :meth:`received` asks it instead.

    Attributes:
        operators: The chain's state machines, upstream first.
        counts: The raw counters, one per position as in :meth:`received`;
            those behind an operator with ``emitted`` stay 0.
        finished: Whether the driver has ended, however it ended.
    """

    __slots__ = (
        "__weakref__",
        "_derived",
        "_on_finish",
        "counts",
        "finished",
        "operators",
    )

    def __init__(self, operators: Sequence[Operator]) -> None:
        self.operators = tuple(operators)
        self.counts = [0] * (len(self.operators) + 1)
        # _derived[i]: how to tell the events entering position i from those
        # entering position i - 1, or None to count them.
        self._derived: list[Callable[[int], int] | None] = [None]
        self._derived.extend(getattr(op, "emitted", None) for op in self.operators)
        self.finished = False
        self._on_finish: list[Callable[[ChainStats], None]] = []

    @property
    def counted(self) -> list[bool]:
        """Which positions the chain counts itself (the others are derived)."""
        return [derive is None for derive in self._derived]

    def received(self) -> list[int]:
        """Return the events that entered each operator, and left the chain.

        Entry ``i`` is the number of events that entered operator ``i``
        (from upstream, or from the flush or tick of the operator before it);
        the last entry counts the events that left the chain, so operator
        ``i`` emitted entry ``i + 1``. Read from another thread, an entry
        derived from an operator's own counters can lag by an event.
        """
        raw = list(self.counts)  # one C-level copy, safe across threads
        received: list[int] = []
        for index, derive in enumerate(self._derived):
            received.append(raw[index] if derive is None else derive(received[-1]))
        return received

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
    """Operators composed into plain function calls.

    :attr:`feed` pushes one event through every operator and returns what
    comes out of the last one. It is generated as one function of nested
    ``for`` loops, so an event crosses the whole chain in a single Python frame
    with one call per operator.

    When an operator asks to observe the chain (see :class:`ChainStats`), the
    generated code also counts the events entering each operator; otherwise it
    is exactly the uncounted code.

    Args:
        operators: The state machines, upstream first.

    Attributes:
        stats: The chain's counts, or None when no operator asked for them.
    """

    __slots__ = ("_feeds", "_operators", "_timed", "deadline", "feed", "stats")

    def __init__(self, operators: Sequence[Operator]) -> None:
        self._operators = tuple(operators)
        observers: list[Callable[[ChainStats], None]] = [
            observe
            for op in self._operators
            if (observe := getattr(op, "observe_chain", None)) is not None
        ]
        self.stats = ChainStats(self._operators) if observers else None
        counting = None
        if self.stats is not None:
            counting = _Counting(self.stats.counts, self.stats.counted)
        # _feeds[i] pushes an event into operator i (the last one: out as is),
        # which is where whatever operator i - 1 emits on flush or tick goes.
        self._feeds = [
            _compile(self._operators[i:], counting, i)
            for i in range(len(self._operators) + 1)
        ]
        self.feed: Callable[[Event], list[Event]] = self._feeds[0]
        self._timed = tuple(op for op in self._operators if getattr(op, "timed", True))
        #: Return the earliest deadline of any operator, or None.
        self.deadline: Callable[[], float | None] = (
            self._timed[0].deadline if len(self._timed) == 1 else self._earliest
        )
        if self.stats is not None:
            for observe in observers:
                observe(self.stats)

    @property
    def timed(self) -> bool:
        """Whether any operator may ask for :meth:`tick`."""
        return bool(self._timed)

    def _earliest(self) -> float | None:
        earliest: float | None = None
        for op in self._timed:
            due = op.deadline()
            if due is not None and (earliest is None or due < earliest):
                earliest = due
        return earliest

    def tick(self, now: float) -> list[Event]:
        """Tick every timed operator, upstream first; return what comes out."""
        return self._drain(lambda op: op.tick(now), self._timed)

    def flush(self) -> list[Event]:
        """Flush every operator, upstream first; return what comes out."""
        return self._drain(lambda op: op.flush(), self._operators)

    def finish(self) -> None:
        """The driver is done with the chain: tell its :attr:`stats`, if any."""
        if self.stats is not None:
            self.stats.finish()

    def _drain(
        self,
        take: Callable[[Operator], Iterable[Event]],
        operators: Iterable[Operator],
    ) -> list[Event]:
        # What an operator releases still has to cross the operators after it,
        # and those are drained after it, so nothing overtakes what it held.
        out: list[Event] = []
        chosen = {id(op) for op in operators}
        for index, op in enumerate(self._operators):
            if id(op) in chosen:
                downstream = self._feeds[index + 1]
                for event in take(op):
                    out.extend(downstream(event))
        return out


class _Counting(NamedTuple):
    """The counters a compiled chain adds to, and which positions it counts."""

    counts: list[int]
    counted: list[bool]


def _compile(
    operators: Sequence[Operator],
    counting: _Counting | None = None,
    offset: int = 0,
    *,
    count_out: bool = True,
) -> Callable[[Event], list[Event]]:
    """Generate the function that pushes one event through ``operators``.

    With ``counting``, the function also adds one to ``counts[offset + k]``
    for each event entering operator ``k`` and, when ``count_out``, the number
    of events out to ``counts[offset + len(operators)]``; at the positions
    ``counted`` marks, only.
    """
    if len(operators) > _MAX_NESTED:
        head = _compile(operators[:_MAX_NESTED], counting, offset, count_out=False)
        tail = _compile(
            operators[_MAX_NESTED:],
            counting,
            offset + _MAX_NESTED,
            count_out=count_out,
        )

        def feed(event: Event) -> list[Event]:
            out: list[Event] = []
            for item in head(event):
                out.extend(tail(item))
            return out

        return feed
    # Generated code, like dataclasses and namedtuple do: one frame per event
    # for the whole chain instead of one per operator. A type filter is a test
    # in that frame rather than a call.
    counted = [False] * (len(operators) + 1)
    if counting is not None:
        counted = counting.counted[offset : offset + len(operators) + 1]
        counted[-1] = counted[-1] and count_out
    # The counters are a default argument: a local is the fastest to reach.
    signature = "def feed(e0, c=c):" if any(counted) else "def feed(e0):"
    lines = [signature, "    out = []", "    emit = out.append"]
    namespace: dict[str, Any] = {"c": None if counting is None else counting.counts}

    def nest(k: int, indent: str) -> None:
        if k == len(operators):
            lines.append(f"{indent}emit(e{k})")
            return
        if counted[k]:
            lines.append(f"{indent}c[{offset + k}] += 1")
        op = operators[k]
        if isinstance(op, Select):
            namespace[f"t{k}"] = op.types
            namespace[f"d{k}"] = op.drop
            test = "in" if op.keep else "not in"
            lines.append(f"{indent}if e{k}.type {test} t{k}:")
            lines.append(f"{indent}    e{k + 1} = e{k}")
            nest(k + 1, indent + "    ")
            lines.append(f"{indent}else:")
            lines.append(f"{indent}    d{k}(e{k})")
        else:
            namespace[f"f{k}"] = op.feed
            lines.append(f"{indent}for e{k + 1} in f{k}(e{k}):")
            nest(k + 1, indent + "    ")

    nest(0, "    ")
    if counted[-1]:
        lines.append(f"    c[{offset + len(operators)}] += len(out)")
    lines.append("    return out")
    exec("\n".join(lines), namespace)
    compiled: Callable[[Event], list[Event]] = namespace["feed"]
    return compiled
