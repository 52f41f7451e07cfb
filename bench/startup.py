"""How long the ``eventkit`` command takes to start, against Python importing asyncio.

What is timed: a whole process, from spawn to exit, each variant run the way
a user runs it.

(version)  ``eventkit --version``: the installed console script;
(help)     ``eventkit --help``: the same, printing the parser's help;
(asyncio)  ``python -c "import asyncio"``: the least any asyncio program
           costs to start, with the same interpreter.

The variants run interleaved, each ``repetitions`` times after one untimed
warm-up, so that machine noise hits them alike; medians are reported. The
target (issue 11): each command within 3 times the baseline.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

TARGET: Final = 3.0


def _eventkit() -> str:
    """The ``eventkit`` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "eventkit"
    if beside.exists():
        return str(beside)
    found = shutil.which("eventkit")
    if found is None:
        raise RuntimeError("no eventkit command: install the package first")
    return found


def variants() -> dict[str, tuple[str, list[str]]]:
    """name -> (label, argv) of each timed command."""
    eventkit = _eventkit()
    return {
        "version": ("eventkit --version", [eventkit, "--version"]),
        "help": ("eventkit --help", [eventkit, "--help"]),
        "asyncio": (
            'python -c "import asyncio"',
            [sys.executable, "-c", "import asyncio"],
        ),
    }


def _spawn(argv: list[str]) -> float:
    """Seconds from spawning ``argv`` to its exit; it must exit 0."""
    begin = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - begin


def measure(repetitions: int = 20) -> dict[str, Any]:
    """Time the commands ``repetitions`` times each, interleaved; return the report.

    Returns:
        ``{"benchmark": "startup", "repetitions", "variants": {name: {"label",
        "ms" (median), "seconds" (every run)}}, "targets": {"version/asyncio",
        "help/asyncio": {"value", "target"}}, "targets_met"}``.
    """
    commands = variants()
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repetitions + 1):  # the first round warms the caches up
        for name, (_, argv) in commands.items():
            times[name].append(_spawn(argv))
    times = {name: spent[1:] for name, spent in times.items()}
    medians = {name: statistics.median(spent) for name, spent in times.items()}
    targets = {
        f"{name}/asyncio": {
            "value": medians[name] / medians["asyncio"],
            "target": f"<= {TARGET:g}",
        }
        for name in ("version", "help")
    }
    return {
        "benchmark": "startup",
        "title": "startup: eventkit vs python -c 'import asyncio'",
        "repetitions": repetitions,
        "variants": {
            name: {
                "label": commands[name][0],
                "ms": medians[name] * 1e3,
                "seconds": times[name],
            }
            for name in commands
        },
        "targets": targets,
        "targets_met": all(t["value"] <= TARGET for t in targets.values()),
    }


if __name__ == "__main__":
    json.dump(measure(), sys.stdout, indent=2)
    print()
