"""Progress monitoring: percent, counts and ETA parsed from the output.

The HOPX "Progress Monitoring" pattern. ``track_progress`` reads
``Progress: 45.0% (9/20)`` from the program's output and adds ``progress``
events with ``percent``, ``current``, ``total``, ``rate`` and ``eta``.

    python recipes/progress_monitoring.py [--step SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio

from eventkit import pipe, sources

CODE = """
import time
total_steps = 20
for i in range(total_steps):
    progress = (i + 1) / total_steps * 100
    print(f"Progress: {progress:.1f}% ({i+1}/{total_steps})")
    time.sleep(STEP)
print("All steps completed!")
"""


async def monitor_progress(step: float) -> None:
    # Output arrives as written, and an unbuffered print() writes its text and
    # its newline separately: buffer_bytes joins what comes within 50 ms, so
    # each line is shown whole before its progress report.
    run = (
        sources.local(CODE.replace("STEP", repr(step)))
        | pipe.buffer_bytes(4096, max_age=0.05)
        | pipe.track_progress()
    )
    async with run.stream() as events:
        async for event in events:
            if event.type == "progress" and not event["done"] and event["percent"]:
                eta = event["eta"]
                when = f", about {eta:.1f}s left" if eta else ""
                print(f"  -> {event['percent']:.0f}% done{when}")
            elif event.type == "stdout":
                print(event.data, end="")
            elif event.type == "completed":
                print("Task completed successfully")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step", type=float, default=0.5, help="seconds per step")
    asyncio.run(monitor_progress(parser.parse_args().step))
