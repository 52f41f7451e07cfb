"""Environment variables: pass them to the code, and only them.

The HOPX "Environment Variables" pattern. The local executor gives the code a
minimal environment (PATH, HOME, LANG) plus ``env``: never this process's own
variables, so secrets in your shell do not leak into sandboxed code.

    python recipes/environment_variables.py
"""

from __future__ import annotations

import asyncio

from eventkit import sources

CODE = """
import os
print(f"API key: {os.getenv('API_KEY', 'not set')}")
print(f"Debug mode: {os.getenv('DEBUG', 'false')}")
print(f"Shell secrets visible: {'EVENTKIT_RECIPE_SECRET' in os.environ}")
"""


async def stream_with_env() -> None:
    env = {"API_KEY": "sk-123", "DEBUG": "true"}
    async for event in sources.local(CODE, env=env):
        if event.type == "stdout":
            print(event.data, end="")


if __name__ == "__main__":
    asyncio.run(stream_with_env())
