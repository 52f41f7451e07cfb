"""The local executor's start-up latency against a bare subprocess.

What is timed: from the call to the first ``stdout`` bytes of ``print(1)``.

(local) ``eventkit.sources.local("print(1)")`` iterated to its first
        ``stdout`` event: temporary directory, code file, minimal environment,
        new session, both pipes read, events made;
(bare)  ``asyncio.create_subprocess_exec(sys.executable, "-u", "-c",
        "print(1)", stdout=PIPE)`` and one ``read()`` of its stdout: the least
        any asyncio program can do to run Python code and see its output.

Both variants run to the end of the child (cleanup is not timed) and must
see ``1``. Repetitions interleave the variants in one event loop so machine
noise hits both alike; medians are reported. Both are dominated by the
child interpreter's own start-up (tens of milliseconds), so the ratio
measures what eventkit adds on top of it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Final

from eventkit.sources.local import local

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

TARGET: Final = 1.2


async def with_eventkit() -> float:
    """Return the seconds from the call to the first ``stdout`` event."""
    begin = time.perf_counter()
    first = 0.0
    seen = ""
    async with local("print(1)").stream() as streamer:
        async for event in streamer:
            if event.type == "stdout":
                if not seen:
                    first = time.perf_counter() - begin
                seen += event.data
            elif event.type == "completed" and not event.attrs["success"]:
                raise AssertionError(f"local run failed: {event!r}")
    if seen != "1\n":
        raise AssertionError(f"local run printed {seen!r}")
    return first


async def bare() -> float:
    """Return the seconds from the call to the first bytes of a bare subprocess."""
    begin = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-u", "-c", "print(1)", stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    data = await process.stdout.read(65536)
    first = time.perf_counter() - begin
    data += await process.stdout.read()
    await process.wait()
    if data != b"1\n":
        raise AssertionError(f"bare run printed {data!r}")
    return first


VARIANTS: dict[str, tuple[str, Callable[[], Coroutine[Any, Any, float]]]] = {
    "local": ('eventkit.sources.local("print(1)")', with_eventkit),
    "bare": ("asyncio.create_subprocess_exec, python -u -c", bare),
}


def measure(repetitions: int = 20) -> dict[str, Any]:
    """Time both variants ``repetitions`` times, interleaved; return the report.

    Args:
        repetitions: Timed runs of each variant, after one untimed warm-up.

    Returns:
        ``{"benchmark": "executor", "repetitions", "variants": {name: {"label",
        "first_stdout_ms" (median), "seconds" (every run)}}, "targets":
        {"local/bare": {"value", "target"}}, "targets_met"}``.
    """
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with asyncio.Runner() as runner:
        for _ in range(repetitions + 1):  # the first round warms up
            for name, (_, variant) in VARIANTS.items():
                gc.collect()
                times[name].append(runner.run(variant()))
    times = {name: spent[1:] for name, spent in times.items()}
    medians = {name: statistics.median(spent) for name, spent in times.items()}
    ratio = medians["local"] / medians["bare"]
    return {
        "benchmark": "executor",
        "repetitions": repetitions,
        "variants": {
            name: {
                "label": VARIANTS[name][0],
                "first_stdout_ms": medians[name] * 1e3,
                "seconds": times[name],
            }
            for name in times
        },
        "targets": {"local/bare": {"value": ratio, "target": f"<= {TARGET}"}},
        "targets_met": ratio <= TARGET,
    }


if __name__ == "__main__":
    json.dump(measure(), sys.stdout, indent=2)
    print()
