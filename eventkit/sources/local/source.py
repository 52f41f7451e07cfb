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

import asyncio
import math
import os
import subprocess
import time
from typing import TYPE_CHECKING, Final, Literal

from eventkit.protocol.run import RunEvents
from eventkit.sources.local import isolation
from eventkit.sources.local.cgroup import RunCgroup
from eventkit.sources.local.languages import child_env, resolve
from eventkit.sources.local.meter import OutputMeter
from eventkit.sources.local.process import (
    child_setup,
    memory_rlimit,
    process_rlimit,
    signal_name,
    spawn,
)
from eventkit.sources.local.workdir import make_workdir, remove_workdir, write_code
from eventkit.stats import source_stats
from eventkit.streams import EventStream, one_by_one

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from eventkit.events import Event
    from eventkit.sources.local.languages import Language
    from eventkit.sources.local.process import ChildProcess, Limit

__all__ = ["Isolation", "local"]

#: How a run is isolated: ``"bwrap"``, ``"none"``, or ``"auto"`` (bwrap where
#: it works here, else none, said once in a warning).
Isolation = Literal["auto", "bwrap", "none"]
_ISOLATIONS: Final = ("auto", "bwrap", "none")
#: The output pipes, by file descriptor, named as their events.
_STREAMS: Final = {1: "stdout", 2: "stderr"}
#: The processes of the sandbox itself: bwrap and the sandbox's init.
_SANDBOX_PROCESSES: Final = 2
#: What was already said in a warning, so that it is said once per process.
_warned: set[str] = set()


def _warn_once(key: str, **details: object) -> None:
    """Log a structlog warning ``key``, once per process."""
    if key in _warned:
        return
    _warned.add(key)
    # Imported here: structlog loads only when there is something to say.
    import structlog

    structlog.get_logger("eventkit.sources.local").warning(key, **details)


class _Plan:
    """How one run is started: command, limits, confinement."""

    __slots__ = ("argv", "cgroup", "env", "limits", "watch_memory")

    def __init__(self) -> None:
        self.argv: list[str] = []
        self.env: dict[str, str] = {}
        self.cgroup: RunCgroup | None = None
        self.limits: tuple[Limit, ...] = ()
        #: Whether the memory cap is per process (RLIMIT_AS), so the
        #: verdict rests on how the program died.
        self.watch_memory = False


class _LocalSource:
    """Re-iterable: each iteration runs the code once."""

    __slots__ = (
        "_code",
        "_env",
        "_grace",
        "_isolation",
        "_language",
        "_max_memory",
        "_max_output",
        "_max_processes",
        "_mount",
        "_network",
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
        *,
        isolation: Isolation = "none",
        network: bool = True,
        max_processes: int | None = None,
        interrupt_grace: float = 2.0,
        workdir_mount: str | None = None,
    ) -> None:
        self._code = code
        self._language = language
        self._timeout = timeout
        self._env = env
        self._workdir = workdir
        self._run = run
        self._max_output = max_output_bytes
        self._max_memory = max_memory_bytes
        self._isolation = isolation
        self._network = network
        self._max_processes = max_processes
        self._grace = interrupt_grace
        self._mount = workdir_mount

    def __aiter__(self) -> AsyncIterator[Event]:
        return one_by_one(self.batches())

    async def batches(self) -> AsyncIterator[list[Event]]:
        """Run the code once; yield its events, those of every read at hand at once."""
        # A process is a "connection", an output event a "frame". Nothing is
        # ever invalid or closed before complete here: the process's exit
        # always gives the outcome, and a timeout or a cap is a resource limit.
        stats = source_stats("local")
        events = RunEvents(self._run)
        make = events.make
        language = resolve(self._language)
        if isinstance(language, str):
            yield _failed(events, self._language, language, "language_unavailable")
            return
        isolated = await self._isolated()
        if isinstance(isolated, str):
            yield _failed(events, language.name, isolated, "isolation_unavailable")
            return
        workdir: str | None = None
        plan = _Plan()
        child: ChildProcess | None = None
        try:
            workdir = make_workdir(self._workdir)
            write_code(workdir, language.filename, self._code)
            start = time.monotonic()
            try:
                self._plan(plan, language, workdir, isolated=isolated)
                child = await spawn(
                    plan.argv,
                    cwd=workdir,
                    env=plan.env,
                    preexec=child_setup(
                        join=plan.cgroup.procs_files if plan.cgroup else (),
                        limits=plan.limits,
                    ),
                    grace=self._grace,
                    isolated=isolated,
                    cgroup=plan.cgroup,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                yield _failed(events, language.name, str(exc), "spawn_failed")
                return
            stats.connections += 1
            stats.open_connections += 1
            if self._timeout is not None:
                child.start_timer(start + self._timeout)
            yield [make("started", attrs={"language": language.name, "pid": child.pid})]
            meter = OutputMeter(self._max_output, watch_memory=plan.watch_memory)
            open_pipes = 2
            capped = False
            while open_pipes and not child.abandoned and not capped:
                # Every read at hand makes one batch: one trip down the chain.
                batch = []
                while (chunk := child.take()) is not None:
                    fd, data = chunk
                    kind = _STREAMS[fd]
                    if data is None:
                        open_pipes -= 1
                        text = meter.end(kind)
                    else:
                        text = meter.feed(kind, data)
                        capped = meter.capped
                    if text:
                        batch.append(make(kind, text))
                    if capped:
                        child.stop_output()
                        break
                if batch:
                    stats.frames += len(batch)
                    yield batch
                elif open_pipes and not child.abandoned:
                    await child.changed()
            await child.wait_exited()
            yield self._ending(events, child, meter, plan.cgroup, start)
        finally:
            try:
                if child is not None:
                    try:
                        await child.close()
                    finally:
                        # Counted open from the spawn to the reap, once.
                        stats.open_connections -= 1
            finally:
                try:
                    if plan.cgroup is not None:
                        await plan.cgroup.remove()
                finally:
                    if workdir is not None and self._workdir is None:
                        await remove_workdir(workdir)

    async def _isolated(self) -> bool | str:
        """Tell whether this run is isolated; or why it cannot be, as asked."""
        if self._isolation == "none":
            return False
        support = isolation.probed()
        if support is None:
            # Starts a sandbox once per process: not on the event loop.
            support = await asyncio.to_thread(isolation.probe)
        if support.bwrap:
            return True
        if self._isolation == "bwrap":
            return f"isolation='bwrap': {support.reason}"
        _warn_once(
            "isolation_unavailable",
            reason=support.reason,
            detail="isolation='auto': code runs without a sandbox",
        )
        return False

    def _plan(
        self, plan: _Plan, language: Language, workdir: str, *, isolated: bool
    ) -> None:
        """Fill ``plan``: the command, its environment, its limits.

        Raises:
            OSError: If the run's control group cannot be made.
        """
        home = self._mount if isolated and self._mount is not None else workdir
        plan.env = child_env(language, self._env, home)
        plan.argv = language.argv
        processes = self._max_processes
        if isolated:
            isolation.hand_over(workdir, language.filename)
            if processes is not None:
                processes += _SANDBOX_PROCESSES
        if processes is not None or self._max_memory is not None:
            plan.cgroup = RunCgroup.create(
                max_processes=processes, max_memory_bytes=self._max_memory
            )
        enforced = plan.cgroup.limits if plan.cgroup is not None else frozenset()
        limits: list[Limit] = []
        if self._max_memory is not None and "memory" not in enforced:
            limits.append(memory_rlimit(self._max_memory))
            plan.watch_memory = True
        if self._max_processes is not None and "processes" not in enforced:
            if isolated and os.geteuid() == 0:
                # Counts every process of the isolated uid, on this machine.
                limits.append(process_rlimit(self._max_processes))
            else:
                _warn_once(
                    "max_processes_unenforced",
                    detail="no writable pids cgroup here, and no uid of its own "
                    "to count the run's processes by",
                )
        plan.limits = tuple(limits)
        if isolated:
            # A sandbox's /tmp is memory: bounded by the cap, where the
            # cgroup does not count it already.
            plan.argv = isolation.sandbox_argv(
                language.argv,
                workdir=workdir,
                mount=self._mount,
                network=self._network,
                tmp_size=self._max_memory if plan.watch_memory else None,
                roots=isolation.interpreter_roots(language.argv[0]),
            )

    def _ending(
        self,
        events: RunEvents,
        child: ChildProcess,
        meter: OutputMeter,
        cgroup: RunCgroup | None,
        start: float,
    ) -> list[Event]:
        """Return the run's last events: its limit if one was hit, result, completed."""
        exit_code = child.returncode()
        died_of = signal_name(exit_code)
        limit = child.limit
        stop_signal = child.stop_signal
        if limit is None:
            if cgroup is not None and "memory" in cgroup.limits:
                # The kernel's word: it killed a member for the memory limit.
                if cgroup.oom_kills():
                    limit, stop_signal = "memory", "SIGKILL"
            elif meter.ran_out_of_memory(exit_code):
                limit, stop_signal = "memory", died_of
        ending = []
        if limit is not None:
            ending.append(
                events.make(
                    "resource_limit",
                    self._limit_message(limit),
                    attrs={"limit": limit, "signal": stop_signal},
                )
            )
        result: dict[str, object] = {
            "exit_code": exit_code,
            "execution_time": child.exit_time - start,
        }
        ended_by = died_of or child.stop_signal
        if ended_by is not None:
            result["signal"] = ended_by
        ending.append(events.make("result", attrs=result))
        # A run a limit stopped failed, even if its process exited with 0
        # before the kill reached it: its output may be cut short.
        success = exit_code == 0 and limit is None
        ending.append(events.make("completed", attrs={"success": success}))
        return ending

    def _limit_message(self, limit: str) -> str:
        if limit == "timeout":
            return f"timed out after {self._timeout:g}s"
        if limit == "output":
            return f"output exceeded {self._max_output} bytes"
        return f"memory use exceeded {self._max_memory} bytes"


def _failed(events: RunEvents, language: str, why: str, code: str) -> list[Event]:
    """Return the events of a run that could not start: started, error, completed."""
    return [
        events.make("started", attrs={"language": language, "pid": None}),
        events.make("error", why, attrs={"code": code}),
        events.make("completed", attrs={"success": False}),
    ]


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
    isolation: Isolation = "none",
    network: bool = True,
    max_processes: int | None = None,
    interrupt_grace: float = 2.0,
    workdir_mount: str | None = None,
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
      group id; in a sandbox, bwrap's).
    - ``stdout`` / ``stderr``: output chunks as the bytes arrive (what the
      pipe held, not a line; output ending inside a line is held up to 2 ms
      for its end, so that a text and its newline written apart make one
      event), in the order they were read.
      Each stream is decoded as UTF-8 incrementally, so a character split
      across writes is never split across events; invalid bytes become
      U+FFFD.
    - ``resource_limit``: when a limit stopped the run; ``attrs["limit"]`` is
      ``"timeout"``, ``"output"`` or ``"memory"``, ``attrs["signal"]`` the
      signal that ended it (``"SIGINT"`` when the program stopped within
      ``interrupt_grace``, ``"SIGKILL"`` when it had to be killed).
    - ``result``: ``exit_code`` (minus the signal number for a death by
      signal, e.g. ``-2`` after SIGINT, ``-9`` after a kill),
      ``execution_time`` (seconds from spawn to exit, monotonic) and, when
      a signal ended the process or the run was stopped by one, ``signal``
      (its name).
    - ``completed``: ``success``: exit code 0 and no limit hit. (The output
      cap may be exceeded by a process that then exits 0 before the kill
      reaches it: ``result`` then says 0, but the run still failed.)

    What each failure looks like (timeout, caps, missing language, early
    stop) is described in :mod:`eventkit.sources.local`. Output is read only
    as fast as the consumer takes it: past 4 MiB unconsumed, the pipes are
    no longer read and the child blocks on its next write.

    The stream offers ``batches()``: the events of every read at hand come
    as one list, which eventkit's runner takes in one step.

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
        timeout: Seconds from spawn to a stop: SIGINT, then SIGKILL to
            everything of the run ``interrupt_grace`` seconds later, however
            much it still writes; None for no limit.
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
        max_memory_bytes: Cap on the memory of the whole run, where a memory
            control group can be made (see ``docs/security.md``); otherwise
            on the address space (``RLIMIT_AS``) of each of its processes.
            None for no cap.
        isolation: ``"bwrap"``: run the code in a bubblewrap sandbox (see
            :mod:`eventkit.sources.local.isolation`; an iteration that
            cannot start one ends with an ``error`` event, ``code``
            ``"isolation_unavailable"``); ``"none"``: as the current user,
            seeing what it sees; ``"auto"``: bwrap where a sandbox starts on
            this machine (tried once per process), else none, said once in a
            structlog warning (``isolation_unavailable``).
        network: Whether sandboxed code shares this machine's network; with
            False it has a loopback interface of its own and nothing else.
            Only with isolation.
        max_processes: Cap on the processes (and threads) of the run at once:
            the pids control group where one can be made, else, in a sandbox
            as root, ``RLIMIT_NPROC`` of the isolated uid (which counts all
            of that uid's processes on the machine); else not enforced, said
            once in a warning (``max_processes_unenforced``).
        interrupt_grace: Seconds from the SIGINT that stops a run (timeout,
            output cap, the consumer leaving) to the SIGKILL; 0 kills at once.
        workdir_mount: Where sandboxed code sees its working directory
            (``"/workspace"``, say); by default at its own path.

    Raises:
        ValueError: If ``timeout`` is not positive, a cap is negative
            (``max_memory_bytes`` and ``max_processes`` must be positive),
            ``interrupt_grace`` is negative, ``language`` is empty,
            ``isolation`` is unknown or ``workdir_mount`` not absolute.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    if max_output_bytes is not None and max_output_bytes < 0:
        raise ValueError(f"max_output_bytes must be >= 0, got {max_output_bytes!r}")
    if max_memory_bytes is not None and max_memory_bytes <= 0:
        raise ValueError(f"max_memory_bytes must be positive, got {max_memory_bytes!r}")
    if max_processes is not None and max_processes <= 0:
        raise ValueError(f"max_processes must be positive, got {max_processes!r}")
    if not (interrupt_grace >= 0 and math.isfinite(interrupt_grace)):
        raise ValueError(f"interrupt_grace must be >= 0, got {interrupt_grace!r}")
    if isolation not in _ISOLATIONS:
        raise ValueError(f"isolation must be one of {_ISOLATIONS}, got {isolation!r}")
    if workdir_mount is not None and not os.path.isabs(workdir_mount):
        raise ValueError(f"workdir_mount must be absolute, got {workdir_mount!r}")
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
            isolation=isolation,
            network=network,
            max_processes=max_processes,
            interrupt_grace=interrupt_grace,
            workdir_mount=workdir_mount,
        ),
        (),
    )
