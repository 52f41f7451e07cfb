"""The local executor's start-up latency, isolated and not, against a bare subprocess.

What is timed: from the call to the first ``stdout`` bytes of ``print(1)``.

(local)    ``eventkit.sources.local("print(1)")`` iterated to its first
           ``stdout`` event: temporary directory, code file, minimal
           environment, new session, both pipes read, events made;
(isolated) the same with ``isolation="bwrap"``: the code in a bubblewrap
           sandbox (new namespaces, the system and the interpreter mounted
           read-only, and, as root, ``setpriv`` dropping to an unprivileged
           uid); skipped where no sandbox starts;
(bare)     ``asyncio.create_subprocess_exec(sys.executable, "-u", "-c",
           "print(1)", stdout=PIPE)`` and one ``read()`` of its stdout: the
           least any asyncio program can do to run Python code and see its
           output.

Every variant runs to the end of the child (cleanup is not timed) and must
see ``1``. Repetitions interleave the variants in one event loop so machine
noise hits all alike; medians are reported. All are dominated by the child
interpreter's own start-up (milliseconds to tens of them), so the ratios
measure what eventkit, and the sandbox, add on top of it.
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

from eventkit.sources.local import isolation, local

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

#: Wanted: the ratio of each variant's median to bare's.
TARGETS: Final = {"local": 1.2, "isolated": 1.5}


async def with_eventkit(mode: isolation.Isolation = "none") -> float:
    """Return the seconds from the call to the first ``stdout`` event."""
    begin = time.perf_counter()
    first = 0.0
    seen = ""
    async with local("print(1)", isolation=mode).stream() as streamer:
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


async def isolated() -> float:
    """Return the seconds to the first ``stdout`` event of a sandboxed run."""
    return await with_eventkit("bwrap")


VARIANTS: dict[str, tuple[str, Callable[[], Coroutine[Any, Any, float]]]] = {
    "local": ('eventkit.sources.local("print(1)")', with_eventkit),
    "isolated": ('eventkit.sources.local("print(1)", isolation="bwrap")', isolated),
    "bare": ("asyncio.create_subprocess_exec, python -u -c", bare),
}


def measure(repetitions: int = 20) -> dict[str, Any]:
    """Time the variants ``repetitions`` times, interleaved; return the report.

    Args:
        repetitions: Timed runs of each variant, after one untimed warm-up.

    Returns:
        ``{"benchmark": "executor", "repetitions", "isolation", "variants":
        {name: {"label", "first_stdout_ms" (median), "seconds" (every run)}},
        "targets": {"local/bare", "isolated/bare": {"value", "target"}},
        "targets_met"}``; without a sandbox here, no ``isolated`` variant and
        ``isolation`` says why.
    """
    support = isolation.probe()
    variants = {
        name: variant
        for name, variant in VARIANTS.items()
        if name != "isolated" or support.bwrap
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with asyncio.Runner() as runner:
        for _ in range(repetitions + 1):  # the first round warms up
            for name, (_, variant) in variants.items():
                gc.collect()
                times[name].append(runner.run(variant()))
    times = {name: spent[1:] for name, spent in times.items()}
    medians = {name: statistics.median(spent) for name, spent in times.items()}
    targets = {
        f"{name}/bare": {
            "value": medians[name] / medians["bare"],
            "target": f"<= {wanted}",
        }
        for name, wanted in TARGETS.items()
        if name in medians
    }
    return {
        "benchmark": "executor",
        "repetitions": repetitions,
        "isolation": support.describe(),
        "variants": {
            name: {
                "label": variants[name][0],
                "first_stdout_ms": medians[name] * 1e3,
                "seconds": times[name],
            }
            for name in times
        },
        "targets": targets,
        "targets_met": all(
            target["value"] <= TARGETS[name.split("/")[0]]
            for name, target in targets.items()
        ),
    }


if __name__ == "__main__":
    json.dump(measure(), sys.stdout, indent=2)
    print()
