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

__all__ = ["NO_INTERNALS", "Clock", "Internals", "Operator", "Stateless"]

#: A monotonic clock in seconds, such as :func:`time.monotonic`.
Clock = Callable[[], float]


@runtime_checkable
class Operator(Protocol):
    """A sans-I/O stream operator: plain synchronous code, no event loop.

    Whoever drives an operator (the runner, a pipe, a test) calls :meth:`feed`
    with each input event in order and forwards what it returns; at end of input
    it calls :meth:`flush` once. Operators with time-based behaviour report the
    earliest moment they want to act through :meth:`deadline`; the driver then
    calls :meth:`tick` with the current time of the operator's clock once that
    moment has come, even when no input arrives.

    The returned iterables are consumed before the next call; returning a tuple
    or list is the norm.

    An operator whose :meth:`deadline` is always None may say so with a
    ``timed`` attribute set to False; the driver then never asks it, which
    saves a call per event.

    For the self-metrics, an operator may also have a ``name`` (its name in
    :mod:`eventkit.pipe`, the ``stage`` label; else its class name in lower
    case) and an ``internals()`` method returning its :class:`Internals`.
    """

    def feed(self, event: Event) -> Iterable[Event]:
        """Take one input event; return the events to emit now, in order."""
        ...

    def flush(self) -> Iterable[Event]:
        """End of input: return everything still held, in order."""
        ...

    def deadline(self) -> float | None:
        """Return when :meth:`tick` should next be called, or None for never.

        The value is on the operator's clock (monotonic seconds by default).
        """
        ...

    def tick(self, now: float) -> Iterable[Event]:
        """Time has reached ``now``; return what is due."""
        ...


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

    def flush(self) -> Iterable[Event]:
        """Nothing is held: return nothing."""
        return ()

    def deadline(self) -> float | None:
        """No time-based behaviour: never."""
        return None

    def tick(self, now: float) -> Iterable[Event]:
        """No time-based behaviour: return nothing."""
        return ()
