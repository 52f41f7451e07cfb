"""What ``/proc`` tells about a run's processes, to signal every one of them.

A run without isolation has no boundary the kernel keeps for it: code can
leave the process group (``setsid``), double-fork so that its daemon is
adopted by init, and keep writing into the pipes it inherited. The local
executor finds such processes here, when it stops a run:

- :func:`snapshot` reads every process's parent and process group at once;
  :func:`descendants` and :func:`group_members` answer from it (a process
  whose parent died is adopted by init, so descendants must be read while
  the run's main process is still alive);
- :func:`pipe_holders` finds the processes holding a given pipe open,
  whatever their group or parent: whoever can still write into the run's
  output.

Linux only; where ``/proc`` has no answer (another user's process, a process
gone during the scan), the process is skipped, never an error.

Failure behaviour: nothing here raises for a process that vanishes or cannot
be read; every function returns what it could see.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator

__all__ = [
    "Process",
    "descendants",
    "group_members",
    "is_gone",
    "pipe_holders",
    "pipe_inode",
    "snapshot",
]


class Process(NamedTuple):
    """One line of the process table.

    Attributes:
        ppid: The parent's pid.
        pgid: The process group.
        zombie: Whether it is dead and waits to be reaped.
    """

    ppid: int
    pgid: int
    zombie: bool


def _pids() -> Iterator[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if name.isdigit():
            yield int(name)


def _stat(pid: int) -> Process | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            line = file.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold anything, ")" included:
    # the fields start after the last one.
    fields = line[line.rfind(b")") + 2 :].split()
    try:
        return Process(int(fields[1]), int(fields[2]), fields[0] == b"Z")
    except (IndexError, ValueError):
        return None


def snapshot() -> dict[int, Process]:
    """Return the process table: pid -> parent, group, whether a zombie."""
    table = {}
    for pid in _pids():
        process = _stat(pid)
        if process is not None:
            table[pid] = process
    return table


def descendants(pid: int, table: dict[int, Process]) -> list[int]:
    """Return the pids descending from ``pid`` in ``table``, children first."""
    children: dict[int, list[int]] = {}
    for child, process in table.items():
        children.setdefault(process.ppid, []).append(child)
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def group_members(pgid: int, table: dict[int, Process]) -> list[int]:
    """Return the pids of process group ``pgid`` in ``table`` that are not zombies."""
    return [
        pid
        for pid, process in table.items()
        if process.pgid == pgid and not process.zombie
    ]


def pipe_inode(fd: int) -> int:
    """Return the inode of the pipe open as ``fd``: how ``/proc`` names it."""
    return os.fstat(fd).st_ino


def pipe_holders(inodes: Collection[int], *, exclude: int) -> list[int]:
    """Return the pids holding one of the pipes ``inodes`` open, but ``exclude``.

    Reads every process's file descriptors: milliseconds for a few hundred
    processes, so only worth it when a pipe is known to be held.
    """
    links = {f"pipe:[{inode}]" for inode in inodes}
    holders = []
    for pid in _pids():
        if pid == exclude:
            continue
        directory = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(directory)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{directory}/{fd}")
            except OSError:
                continue
            if target in links:
                holders.append(pid)
                break
    return holders


def is_gone(pid: int) -> bool:
    """Tell whether process ``pid`` no longer runs: gone, or a zombie."""
    process = _stat(pid)
    return process is None or process.zombie
