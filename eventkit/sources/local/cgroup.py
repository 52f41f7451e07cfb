"""Control groups for local runs: a process count and a memory limit for a whole tree.

A limit set with ``setrlimit`` holds for one process at a time (four
children of 250 MB each pass a 300 MB ``RLIMIT_AS``), and ``RLIMIT_NPROC``
counts every process of a user. A control group counts the whole tree of a
run, whatever it forks, and the kernel enforces it: the local executor puts
each run that asks for ``max_processes`` or ``max_memory_bytes`` into a
control group of its own when one can be made here.

Where: as a child of the group eventkit itself runs in, in each hierarchy
that has the controller (``pids``, ``memory``): cgroup v1 (one hierarchy per
controller) or v2 (the unified one, where the controller must already be
enabled for children in ``cgroup.subtree_control``; eventkit never moves
itself to enable one). A child of our own group stays inside every limit
set on us. Whether that works is found out once per process by making and
removing a probe directory (:func:`available`); as root that usually works,
unprivileged it works only where the group was delegated to the user.

:meth:`RunCgroup.create` makes a run's group and sets its limits, the child
joins it before it runs anything (its ``preexec_fn`` writes ``0`` into the
files of :attr:`RunCgroup.procs_files`), :meth:`RunCgroup.kill` kills every
member, :meth:`RunCgroup.oom_kills` tells whether the memory limit killed
one, and :meth:`RunCgroup.remove` removes the group once it is empty.

Failure behaviour: :meth:`RunCgroup.create` raises :exc:`OSError` when the
group cannot be made or limited (what was made is removed again); the rest
never raises: a member gone, a file unreadable or a group that stays busy
are skipped (a group that cannot be removed is left behind, empty or not).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
from typing import Final, NamedTuple

__all__ = [
    "RunCgroup",
    "available",
    "cgroup_directory",
    "parse_cgroup",
    "parse_mountinfo",
]

#: Names of the run groups: this process's pid, then a counter.
_counter: Final = itertools.count()
#: How long :meth:`RunCgroup.remove` waits for the kernel to let members go.
_REMOVE_WITHIN: Final = 1.0


class _Hierarchy(NamedTuple):
    """Where one controller's run groups go.

    Attributes:
        parent: The directory of our own group, where run groups are made.
        unified: Whether it is cgroup v2.
    """

    parent: str
    unified: bool


_found: dict[str, _Hierarchy] | None = None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError:
        return ""


def parse_mountinfo(
    text: str,
) -> tuple[dict[str, tuple[str, str]], tuple[str, str] | None]:
    """Return the cgroup mounts of a ``/proc/<pid>/mountinfo``.

    Returns:
        The v1 mounts by controller, and the v2 mount; each as (the mount's
        root in its hierarchy, its mount point).
    """
    v1: dict[str, tuple[str, str]] = {}
    v2: tuple[str, str] | None = None
    for line in text.splitlines():
        head, _, tail = line.partition(" - ")
        fields, described = head.split(), tail.split()
        if len(fields) < 5 or len(described) < 3:
            continue
        root, point = fields[3], fields[4]
        fstype, options = described[0], described[2].split(",")
        if fstype == "cgroup2" and v2 is None:
            v2 = (root, point)
        elif fstype == "cgroup":
            for option in options:
                v1.setdefault(option, (root, point))
    return v1, v2


def parse_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """Return a process's groups from its ``/proc/<pid>/cgroup``.

    Returns:
        The path by v1 controller, and the path in the v2 hierarchy.
    """
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and not controllers:
            v2 = path
        for controller in filter(None, controllers.split(",")):
            v1[controller] = path
    return v1, v2


def cgroup_directory(mount: tuple[str, str], path: str) -> str:
    """Return the directory of ``path`` (as /proc/self/cgroup says it) in ``mount``.

    A mount may show only part of its hierarchy (in a container): its root.
    """
    root, point = mount
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return os.path.join(point, path.lstrip("/"))


def _writable(parent: str) -> bool:
    """Tell whether run groups can be made in ``parent``: make and remove one."""
    probe = os.path.join(parent, f"eventkit-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except FileExistsError:
        pass
    except OSError:
        return False
    with contextlib.suppress(OSError):
        os.rmdir(probe)
    return True


def _discover() -> dict[str, _Hierarchy]:
    mounts_v1, mount_v2 = parse_mountinfo(_read("/proc/self/mountinfo"))
    paths_v1, path_v2 = parse_cgroup(_read("/proc/self/cgroup"))
    found: dict[str, _Hierarchy] = {}
    for controller in ("pids", "memory"):
        if controller in mounts_v1 and controller in paths_v1:
            parent = cgroup_directory(mounts_v1[controller], paths_v1[controller])
            if _writable(parent):
                found[controller] = _Hierarchy(parent, unified=False)
        elif mount_v2 is not None and path_v2 is not None:
            parent = cgroup_directory(mount_v2, path_v2)
            enabled = _read(os.path.join(parent, "cgroup.subtree_control")).split()
            if controller in enabled and _writable(parent):
                found[controller] = _Hierarchy(parent, unified=True)
    return found


def available() -> frozenset[str]:
    """Return the controllers run groups can use here: ``"pids"``, ``"memory"``.

    Found out on the first call (a probe directory made and removed in each
    hierarchy), then cached for the life of the process.
    """
    global _found
    if _found is None:
        _found = _discover()
    return frozenset(_found)


def _write(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as file:
        file.write(value)


class RunCgroup:
    """The control group(s) of one run: its limits, its members, its end.

    Attributes:
        directories: The groups made: one per v1 hierarchy, or one in v2.
        limits: What is enforced: ``"processes"``, ``"memory"``.
    """

    __slots__ = ("_memory", "directories", "limits")

    def __init__(self, directories: list[str], limits: frozenset[str]) -> None:
        self.directories = directories
        self.limits = limits
        #: The directory whose files tell about memory, if limited.
        self._memory: tuple[str, bool] | None = None

    @classmethod
    def create(
        cls, *, max_processes: int | None, max_memory_bytes: int | None
    ) -> RunCgroup | None:
        """Make a run's group with these limits, where the controllers allow.

        Returns:
            The group, or None when no limit asked for can be set in one
            (then nothing was made).

        Raises:
            OSError: If a group could not be made or limited.
        """
        available()
        assert _found is not None
        wanted = {}
        if max_processes is not None and "pids" in _found:
            wanted["pids"] = _found["pids"]
        if max_memory_bytes is not None and "memory" in _found:
            wanted["memory"] = _found["memory"]
        if not wanted:
            return None
        name = f"eventkit-{os.getpid()}-{next(_counter)}"
        made: dict[str, str] = {}
        group = cls([], frozenset())
        try:
            for controller, hierarchy in wanted.items():
                directory = os.path.join(hierarchy.parent, name)
                if directory not in made.values():
                    os.mkdir(directory)
                    group.directories.append(directory)
                made[controller] = directory
            if "pids" in made:
                _write(os.path.join(made["pids"], "pids.max"), str(max_processes))
            if "memory" in made:
                assert max_memory_bytes is not None
                unified = wanted["memory"].unified
                group._limit_memory(made["memory"], max_memory_bytes, unified=unified)
                group._memory = (made["memory"], unified)
        except OSError:
            for directory in group.directories:
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
            raise
        names = {"pids": "processes", "memory": "memory"}
        group.limits = frozenset(names[controller] for controller in made)
        return group

    @staticmethod
    def _limit_memory(directory: str, limit: int, *, unified: bool) -> None:
        if unified:
            _write(os.path.join(directory, "memory.max"), str(limit))
            # Swap would only slow the run down on its way to the same end.
            with contextlib.suppress(OSError):
                _write(os.path.join(directory, "memory.swap.max"), "0")
            # One member over the limit ends the whole run, as with a timeout.
            with contextlib.suppress(OSError):
                _write(os.path.join(directory, "memory.oom.group"), "1")
            return
        _write(os.path.join(directory, "memory.limit_in_bytes"), str(limit))
        # Only with swap accounting; memory and swap together, no swap then.
        with contextlib.suppress(OSError):
            _write(os.path.join(directory, "memory.memsw.limit_in_bytes"), str(limit))

    @property
    def procs_files(self) -> tuple[str, ...]:
        """The files a process joins the group by, writing ``0`` into each."""
        return tuple(os.path.join(d, "cgroup.procs") for d in self.directories)

    def members(self) -> set[int]:
        """Return the pids in the group (every hierarchy's)."""
        pids: set[int] = set()
        for path in self.procs_files:
            try:
                with open(path, encoding="ascii") as file:
                    pids.update(int(line) for line in file.read().split())
            except (OSError, ValueError):
                continue
        return pids

    def kill(self) -> None:
        """SIGKILL every member, including those forked meanwhile."""
        for directory in self.directories:
            # cgroup v2 (Linux 5.14): the kernel kills the whole group at once.
            with contextlib.suppress(OSError):
                _write(os.path.join(directory, "cgroup.kill"), "1")
        # Otherwise, a member by member: repeated while a fork slips in.
        for _ in range(10):
            members = self.members()
            if not members:
                return
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def oom_kills(self) -> int:
        """Return how many members the kernel killed for the memory limit."""
        if self._memory is None:
            return 0
        directory, unified = self._memory
        name = "memory.events" if unified else "memory.oom_control"
        try:
            with open(os.path.join(directory, name), encoding="ascii") as file:
                lines = file.read().splitlines()
        except OSError:
            return 0
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    async def remove(self) -> None:
        """Kill what is left, then remove the group once the kernel lets go of it."""
        self.kill()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _REMOVE_WITHIN
        for directory in self.directories:
            while True:
                try:
                    os.rmdir(directory)
                except FileNotFoundError:
                    break
                except OSError:
                    # Busy: members still exiting.
                    if loop.time() > deadline:
                        break
                    self.kill()
                    await asyncio.sleep(0.005)
                    continue
                break
