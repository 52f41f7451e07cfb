"""A source from events already in hand."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING

from eventkit.streams import EventStream

if TYPE_CHECKING:
    from eventkit.events import Event

__all__ = ["iterate"]


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


async def _from_sync(items: Iterable[Event]) -> AsyncIterator[Event]:
    for item in items:
        yield item


def iterate(items: Iterable[Event] | AsyncIterable[Event]) -> EventStream:
    """Return a stream of the events of an iterable or async iterable.

    Each iteration of the stream iterates ``items`` again: a list replays, a
    generator is consumed once.
    """
    return EventStream(_Iterate(items), ())
