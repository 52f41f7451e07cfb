"""A sandbox's background runs: :class:`Process` records in :class:`Processes`.

HOPX's ``run_code_background`` and ``commands.run(..., background=True)``
start a run and answer at once with its ``process_id``;
``list_processes`` shows each run's state and ``kill_process`` stops one.
The run itself is a task of its sandbox (see
:meth:`~eventkit.server.sandboxes.Sandbox.spawn`), which the front end
starts; here is only what is known of it.

A background run's output is read (so that it never blocks on a full pipe)
and dropped: the SDK has no call that reads it back. Its output cap and
timeout apply as to any run.

Failure behaviour: nothing here raises. A sandbox keeps the records of its
last :data:`MAX_PROCESSES` runs; older finished ones are forgotten first.
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterator

__all__ = ["MAX_PROCESSES", "Process", "Processes"]

#: Background run records a sandbox keeps.
MAX_PROCESSES: Final = 256


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(slots=True, eq=False)
class Process:
    """One background run, as ``list_processes`` shows it.

    Attributes:
        process_id: Its id (``proc-...``), for ``kill_process``.
        execution_id: The same, as the agent names it too.
        name: The name the client gave, if any.
        language: The run's language (``bash`` for a command).
        command: The command line, for a command.
        status: ``queued`` (waiting for a slot), ``running``, ``completed``
            (exit 0), ``failed`` (anything else) or ``killed``.
        start_time: Unix time its process started, once it did.
        end_time: Unix time it ended, once it did.
        exit_code: Its exit code (minus the signal number), once known.
        pid: Its process (group) id, once started.
        error: Why it failed without an exit code, if so.
        task: The task running it, while it runs.
    """

    process_id: str
    name: str | None
    language: str
    command: str | None = None
    status: str = "queued"
    start_time: float | None = None
    end_time: float | None = None
    exit_code: int | None = None
    pid: int | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = None

    @property
    def execution_id(self) -> str:
        """The agent's other name for :attr:`process_id`."""
        return self.process_id

    @property
    def done(self) -> bool:
        """Whether it has ended, one way or another."""
        return self.status in ("completed", "failed", "killed")

    def describe(self) -> dict[str, Any]:
        """Return it as the agent's ``ProcessInfo`` (with ``error`` when set)."""
        info: dict[str, Any] = {
            "process_id": self.process_id,
            "execution_id": self.process_id,
            "name": self.name,
            "status": self.status,
            "language": self.language,
            "start_time": _iso(self.start_time),
            "end_time": _iso(self.end_time),
            "exit_code": self.exit_code,
            "pid": self.pid,
        }
        if self.start_time is not None and self.end_time is not None:
            info["duration"] = self.end_time - self.start_time
        if self.command is not None:
            info["command"] = self.command
        if self.error is not None:
            info["error"] = self.error
        return info


class Processes:
    """A sandbox's background runs, by id, in the order they were started."""

    __slots__ = ("_processes",)

    def __init__(self) -> None:
        self._processes: dict[str, Process] = {}

    def __iter__(self) -> Iterator[Process]:
        return iter(list(self._processes.values()))

    def __len__(self) -> int:
        return len(self._processes)

    def new(
        self, name: str | None, language: str, command: str | None = None
    ) -> Process:
        """Record a new run, ``queued``; forget the oldest finished past the bound."""
        if len(self._processes) >= MAX_PROCESSES:
            for old in list(self._processes.values()):
                if old.done:
                    del self._processes[old.process_id]
                    if len(self._processes) < MAX_PROCESSES:
                        break
        process = Process("proc-" + secrets.token_hex(8), name, language, command)
        self._processes[process.process_id] = process
        return process

    def get(self, process_id: str) -> Process | None:
        """Return the run with ``process_id``, if known."""
        return self._processes.get(process_id)
