"""A producer for the worker tests: publishes runs to a Redis stream, paced.

    python producer.py URL STREAM SHARDS PREFIX RUNS LINES PACE

Publishes ``RUNS`` runs named ``PREFIX-0`` … , a few at a time interleaved,
each ``started``, ``LINES`` stdout lines and ``completed`` (see
:func:`expected`), sleeping ``PACE`` seconds between events, and exits 0 once
the sink has written everything (it retries through a Redis restart).
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import eventkit
from eventkit import Event, sinks, sources

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

#: Runs in progress at once, their events interleaved.
CONCURRENT = 5


def expected(prefix: str, runs: int, lines: int) -> dict[str, list[Event]]:
    """Return the events the producer publishes, by run, in sequence order."""
    published: dict[str, list[Event]] = {}
    for number in range(runs):
        run = f"{prefix}-{number}"
        events = [Event(type="started", run=run, sequence=0, timestamp=1.0)]
        events += [
            Event(
                type="stdout",
                data=f"{run} line {line}\n",
                run=run,
                sequence=1 + line,
                timestamp=1.0 + line,
            )
            for line in range(lines)
        ]
        events.append(
            Event(
                type="completed",
                run=run,
                sequence=lines + 1,
                timestamp=2.0 + lines,
                attrs={"success": True, "exit_code": 0},
            )
        )
        published[run] = events
    return published


async def paced(published: dict[str, list[Event]], pace: float) -> AsyncIterator[Event]:
    """Yield the runs CONCURRENT at a time, round robin, one event per ``pace``."""
    runs = list(published.values())
    for start in range(0, len(runs), CONCURRENT):
        group = [iter(events) for events in runs[start : start + CONCURRENT]]
        while group:
            for events in list(group):
                event = next(events, None)
                if event is None:
                    group.remove(events)
                    continue
                yield event
                await asyncio.sleep(pace)


def main() -> None:
    url, stream, shards, prefix, runs, lines, pace = sys.argv[1:]
    published = expected(prefix, int(runs), int(lines))
    sink = sinks.redis_stream(url, stream, shards=int(shards))
    asyncio.run(eventkit.run(sources.iterate(paced(published, float(pace))), sink=sink))


if __name__ == "__main__":
    main()
