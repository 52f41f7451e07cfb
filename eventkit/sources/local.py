"""The local executor: eventkit's embedded default sandbox.

:func:`local` runs code in a subprocess on this machine, with no account and
no server, and streams what it does as events::

    started -> stdout / stderr ... -> [resource_limit] -> result -> completed

Each iteration of the stream runs the code once, in a fresh working directory
(unless one is given), in a new session and process group, with a minimal
environment. Output is streamed as the bytes arrive, not line by line.

It is a convenience, **not an isolation boundary**: the code runs as the
current user, sees the file system and the network, and a process that leaves
its process group (``setsid``, ``setpgid``) escapes the kill.

What happens when things go wrong:

Non-zero exit
    ``result`` carries the exit code, ``completed`` has ``success=False``.
    No ``error`` event: a failing program is a normal outcome.

Timeout
    When ``timeout`` seconds pass between the spawn and the exit, the whole
    process group gets SIGKILL. The output read until then is delivered,
    then ``resource_limit`` (``limit="timeout"``), then ``result`` with
    ``exit_code=-9`` (as asyncio reports a death by signal: minus the signal
    number) and ``completed`` with ``success=False``.

Output cap
    Once stdout and stderr together exceed ``max_output_bytes`` bytes, the
    process group gets SIGKILL. Exactly the first ``max_output_bytes`` bytes
    are delivered (less a multi-byte character the cap cuts in two, which is
    dropped rather than mangled), the rest is discarded; then
    ``resource_limit`` (``limit="output"``), ``result`` (``exit_code=-9``,
    or the real exit code if the process finished before the kill reached
    it) and ``completed`` (``success=False`` in either case).

Memory cap
    ``max_memory_bytes`` caps the address space (``RLIMIT_AS``) of the process
    and everything it starts. A program over the cap fails to allocate; how
    it then dies depends on the language, so a heuristic decides: when the cap
    is set and the exit code is not 0, the run is reported as over its memory
    cap if stderr mentioned ``MemoryError`` (Python), ``out of memory`` (V8,
    many C programs), ``Cannot allocate memory`` (``ENOMEM``) or ``bad_alloc``
    (C++), or if the process died of SIGKILL, SIGSEGV, SIGABRT or SIGBUS. Then
    ``resource_limit`` (``limit="memory"``) comes before ``result`` and
    ``completed`` (``success=False``). A program that raises ``MemoryError``
    itself is reported the same way. Runtimes that reserve much address space
    up front (V8, the JVM, Go) need a cap of several GiB or none: under
    200 MiB, ``node`` cannot even start.

Language unknown or not installed
    ``started`` (with ``pid=None``), ``error`` (``code="language_unavailable"``,
    ``data`` says why), ``completed`` (``success=False``). No exception, so a
    pipeline handles it like any failed run.

Spawn failure
    If the operating system refuses to start the process: ``started``
    (``pid=None``), ``error`` (``code="spawn_failed"``, ``data`` is the OS
    error), ``completed`` (``success=False``).

Consumer stops early
    When the consumer stops iterating (``break`` inside ``async with
    xs.stream()``, ``aclose()``, its task is cancelled) or anything raises,
    the process group gets SIGKILL, the process is reaped, the pipes are
    closed and the temporary directory is removed, before the consumer's
    ``aclose()`` or cancellation returns.

The main process exiting ends the run: whatever it left running in its
process group is killed then (the pipes would stay open otherwise). If a
process that escaped the group still holds a pipe open, the stream stops
waiting for it once nothing has arrived on it for half a second.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from eventkit.protocol.run import RunEvents
from eventkit.stats import source_stats
from eventkit.streams import EventStream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from eventkit.events import Event

__all__ = ["local"]

#: Searched after the directory of ``sys.executable`` by the child's PATH.
_SAFE_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
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
#: Stderr text that tells a process ran out of memory (see the module doc).
_MEMORY_MARKERS: Final = (
    "MemoryError",
    "out of memory",
    "Cannot allocate memory",
    "bad_alloc",
)
_MARKER_TAIL: Final = max(map(len, _MEMORY_MARKERS)) - 1
#: Deaths by signal that, with a memory cap set, mean it was hit.
_MEMORY_SIGNALS: Final = frozenset(
    {-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS}
)
_STDOUT: Final = 1
_STDERR: Final = 2
_KINDS: Final = {_STDOUT: "stdout", _STDERR: "stderr"}


class _Language(NamedTuple):
    """How to run one language: canonical name, command, file, extra variables."""

    name: str
    argv: list[str]
    filename: str
    env: dict[str, str]


#: Accepted spellings -> (canonical name, interpreters to try, file name).
_LANGUAGES: Final[dict[str, tuple[str, tuple[str, ...], str]]] = {
    # An empty tuple means sys.executable: the interpreter eventkit runs on.
    "python": ("python", (), "main.py"),
    "python3": ("python", (), "main.py"),
    "py": ("python", (), "main.py"),
    "bash": ("bash", ("bash",), "main.sh"),
    "shell": ("bash", ("bash", "sh"), "main.sh"),
    "sh": ("sh", ("sh",), "main.sh"),
    "javascript": ("javascript", ("node", "nodejs"), "main.js"),
    "js": ("javascript", ("node", "nodejs"), "main.js"),
    "node": ("javascript", ("node", "nodejs"), "main.js"),
    "nodejs": ("javascript", ("node", "nodejs"), "main.js"),
}


def _resolve(language: str) -> _Language | str:
    """Return how to run ``language``, or why it cannot be run."""
    spec = _LANGUAGES.get(language)
    if spec is None:
        known = ", ".join(sorted({name for name, _, _ in _LANGUAGES.values()}))
        return f"unknown language {language!r}; known: {known}"
    name, programs, filename = spec
    if not programs:
        if not sys.executable:
            return "python: the interpreter running eventkit is unknown"
        # -u and PYTHONUNBUFFERED: output reaches the pipe as it is written,
        # also from python processes the code starts.
        return _Language(
            name,
            [sys.executable, "-u", filename],
            filename,
            {"PYTHONUNBUFFERED": "1"},
        )
    for program in programs:
        found = shutil.which(program)
        if found is not None:
            return _Language(name, [found, filename], filename, {})
    wanted = " or ".join(repr(program) for program in programs)
    return f"{name} needs {wanted}, which is not installed (not found on PATH)"


def _child_env(
    language: _Language, extra: Mapping[str, str], home: str
) -> dict[str, str]:
    """Return the child's whole environment: nothing of the parent's leaks."""
    bindir = os.path.dirname(sys.executable)
    path = f"{bindir}:{_SAFE_PATH}" if bindir else _SAFE_PATH
    env = {"PATH": path, "HOME": home, "LANG": "C.UTF-8", **language.env}
    env.update(extra)
    return env


def _make_workdir(workdir: str | os.PathLike[str] | None) -> str:
    """Return the working directory: ``workdir`` (made if missing) or a new one.

    Blocking, as is :func:`_write_code`, but making a directory and writing
    one small file cost microseconds: less than a trip to a thread.
    """
    if workdir is None:
        return tempfile.mkdtemp(prefix="eventkit-")
    path = os.fspath(workdir)
    os.makedirs(path, exist_ok=True)
    return path


def _write_code(workdir: str, filename: str, code: str) -> None:
    """Write the program text into the working directory."""
    Path(workdir, filename).write_text(code, encoding="utf-8")


async def _remove(path: str) -> None:
    """Remove a temporary working directory without blocking the loop.

    The code may have filled it with any number of files, so this runs in a
    thread; shielded, so that a second cancellation cannot stop it before it
    starts.
    """
    loop = asyncio.get_running_loop()
    try:
        future = loop.run_in_executor(None, shutil.rmtree, path, True)
    except RuntimeError:
        # The loop's executor is shut down (interpreter exit): block instead.
        shutil.rmtree(path, ignore_errors=True)
        return
    await asyncio.shield(future)


def _limit_memory(limit: int) -> Callable[[], None]:
    """Return the ``preexec_fn`` capping the child's address space at ``limit``."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        # An unprivileged process may lower its hard limit but never raise it.
        limit = min(limit, hard)
    # A builtin bound with partial: the forked child runs no Python bytecode
    # of ours between fork and exec.
    return functools.partial(resource.setrlimit, resource.RLIMIT_AS, (limit, limit))


class _Child(asyncio.SubprocessProtocol):
    """One running child: its output as it arrives, its exit, and its kill.

    The event loop calls the protocol methods; the generator in
    :meth:`_LocalSource._events` drains :attr:`chunks` and waits in
    :meth:`changed` when there is nothing to drain.
    """

    __slots__ = (
        "_loop",
        "_received",
        "_timer",
        "_waiter",
        "_wake_soon",
        "abandoned",
        "buffered",
        "chunks",
        "discard",
        "exit_time",
        "exited",
        "limit",
        "paused",
        "pid",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: (fd, bytes) as read, (fd, None) at a pipe's end, in arrival order.
        self.chunks: collections.deque[tuple[int, bytes | None]] = collections.deque()
        self.buffered = 0
        self.paused: set[int] = set()
        self.discard = False
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
        if self.discard:
            return
        self.chunks.append((fd, data))
        self.buffered += len(data)
        self._received += 1
        if self.buffered > _HIGH_WATER and fd not in self.paused:
            self._pipe(fd).pause_reading()
            self.paused.add(fd)
        if self._wake_soon is None:
            self._wake_soon = self._loop.call_later(_COALESCE, self._wake)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.chunks.append((fd, None))
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

    # The generator's side ----------------------------------------------------

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

    def taken(self, size: int) -> None:
        """Note that the consumer took a chunk of ``size`` bytes."""
        self.buffered -= size
        if self.paused and self.buffered <= _LOW_WATER:
            for fd in self.paused:
                self._pipe(fd).resume_reading()
            self.paused.clear()

    def stop_output(self) -> None:
        """Kill the group for the output cap and drop whatever output follows."""
        self.kill("output")
        self.discard = True
        self.chunks.clear()
        self.taken(self.buffered)

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
        if self._received != seen or self.paused:
            self._timer = self._loop.call_later(
                _LINGER, self._check_linger, self._received
            )
            return
        self.abandoned = True
        self._wake()


class _LocalSource:
    """Re-iterable: each iteration runs the code once."""

    __slots__ = (
        "_code",
        "_env",
        "_language",
        "_max_memory",
        "_max_output",
        "_run",
        "_timeout",
        "_workdir",
    )

    def __init__(
        self,
        code: str,
        language: str,
        timeout: float | None,
        env: dict[str, str],
        workdir: str | os.PathLike[str] | None,
        run: str | None,
        max_output_bytes: int | None,
        max_memory_bytes: int | None,
    ) -> None:
        self._code = code
        self._language = language
        self._timeout = timeout
        self._env = env
        self._workdir = workdir
        self._run = run
        self._max_output = max_output_bytes
        self._max_memory = max_memory_bytes

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        # A process is a "connection", an output event a "frame". Nothing is
        # ever invalid or closed before complete here: the process's exit
        # always gives the outcome, and a timeout or a cap is a resource limit.
        stats = source_stats("local")
        events = RunEvents(self._run)
        language = _resolve(self._language)
        if isinstance(language, str):
            yield events.make(
                "started", attrs={"language": self._language, "pid": None}
            )
            yield events.make("error", language, attrs={"code": "language_unavailable"})
            yield events.make("completed", attrs={"success": False})
            return
        workdir: str | None = None
        child: _Child | None = None
        try:
            workdir = _make_workdir(self._workdir)
            _write_code(workdir, language.filename, self._code)
            loop = asyncio.get_running_loop()
            options: dict[str, Any] = {}
            if self._max_memory is not None:
                options["preexec_fn"] = _limit_memory(self._max_memory)
            start = time.monotonic()
            try:
                _, child = await loop.subprocess_exec(
                    functools.partial(_Child, loop),
                    *language.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=workdir,
                    env=_child_env(language, self._env, workdir),
                    start_new_session=True,
                    **options,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                yield events.make(
                    "started", attrs={"language": language.name, "pid": None}
                )
                yield events.make("error", str(exc), attrs={"code": "spawn_failed"})
                yield events.make("completed", attrs={"success": False})
                return
            stats.connections += 1
            stats.open_connections += 1
            if self._timeout is not None:
                child.start_timer(start + self._timeout)
            yield events.make(
                "started", attrs={"language": language.name, "pid": child.pid}
            )
            # The output, inline rather than in a helper generator: one async
            # hop per event instead of two, and nothing left to close.
            chunks = child.chunks
            decoders = {
                _STDOUT: codecs.getincrementaldecoder("utf-8")(errors="replace"),
                _STDERR: codecs.getincrementaldecoder("utf-8")(errors="replace"),
            }
            room = self._max_output  # what the output cap still allows
            watch_memory = self._max_memory is not None
            tail = ""  # the end of stderr so far, for markers split by a read
            memory_hint = False
            capped = False
            open_pipes = 2
            while open_pipes and not child.abandoned and not capped:
                if not chunks:
                    await child.changed()
                    continue
                fd, data = chunks.popleft()
                # Reads of one pipe that came together make one event.
                while data is not None and chunks and chunks[0][0] == fd:
                    more = chunks[0][1]
                    if more is None:
                        break
                    chunks.popleft()
                    data += more
                if data is None:
                    open_pipes -= 1
                    text = decoders[fd].decode(b"", True)
                else:
                    size = len(data)
                    child.taken(size)
                    if room is not None:
                        if size > room:
                            data = data[:room]
                            child.stop_output()
                            capped = True
                        room -= len(data)
                    text = decoders[fd].decode(data)
                if text:
                    if watch_memory and fd == _STDERR and not memory_hint:
                        window = tail + text
                        memory_hint = any(m in window for m in _MEMORY_MARKERS)
                        tail = window[-_MARKER_TAIL:]
                    stats.frames += 1
                    yield events.make(_KINDS[fd], text)
            await child.wait_exited()
            assert child.transport is not None
            exit_code = child.transport.get_returncode()
            assert exit_code is not None
            if (
                watch_memory
                and child.limit is None
                and exit_code != 0
                and (memory_hint or exit_code in _MEMORY_SIGNALS)
            ):
                child.limit = "memory"
            limit = child.limit
            if limit is not None:
                yield events.make(
                    "resource_limit", self._limit_message(limit), attrs={"limit": limit}
                )
            yield events.make(
                "result",
                attrs={
                    "exit_code": exit_code,
                    "execution_time": child.exit_time - start,
                },
            )
            # A run a limit stopped failed, even if its process exited with 0
            # before the kill reached it: its output may be cut short.
            success = exit_code == 0 and limit is None
            yield events.make("completed", attrs={"success": success})
        finally:
            try:
                if child is not None:
                    try:
                        await child.close()
                    finally:
                        # Counted open from the spawn to the reap, once.
                        stats.open_connections -= 1
            finally:
                if workdir is not None and self._workdir is None:
                    await _remove(workdir)

    def _limit_message(self, limit: str) -> str:
        if limit == "timeout":
            return f"timed out after {self._timeout:g}s"
        if limit == "output":
            return f"output exceeded {self._max_output} bytes"
        return f"memory use exceeded {self._max_memory} bytes"


def local(
    code: str,
    *,
    language: str = "python",
    timeout: float | None = 60,
    env: Mapping[str, str] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    run: str | None = None,
    max_output_bytes: int | None = None,
    max_memory_bytes: int | None = None,
) -> EventStream:
    """Return a stream that runs ``code`` in a local subprocess, as events.

    Each iteration runs the code once, from the start, in a new session and
    process group (``start_new_session=True``) with stdin from
    ``/dev/null``. The code is written to ``main.py``, ``main.sh`` or
    ``main.js`` in the working directory and run from there, so tracebacks
    name the file and the code's size is not bounded by the command line.

    Events, numbered from 0 per iteration:

    - ``started``: ``attrs`` ``language`` (canonical: ``"python"``,
      ``"bash"``, ``"sh"``, ``"javascript"``) and ``pid`` (also the process
      group id).
    - ``stdout`` / ``stderr``: output chunks as the bytes arrive (a read of
      whatever the pipe holds, not a line), in the order they were read.
      Each stream is decoded as UTF-8 incrementally, so a character split
      across writes is never split across events; invalid bytes become
      U+FFFD.
    - ``resource_limit``: when a limit stopped the run; ``attrs["limit"]`` is
      ``"timeout"``, ``"output"`` or ``"memory"``.
    - ``result``: ``exit_code`` (minus the signal number for a death by
      signal, e.g. ``-9`` after a kill) and ``execution_time`` (seconds from
      spawn to exit, monotonic).
    - ``completed``: ``success``: exit code 0 and no limit hit. (The output
      cap may be exceeded by a process that then exits 0 before the kill
      reaches it: ``result`` then says 0, but the run still failed.)

    What each failure looks like (timeout, caps, missing language, early
    stop) is described in :mod:`eventkit.sources.local`. Output is read only
    as fast as the consumer takes it: past 256 KiB unconsumed, the pipes are
    no longer read and the child blocks on its next write.

    The child's environment is ``PATH`` (the directory of ``sys.executable``,
    then ``/usr/local/bin:/usr/bin:/bin``), ``HOME`` (the working directory),
    ``LANG=C.UTF-8``, ``PYTHONUNBUFFERED=1`` for Python, then ``env``; none
    of this process's own variables.

    Args:
        code: The program text.
        language: ``"python"`` (or ``"python3"``, ``"py"``: the interpreter
            eventkit runs on, unbuffered), ``"bash"``, ``"sh"``, ``"shell"``
            (bash, else sh), ``"javascript"`` (or ``"js"``, ``"node"``,
            ``"nodejs"``: ``node``). Case is ignored.
        timeout: Seconds from spawn to exit before the process group is
            killed; None for no limit.
        env: Variables added to (or overriding) the child's minimal
            environment.
        workdir: The working directory, created if missing and never removed;
            the code file is written into it (replacing one of the same name)
            and left there. By default each iteration gets a fresh temporary
            directory (``eventkit-*``), removed afterwards.
        run: The run id of every iteration's events; by default a fresh one
            per iteration.
        max_output_bytes: Cap on stdout and stderr bytes together; None for
            no cap.
        max_memory_bytes: Cap on the address space (``RLIMIT_AS``) of the
            process and its children; None for no cap.

    Raises:
        ValueError: If ``timeout`` is not positive, a cap is negative
            (``max_memory_bytes`` must be positive), or ``language`` is empty.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    if max_output_bytes is not None and max_output_bytes < 0:
        raise ValueError(f"max_output_bytes must be >= 0, got {max_output_bytes!r}")
    if max_memory_bytes is not None and max_memory_bytes <= 0:
        raise ValueError(f"max_memory_bytes must be positive, got {max_memory_bytes!r}")
    name = language.strip().lower()
    if not name:
        raise ValueError("language must not be empty")
    extra = dict(env or {})
    return EventStream(
        _LocalSource(
            code,
            name,
            timeout,
            extra,
            workdir,
            run,
            max_output_bytes,
            max_memory_bytes,
        ),
        (),
    )
