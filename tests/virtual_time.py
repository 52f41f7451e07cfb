"""An event loop on virtual time, for tests of timing without real waits.

:class:`VirtualTimeLoop` is asyncio's selector loop with a selector that does
no I/O: when the loop would wait for its next timer, the clock jumps there
at once. A test of what happens after 0.2 s takes no time and gives exact
timings. Only timers work: no sockets, subprocesses or threads.

Use :func:`run` or the :func:`virtual` decorator on an async test, and give
the operators :func:`loop_time` as their clock.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping

__all__ = ["VirtualTimeLoop", "loop_time", "run", "virtual"]

T = TypeVar("T")
P = ParamSpec("P")


class _NoIOSelector(selectors.BaseSelector):
    """A selector that never finds I/O ready and moves the clock instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._keys: dict[Any, selectors.SelectorKey] = {}

    def register(
        self, fileobj: Any, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        key = selectors.SelectorKey(fileobj, _fd(fileobj), events, data)
        self._keys[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys.pop(fileobj)

    def select(
        self, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("deadlock: no timer is due and there is no I/O")
        self._loop.now += timeout
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._keys

    def close(self) -> None:
        self._keys.clear()


def _fd(fileobj: Any) -> int:
    return fileobj if isinstance(fileobj, int) else int(fileobj.fileno())


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock jumps to the next timer when idle."""

    def __init__(self) -> None:
        #: The loop's clock, in seconds from 0.
        self.now = 0.0
        super().__init__(_NoIOSelector(self))

    def time(self) -> float:
        """Return the virtual time."""
        return self.now


def loop_time() -> float:
    """Return the running loop's time: the clock to give operators."""
    return asyncio.get_running_loop().time()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end on a fresh :class:`VirtualTimeLoop`."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coroutine)


def virtual(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Turn an async test into a plain one run on a :class:`VirtualTimeLoop`."""

    @functools.wraps(test)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        run(test(*args, **kwargs))

    return wrapper
