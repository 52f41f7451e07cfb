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

The package holds one concern per module; only :func:`local` is public:

- :mod:`~eventkit.sources.local.source`: :func:`local` and the iteration that
  turns one run into events;
- :mod:`~eventkit.sources.local.languages`: the languages, the command each
  runs with, the child's environment;
- :mod:`~eventkit.sources.local.workdir`: the working directory and the code
  file in it;
- :mod:`~eventkit.sources.local.process`: the running child: its pipes, flow
  control, timeout, kill and reaping;
- :mod:`~eventkit.sources.local.meter`: what the output amounts to, without
  I/O: UTF-8 decoding, the output cap, the signs of memory exhaustion.

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

# Eagerly, as eventkit.sources imports this package eagerly too: the function,
# bound there after the package loads, is what ``eventkit.sources.local`` names.
from eventkit.sources.local.source import local

__all__ = ["local"]
