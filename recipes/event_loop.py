"""The basic event loop: one ``match`` over every event type.

The AI Computer "Basic Event Loop" pattern, on the local executor. Resource
clean-up is the source's job: the subprocess and its directory are gone when
the loop ends, however it ends.

    python recipes/event_loop.py
"""

from __future__ import annotations

import asyncio

from eventkit import sources

CODE = """
import sys
print("hello from the sandbox")
print("a warning", file=sys.stderr)
"""


async def handle_execution(code: str) -> None:
    async for event in sources.local(code, timeout=30):
        match event.type:
            case "started":
                print("Execution started")
            case "stdout":
                print(f"Output: {event.data}", end="")
            case "stderr":
                print(f"Error: {event.data}", end="")
            case "error":
                print(f"Execution error: {event.data}")
            case "resource_limit":
                print(f"Resource limit exceeded: {event['limit']}")
            case "completed":
                print("Execution completed")


if __name__ == "__main__":
    asyncio.run(handle_execution(CODE))
