"""Keep or drop events by type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventkit.operators._base import Internals, Stateless

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventkit.events import Event

__all__ = ["Select"]


class Select(Stateless):
    """Pass the events whose type is in (or, with ``keep=False``, not in) ``types``.

    Dropped events are counted in :attr:`dropped`, by type; nothing leaves
    unaccounted for. Order is kept.

    Args:
        types: Event types to select.
        keep: True to keep the selected types (``only``), False to drop them
            (``exclude``).

    Raises:
        ValueError: If ``types`` is empty.
    """

    __slots__ = ("dropped", "keep", "types")

    def __init__(self, types: Iterable[str], *, keep: bool = True) -> None:
        #: The event types selected.
        self.types = frozenset(str(t) for t in types)
        if not self.types:
            raise ValueError("give at least one event type to select")
        #: Whether the selected types are kept (True) or dropped (False).
        self.keep = keep
        #: Number of events dropped, by type.
        self.dropped: dict[str, int] = {}

    @property
    def name(self) -> str:
        """``"only"`` or ``"exclude"``, as in :mod:`eventkit.pipe`."""
        return "only" if self.keep else "exclude"

    def internals(self) -> Internals:
        """Return the events dropped, as ``filtered``, for the self-metrics."""
        return Internals({"filtered": sum(list(self.dropped.values()))}, {}, {})

    def feed(self, events: list[Event]) -> list[Event]:
        """Return the selected events, in order; count the others."""
        types = self.types
        kept = (
            [event for event in events if event.type in types]
            if self.keep
            else [event for event in events if event.type not in types]
        )
        if len(kept) != len(events):
            self._count_dropped(events)
        return kept

    def _count_dropped(self, events: list[Event]) -> None:
        """Count the events of ``events`` that are not selected, by type."""
        dropped = self.dropped
        types, keep = self.types, self.keep
        for event in events:
            kind = event.type
            if (kind in types) is not keep:
                dropped[kind] = dropped.get(kind, 0) + 1
