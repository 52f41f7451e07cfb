"""Error handling: a failing program, told apart from a failing stream.

The HOPX "Error Handling" pattern. The program's own failure shows as its
stderr, a non-zero ``exit_code`` and ``success=False``; a stream that breaks
(a WebSocket closed before ``completed``) raises
:class:`eventkit.StreamClosedError` instead of ending quietly.

    python recipes/error_handling.py
"""

from __future__ import annotations

import asyncio

import eventkit
from eventkit import sources

CODE = """
print("Starting...")
print(undefined_variable)  # This will cause an error
print("This won't be reached")
"""


async def handle_streaming_errors() -> int:
    try:
        async for event in sources.local(CODE):
            if event.type == "stdout":
                print(event.data, end="")
            elif event.type == "stderr":
                print(f"ERROR: {event.data}", end="")
            elif event.type == "result" and event["exit_code"] != 0:
                print(f"\nExecution failed with exit code: {event['exit_code']}")
            elif event.type == "completed" and not event.get("success", False):
                print("Execution completed with errors")
                return 1
    except eventkit.StreamClosedError as exc:
        print(f"Streaming error: {exc} (close code {exc.code})")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(handle_streaming_errors()))
