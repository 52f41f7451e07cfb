"""Stepping awaitables by hand: take what is ready, without waiting for the rest.

An ``await`` that would not have to wait finishes when its coroutine is
first sent ``None``: it raises :exc:`StopIteration` with its value. One that
would wait yields what it waits on (a future) instead. Starting steps by hand
lets a reader take every item already at hand (frames a WebSocket received,
events a generator can give at once) without a trip through the event loop
per item, and stop at the first that would wait: that step stays suspended
and is continued later, exactly as ``await`` would have continued it.

This relies on one detail of asyncio's tasks: a future yielded to a task
carries ``_asyncio_future_blocking`` set, which the task clears when it takes
the future; a step continued here does the same. ``tests/test_steps.py``
fails if a Python version changes that.
"""

from __future__ import annotations

import asyncio
import functools
import types
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator

__all__ = ["NOT_READY", "Ready", "abandon", "advance"]

T = TypeVar("T")

#: What :meth:`Ready.now` returns when the next item is not at hand.
NOT_READY: Final[Any] = object()


def _wake(waiter: asyncio.Future[None], _: object = None) -> None:
    if not waiter.done():
        waiter.set_result(None)


@types.coroutine
def advance(
    step: Generator[Any, Any, T],
    waiting_on: Any,
    due: float | None = None,
    clock: Callable[[], float] | None = None,
) -> Generator[Any, Any, tuple[bool, Any]]:
    """Go on with a step that suspended on ``waiting_on``, in the caller's task.

    Exactly as ``await`` would, except that when ``due`` (a time on
    ``clock``) comes first, control goes back to the caller with the step
    still suspended, to be continued later. With ``due`` None it is a plain
    ``await`` of the step.

    Returns:
        ``(True, value)`` when the step finished, ``(False, waiting_on)`` when
        the deadline came first.

    Raises:
        Whatever the step raises (:exc:`StopAsyncIteration` at the end of an
        async iterator).
    """
    while True:
        if due is None or not asyncio.isfuture(waiting_on) or waiting_on.done():
            # Nothing to race: hand the awaited object to our task as is.
            try:
                sent = yield waiting_on
            except BaseException as exc:
                try:
                    waiting_on = step.throw(exc)
                except StopIteration as finished:
                    return True, finished.value
                continue
        else:
            # Race what the step waits on against the deadline, without
            # touching the step: a waiter of our own wakes at whichever is
            # first.
            assert clock is not None
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            wake = functools.partial(_wake, waiter)
            waiting_on.add_done_callback(wake)
            timer = loop.call_later(max(due - clock(), 0.0), wake)
            try:
                yield from waiter.__await__()
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    waiting_on.cancel()  # as the task would have done
                try:
                    waiting_on = step.throw(exc)
                except StopIteration as finished:
                    return True, finished.value
                continue
            finally:
                waiting_on.remove_done_callback(wake)
                timer.cancel()
            if not waiting_on.done():
                return False, waiting_on
            # The task would clear this flag on a future it was handed.
            waiting_on._asyncio_future_blocking = False
            sent = None
        try:
            waiting_on = step.send(sent)
        except StopIteration as finished:
            return True, finished.value


@types.coroutine
def abandon(
    step: Generator[Any, Any, Any], waiting_on: Any
) -> Generator[Any, Any, None]:
    """Cancel a suspended step and let it clean up, awaiting as it needs."""
    if asyncio.isfuture(waiting_on):
        waiting_on.cancel()
    try:
        waiting_on = step.throw(asyncio.CancelledError())
        while True:
            sent = yield waiting_on
            waiting_on = step.send(sent)
    except (StopIteration, StopAsyncIteration, asyncio.CancelledError):
        return


class Ready(Generic[T]):
    """Takes items from an async ``next`` function, as many as are at hand.

    :meth:`now` starts a step by hand: the item if it is ready, else
    :data:`NOT_READY`, the step left suspended. :meth:`next` waits for the
    next item (continuing that step, if any). Close with :meth:`aclose`:
    a suspended step is cancelled then.

    Args:
        next_: Makes the awaitable of the next item (``iterator.__anext__``,
            ``websocket.recv``); its errors come out of :meth:`now` and
            :meth:`next` as they are.
    """

    __slots__ = ("_next", "_step", "_waiting_on")

    def __init__(self, next_: Callable[[], Awaitable[T]]) -> None:
        self._next = next_
        self._step: Generator[Any, Any, T] | None = None
        self._waiting_on: Any = None

    def now(self) -> T:
        """Return the next item if it is at hand, else :data:`NOT_READY`."""
        step = self._step
        if step is None:
            step = self._next().__await__()
            sent: Any = None
        else:
            waiting_on = self._waiting_on
            if not (asyncio.isfuture(waiting_on) and waiting_on.done()):
                return NOT_READY  # type: ignore[no-any-return]
            # What it waited on is done: go on as the task would.
            waiting_on._asyncio_future_blocking = False
            sent = None
        self._step = None
        try:
            waiting_on = step.send(sent)
        except StopIteration as ready:
            return ready.value  # type: ignore[no-any-return]
        self._step, self._waiting_on = step, waiting_on
        return NOT_READY  # type: ignore[no-any-return]

    async def next(self) -> T:
        """Return the next item, waiting for it if need be."""
        step = self._step
        if step is None:
            return await self._next()
        self._step = None
        _, value = await advance(step, self._waiting_on)
        return value  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Cancel the step left suspended, if any, and let it clean up."""
        step, self._step = self._step, None
        if step is not None:
            await abandon(step, self._waiting_on)
