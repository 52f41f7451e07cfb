"""What observability costs: the core chain with and without metrics and logs.

Chain: reorder -> only("stdout", "stderr", "completed") -> buffer_bytes(1024)
-> track_progress, as in :mod:`bench.core` (b), over the same synthetic events,
then:

(base)      nothing more;
(metrics)   ``export_metrics()`` with its defaults: event counts and the
            pipeline's self-metrics (per-stage counting);
(counts)    ``export_metrics(self_metrics=False)``: event counts only;
(summary)   ``log_events(mode="summary")``: lifecycle lines and one summary
            line per run, structlog configured by
            :func:`eventkit.logging.configure` for JSON, written to a null
            sink (no system calls timed);
(every)     ``log_events()``: one JSON line per event out of the chain, the
            per-event logging the CLI does not do by default.

Every variant must deliver the same events (count, bytes and types), checked
on every repetition. Repetitions interleave the variants so machine noise hits
all of them alike. The differences measured are tens of nanoseconds an event,
smaller than the noise of a shared machine, and noise only ever adds time: the
ratios and "ns/event" are from each variant's best run (as :mod:`timeit`
advises), the median is reported beside. "added ns/event" is the difference
with (base), per input event; the report also gives the cost per JSON line
logged, from (every).
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import TYPE_CHECKING, Any, Final

import structlog
from prometheus_client import CollectorRegistry

import eventkit
from bench.core import LIMIT, Tally, against_base
from bench.data import synthetic_events
from eventkit import pipe, sinks, sources
from eventkit.logging import configure

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from eventkit import Event, Stage

#: Most added cost allowed for metrics and for summary logging, as a ratio.
TARGET: Final = 1.15
#: Most added cost allowed for cap_output and for lines, as a ratio.
SHAPING_TARGET: Final = 1.1


class NullFile:
    """A text file that keeps nothing: log lines cost only their making."""

    lines = 0

    def write(self, text: str) -> int:
        """Count the lines, keep nothing."""
        NullFile.lines += text.count("\n")
        return len(text)

    def flush(self) -> None:
        """Nothing to flush."""

    def isatty(self) -> bool:
        """Not a terminal."""
        return False


def _chain() -> list[Stage]:
    return [
        pipe.reorder(),
        pipe.only("stdout", "stderr", "completed"),
        pipe.buffer_bytes(LIMIT),
        pipe.track_progress(),
    ]


def _extra(name: str) -> list[Stage]:
    if name == "metrics":
        return [pipe.export_metrics(CollectorRegistry())]
    if name == "counts":
        return [pipe.export_metrics(CollectorRegistry(), self_metrics=False)]
    if name == "summary":
        return [pipe.log_events(mode="summary")]
    if name == "every":
        return [pipe.log_events()]
    if name == "cap":
        return [pipe.cap_output()]
    if name == "lines":
        return [pipe.lines()]
    return []


VARIANTS: Final = {
    "base": "core chain (reorder, only, buffer_bytes, track_progress)",
    "metrics": "+ export_metrics() (event counts + self-metrics)",
    "counts": "+ export_metrics(self_metrics=False)",
    "summary": '+ log_events(mode="summary"), JSON',
    "every": "+ log_events(), a JSON line per event",
    "cap": "+ cap_output() (64 KiB head and tail: runs pass whole)",
    "lines": "+ lines() (output regrouped into whole lines)",
}
#: Variants that regroup output: they deliver the same bytes, in other events.
REGROUPED: Final = frozenset({"lines"})


async def _run(name: str, events: Iterable[Event], tally: Tally) -> None:
    await eventkit.run(
        sources.iterate(events), *_chain(), *_extra(name), sink=sinks.call(tally)
    )


def measure(
    events: int,
    repetitions: int,
    on_step: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Time each variant ``repetitions`` times, interleaved; return the report.

    Returns:
        ``{"benchmark": "observability", "title", "variants": {name:
        {"label", "events/s", "ns/event", "median ns/event", "added
        ns/event", "log lines", "seconds"}}, "targets": {"metrics/base",
        "summary/base": {"value", "target"}}, "ns per JSON line": float}``.
    """
    data = list(synthetic_events(events))
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    lines: dict[str, int] = dict.fromkeys(VARIANTS, 0)
    expected: object = None
    configure("json", file=NullFile())  # type: ignore[arg-type]
    try:
        with asyncio.Runner() as runner:
            for round_ in range(repetitions + 1):  # the first round warms up
                for name in VARIANTS:
                    tally = Tally()
                    NullFile.lines = 0
                    gc.collect()
                    begin = time.perf_counter()
                    runner.run(_run(name, data, tally))
                    elapsed = time.perf_counter() - begin
                    if expected is None:
                        expected = tally.key()
                    elif (
                        name in REGROUPED and _bytes(tally.key()) != _bytes(expected)
                    ) or (name not in REGROUPED and tally.key() != expected):
                        raise AssertionError(f"{name} delivered different output")
                    if round_:
                        times[name].append(elapsed)
                    lines[name] = NullFile.lines
                    on_step(name)
    finally:
        structlog.reset_defaults()
    variants = against_base(times, events, VARIANTS)
    for name, variant in variants.items():
        variant["log lines"] = lines[name]
    added = variants["every"]["added ns/event"] * events
    per_line = added / max(lines["every"], 1)
    return {
        "benchmark": "observability",
        "title": f"Observability on the core chain, {events:,} events "
        f"(best of {repetitions})",
        "variants": variants,
        "targets": {
            "metrics/base": {
                "value": variants["metrics"]["x base"],
                "target": f"<= {TARGET}",
            },
            "summary/base": {
                "value": variants["summary"]["x base"],
                "target": f"<= {TARGET}",
            },
            "cap_output/base": {
                "value": variants["cap"]["x base"],
                "target": f"<= {SHAPING_TARGET}",
            },
            "lines/base": {
                "value": variants["lines"]["x base"],
                "target": f"<= {SHAPING_TARGET}",
            },
        },
        "ns per JSON line": per_line,
    }


def _bytes(key: Any) -> list[tuple[str, int]]:
    """The bytes per type of a tally's key, without the event counts."""
    return [(kind, size) for kind, _, size in key[1]]


if __name__ == "__main__":
    import json
    import sys

    json.dump(
        measure(300_000, int(sys.argv[1]) if len(sys.argv) > 1 else 3),
        sys.stdout,
        indent=2,
    )
    print()
