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
- Stopping (:meth:`~ChildProcess.stop`: the timeout, the output cap, the
  consumer leaving) is graceful, then hard: the run's process group gets
  SIGINT (Python raises :exc:`KeyboardInterrupt`, ``finally`` blocks run),
  and ``grace`` seconds later everything of the run gets SIGKILL and the
  pipes are closed, whatever still writes. The first reason given
  (``timeout``, ``output``) is recorded in :attr:`ChildProcess.limit`, the
  signal that ended the stop in :attr:`ChildProcess.stop_signal`.
- The deadline is wall-clock: it stays armed after the main process exits,
  until both pipes have ended, so output from a process that escaped the
  group cannot stretch the run past it.
- The main process exiting kills what it left in its process group, which
  would keep the pipes open; a pipe that a process outside the group still
  holds open is given up once it has been silent for :data:`_LINGER`.

"Everything of the run": its process group; with a control group, every
member; in a sandbox (``isolated``), the sandbox, whose processes the kernel
kills with it; without one, also what descends from the main process and
whatever holds the run's pipes open (found in ``/proc``, see
:mod:`~eventkit.sources.local.procfs`). A process that escaped all of these
(left the group, closed the pipes, lost its parent) is out of reach.

Failure behaviour: :func:`spawn` raises :exc:`OSError` or
:exc:`subprocess.SubprocessError` when the operating system refuses to
start the program. Nothing else raises: a process already gone is not an
error, and :meth:`ChildProcess.close` kills, reaps and closes whatever
happens, a second cancellation included.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import functools
import os
import resource
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Final

from eventkit.sources.local import procfs

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventkit.sources.local.cgroup import RunCgroup

__all__ = [
    "ChildProcess",
    "child_setup",
    "memory_rlimit",
    "process_rlimit",
    "signal_name",
    "spawn",
]

#: Output bytes held for the consumer before the pipes stop being read. The
#: kernel's pipe buffers then fill, and the child blocks on its next write.
_HIGH_WATER: Final = 4 * 1024 * 1024
#: ...and resumed once the consumer has brought it down to this.
_LOW_WATER: Final = 1024 * 1024
#: The capacity asked for the output pipes (Linux's default is 64 KiB): as
#: much as the event loop reads at once, so that a busy writer's output comes
#: in reads of that size, a quarter of the wake-ups and events.
_PIPE_SIZE: Final = 256 * 1024
#: How long output ending inside a line is held for the rest of the line, so
#: that writes made together come out as one event: print() in unbuffered
#: Python writes its text and its newline separately. Output ending with a
#: newline wakes the consumer at once.
_COALESCE: Final = 0.002
#: After the exit, how long a pipe still held open by a process outside the
#: group may stay silent before the stream stops waiting for it.
_LINGER: Final = 0.5
#: How long :meth:`ChildProcess.close` waits for the killed group to vanish.
_GONE_WITHIN: Final = 1.0
#: A death by signal N, as a shell (and bwrap) reports it: 128 + N.
_SHELL_SIGNALS: Final = range(129, 129 + 64)

Limit = tuple[int, tuple[int, int]]


def _capped(which: int, limit: int) -> Limit:
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        # An unprivileged process may lower its hard limit but never raise it.
        limit = min(limit, hard)
    return which, (limit, limit)


def memory_rlimit(limit: int) -> Limit:
    """Return the ``RLIMIT_AS`` capping each process's address space at ``limit``.

    Lowered to the current hard limit when that is lower.
    """
    return _capped(resource.RLIMIT_AS, limit)


def process_rlimit(limit: int) -> Limit:
    """Return the ``RLIMIT_NPROC`` capping the processes of the child's uid.

    Lowered to the current hard limit when that is lower.
    """
    return _capped(resource.RLIMIT_NPROC, limit)


def child_setup(
    *, join: tuple[str, ...] = (), limits: tuple[Limit, ...] = ()
) -> Callable[[], None] | None:
    """Return the ``preexec_fn`` the child needs, or None when it needs none.

    The child joins the control groups whose ``cgroup.procs`` files are
    ``join``, takes the resource ``limits``, and gets SIGINT back at its
    default disposition (and unblocked) if this process ignores (or blocks)
    it: an ignored signal stays ignored across ``exec``, and a program would
    never see the interrupt that asks it to stop.

    Without a ``preexec_fn`` the child is started with ``vfork``, which is
    faster: one is returned only when something needs doing.
    """
    interrupt_ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    interrupt_blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    if not (join or limits or interrupt_ignored or interrupt_blocked):
        return None
    return functools.partial(
        _set_up_child, join, limits, interrupt_ignored, interrupt_blocked
    )


def _set_up_child(
    join: tuple[str, ...],
    limits: tuple[Limit, ...],
    interrupt_ignored: bool,
    interrupt_blocked: bool,
) -> None:
    # Runs in the forked child, before exec: only system calls.
    for path in join:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"0")  # 0: the writing process
        finally:
            os.close(fd)
    for which, limit in limits:
        resource.setrlimit(which, limit)
    if interrupt_ignored:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    if interrupt_blocked:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def signal_name(exit_code: int) -> str | None:
    """Return the name of the signal an exit code says killed the process, or None.

    Args:
        exit_code: As asyncio gives it: minus the signal number after a
            death by signal.
    """
    if exit_code >= 0:
        return None
    try:
        return signal.Signals(-exit_code).name
    except ValueError:
        return f"signal {-exit_code}"


async def spawn(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    preexec: Callable[[], None] | None = None,
    grace: float = 2.0,
    isolated: bool = False,
    cgroup: RunCgroup | None = None,
) -> ChildProcess:
    """Start ``argv`` in a new session and process group; return its protocol.

    Stdin is ``/dev/null``; stdout and stderr are piped to the protocol.

    Args:
        argv: The command.
        cwd: Its working directory.
        env: Its whole environment.
        preexec: What the child runs before the program (:func:`child_setup`).
        grace: Seconds from SIGINT to SIGKILL when the run is stopped.
        isolated: Whether ``argv`` starts a bwrap sandbox: the main process
            is then bwrap, which must not get the SIGINT meant for the
            code, and reports a death by signal N as exit code 128 + N.
        cgroup: The run's control group, whose members are killed with it.

    Raises:
        OSError: If the program cannot be started.
        subprocess.SubprocessError: If the child failed before the exec.
    """
    loop = asyncio.get_running_loop()
    _, child = await loop.subprocess_exec(
        functools.partial(ChildProcess, loop, grace, isolated, cgroup),
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
        preexec_fn=preexec,
    )
    return child


class ChildProcess(asyncio.SubprocessProtocol):
    """One running child: its output as it arrives, its exit, and its end.

    The event loop calls the protocol methods; the consumer (the source's
    iteration) drains the output with :meth:`take` and waits in
    :meth:`changed` when there is nothing to take.

    Attributes:
        pid: The process id, also its process group's.
        limit: Why the run was stopped (``"timeout"``, ``"output"``), or
            None; the consumer may set ``"memory"`` after the exit.
        stop_signal: The signal that ended a stop: ``"SIGINT"`` when the
            main process exited within the grace, ``"SIGKILL"`` when it
            took the kill; None when the run was not stopped.
        abandoned: Whether the output still expected is given up: the main
            process exited and a pipe held from outside stayed silent.
        exited: Done when the process has exited and been reaped.
        exit_time: When it exited (monotonic).
        transport: The subprocess transport: the exit code, the pipes.
    """

    __slots__ = (
        "_buffered",
        "_cgroup",
        "_chunks",
        "_deadline",
        "_discard",
        "_grace",
        "_hard",
        "_inodes",
        "_isolated",
        "_linger",
        "_loop",
        "_open_pipes",
        "_partial_since",
        "_paused",
        "_received",
        "_stopping",
        "_waiter",
        "_wake_soon",
        "abandoned",
        "exit_time",
        "exited",
        "limit",
        "pid",
        "stop_signal",
        "transport",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        grace: float = 2.0,
        isolated: bool = False,
        cgroup: RunCgroup | None = None,
    ) -> None:
        self._loop = loop
        self._grace = grace
        self._isolated = isolated
        self._cgroup = cgroup
        #: (fd, bytes) as read, (fd, None) at a pipe's end, in arrival order.
        self._chunks: collections.deque[tuple[int, bytes | None]] = collections.deque()
        #: Bytes read and not taken yet: what flow control watches.
        self._buffered = 0
        self._paused: set[int] = set()
        self._discard = False
        #: The inodes of the output pipes, by which /proc names their holders.
        self._inodes: list[int] = []
        self._open_pipes = 2
        self._stopping = False
        self.abandoned = False
        self.limit: str | None = None
        self.stop_signal: str | None = None
        self.exited: asyncio.Future[None] = loop.create_future()
        self.exit_time = 0.0
        self.pid = 0
        self.transport: asyncio.SubprocessTransport | None = None
        self._received = 0
        #: When the output still unterminated by a newline began to arrive.
        self._partial_since: float | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wake_soon: asyncio.TimerHandle | None = None
        #: The timeout: armed until the run is over, the exit is not enough.
        self._deadline: asyncio.TimerHandle | None = None
        #: The end of a stop's grace: SIGKILL to all, the pipes closed.
        self._hard: asyncio.TimerHandle | None = None
        #: After the exit, the check on pipes held from outside.
        self._linger: asyncio.TimerHandle | None = None

    # The loop's side ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport
        self.pid = transport.get_pid()
        for fd in (1, 2):
            pipe = transport.get_pipe_transport(fd)
            file = None if pipe is None else pipe.get_extra_info("pipe")
            # A pipe already closed at end of file (a child that exited at
            # once) has no writer left: nobody can hold it.
            if file is not None and not file.closed:
                self._inodes.append(procfs.pipe_inode(file.fileno()))
                with contextlib.suppress(OSError):
                    fcntl.fcntl(file.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self._discard:
            return
        self._chunks.append((fd, data))
        self._buffered += len(data)
        self._received += 1
        if self._buffered > _HIGH_WATER and fd not in self._paused:
            self._pipe(fd).pause_reading()
            self._paused.add(fd)
        if data[-1:] == b"\n":
            # A whole line (or the rest of one): no reason to wait for more.
            self._partial_since = None
            self._wake()
            return
        if self._partial_since is None:
            self._partial_since = self._loop.time()
        if self._wake_soon is None:
            self._wake_soon = self._loop.call_later(_COALESCE, self._wake)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._chunks.append((fd, None))
        self._open_pipes -= 1
        if not self._open_pipes and self.exited.done():
            self._over()
        self._wake()

    def process_exited(self) -> None:
        self.exit_time = time.monotonic()
        # Never cancelled: it is only ever awaited through shield().
        self.exited.set_result(None)
        # The run ends with its main process: kill what it left in its group,
        # or those would keep the pipes open. The leader is reaped already,
        # but its pid cannot be reused while the group has members.
        self._kill_group()
        if self._stopping:
            # Stopped, and the program is done: its leftovers go now. The
            # pipes stay open for what it wrote last, until the grace ends.
            self._kill_all(scan=True)
        if self._open_pipes:
            self._linger = self._loop.call_later(
                _LINGER, self._check_linger, self._received
            )
        else:
            self._over()
        self._wake()

    # The consumer's side -----------------------------------------------------

    def take(self) -> tuple[int, bytes | None] | None:
        """Return the next output, or None when there is none yet.

        Reads of one pipe that came together are joined, so that they make
        one event; their bytes count as taken for flow control. The newest
        output, when it ends inside a line, is held for the rest of the line
        until it is :data:`_COALESCE` old (then a timer wakes the consumer).

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
        parts = [data]
        while chunks and chunks[0][0] == fd and (more := chunks[0][1]) is not None:
            chunks.popleft()
            parts.append(more)
        if len(parts) > 1:
            data = b"".join(parts)
        since = self._partial_since
        if since is not None and not chunks:
            if self._loop.time() - since < _COALESCE:
                # Deliver the whole lines; hold the line still being written.
                cut = data.rfind(b"\n") + 1
                chunks.appendleft((fd, data[cut:]))
                if self._wake_soon is None:
                    self._wake_soon = self._loop.call_at(since + _COALESCE, self._wake)
                if not cut:
                    return None
                data = data[:cut]
            else:
                self._partial_since = None
        self._taken(len(data))
        return fd, data

    def start_timer(self, deadline: float) -> None:
        """Stop the run with ``limit="timeout"`` at ``deadline`` (monotonic)."""
        delay = max(deadline - time.monotonic(), 0.0)
        self._deadline = self._loop.call_later(delay, self.stop, "timeout")

    def stop(self, limit: str | None = None) -> None:
        """Stop the run: SIGINT to its group now, SIGKILL to all after the grace.

        When the main process has exited already, or the grace is 0, the
        rest is killed at once. The first ``limit`` given is recorded.
        """
        if limit is not None and self.limit is None:
            self.limit = limit
        if self._stopping:
            return
        self._stopping = True
        if self.exited.done() or self._grace <= 0:
            self._hard_stop()
            return
        self._interrupt()
        self.stop_signal = "SIGINT"
        self._hard = self._loop.call_later(self._grace, self._hard_stop)

    def stop_output(self) -> None:
        """Stop the run for the output cap and drop whatever output follows."""
        self._discard_output()
        self.stop("output")

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

        Call it once :meth:`wait_exited` has returned. In a sandbox, the
        code's death by signal N, which bwrap reports as 128 + N, is given
        as -N too: a program exiting with 129 to 192 itself reads the same.
        """
        assert self.transport is not None
        code = self.transport.get_returncode()
        assert code is not None
        if self._isolated and code in _SHELL_SIGNALS:
            return 128 - code
        return code

    async def close(self) -> None:
        """End the run: stop it if it runs, and return once its processes are gone.

        A run still going is stopped as by :meth:`stop` (its output dropped
        meanwhile, and read so that the program never blocks writing it);
        then whatever is left of it is killed, the process reaped and the
        pipes closed.
        """
        try:
            if not self.exited.done():
                self._discard_output()
                self.stop()
                await self.wait_exited()
            # Whatever still holds the pipes would write on for nobody.
            self._kill_all(scan=self._open_pipes > 0)
            await self._group_gone()
        finally:
            # Also when a second cancellation cut the waits short: the
            # transport's close() kills the process too, and asyncio's child
            # watcher reaps it whatever happens.
            self._kill_group()
            for timer in (self._deadline, self._hard, self._linger, self._wake_soon):
                if timer is not None:
                    timer.cancel()
            self._deadline = self._hard = self._linger = self._wake_soon = None
            assert self.transport is not None
            self.transport.close()

    # Helpers -----------------------------------------------------------------

    def _interrupt(self) -> None:
        """SIGINT to the run's process group, as a terminal's Ctrl-C would."""
        if not self._isolated:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                # start_new_session=True: the child leads its own group.
                os.killpg(self.pid, signal.SIGINT)
            return
        # The group also holds bwrap, which would die of it and take the
        # sandbox with it at once: every member but bwrap. (The sandbox's
        # init, also a member, ignores signals it has no handler for.)
        for pid in procfs.group_members(self.pid, procfs.snapshot()):
            if pid != self.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGINT)

    def _hard_stop(self) -> None:
        """The grace is over: SIGKILL to everything of the run, the pipes closed."""
        if self._hard is not None:
            self._hard.cancel()
            self._hard = None
        if self.stop_signal is None or not self.exited.done():
            self.stop_signal = "SIGKILL"
        self._kill_all(scan=True)
        assert self.transport is not None
        for fd in (1, 2):
            pipe = self.transport.get_pipe_transport(fd)
            if pipe is not None and not pipe.is_closing():
                pipe.close()
        self._wake()

    def _kill_group(self) -> None:
        # ProcessLookupError: the group is gone already; PermissionError: its
        # id now belongs to another user's group (pids wrapped around).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def _kill_all(self, *, scan: bool) -> None:
        """SIGKILL the group, the cgroup and (``scan``) what /proc shows of the run.

        In a sandbox, killing bwrap (in the group) kills the sandbox: no
        scan. Without one, ``scan`` also kills the main process's
        descendants and whatever holds the pipes open: reading /proc costs
        milliseconds, so only when something may have escaped.
        """
        strays: list[int] = []
        if scan and not self._isolated and not self.exited.done():
            # Read before the kill: orphans lose their parent.
            strays = procfs.descendants(self.pid, procfs.snapshot())
        self._kill_group()
        if self._cgroup is not None:
            self._cgroup.kill()
        if scan and not self._isolated:
            if self._open_pipes:
                strays += procfs.pipe_holders(self._inodes, exclude=os.getpid())
            for pid in strays:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    async def _group_gone(self) -> None:
        """Wait (a bounded time) until no live process is left in the group."""
        deadline = time.monotonic() + _GONE_WITHIN
        while True:
            try:
                os.killpg(self.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            # Members may be zombies that whoever adopted them has not reaped.
            if not procfs.group_members(self.pid, procfs.snapshot()):
                return
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.005)

    def _discard_output(self) -> None:
        """Drop the output held and all that follows; keep the pipes read."""
        self._discard = True
        self._chunks.clear()
        self._taken(self._buffered)

    def _over(self) -> None:
        """The main process exited and both pipes ended: the run is over."""
        # A timeout now would fail a run that finished in time, its output
        # only still on its way to a slow consumer.
        for timer in (self._deadline, self._hard, self._linger):
            if timer is not None:
                timer.cancel()
        self._deadline = self._hard = self._linger = None

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

    def _check_linger(self, seen: int) -> None:
        # Give up on pipes held open from outside the group only when nothing
        # came for a whole period and the consumer is not the one holding up.
        if self._received != seen or self._paused:
            self._linger = self._loop.call_later(
                _LINGER, self._check_linger, self._received
            )
            return
        self._linger = None
        self.abandoned = True
        self._wake()
