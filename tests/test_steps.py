"""Tests for :mod:`eventkit._steps`: taking what is ready, by hand."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from eventkit._steps import NOT_READY, Ready

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def test_asyncio_future_blocking_protocol() -> None:
    """The steppers rely on this asyncio detail: it fails if Python changes it.

    A future yielded from ``await`` carries ``_asyncio_future_blocking`` set;
    the task clears it before waiting. Continuing a step by hand does what
    the task does.
    """
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
        step = future.__await__()
        yielded = step.send(None)
        assert yielded is future
        assert future._asyncio_future_blocking is True
        future._asyncio_future_blocking = False
        future.set_result("done")
        with pytest.raises(StopIteration) as finished:
            step.send(None)
        assert "done" == finished.value.value
    finally:
        loop.close()


async def test_now_takes_what_is_at_hand_and_next_waits() -> None:
    """Items at hand come from now(); the first that would wait is continued."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for item in (1, 2):
        queue.put_nowait(item)
    ready = Ready(queue.get)
    assert 1 == ready.now()
    assert 2 == ready.now()
    assert NOT_READY is ready.now()  # a get() is now suspended
    assert NOT_READY is ready.now()
    queue.put_nowait(3)
    await asyncio.sleep(0)
    # The suspended get() got its item: now() finishes it without waiting.
    assert 3 == ready.now()
    assert NOT_READY is ready.now()
    asyncio.get_running_loop().call_later(0.01, queue.put_nowait, 4)
    assert 4 == await ready.next()
    await ready.aclose()


async def test_errors_and_the_end_come_out_as_they_are() -> None:
    """An async iterator's end and errors pass through now() and next()."""

    async def items() -> AsyncIterator[int]:
        yield 1
        raise ValueError("broken")

    ready = Ready(items().__anext__)
    assert 1 == ready.now()
    with pytest.raises(ValueError, match="broken"):
        ready.now()
    ended = Ready(items().__anext__)
    assert 1 == await ended.next()
    with pytest.raises(ValueError, match="broken"):
        await ended.next()


async def test_aclose_cancels_the_suspended_step() -> None:
    """Closing cancels a step left waiting, and lets it clean up."""
    cleaned = asyncio.Event()

    async def slow() -> int:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()
        return 0  # pragma: no cover - never reached

    ready = Ready(slow)
    assert NOT_READY is ready.now()
    await ready.aclose()
    assert cleaned.is_set()
