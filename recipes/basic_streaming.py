"""Basic streaming: see a program's output while it runs.

The HOPX "Basic Streaming" pattern, on eventkit's local executor: no account,
no server. Events read like the SDK's message dicts (``message["type"]``).

    python recipes/basic_streaming.py [--step SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from eventkit import sources

CODE = """
import time
for i in range(5):
    print(f"Step {i+1}/5")
    time.sleep(STEP)
print("Done!")
"""


async def stream_execution(step: float) -> None:
    async for message in sources.local(CODE.replace("STEP", repr(step))):
        if message["type"] == "stdout":
            print(message["data"], end="")
        elif message["type"] == "stderr":
            print(f"ERROR: {message['data']}", end="", file=sys.stderr)
        elif message["type"] == "result":
            print(f"\nExit code: {message['exit_code']}")
            print(f"Execution time: {message['execution_time']:.2f}s")
        elif message["type"] == "completed":
            print("\nExecution completed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step", type=float, default=1.0, help="seconds per step")
    asyncio.run(stream_execution(parser.parse_args().step))
