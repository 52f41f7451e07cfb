"""A source from events already in hand."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Final

from eventkit.streams import EventStream

if TYPE_CHECKING:
    from eventkit.events import Event

__all__ = ["iterate"]

#: Events per batch handed over from an iterable in hand.
_SLICE: Final = 1024


class _Iterate:
    """Re-iterable async view of an iterable or async iterable of events."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Event] | AsyncIterable[Event]) -> None:
        self._items = items

    def __aiter__(self) -> AsyncIterator[Event]:
        items = self._items
        if isinstance(items, AsyncIterable):
            return aiter(items)
        return _from_sync(items)

    def batches(self) -> AsyncIterator[list[Event]]:
        """Yield the events in slices; an async iterable's as they come at hand."""
        items = self._items
        if isinstance(items, AsyncIterable):
            return EventStream(items).batches()
        return _slices(items)


async def _from_sync(items: Iterable[Event]) -> AsyncIterator[Event]:
    for item in items:
        yield item


async def _slices(items: Iterable[Event]) -> AsyncIterator[list[Event]]:
    if isinstance(items, Sequence):
        for start in range(0, len(items), _SLICE):
            yield list(items[start : start + _SLICE])
        return
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, _SLICE)):
        yield batch


def iterate(items: Iterable[Event] | AsyncIterable[Event]) -> EventStream:
    """Return a stream of the events of an iterable or async iterable.

    Each iteration of the stream iterates ``items`` again: a list replays, a
    generator is consumed once. Events in hand go through a pipeline in
    batches of up to 1,024.
    """
    return EventStream(_Iterate(items), ())
