"""What the Redis tests share besides fixtures: runs of events, polling."""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any

from eventkit.events import Event

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


def run_events(run: str, lines: int, *, complete: bool = True) -> list[Event]:
    """Return ``started``, ``lines`` stdout events and (maybe) ``completed``."""
    events = [Event(type="started", run=run, sequence=0, timestamp=1.0)]
    events += [
        Event(type="stdout", run=run, sequence=1 + n, data=f"{n}\n", timestamp=1.0)
        for n in range(lines)
    ]
    if complete:
        events.append(
            Event(type="completed", run=run, sequence=lines + 1, timestamp=2.0)
        )
    return events


async def eventually(check: Callable[[], Awaitable[Any] | Any]) -> None:
    """Poll ``check()`` (awaited if need be) every 10 ms until it returns
    something true, for 5 s at most."""
    for _ in range(500):
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")
