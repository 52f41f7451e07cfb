"""Waiting for a condition that nothing signals: a file written, a count reached."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["until"]


async def until(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Wait until ``condition()`` holds, checking every 10 ms.

    Raises:
        AssertionError: If it does not within ``within`` seconds.
    """
    for _ in range(max(1, int(within / 0.01))):
        if condition():
            return
        await asyncio.sleep(0.01)
    if not condition():
        raise AssertionError(f"condition not met within {within:g} s")
