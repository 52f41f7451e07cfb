"""Output buffering: chunks of at most N bytes instead of one event per write.

The AI Computer "Output Buffering" pattern. ``buffer_bytes`` does it per run
and stream, never exceeds the limit (an oversize write is split between
characters), flushes before the run's next lifecycle event, and with
``max_age`` never keeps output waiting longer than that.

    python recipes/output_buffering.py [--buffer-size BYTES]
"""

from __future__ import annotations

import argparse
import asyncio

from eventkit import pipe, sources

CODE = """
for i in range(200):
    print(f"line {i:03d}: " + "x" * 40)
"""


async def buffer_output(code: str, buffer_size: int) -> None:
    chunks = sources.local(code) | pipe.buffer_bytes(buffer_size, max_age=0.25)
    async with chunks.stream() as events:
        async for event in events:
            if event.type in ("stdout", "stderr"):
                size = len(event.data.encode())
                print(f"chunk of {event['count']} writes, {size} bytes")
            elif event.type == "completed":
                print("done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--buffer-size", type=int, default=1024)
    asyncio.run(buffer_output(CODE, parser.parse_args().buffer_size))
