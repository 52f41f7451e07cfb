"""The local executor's source: :func:`local`, and one run as events.

Each iteration of the stream :func:`local` returns resolves the language
(:mod:`~eventkit.sources.local.languages`), writes the program into its
working directory (:mod:`~eventkit.sources.local.workdir`), spawns it
(:mod:`~eventkit.sources.local.process`), and turns what the process does
into events, its output through an
:class:`~eventkit.sources.local.meter.OutputMeter`.

Failure behaviour: :func:`local` raises :exc:`ValueError` for nonsense
arguments; an iteration raises nothing for anything the program or the
operating system does (see :mod:`eventkit.sources.local` for the events
then), only the :exc:`OSError` of a working directory that cannot be made
or written. However an iteration ends, the process group is killed and
reaped and a temporary directory removed before it returns.
"""

from __future__ import annotations

import subprocess
import time
from typing import TYPE_CHECKING, Final

from eventkit.protocol.run import RunEvents
from eventkit.sources.local.languages import child_env, resolve
from eventkit.sources.local.meter import OutputMeter
from eventkit.sources.local.process import spawn
from eventkit.sources.local.workdir import make_workdir, remove_workdir, write_code
from eventkit.stats import source_stats
from eventkit.streams import EventStream

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Mapping

    from eventkit.events import Event
    from eventkit.sources.local.process import ChildProcess

__all__ = ["local"]

#: The output pipes, by file descriptor, named as their events.
_STREAMS: Final = {1: "stdout", 2: "stderr"}


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
        language = resolve(self._language)
        if isinstance(language, str):
            yield events.make(
                "started", attrs={"language": self._language, "pid": None}
            )
            yield events.make("error", language, attrs={"code": "language_unavailable"})
            yield events.make("completed", attrs={"success": False})
            return
        workdir: str | None = None
        child: ChildProcess | None = None
        try:
            workdir = make_workdir(self._workdir)
            write_code(workdir, language.filename, self._code)
            start = time.monotonic()
            try:
                child = await spawn(
                    language.argv,
                    cwd=workdir,
                    env=child_env(language, self._env, workdir),
                    max_memory_bytes=self._max_memory,
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
            meter = OutputMeter(
                self._max_output, watch_memory=self._max_memory is not None
            )
            open_pipes = 2
            capped = False
            while open_pipes and not child.abandoned and not capped:
                chunk = child.take()
                if chunk is None:
                    await child.changed()
                    continue
                fd, data = chunk
                kind = _STREAMS[fd]
                if data is None:
                    open_pipes -= 1
                    text = meter.end(kind)
                else:
                    text = meter.feed(kind, data)
                    capped = meter.capped
                    if capped:
                        child.stop_output()
                if text:
                    stats.frames += 1
                    yield events.make(kind, text)
            await child.wait_exited()
            exit_code = child.returncode()
            if child.limit is None and meter.ran_out_of_memory(exit_code):
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
                    await remove_workdir(workdir)

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
    as fast as the consumer takes it: past 4 MiB unconsumed, the pipes are
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
