"""Every message type: stdout, stderr, result and completed, told apart.

The HOPX "Message Types" pattern on the local executor.

    python recipes/message_types.py
"""

from __future__ import annotations

import asyncio

from eventkit import EventType, sources

CODE = """
import sys
print("This is stdout")
print("This is also stdout", file=sys.stdout)
print("This is stderr", file=sys.stderr)
"""


async def handle_all_message_types() -> None:
    async for event in sources.local(CODE):
        # EventType members are strings: match on either.
        match event.type:
            # Output arrives in chunks as the program writes, not line by line:
            # label each line of a chunk.
            case EventType.STDOUT:
                for line in event.data.splitlines(keepends=True):
                    print(f"[STDOUT] {line}", end="")
            case EventType.STDERR:
                for line in event.data.splitlines(keepends=True):
                    print(f"[STDERR] {line}", end="")
            case EventType.RESULT:
                print(
                    f"\n[RESULT] Exit: {event['exit_code']}, "
                    f"Time: {event['execution_time']:.2f}s"
                )
            case EventType.COMPLETED:
                print("[COMPLETE] Execution finished")


if __name__ == "__main__":
    asyncio.run(handle_all_message_types())
