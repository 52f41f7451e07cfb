"""The core chain three ways: by hand, fused by eventkit, one aiostream stage each.

Chain: reorder -> only("stdout", "stderr", "completed") -> buffer_bytes(1024)
-> track_progress -> export_metrics, over the same synthetic events.

(a) one hand-written ``async for`` loop doing the same work inline;
(b) ``eventkit.run`` with the stages from ``eventkit.pipe``;
(c) the same state machines, each wrapped as its own stock aiostream
    pipable operator (``only`` as ``aiostream.pipe.filter``): the chain as an
    aiostream user would write it without fusion.

Every variant must deliver the same output (count, bytes and types), checked
on every repetition. Repetitions interleave the variants so machine noise hits
all of them alike; medians are reported.
"""

from __future__ import annotations

import asyncio
import gc
import re
import resource
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from aiostream import operator, pipe as apipe, stream as astream
from aiostream.core import streamcontext
from prometheus_client import CollectorRegistry

import eventkit
from bench.data import synthetic_events
from eventkit import Event, pipe, sinks, sources
from eventkit.operators.buffer import BufferBytes
from eventkit.operators.metrics import ExportMetrics
from eventkit.operators.progress import TrackProgress
from eventkit.operators.reorder import Reorder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable

KEEP = frozenset({"stdout", "stderr", "completed"})
LIMIT = 1024


class Tally:
    """What a variant delivered: the check that all variants did the same work."""

    def __init__(self) -> None:
        self.events = 0
        self.by_type: dict[str, list[int]] = {}

    def __call__(self, event: Event) -> None:
        self.events += 1
        entry = self.by_type.get(event.type)
        if entry is None:
            entry = self.by_type[event.type] = [0, 0]
        entry[0] += 1
        entry[1] += len(event.data)

    def key(self) -> tuple[int, tuple[tuple[str, int, int], ...]]:
        return self.events, tuple(
            (kind, n, size) for kind, (n, size) in sorted(self.by_type.items())
        )


async def _source(events: Iterable[Event]) -> AsyncIterator[Event]:
    for event in events:
        yield event


# (a) -------------------------------------------------------------------------

_FRACTION = re.compile(r"(\d+(?:\.\d+)?)%|(\d+)/(\d+)")


async def handwritten(events: Iterable[Event], tally: Tally) -> None:
    """The whole chain inline in one loop, as one would write it for this job."""
    expected: dict[str, int] = {}
    held: dict[str, dict[int, Event]] = {}
    held_since: dict[str, float] = {}
    buffers: dict[tuple[str, str], list[Any]] = {}
    progress: dict[str, list[Any]] = {}
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    durations: list[float] = []
    started: dict[str, float] = {}

    def chunk(key: tuple[str, str], parts: list[Any]) -> Event:
        first: Event = parts[2]
        return Event(
            type=key[1],
            run=key[0],
            data="".join(parts[0]),
            sequence=first.sequence,
            timestamp=first.timestamp,
            attrs={
                "count": parts[4],
                "first_sequence": first.sequence,
                "last_sequence": parts[3],
            },
        )

    def downstream(event: Event) -> None:
        # track_progress
        kind, run = event.type, event.run
        state = progress.get(run)
        if state is None:
            state = progress[run] = [event.timestamp, 0, 0, event]
        state[1] += 1
        state[3] = event
        data = event.data
        if kind != "completed":
            state[2] += len(data) if data.isascii() else len(data.encode())
            if ("%" in data or "/" in data) and _FRACTION.search(data):
                pass  # the synthetic output never reports progress
        # export_metrics
        counts[kind] = counts.get(kind, 0) + 1
        if data:
            sizes[kind] = sizes.get(kind, 0) + len(data)
        tally(event)
        if kind == "completed":
            del progress[run]
            outcome = "success" if event.attrs.get("success") else "failure"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            durations.append(event.timestamp - started.pop(run, event.timestamp))
            report(state, event)

    def report(state: list[Any], after: Event) -> None:
        elapsed = after.timestamp - state[0]
        tally(
            Event(
                type="progress",
                run=after.run,
                sequence=after.sequence,
                timestamp=after.timestamp,
                attrs={
                    "events": state[1],
                    "bytes": state[2],
                    "elapsed": elapsed,
                    "rate": state[1] / elapsed if elapsed else None,
                    "percent": None,
                    "current": None,
                    "total": None,
                    "eta": None,
                    "done": True,
                },
            )
        )

    def forward(event: Event) -> None:
        # only + buffer_bytes
        kind = event.type
        if kind not in KEEP:
            return
        if kind == "completed":
            run = event.run
            for key in [k for k in buffers if k[0] == run]:
                downstream(chunk(key, buffers.pop(key)))
            downstream(event)
            return
        key = (event.run, kind)
        data = event.data
        size = len(data) if data.isascii() else len(data.encode())
        parts = buffers.get(key)
        if parts is not None and parts[1] + size > LIMIT:
            downstream(chunk(key, buffers.pop(key)))
            parts = None
        if parts is None:
            buffers[key] = [[data], size, event, event.sequence, 1]
        else:
            parts[0].append(data)
            parts[1] += size
            parts[3] = event.sequence
            parts[4] += 1
        if buffers[key][1] == LIMIT:
            downstream(chunk(key, buffers.pop(key)))

    async for event in _source(events):
        run = event.run
        if event.type == "started":
            started[run] = event.timestamp
        want = expected.get(run, 0)
        if event.sequence == want and run not in held:
            expected[run] = want + 1
            forward(event)
            continue
        # Out of order: hold until the hole fills (or a second passes).
        waiting = held.setdefault(run, {})
        held_since.setdefault(run, time.monotonic())
        waiting[event.sequence] = event
        while want in waiting:
            forward(waiting.pop(want))
            want += 1
        expected[run] = want
        if not waiting:
            del held[run]
            del held_since[run]
        elif time.monotonic() - held_since[run] > 1.0:
            raise AssertionError("the benchmark never waits on a hole")
    for key in list(buffers):
        downstream(chunk(key, buffers.pop(key)))
    for state in list(progress.values()):
        report(state, state[3])


# (b) -------------------------------------------------------------------------


async def fused(events: Iterable[Event], tally: Tally) -> None:
    """The chain through eventkit's runner."""
    await eventkit.run(
        sources.iterate(events),
        pipe.reorder(),
        pipe.only("stdout", "stderr", "completed"),
        pipe.buffer_bytes(LIMIT),
        pipe.track_progress(),
        pipe.export_metrics(CollectorRegistry()),
        sink=sinks.call(tally),
    )


# (c) -------------------------------------------------------------------------


@operator(pipable=True)
async def _stage(
    source: AsyncIterator[Event], factory: Callable[[], Any]
) -> AsyncIterator[Event]:
    """One state machine as its own aiostream operator."""
    machine = factory()
    async with streamcontext(source) as streamer:
        async for event in streamer:
            for out in machine.feed([event]):
                yield out
    for out in machine.flush():
        yield out


async def per_stage(events: Iterable[Event], tally: Tally) -> None:
    """The chain as one stock aiostream operator per stage."""
    xs = (
        astream.iterate(_source(events))
        | _stage.pipe(Reorder)
        | apipe.filter(lambda event: event.type in KEEP)
        | _stage.pipe(lambda: BufferBytes(LIMIT))
        | _stage.pipe(TrackProgress)
        | _stage.pipe(ExportMetrics)
    )
    async with xs.stream() as streamer:
        async for event in streamer:
            tally(event)


VARIANTS: dict[str, tuple[str, Callable[[Iterable[Event], Tally], Any]]] = {
    "a": ("hand-written async-for loop", handwritten),
    "b": ("eventkit runner (fused)", fused),
    "c": ("aiostream, one operator per stage", per_stage),
}


def against_base(
    times: dict[str, list[float]], events: int, labels: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Report each variant's timed runs against the ``"base"`` variant's.

    From the best run (noise only ever adds time) and the median beside it:
    ``{name: {"label", "events/s", "ns/event", "median ns/event", "added
    ns/event", "x base", "seconds"}}``.
    """
    base = min(times["base"])
    report: dict[str, dict[str, Any]] = {}
    for name, label in labels.items():
        best = min(times[name])
        report[name] = {
            "label": label,
            "events/s": events / best,
            "ns/event": 1e9 * best / events,
            "median ns/event": 1e9 * statistics.median(times[name]) / events,
            "added ns/event": 1e9 * (best - base) / events,
            "x base": best / base,
            "seconds": times[name],
        }
    return report


def measure(
    events: list[Event],
    repetitions: int,
    on_step: Callable[[str], None] = lambda _: None,
    variants: Iterable[str] = VARIANTS,
) -> dict[str, list[float]]:
    """Time each variant ``repetitions`` times, interleaved; return seconds."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    expected: object = None
    with asyncio.Runner() as runner:
        for _ in range(repetitions + 1):  # the first round warms up
            for name in times:
                tally = Tally()
                gc.collect()
                begin = time.perf_counter()
                runner.run(VARIANTS[name][1](events, tally))
                elapsed = time.perf_counter() - begin
                if expected is None:
                    expected = tally.key()
                elif tally.key() != expected:
                    raise AssertionError(f"variant {name} delivered different output")
                times[name].append(elapsed)
                on_step(name)
    return {name: spent[1:] for name, spent in times.items()}


def report(
    events: int,
    repetitions: int,
    on_step: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure the core chain three ways; return the report.

    Timing runs on events built beforehand; peak RSS is measured per variant
    in a fresh process streaming the same events as they are made, so it is
    the pipeline's footprint (plus the interpreter's), not the input's.
    """
    data = list(synthetic_events(events))
    times = measure(data, repetitions, on_step)
    del data
    rss = {name: streaming_rss(name, events) for name in VARIANTS}
    rate = {name: events / statistics.median(spent) for name, spent in times.items()}
    return {
        "benchmark": "core",
        "title": f"Core chain, {events:,} events (median of {repetitions})",
        "variants": {
            name: {
                "label": VARIANTS[name][0],
                "events/s": rate[name],
                "µs/event": 1e6 / rate[name],
                "peak RSS MiB": rss[name],
                "seconds": times[name],
            }
            for name in times
        },
        # Issue 13's targets: the batch-native core beats the hand-written
        # per-event loop and four aiostream stages by 4x, in bounded memory.
        "targets": {
            "b/a": {"value": rate["b"] / rate["a"], "target": ">= 1"},
            "b/c": {"value": rate["b"] / rate["c"], "target": ">= 4"},
            "peak RSS (b), MiB": {"value": rss["b"], "target": "<= 100"},
        },
    }


def streaming_rss(variant: str, events: int) -> float:
    """Return the peak RSS (MiB) of a fresh process streaming ``events`` events."""
    child = subprocess.run(
        [sys.executable, "-m", "bench.core", variant, str(events)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(child.stdout)


def peak_rss_mib() -> float:
    """Return this process's peak RSS in MiB."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child
    # started by a big parent would report the parent's peak.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    # The child of streaming_rss(): run one variant on events made on the fly.
    name, count = sys.argv[1], int(sys.argv[2])
    asyncio.run(VARIANTS[name][1](synthetic_events(count), Tally()))
    print(peak_rss_mib())
