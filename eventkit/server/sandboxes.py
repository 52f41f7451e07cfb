"""Sandboxes: a directory, a token, settings, and the runs inside, for each.

A sandbox is a directory of its own under the server's base directory, kept
across its executions and removed with it. The paths a client names (the
HOPX SDK's default ``/workspace``) are paths *inside* that directory, never
the host's: ``/workspace`` is ``<sandbox>/workspace``, reached by descriptor
(:mod:`eventkit.server.fs`).

Code runs with :func:`eventkit.sources.local`, whose limits apply (see that
module for what a timeout, the output cap or an early stop does). A run's
working directory is opened by descriptor once the run is admitted, and the
run uses that descriptor (``/proc/<pid>/fd/<n>``), so a link swapped in
while it waits for a slot changes nothing. The local executor writes the
program to ``main.py`` (``main.sh``, ``main.js``) there: runs in one
directory take turns from that write until their interpreter has opened
the file (:class:`~eventkit.server.opened.OpenWatch`; the whole run where
inotify is missing), and the server removes the name before each run
writes its own, so a program already running keeps its file. Waiting
counts as queued for :class:`~eventkit.server.limits.Admission`.

Sandboxes expire: one idle (no request naming it, no run) for the
registry's ``idle_ttl``, or past the deadline its own ``timeout_seconds``
set, is deleted by :meth:`Registry.reap` (counted as
``sandbox_expired`` in :func:`eventkit.stats.server_stats`).

Failure behaviour:

- A working directory that leads out of the sandbox, is not a directory (a
  file, a FIFO, a link loop) or cannot be written raises
  :exc:`WorkdirError` (code ``INVALID_WORKDIR``) from :meth:`Sandbox.execute`
  or from the run's first event; the sandbox stays usable.
- A run asked of a paused sandbox raises :exc:`SandboxPausedError`.
- Creating more than ``max_sandboxes``, or more than ``max_per_owner`` for
  one owner, raises :exc:`SandboxLimitError`.
- Deleting a sandbox (or closing the registry) cancels its runs first: each
  run's process group is killed and reaped (the local source's cleanup), and
  the run's front end sees :exc:`SandboxGoneError`. The directory is removed
  afterwards, in a thread, ignoring errors.
- An expired per-sandbox token is forgotten when it is next presented.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import tempfile
import time
from typing import TYPE_CHECKING, Any, Final

import msgspec
import structlog

from eventkit.exceptions import EventkitError
from eventkit.pipe import cap_output
from eventkit.server import fs
from eventkit.server.auth import new_token
from eventkit.server.opened import OpenWatch
from eventkit.server.processes import Processes
from eventkit.sources.local import local
from eventkit.sources.local.languages import resolve
from eventkit.stats import server_stats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Mapping

    from aiostream.core import Streamer

    from eventkit.events import Event
    from eventkit.server.limits import Ticket
    from eventkit.server.requests import ExecuteRequest
    from eventkit.sinks import Sink

__all__ = [
    "AICOMPUTER",
    "HOPX",
    "Registry",
    "Sandbox",
    "SandboxGoneError",
    "SandboxLimitError",
    "SandboxPausedError",
    "WorkdirError",
]

_log: Final = structlog.get_logger("eventkit.server")

#: What a sandbox is: which API made it, and so which endpoints reach it.
HOPX: Final = "hopx"
AICOMPUTER: Final = "aicomputer"
#: Variables a sandbox may hold (``env_vars``), like a request's ``env``.
MAX_ENV_VARS: Final = 1024


class SandboxLimitError(EventkitError):
    """The server, or this owner, holds as many sandboxes as allowed."""


class SandboxGoneError(EventkitError):
    """The sandbox was deleted (or the server closed) while the run went on."""


class SandboxPausedError(EventkitError):
    """The sandbox is paused: nothing runs in it until it is resumed."""


class WorkdirError(EventkitError):
    """A run's working directory cannot be used; the message says why.

    Attributes:
        code: ``INVALID_WORKDIR``, what the front ends answer with.
        reason: The file system's own code (``NOT_A_DIRECTORY``,
            ``PATH_OUTSIDE_SANDBOX``, ``SYMLINK_LOOP``...); see
            :exc:`~eventkit.server.fs.PathError`.
    """

    code: Final = "INVALID_WORKDIR"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Turn:
    """The turn of one directory: a lock, and how many want it, so it can go."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _Hold:
    """One run's hold of a turn; released once, early or at the end."""

    __slots__ = ("_lock",)

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock: asyncio.Lock | None = lock

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()


class _Tracked:
    """A run's events, noting its process for pause, its failures as ours."""

    __slots__ = ("_events", "_pid", "_sandbox", "_truncated", "_workdir")

    def __init__(self, events: Streamer[Event], sandbox: Sandbox, workdir: str) -> None:
        self._events = events
        self._sandbox = sandbox
        self._workdir = workdir
        self._pid: int | None = None
        # Whether output was cut out (a truncated event passed).
        self._truncated = False

    def __aiter__(self) -> _Tracked:
        return self

    async def __anext__(self) -> Event:
        event = await self._next()
        observer = self._sandbox.observer
        if observer is not None:
            try:
                await observer.send_batch([event])
            except Exception:
                # Watching must never cost a run: logged, and the run goes on.
                _log.exception("observer_failed", sandbox=self._sandbox.id)
        return event

    async def _next(self) -> Event:
        try:
            event = await self._events.__anext__()
        except OSError as exc:
            # The local executor's one failure: its directory or program
            # file cannot be written (a directory named main.py, say).
            raise WorkdirError(
                f"workdir {self._workdir}: {exc.strerror or exc}", "NOT_WRITABLE"
            ) from None
        if event.type == "started":
            pid = event.attrs.get("pid")
            if isinstance(pid, int):
                self._pid = pid
                self._sandbox._started(pid)
        elif event.type == "result":
            self.forget()
        elif event.type == "truncated":
            self._truncated = True
        elif event.type == "completed" and self._truncated:
            event = msgspec.structs.replace(
                event, attrs={**event.attrs, "truncated": True}
            )
        return event

    def forget(self) -> None:
        """Stop counting the process as the sandbox's: it has exited."""
        if self._pid is not None:
            self._sandbox._pids.discard(self._pid)
            self._pid = None


def _descriptor_path(fd: int, fallback: str) -> str:
    """Return a path that reaches the directory ``fd`` from any process.

    ``/proc/<pid>/fd/<n>`` is the open directory itself, whatever is renamed
    or linked meanwhile; the child and the executor follow it, not a name.
    """
    path = f"/proc/{os.getpid()}/fd/{fd}"
    return path if os.path.isdir(path) else fallback


def _program_name(language: str) -> str | None:
    """Return the program file the local executor writes for ``language``."""
    spec = resolve(language.strip().lower())
    return None if isinstance(spec, str) else spec.filename


class Sandbox:
    """One sandbox; :class:`Registry` makes them.

    Args:
        id: Its id.
        kind: The API that made it.
        owner: The credential that made it.
        root: Its directory on the host, with a ``workspace`` in it.
        template: The template asked for.
        local_options: Extra keyword arguments of every run's
            :func:`eventkit.sources.local` (how runs are isolated).
        truncate_output: Whether a run over its output cap keeps its first
            and last bytes and goes on (``--output-policy truncate``)
            rather than being stopped.
        observer: A sink that gets a copy of every run's events (a live
            dashboard); its failures are logged, never a run's.
        clock: Unix time, for its creation and last use.

    Attributes:
        id: Its id, unique for the server's life.
        kind: ``"hopx"`` or ``"aicomputer"``: the API that made it.
        owner: The credential that created it; only the same one reaches it.
        root: Its directory on the host.
        template: The template asked for (HOPX), for the record.
        created_at: Unix time.
        token: Its agent token (HOPX), or None.
        token_expires_at: Unix time the token expires.
        env: Its own environment variables (HOPX ``env_vars``), given to
            every run under the run's own ``env``.
        internet_access: What the client asked for (HOPX); see
            :attr:`Registry.can_cut_network`.
        timeout_seconds: Its own time to live from creation or the last
            ``set_timeout``, or None.
        deadline: Unix time it is deleted at whatever happens, or None.
        last_used: Unix time of the last request naming it or run ending.
        paused: Whether its processes are stopped (SIGSTOP) and new runs
            refused.
        deleted: Whether it was deleted: nothing more runs in it.
        processes: Its background runs.
    """

    __slots__ = (
        "_active",
        "_clock",
        "_pids",
        "_runs",
        "_turns",
        "created_at",
        "deadline",
        "deleted",
        "env",
        "id",
        "internet_access",
        "kind",
        "last_used",
        "local_options",
        "observer",
        "owner",
        "paused",
        "processes",
        "root",
        "template",
        "timeout_seconds",
        "token",
        "token_expires_at",
        "truncate_output",
    )

    def __init__(
        self,
        id: str,
        kind: str,
        owner: str,
        root: str,
        template: str | None,
        *,
        local_options: Mapping[str, Any] | None = None,
        truncate_output: bool = False,
        observer: Sink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self.id = id
        self.kind = kind
        self.owner = owner
        self.root = root
        self.template = template
        self.created_at = clock()
        self.last_used = self.created_at
        self.token: str | None = None
        self.token_expires_at = 0.0
        self.env: dict[str, str] = {}
        self.internet_access = True
        self.timeout_seconds: int | None = None
        self.deadline: float | None = None
        self.paused = False
        self.deleted = False
        self.processes = Processes()
        #: Extra keyword arguments of every run's :func:`eventkit.sources.local`.
        self.local_options: Mapping[str, Any] = local_options or {}
        self.truncate_output = truncate_output
        self.observer = observer
        self._turns: dict[tuple[int, int], _Turn] = {}
        #: The runs going on here, each a task this sandbox owns: awaited by
        #: its caller in guard(), cancelled and awaited by stop().
        self._runs: set[asyncio.Task[None]] = set()
        #: Process groups of runs alive now (for pause and resume).
        self._pids: set[int] = set()
        self._active = 0

    @property
    def busy(self) -> bool:
        """Whether a run is going on (or waiting) here: it is not idle."""
        return bool(self._runs) or self._active > 0

    @contextlib.asynccontextmanager
    async def _turn(self, key: tuple[int, int]) -> AsyncIterator[_Hold]:
        """Hold the directory ``key`` until the hold is released (or the end)."""
        entry = self._turns.get(key)
        if entry is None:
            entry = self._turns[key] = _Turn()
        entry.users += 1
        try:
            await entry.lock.acquire()
            hold = _Hold(entry.lock)
            try:
                yield hold
            finally:
                hold.release()
        finally:
            entry.users -= 1
            if not entry.users:
                del self._turns[key]

    def open_workdir(self, workdir: str) -> int:
        """Return a descriptor of ``workdir`` in this sandbox, made if missing.

        Raises:
            WorkdirError: If it leads out of the sandbox or is not a directory.
        """
        try:
            return fs.open_dir(self.root, workdir, create=True)
        except fs.PathError as exc:
            raise WorkdirError(f"workdir {exc}", exc.code) from None

    @contextlib.asynccontextmanager
    async def execute(
        self,
        request: ExecuteRequest,
        ticket: Ticket,
        *,
        max_output_bytes: int | None,
    ) -> AsyncIterator[AsyncIterator[Event]]:
        """Run ``request`` here once its directory's turn and a slot are free.

        Yields the run's events (see :func:`eventkit.sources.local`); leaving
        the block early kills and reaps the process. The run counts in
        ``server_stats().executions`` once it holds its slot.

        Raises:
            WorkdirError: If the working directory cannot be used: at once,
                or from the first event (the program file cannot be written).
            SandboxPausedError: If the sandbox is paused when the slot comes.
        """
        directory = self.open_workdir(request.workdir)
        self._active += 1
        try:
            info = os.fstat(directory)
            shown = "/" + "/".join(fs.parts_of(request.workdir))
            path = _descriptor_path(directory, os.path.join(self.root, shown[1:]))
            async with (
                self._turn((info.st_dev, info.st_ino)) as hold,
                ticket.running(),
            ):
                if self.paused:
                    raise SandboxPausedError(
                        f"sandbox {self.id} is paused; resume it first"
                    )
                watch = self._watch_program(directory, path, request.language, hold)
                # The server's isolation (local_options) applies to every run;
                # isolated, the run sees its directory where it asked for it.
                options = dict(self.local_options)
                if options.get("isolation", "none") != "none":
                    options["workdir_mount"] = shown
                    options["network"] = (
                        options.get("network", True) and self.internet_access
                    )
                # Truncating, output over the cap is cut out and the run goes
                # on: each stream keeps its first and last halves of the cap.
                truncate = self.truncate_output and bool(max_output_bytes)
                stream = local(
                    request.code,
                    language=request.language,
                    timeout=request.timeout,
                    env={**self.env, **request.env},
                    workdir=path,
                    max_output_bytes=None if truncate else max_output_bytes,
                    **options,
                )
                if truncate and max_output_bytes:
                    half = max_output_bytes // 2
                    stream = stream | cap_output(half, max_output_bytes - half)
                tracked: _Tracked | None = None
                try:
                    async with stream.stream() as events:
                        # Its slot is held: the execution starts.
                        server_stats().executions += 1
                        tracked = _Tracked(events, self, shown)
                        yield tracked
                finally:
                    if watch is not None:
                        watch.close()
                    if tracked is not None:
                        tracked.forget()
        finally:
            self._active -= 1
            self.last_used = self._clock()
            os.close(directory)

    def _watch_program(
        self, directory: int, path: str, language: str, hold: _Hold
    ) -> OpenWatch | None:
        """Clear the way for this run's program; release ``hold`` once it is open."""
        program = _program_name(language)
        if program is None:
            return None  # nothing will be written: the run fails at once
        # A new file, not the old one rewritten: a program still running
        # keeps reading its own. A link planted under the name goes too.
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            os.unlink(program, dir_fd=directory)
        watch = OpenWatch(path, program, hold.release)
        return watch if watch.active else None

    def _started(self, pid: int) -> None:
        self._pids.add(pid)
        if self.paused:
            _signal_group(pid, signal.SIGSTOP)

    def pause(self) -> None:
        """Stop every process of its runs (SIGSTOP); refuse new runs."""
        self.paused = True
        for pid in list(self._pids):
            _signal_group(pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let its processes go on (SIGCONT) and new runs start."""
        self.paused = False
        for pid in list(self._pids):
            _signal_group(pid, signal.SIGCONT)

    def spawn(self, run: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Start ``run`` as a task this sandbox owns (a background run).

        :meth:`stop` cancels it and waits for its end.

        Raises:
            SandboxGoneError: If the sandbox was deleted.
        """
        if self.deleted:
            run.close()
            raise SandboxGoneError(f"sandbox {self.id} was deleted")
        task = asyncio.create_task(run, name=f"eventkit-server-{name}-{self.id}")
        self._runs.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._runs.discard(task)
        self.last_used = self._clock()

    async def guard(self, run: Coroutine[Any, Any, None]) -> None:
        """Await ``run`` as a task of this sandbox, which deleting it cancels.

        The task belongs to the sandbox: :meth:`stop` cancels it and waits for
        its end, as this call does. Cancelling the caller cancels the run too.

        Raises:
            SandboxGoneError: If the sandbox was deleted before the run ended.
        """
        task = self.spawn(run, "run")
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                raise SandboxGoneError(f"sandbox {self.id} was deleted") from None
            raise

    async def stop(self) -> None:
        """Cancel every run and wait until each has cleaned up.

        Call it once :attr:`deleted` is set, so that no run starts meanwhile.
        """
        if self.paused:
            self.resume()  # a stopped process is killed all the same, but
            # its group's other members should not stay stopped meanwhile
        runs = list(self._runs)
        for task in runs:
            # Never twice: a second cancellation would cut short the local
            # source's wait for the killed process, leaving it unreaped.
            if not task.cancelling():
                task.cancel()
        if runs:
            await asyncio.wait(runs)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


class Registry:
    """The server's sandboxes, their tokens, their directories and expiry.

    Args:
        base: The directory that holds every sandbox's directory.
        max_sandboxes: Sandboxes alive at once.
        max_per_owner: Sandboxes alive at once for one owner (an API key,
            or an issued token).
        idle_ttl: Seconds a sandbox may stay idle before it is deleted.
        token_ttl: Seconds an agent token stays valid.
        local_options: Extra keyword arguments for every run's
            :func:`eventkit.sources.local` (how runs are isolated).
        truncate_output: As for :class:`Sandbox`.
        observer: As for :class:`Sandbox`.
        can_cut_network: Whether runs can be kept off the network, so that
            a sandbox may be created with ``internet_access`` false.
        clock: Unix time, for tokens and expiry.
    """

    __slots__ = (
        "_by_token",
        "_clock",
        "_counts",
        "_sandboxes",
        "base",
        "can_cut_network",
        "idle_ttl",
        "local_options",
        "max_per_owner",
        "max_sandboxes",
        "observer",
        "token_ttl",
        "truncate_output",
    )

    def __init__(
        self,
        base: str,
        *,
        max_sandboxes: int,
        token_ttl: float,
        max_per_owner: int | None = None,
        idle_ttl: float = 3600.0,
        local_options: Mapping[str, Any] | None = None,
        truncate_output: bool = False,
        observer: Sink | None = None,
        can_cut_network: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base = base
        self.max_sandboxes = max_sandboxes
        self.max_per_owner = max_sandboxes if max_per_owner is None else max_per_owner
        self.idle_ttl = idle_ttl
        self.token_ttl = token_ttl
        self.local_options: Mapping[str, Any] = dict(local_options or {})
        self.truncate_output = truncate_output
        self.observer = observer
        self.can_cut_network = can_cut_network
        self._clock = clock
        self._sandboxes: dict[str, Sandbox] = {}
        self._by_token: dict[str, Sandbox] = {}
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._sandboxes)

    def create(self, kind: str, owner: str, template: str | None = None) -> Sandbox:
        """Make a sandbox with an empty ``/workspace``; give HOPX ones a token.

        Raises:
            SandboxLimitError: If ``max_sandboxes`` exist already, or
                ``max_per_owner`` of ``owner``'s.
        """
        if len(self._sandboxes) >= self.max_sandboxes:
            raise SandboxLimitError(
                f"too many sandboxes ({self.max_sandboxes}); delete some first"
            )
        if self._counts.get(owner, 0) >= self.max_per_owner:
            raise SandboxLimitError(
                f"too many sandboxes for this key ({self.max_per_owner}); "
                "delete some first"
            )
        sandbox_id = "sbx-" + secrets.token_hex(8)
        root = tempfile.mkdtemp(prefix=f"{sandbox_id}-", dir=self.base)
        os.mkdir(os.path.join(root, fs.WORKSPACE))
        sandbox = Sandbox(
            sandbox_id,
            kind,
            owner,
            root,
            template,
            local_options=self.local_options,
            truncate_output=self.truncate_output,
            observer=self.observer,
            clock=self._clock,
        )
        self._sandboxes[sandbox_id] = sandbox
        self._counts[owner] = self._counts.get(owner, 0) + 1
        if kind == HOPX:
            self.refresh_token(sandbox)
        return sandbox

    def get(self, kind: str, sandbox_id: str, owner: str) -> Sandbox | None:
        """Return the sandbox if it exists, is of ``kind`` and ``owner``'s.

        Finding it counts as using it (its idle time starts again).
        """
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.kind != kind or sandbox.owner != owner:
            return None
        sandbox.last_used = self._clock()
        return sandbox

    def owned(self, kind: str, owner: str) -> list[Sandbox]:
        """Return ``owner``'s sandboxes of ``kind``, oldest first."""
        return [
            sandbox
            for sandbox in self._sandboxes.values()
            if sandbox.kind == kind and sandbox.owner == owner
        ]

    def by_token(self, token: str | None) -> Sandbox | None:
        """Return the sandbox whose unexpired agent token is ``token``."""
        if not token:
            return None
        sandbox = self._by_token.get(token)
        if sandbox is None:
            return None
        now = self._clock()
        if sandbox.token_expires_at <= now:
            del self._by_token[token]
            return None
        sandbox.last_used = now
        return sandbox

    def refresh_token(self, sandbox: Sandbox) -> None:
        """Give ``sandbox`` a new agent token; the old one stops working."""
        if sandbox.token is not None:
            self._by_token.pop(sandbox.token, None)
        sandbox.token = new_token()
        sandbox.token_expires_at = self._clock() + self.token_ttl
        self._by_token[sandbox.token] = sandbox

    def set_timeout(self, sandbox: Sandbox, seconds: int | None) -> None:
        """Delete ``sandbox`` ``seconds`` from now whatever happens (None: never)."""
        sandbox.timeout_seconds = seconds
        sandbox.deadline = None if seconds is None else self._clock() + seconds

    def expires_at(self, sandbox: Sandbox) -> float:
        """Return the Unix time ``sandbox`` is deleted at if nothing uses it."""
        idle = (
            max(sandbox.last_used, self._clock()) if sandbox.busy else sandbox.last_used
        )
        expiry = idle + self.idle_ttl
        if sandbox.deadline is not None:
            expiry = min(expiry, sandbox.deadline)
        return expiry

    def expired(self) -> list[Sandbox]:
        """Return the sandboxes past their deadline, or idle for ``idle_ttl``."""
        now = self._clock()
        return [
            sandbox
            for sandbox in self._sandboxes.values()
            if (sandbox.deadline is not None and sandbox.deadline <= now)
            or (not sandbox.busy and sandbox.last_used + self.idle_ttl <= now)
        ]

    async def reap(self) -> int:
        """Delete every expired sandbox; return how many."""
        expired = self.expired()
        for _ in expired:
            server_stats().abort("sandbox_expired")
        if expired:
            async with asyncio.TaskGroup() as deletions:
                for sandbox in expired:
                    deletions.create_task(self.delete(sandbox))
        return len(expired)

    async def reap_forever(self, interval: float) -> None:
        """Reap every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.reap()

    async def delete(self, sandbox: Sandbox) -> None:
        """Forget ``sandbox``, stop its runs, then remove its directory."""
        if self._sandboxes.pop(sandbox.id, None) is None:
            return
        count = self._counts[sandbox.owner] - 1
        if count:
            self._counts[sandbox.owner] = count
        else:
            del self._counts[sandbox.owner]
        sandbox.deleted = True
        if sandbox.token is not None:
            self._by_token.pop(sandbox.token, None)
        await sandbox.stop()
        await asyncio.to_thread(shutil.rmtree, sandbox.root, True)

    async def close(self) -> None:
        """Delete every sandbox, at once; return when every one is gone."""
        async with asyncio.TaskGroup() as deletions:
            for sandbox in list(self._sandboxes.values()):
                deletions.create_task(self.delete(sandbox))
