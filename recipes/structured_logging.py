"""Structured logging of runs: JSON lines on stderr, one summary per run.

What ``eventkit run --log json`` does: the program's output goes to stdout as
it comes; stderr gets structlog JSON lines for the lifecycle events
(``started``, ``result``, ``error``, ``resource_limit``) and one
``run_summary`` line per run, with its duration, exit code, events and bytes
per type, gaps and limits hit. Logging every output chunk costs microseconds
a line; ``--every N`` adds one output line in N, sampled.

    python recipes/structured_logging.py [--format json|console] [--every N]
    python recipes/structured_logging.py 2>&1 >/dev/null | jq .
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Literal

import structlog

import eventkit
from eventkit import pipe, sinks, sources
from eventkit.logging import configure

CODE = """
import sys
for i in range(1, 6):
    print(f"step {i}/5")
print("careful", file=sys.stderr)
"""


async def main(format: Literal["json", "console"], every: int | None) -> None:
    # Once per program, never in library code: structlog to stderr.
    configure(format, level="info")
    # Context bound here is merged into every line eventkit logs.
    structlog.contextvars.bind_contextvars(job="recipe")
    stages = [
        pipe.reorder(),
        pipe.buffer_bytes(4096, max_age=0.1),
        pipe.track_progress(),
        # Lifecycle lines and one run_summary line per run.
        pipe.log_events(mode="summary"),
    ]
    if every:
        # Output lines too, one in `every` of each type.
        stages.append(pipe.log_events(types=["stdout", "stderr"], every=every))
    await eventkit.run(
        sources.local(CODE, run="recipe-run"),
        *stages,
        sink=sinks.call(_show),
    )


def _show(event: eventkit.Event) -> None:
    # stdout stays the program's own output.
    if event.type == "stdout":
        print(event.data, end="")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--format", choices=("json", "console"), default="json")
    parser.add_argument("--every", type=int, help="also log 1 output chunk in N")
    args = parser.parse_args()
    asyncio.run(main(args.format, args.every))
