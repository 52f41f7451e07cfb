"""The process's own numbers, as the dashboard shows them, without Prometheus.

:class:`Chains` keeps the :class:`~eventkit.chain.ChainStats` of the chains a
:class:`ChainWatch` operator was fused into, and reads them per stage
(events in, out, dropped); :func:`sources` and :func:`server` read the
process-wide counters of :mod:`eventkit.stats`. Reading is cheap and done
when asked (once a second by the page), never per event.

Failure behaviour: nothing here raises; an operator without ``internals()``
reports no drops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final

from eventkit.operators._base import Stateless
from eventkit.stats import all_source_stats, current_server_stats

if TYPE_CHECKING:
    from eventkit.chain import ChainStats
    from eventkit.events import Event
    from eventkit.operators._base import Operator

__all__ = ["ChainWatch", "Chains", "server", "sources"]

#: Chains kept for display: the latest ones (a worker builds one, a program
#: running many pipelines many).
MAX_CHAINS: Final = 8


class ChainWatch(Stateless):
    """A pass-through operator that hands its chain's counts to :class:`Chains`.

    Put it in a chain (through :meth:`eventkit.sinks.Dashboard.watch`); the
    chain then counts the events entering each stage (an integer add per
    batch and stage) and the dashboard reads them. It changes nothing in the
    stream and is left out of what is shown.
    """

    __slots__ = ("observe_chain",)

    #: The stage's name.
    name: ClassVar[str] = "dashboard"

    def __init__(self, chains: Chains) -> None:
        #: Called by the chain with its stats when it is built.
        self.observe_chain = chains.track

    def feed(self, events: list[Event]) -> list[Event]:
        """Return the batch unchanged."""
        return events


class Chains:
    """The chains watched, the latest :data:`MAX_CHAINS` of them."""

    __slots__ = ("_chains",)

    def __init__(self) -> None:
        self._chains: list[ChainStats] = []

    def track(self, stats: ChainStats) -> None:
        """Watch the chain of ``stats`` (called by the chain itself)."""
        if any(stats is known for known in self._chains):
            return
        self._chains.append(stats)
        del self._chains[:-MAX_CHAINS]

    def stages(self) -> list[dict[str, Any]]:
        """Return each watched stage's numbers, chains in the order built.

        Each: ``chain`` (its index here), ``stage`` (``"1:only"``),
        ``received``, ``sent``, ``dropped`` (all reasons), ``dropped_by``
        (by reason) and ``running`` (False once the chain finished).
        """
        found: list[dict[str, Any]] = []
        for number, stats in enumerate(self._chains):
            counts = stats.received()
            for index, operator in enumerate(stats.operators):
                if isinstance(getattr(operator, "operator", operator), ChainWatch):
                    continue
                dropped = _dropped(operator)
                found.append(
                    {
                        "chain": number,
                        "stage": f"{index}:{_name(operator)}",
                        "received": counts[index],
                        "sent": counts[index + 1],
                        "dropped": sum(dropped.values()),
                        "dropped_by": dropped,
                        "running": not stats.finished,
                    }
                )
        return found


def _name(operator: Operator) -> str:
    name = getattr(operator, "name", None)
    return name if isinstance(name, str) else type(operator).__name__.lower()


def _dropped(operator: Operator) -> dict[str, int]:
    internals = getattr(operator, "internals", None)
    if internals is None:
        return {}
    return {str(reason): int(count) for reason, count in internals().dropped.items()}


def sources() -> list[dict[str, Any]]:
    """Return the counters of each kind of source used in this process."""
    return [
        {
            "source": stats.kind,
            "connections": stats.connections,
            "open_connections": stats.open_connections,
            "frames": stats.frames,
            "invalid_frames": stats.invalid_frames,
            "closed_before_complete": stats.closed_before_complete,
        }
        for stats in all_source_stats()
    ]


def server() -> dict[str, Any] | None:
    """Return the local server's numbers, None if no server ran in this process."""
    stats = current_server_stats()
    if stats is None:
        return None
    running, queued = stats.gauges()
    return {
        "running": running,
        "queued": queued,
        "executions": stats.executions,
        "refusals": dict(stats.refusals),
    }
