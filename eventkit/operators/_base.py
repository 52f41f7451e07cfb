"""The contract every operator state machine follows."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import (
    TYPE_CHECKING,
    ClassVar,
    Final,
    NamedTuple,
    Protocol,
    runtime_checkable,
)

if TYPE_CHECKING:
    from eventkit.events import Event

__all__ = [
    "NO_INTERNALS",
    "Clock",
    "EventOperator",
    "Internals",
    "Operator",
    "PerEvent",
    "Stateless",
    "batched",
]

#: A monotonic clock in seconds, such as :func:`time.monotonic`.
Clock = Callable[[], float]


@runtime_checkable
class Operator(Protocol):
    """A sans-I/O stream operator: plain synchronous code, no event loop.

    Operators take and return **batches**: whoever drives one (the runner, a
    test) calls :meth:`feed` with each batch of input events in order and
    forwards the list it returns; at end of input it calls :meth:`flush`
    once. How the input is cut into batches never changes the output: one
    event per batch or all at once, the events that come out are the same,
    in the same order. Operators with time-based behaviour report the
    earliest moment they want to act through :meth:`deadline`; the driver
    then calls :meth:`tick` with the current time of the operator's clock
    once that moment has come, even when no input arrives.

    :meth:`feed` takes the list it is given: it may return it, changed or
    not, and the caller must not use it afterwards. The lists returned are
    the caller's.

    An operator whose :meth:`deadline` is always None may say so with a
    ``timed`` attribute set to False; the driver then never asks it.

    For the self-metrics, an operator may also have a ``name`` (its name in
    :mod:`eventkit.pipe`, the ``stage`` label; else its class name in lower
    case) and an ``internals()`` method returning its :class:`Internals`.

    Operators written for eventkit 0.1, which take one event at a time
    (:class:`EventOperator`), work everywhere an operator does: a
    :class:`~eventkit.streams.Stage` wraps them in :class:`PerEvent`. An
    operator says it takes batches with a ``batched`` attribute set to True.
    """

    def feed(self, events: list[Event]) -> list[Event]:
        """Take a batch of input events; return the events to emit now, in order."""
        ...

    def flush(self) -> list[Event]:
        """End of input: return everything still held, in order."""
        ...

    def deadline(self) -> float | None:
        """Return when :meth:`tick` should next be called, or None for never.

        The value is on the operator's clock (monotonic seconds by default).
        """
        ...

    def tick(self, now: float) -> list[Event]:
        """Time has reached ``now``; return what is due."""
        ...


@runtime_checkable
class EventOperator(Protocol):
    """An operator taking one event at a time, as in eventkit 0.1.

    Still accepted everywhere (a stage wraps it in :class:`PerEvent`); new
    operators should take batches (:class:`Operator`).
    """

    def feed(self, event: Event) -> Iterable[Event]:
        """Take one input event; return the events to emit now, in order."""
        ...

    def flush(self) -> Iterable[Event]:
        """End of input: return everything still held, in order."""
        ...

    def deadline(self) -> float | None:
        """Return when :meth:`tick` should next be called, or None for never."""
        ...

    def tick(self, now: float) -> Iterable[Event]:
        """Time has reached ``now``; return what is due."""
        ...


class PerEvent:
    """Adapts an :class:`EventOperator` (one event at a time) to batches.

    Feeds the events of each batch to the wrapped operator one by one and
    returns what it emitted, in order; ``flush``, ``deadline`` and ``tick``
    pass through. Its ``name``, ``internals`` and ``timed`` are the wrapped
    operator's.

    Args:
        operator: The per-event operator.
    """

    __slots__ = ("operator", "timed")

    #: Takes batches.
    batched: ClassVar[bool] = True

    def __init__(self, operator: EventOperator) -> None:
        #: The wrapped operator.
        self.operator = operator
        #: Whether :meth:`deadline` can be other than None.
        self.timed: bool = getattr(operator, "timed", True)

    @property
    def name(self) -> str:
        """The wrapped operator's name (its class name in lower case if none)."""
        name = getattr(self.operator, "name", None)
        return name if isinstance(name, str) else type(self.operator).__name__.lower()

    def internals(self) -> Internals:
        """Return the wrapped operator's internals, if it reports any."""
        internals = getattr(self.operator, "internals", None)
        return NO_INTERNALS if internals is None else internals()

    def feed(self, events: list[Event]) -> list[Event]:
        """Feed each event; return everything emitted, in order."""
        out: list[Event] = []
        feed = self.operator.feed
        for event in events:
            out.extend(feed(event))
        return out

    def flush(self) -> list[Event]:
        """Flush the wrapped operator."""
        return list(self.operator.flush())

    def deadline(self) -> float | None:
        """Return the wrapped operator's deadline."""
        return self.operator.deadline()

    def tick(self, now: float) -> list[Event]:
        """Tick the wrapped operator."""
        return list(self.operator.tick(now))


def batched(operator: Operator | EventOperator) -> Operator:
    """Return ``operator`` if it takes batches, else it wrapped in :class:`PerEvent`."""
    if getattr(operator, "batched", False):
        return operator  # type: ignore[return-value]
    return PerEvent(operator)  # type: ignore[arg-type]


#: A metric sample's key: the metric's name in :data:`eventkit.metrics.METRICS`
#: and the values of its labels after ``stage``.
SampleKey = tuple[str, tuple[str, ...]]


class Internals(NamedTuple):
    """What an operator counts of its own work, for the self-metrics.

    Attributes:
        dropped: Events dropped, by reason (``stage_dropped_events_total``).
        counters: Counter values by :data:`SampleKey`.
        gauges: Gauge values by :data:`SampleKey`.
    """

    dropped: Mapping[str, int]
    counters: Mapping[SampleKey, float]
    gauges: Mapping[SampleKey, float]


#: The internals of an operator that counts nothing of its own.
NO_INTERNALS: Final = Internals({}, {}, {})


class Stateless:
    """Base for operators with no time-based behaviour."""

    __slots__ = ()

    #: :meth:`deadline` is always None.
    timed: ClassVar[bool] = False
    #: Takes batches.
    batched: ClassVar[bool] = True

    def flush(self) -> list[Event]:
        """Nothing is held: return nothing."""
        return []

    def deadline(self) -> float | None:
        """No time-based behaviour: never."""
        return None

    def tick(self, now: float) -> list[Event]:
        """No time-based behaviour: return nothing."""
        return []
