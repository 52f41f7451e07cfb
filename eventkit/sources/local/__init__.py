"""The local executor: eventkit's embedded default sandbox.

:func:`local` runs code in a subprocess on this machine, with no account and
no server, and streams what it does as events::

    started -> stdout / stderr ... -> [resource_limit] -> result -> completed

Each iteration of the stream runs the code once, in a fresh working directory
(unless one is given), in a new session and process group, with a minimal
environment. Output is streamed as the bytes arrive, not line by line.

By default (``isolation="none"``) it is a convenience, **not an isolation
boundary**: the code runs as the current user and sees the file system and
the network. With ``isolation="bwrap"`` it runs in a bubblewrap sandbox: its
own process ids, only the system, its interpreter (read-only) and its own
directory in view, no environment of ours, optionally no network, and as an
unprivileged uid when eventkit runs as root; ``"auto"`` uses bwrap where it
works. :func:`probe_isolation` tells what this machine offers.
``docs/security.md`` says exactly what each mode guarantees.

The package holds one concern per module; :func:`local`,
:func:`probe_isolation` and their types are public:

- :mod:`~eventkit.sources.local.source`: :func:`local` and the iteration that
  turns one run into events;
- :mod:`~eventkit.sources.local.languages`: the languages, the command each
  runs with, the child's environment;
- :mod:`~eventkit.sources.local.workdir`: the working directory and the code
  file in it;
- :mod:`~eventkit.sources.local.isolation`: the bubblewrap sandbox and the
  probe for it;
- :mod:`~eventkit.sources.local.cgroup`: a control group per run, for limits
  on the whole tree of processes;
- :mod:`~eventkit.sources.local.process`: the running child: its pipes, flow
  control, graceful stop, hard deadline and reaping;
- :mod:`~eventkit.sources.local.procfs`: what ``/proc`` shows of a run's
  processes, to reach those that left its group;
- :mod:`~eventkit.sources.local.meter`: what the output amounts to, without
  I/O: UTF-8 decoding, the output cap, the signs of memory exhaustion.

What happens when things go wrong:

Non-zero exit
    ``result`` carries the exit code, ``completed`` has ``success=False``.
    No ``error`` event: a failing program is a normal outcome.

Stopping a run
    A run is stopped by its timeout, its output cap, or its consumer
    leaving: its process group gets SIGINT (Python raises
    :exc:`KeyboardInterrupt`, ``finally`` blocks run; the child always
    starts with SIGINT at its default, even where this process ignores it),
    then, ``interrupt_grace`` seconds later (2 by default), SIGKILL goes to
    everything of the run (its group, its control group, in a sandbox the
    whole sandbox; without one, also the descendants of its main process and
    whatever holds its output pipes open) and the pipes are closed,
    whatever still writes. When the main process has already exited, the
    rest is killed at once. ``resource_limit`` and ``result`` carry
    ``signal``: ``"SIGINT"`` or ``"SIGKILL"``.

Timeout
    A wall-clock deadline, ``timeout`` seconds after the spawn, hard at
    ``timeout + interrupt_grace``: output from processes that left the group
    cannot keep the run going. The output read until then is delivered,
    then ``resource_limit`` (``limit="timeout"``), then ``result``
    (``exit_code`` minus the signal number for a death by signal: ``-2``
    after SIGINT, ``-9`` after SIGKILL) and ``completed`` with
    ``success=False``, also when the main process had exited with 0 and
    only its leftovers were still writing.

Output cap
    Once stdout and stderr together exceed ``max_output_bytes`` bytes, the
    run is stopped. Exactly the first ``max_output_bytes`` bytes are
    delivered (less a multi-byte character the cap cuts in two, which is
    dropped rather than mangled), the rest is discarded; then
    ``resource_limit`` (``limit="output"``), ``result`` and ``completed``
    (``success=False``, even if the process exited with 0 before the
    interrupt reached it).

Memory cap
    Where a memory control group can be made (see
    :mod:`~eventkit.sources.local.cgroup`), ``max_memory_bytes`` caps the
    whole run, its children and its ``/tmp`` included, and the kernel kills
    a process that goes over it: the run is reported as over its memory cap
    when the kernel says it killed one (SIGKILL). Elsewhere it caps the
    address space (``RLIMIT_AS``) of each process separately, and a program
    over it fails to allocate; how it then dies depends on the language, so
    a heuristic decides, never on text alone: the run is over its cap when
    the exit code is not 0 and the process died of SIGKILL, SIGSEGV, SIGABRT
    or SIGBUS, or its last lines of stderr are a runtime's dying words about
    memory with the exit status that runtime gives them (Python's
    ``MemoryError`` with 1, bash's ``xrealloc: cannot allocate``, ENOMEM's
    ``Cannot allocate memory``, ``out of memory``, ``bad_alloc``). Then
    ``resource_limit`` (``limit="memory"``) comes before ``result`` and
    ``completed`` (``success=False``). Under ``RLIMIT_AS``, runtimes that
    reserve much address space up front (V8, the JVM, Go) need a cap of
    several GiB or none: under 200 MiB, ``node`` cannot even start.

Language unknown or not installed
    ``started`` (with ``pid=None``), ``error`` (``code="language_unavailable"``,
    ``data`` says why), ``completed`` (``success=False``). No exception, so a
    pipeline handles it like any failed run.

No sandbox where one is required
    With ``isolation="bwrap"`` where none starts: ``started`` (``pid=None``),
    ``error`` (``code="isolation_unavailable"``, ``data`` says why),
    ``completed`` (``success=False``). ``"auto"`` runs without one instead,
    and says so once in a structlog warning (``isolation_unavailable``).

Spawn failure
    If the operating system refuses to start the process: ``started``
    (``pid=None``), ``error`` (``code="spawn_failed"``, ``data`` is the OS
    error), ``completed`` (``success=False``).

Consumer stops early
    When the consumer stops iterating (``break`` inside ``async with
    xs.stream()``, ``aclose()``, its task is cancelled) or anything raises,
    the run is stopped as above (its output meanwhile dropped), and the
    consumer's ``aclose()`` or cancellation returns once its process group
    is gone, the process reaped, the pipes closed and the temporary
    directory removed: within ``interrupt_grace`` and a moment.

The main process exiting ends the run: whatever it left running in its
process group is killed then (the pipes would stay open otherwise); in a
sandbox, everything it left is. If a process that escaped the group still
holds a pipe open, the stream stops waiting for it once nothing has arrived
on it for half a second, or at the deadline.
"""

from __future__ import annotations

# Eagerly, as eventkit.sources imports this package eagerly too: the function,
# bound there after the package loads, is what ``eventkit.sources.local`` names.
from eventkit.sources.local.isolation import IsolationSupport, probe as probe_isolation
from eventkit.sources.local.source import Isolation, local

__all__ = ["Isolation", "IsolationSupport", "local", "probe_isolation"]
