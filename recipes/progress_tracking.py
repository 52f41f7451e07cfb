"""Progress tracking from timestamps and sequence numbers.

The AI Computer "Progress Tracking" pattern. Every eventkit event carries a
``timestamp`` (Unix seconds) and a per-run ``sequence`` from 0, whatever the
wire had; ``track_progress`` does the counting and timing for you.

    python recipes/progress_tracking.py
"""

from __future__ import annotations

import asyncio

from eventkit import pipe, sources

CODE = """
import time
for i in range(3):
    print(f"working {i}")
    time.sleep(0.05)
"""


async def track_progress(code: str) -> None:
    start_time: float | None = None
    stream = sources.local(code) | pipe.track_progress()
    async with stream.stream() as events:
        async for event in events:
            if event.type == "progress":
                continue
            start_time = event.timestamp if start_time is None else start_time
            elapsed = event.timestamp - start_time
            print(f"Event {event.sequence} at {elapsed:.2f}s: {event.type}")
            if event.type == "completed":
                print(f"Execution completed in {elapsed:.2f} seconds")
    # The final progress event has the same figures, computed for you.


if __name__ == "__main__":
    asyncio.run(track_progress(CODE))
