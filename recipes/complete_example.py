"""The complete example: a whole chain, from a running program to people and Prometheus.

The HOPX "Complete Example" pattern, done with eventkit's operators:
events back in order, output in chunks of at most 4 KiB flushed within 100 ms,
progress from ``Processed i/total`` lines, Prometheus counters, and a summary.

    python recipes/complete_example.py [--step SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio

from prometheus_client import CollectorRegistry, generate_latest

import eventkit
from eventkit import pipe, sinks, sources

CODE = """
import random
import sys
import time
print("Starting data processing...")
total_items = 100
for i in range(total_items):
    time.sleep(STEP)  # simulate processing
    if i % 10 == 0:
        print(f"Processed {i}/{total_items} items")
    if random.random() < 0.05:
        print(f"Warning: Issue with item {i}", file=sys.stderr)
print("Processing complete!")
print(f"Total items processed: {total_items}")
"""


async def complete_streaming_example(step: float) -> None:
    registry = CollectorRegistry()
    summary = {"chunks": 0, "progress": 0.0}

    def show(event: eventkit.Event) -> None:
        if event.type in ("stdout", "stderr"):
            summary["chunks"] += 1
            mark = "" if event.type == "stdout" else "! "
            print(f"{mark}{event.data}", end="")
        elif event.type == "progress" and event["percent"] is not None:
            summary["progress"] = event["percent"]
        elif event.type == "result":
            print("\nExecution Summary:")
            print(f"  Exit code: {event['exit_code']}")
            print(f"  Execution time: {event['execution_time']:.2f}s")
        elif event.type == "completed":
            print("Streaming completed")

    await eventkit.run(
        sources.local(CODE.replace("STEP", repr(step)), timeout=120),
        pipe.reorder(),
        pipe.buffer_bytes(4096, max_age=0.1),
        pipe.track_progress(),
        pipe.export_metrics(registry),
        sink=sinks.call(show),
    )
    print(
        f"  Output chunks: {summary['chunks']}, last progress: {summary['progress']}%"
    )
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("eventkit_events_total"):
            print(f"  {line}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step", type=float, default=0.1, help="seconds per item")
    asyncio.run(complete_streaming_example(parser.parse_args().step))
