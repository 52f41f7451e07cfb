"""Synthetic sandbox streams for the benchmarks, the same for every variant."""

from __future__ import annotations

import heapq
import random
import string
from typing import TYPE_CHECKING

from eventkit.events import NO_ATTRS, Event

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Runs in flight at once; their events interleave.
CONCURRENT_RUNS = 8
#: Events per run, its started, result and completed included.
RUN_LENGTH = 200
#: Fraction of events moved later in the stream, and by how many places at most.
DISPLACED = 0.01
MAX_DISPLACEMENT = 8

_ALPHABET = string.ascii_letters + string.digits + " .,:;-_=+()[]"
# Per run: 3 fixed lifecycle events and RUN_LENGTH - 3 drawn with these
# weights, so that the stream is 70 % stdout, 20 % stderr, 10 % lifecycle.
_KINDS = ("stdout", "stderr", "error", "resource_limit")
_WEIGHTS = (140, 40, 13, 4)
_ATTRS = {
    "result": {"exit_code": 0, "execution_time": 1.5},
    "completed": {"success": True},
    "error": {"code": "EXECUTION_FAILED"},
    "resource_limit": {"limit": "output"},
}


def synthetic_events(count: int, *, seed: int = 20261122) -> Iterator[Event]:
    """Yield ``count`` events of interleaved runs, 1 % of them displaced.

    Mix: 70 % stdout, 20 % stderr, 10 % lifecycle (each run's ``started``,
    ``result`` and ``completed``, plus ``error`` and ``resource_limit`` events
    to make up the share). Output data is 20-120 ASCII characters ending in a
    newline, the shape of line-buffered program output, each a new string made
    with its event, as a decoder makes them. Sequences are per run, from 0;
    1 % of the events come 1-8 places late, as over a network.
    """
    rng = random.Random(seed)
    runs: list[tuple[str, list[str]]] = []
    started_runs = 0
    clock = 1_800_000_000.0
    # Displaced events wait here, a heap of (position to come out at, tie, event).
    late: list[tuple[int, int, Event]] = []
    produced = 0
    position = 0
    while produced < count:
        while len(runs) < CONCURRENT_RUNS:
            middle = rng.choices(_KINDS, _WEIGHTS, k=RUN_LENGTH - 3)
            kinds = ["completed", "result", *middle, "started"]  # pop() from the end
            runs.append((f"run-{started_runs:06d}", kinds))
            started_runs += 1
        pick = rng.randrange(len(runs))
        run, kinds = runs[pick]
        kind = kinds.pop()
        if kind in ("stdout", "stderr"):
            size = rng.randint(20, 120)
            data = "".join(rng.choices(_ALPHABET, k=size - 1)) + "\n"
        elif kind == "error":
            data = "Traceback (most recent call last)"
        else:
            data = ""
        clock += 0.0001
        event = Event(
            type=kind,
            data=data,
            timestamp=clock,
            sequence=RUN_LENGTH - 1 - len(kinds),
            run=run,
            attrs=_ATTRS.get(kind, NO_ATTRS),
        )
        if not kinds:
            runs.pop(pick)
        produced += 1
        if produced < count - MAX_DISPLACEMENT and rng.random() < DISPLACED:
            due = position + rng.randint(1, MAX_DISPLACEMENT)
            heapq.heappush(late, (due, produced, event))
        else:
            yield event
            position += 1
        while late and late[0][0] <= position:
            yield heapq.heappop(late)[2]
            position += 1
    while late:
        yield heapq.heappop(late)[2]
