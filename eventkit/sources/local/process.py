"""One running child of the local executor: its pipes, its limits, its end.

:func:`spawn` starts a program in a new session and process group with its
output piped, and returns its :class:`ChildProcess`: the asyncio protocol
the event loop feeds. The source takes the output with
:meth:`ChildProcess.take` (waiting in :meth:`~ChildProcess.changed` when
there is none), and ends the run with :meth:`~ChildProcess.close`.

What the protocol does on its own:

- Flow control: past :data:`_HIGH_WATER` bytes read and not taken, the
  pipes are no longer read (the kernel's pipe buffers fill and the child
  blocks on its next write), until the source brings it down to
  :data:`_LOW_WATER`.
- The main process exiting kills what it left in its process group, which
  would keep the pipes open; a pipe that a process outside the group still
  holds open is given up once it has been silent for :data:`_LINGER`.
- Kills are SIGKILL to the whole group, the first reason given (``timeout``,
  ``output``) recorded in :attr:`ChildProcess.limit`.

Failure behaviour: :func:`spawn` raises :exc:`OSError` or
:exc:`subprocess.SubprocessError` when the operating system refuses to
start the program. Nothing else raises: a group already gone is not an
error, and :meth:`ChildProcess.close` kills, reaps and closes whatever
happens, a second cancellation included.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import os
import resource
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ChildProcess", "limit_memory", "spawn"]

#: Output bytes held for the consumer before the pipes stop being read. The
#: kernel's pipe buffers then fill, and the child blocks on its next write.
_HIGH_WATER: Final = 4 * 1024 * 1024
#: ...and resumed once the consumer has brought it down to this.
_LOW_WATER: Final = 1024 * 1024
#: How long a read waits for the next one before the consumer is woken, so
#: that writes made together come out as one event: print() in unbuffered
#: Python writes its text and its newline separately.
_COALESCE: Final = 0.002
#: After the exit, how long a pipe still held open by a process outside the
#: group may stay silent before the stream stops waiting for it.
_LINGER: Final = 0.5


def limit_memory(limit: int) -> Callable[[], None]:
    """Return the ``preexec_fn`` capping the child's address space at ``limit``.

    Args:
        limit: Bytes of address space (``RLIMIT_AS``); lowered to the hard
            limit when that is lower.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        # An unprivileged process may lower its hard limit but never raise it.
        limit = min(limit, hard)
    # A builtin bound with partial: the forked child runs no Python bytecode
    # of ours between fork and exec.
    return functools.partial(resource.setrlimit, resource.RLIMIT_AS, (limit, limit))


async def spawn(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    max_memory_bytes: int | None,
) -> ChildProcess:
    """Start ``argv`` in a new session and process group; return its protocol.

    Stdin is ``/dev/null``; stdout and stderr are piped to the protocol.

    Args:
        argv: The command.
        cwd: Its working directory.
        env: Its whole environment.
        max_memory_bytes: The cap on its address space, or None.

    Raises:
        OSError: If the program cannot be started.
        subprocess.SubprocessError: If the child failed before the exec.
    """
    loop = asyncio.get_running_loop()
    options: dict[str, Any] = {}
    if max_memory_bytes is not None:
        options["preexec_fn"] = limit_memory(max_memory_bytes)
    _, child = await loop.subprocess_exec(
        functools.partial(ChildProcess, loop),
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
        **options,
    )
    return child


class ChildProcess(asyncio.SubprocessProtocol):
    """One running child: its output as it arrives, its exit, and its kill.

    The event loop calls the protocol methods; the consumer (the source's
    iteration) drains the output with :meth:`take` and waits in
    :meth:`changed` when there is nothing to take.

    Attributes:
        pid: The process id, also its process group's.
        limit: Why the group was killed (``"timeout"``, ``"output"``), or
            None; the consumer may set ``"memory"`` after the exit.
        abandoned: Whether the output still expected is given up: the main
            process exited and a pipe held from outside stayed silent.
        exited: Done when the process has exited and been reaped.
        exit_time: When it exited (monotonic).
        transport: The subprocess transport: the exit code, the pipes.
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_discard",
        "_loop",
        "_paused",
        "_received",
        "_timer",
        "_waiter",
        "_wake_soon",
        "abandoned",
        "exit_time",
        "exited",
        "limit",
        "pid",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: (fd, bytes) as read, (fd, None) at a pipe's end, in arrival order.
        self._chunks: collections.deque[tuple[int, bytes | None]] = collections.deque()
        #: Bytes read and not taken yet: what flow control watches.
        self._buffered = 0
        self._paused: set[int] = set()
        self._discard = False
        self.abandoned = False
        self.limit: str | None = None
        self.exited: asyncio.Future[None] = loop.create_future()
        self.exit_time = 0.0
        self.pid = 0
        self.transport: asyncio.SubprocessTransport | None = None
        self._received = 0
        self._waiter: asyncio.Future[None] | None = None
        self._wake_soon: asyncio.TimerHandle | None = None
        #: The timeout until the exit, then the check on lingering pipes.
        self._timer: asyncio.TimerHandle | None = None

    # The loop's side ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport
        self.pid = transport.get_pid()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self._discard:
            return
        self._chunks.append((fd, data))
        self._buffered += len(data)
        self._received += 1
        if self._buffered > _HIGH_WATER and fd not in self._paused:
            self._pipe(fd).pause_reading()
            self._paused.add(fd)
        if self._wake_soon is None:
            self._wake_soon = self._loop.call_later(_COALESCE, self._wake)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._chunks.append((fd, None))
        self._wake()

    def process_exited(self) -> None:
        self.exit_time = time.monotonic()
        # The run ends with its main process: kill what it left in its group,
        # or those would keep the pipes open. The leader is reaped already,
        # but its pid cannot be reused while the group has members.
        self.kill()
        self._set_timer(
            self._loop.call_later(_LINGER, self._check_linger, self._received)
        )
        # Never cancelled: it is only ever awaited through shield().
        self.exited.set_result(None)
        self._wake()

    # The consumer's side -----------------------------------------------------

    def take(self) -> tuple[int, bytes | None] | None:
        """Return the next output, or None when there is none yet.

        Reads of one pipe that came together are joined, so that they make
        one event; their bytes count as taken for flow control.

        Returns:
            ``(fd, bytes)`` for output of pipe ``fd`` (1 or 2), ``(fd, None)``
            when that pipe has ended, or None: then wait in :meth:`changed`.
        """
        chunks = self._chunks
        if not chunks:
            return None
        fd, data = chunks.popleft()
        if data is None:
            return fd, None
        while chunks and chunks[0][0] == fd:
            more = chunks[0][1]
            if more is None:
                break
            chunks.popleft()
            data += more
        self._taken(len(data))
        return fd, data

    def start_timer(self, deadline: float) -> None:
        """Kill the group with ``limit="timeout"`` at ``deadline`` (monotonic)."""
        delay = max(deadline - time.monotonic(), 0.0)
        self._set_timer(self._loop.call_later(delay, self.kill, "timeout"))

    def kill(self, limit: str | None = None) -> None:
        """SIGKILL the process group, recording ``limit`` as the reason."""
        if limit is not None and self.limit is None:
            self.limit = limit
        # ProcessLookupError: the group is gone already; PermissionError: its
        # id now belongs to another user's group (pids wrapped around).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # start_new_session=True: the child leads its own group, pgid = pid.
            os.killpg(self.pid, signal.SIGKILL)

    def stop_output(self) -> None:
        """Kill the group for the output cap and drop whatever output follows."""
        self.kill("output")
        self._discard = True
        self._chunks.clear()
        self._taken(self._buffered)

    async def changed(self) -> None:
        """Wait until output arrives, a pipe ends, the process exits or we give up."""
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def wait_exited(self) -> None:
        """Wait for the process to exit (and be reaped)."""
        # Shielded: a cancelled waiter must not cancel the future that
        # process_exited will set, which others may still wait on.
        await asyncio.shield(self.exited)

    def returncode(self) -> int:
        """Return the exit code (minus the signal number after a death by signal).

        Call it once :meth:`wait_exited` has returned.
        """
        assert self.transport is not None
        code = self.transport.get_returncode()
        assert code is not None
        return code

    async def close(self) -> None:
        """Kill the group if it runs, reap the process, close the pipes."""
        try:
            if not self.exited.done():
                self.kill()
                await self.wait_exited()
        finally:
            # Also when a second cancellation cut the wait short: the
            # transport's close() kills the process too, and asyncio's child
            # watcher reaps it whatever happens.
            self._set_timer(None)
            if self._wake_soon is not None:
                self._wake_soon.cancel()
                self._wake_soon = None
            assert self.transport is not None
            self.transport.close()

    # Helpers -----------------------------------------------------------------

    def _taken(self, size: int) -> None:
        """Note that the consumer took ``size`` bytes; resume reading if low."""
        self._buffered -= size
        if self._paused and self._buffered <= _LOW_WATER:
            for fd in self._paused:
                self._pipe(fd).resume_reading()
            self._paused.clear()

    def _pipe(self, fd: int) -> asyncio.ReadTransport:
        assert self.transport is not None
        pipe = self.transport.get_pipe_transport(fd)
        assert isinstance(pipe, asyncio.ReadTransport)
        return pipe

    def _wake(self) -> None:
        if self._wake_soon is not None:
            self._wake_soon.cancel()
            self._wake_soon = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _set_timer(self, timer: asyncio.TimerHandle | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = timer

    def _check_linger(self, seen: int) -> None:
        # Give up on pipes held open from outside the group only when nothing
        # came for a whole period and the consumer is not the one holding up.
        if self._received != seen or self._paused:
            self._timer = self._loop.call_later(
                _LINGER, self._check_linger, self._received
            )
            return
        self.abandoned = True
        self._wake()
