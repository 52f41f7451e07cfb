"""Tests for :mod:`eventkit.sources.local.cgroup`: parsing, and real run groups."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Final

import pytest

from eventkit.sources.local import cgroup
from eventkit.sources.local.cgroup import RunCgroup
from tests.sources.local.runs import needs_memory_cgroup, needs_pids_cgroup

if TYPE_CHECKING:
    from pathlib import Path

#: A machine with cgroup v1 controllers beside the unified hierarchy.
HYBRID_MOUNTINFO: Final = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP: Final = """\
8:pids:/
4:memory:/jobs/abc
2:cpu,cpuacct:/
0::/
"""
#: A container seeing only its own part of the unified hierarchy.
CONTAINER_MOUNTINFO: Final = (
    "1 0 0:1 /ctr/one /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
)


def test_parse_mountinfo_hybrid() -> None:
    """v1 mounts by controller, and the v2 mount."""
    v1, v2 = cgroup.parse_mountinfo(HYBRID_MOUNTINFO)
    assert ("/", "/sys/fs/cgroup/memory") == v1["memory"]
    assert ("/", "/sys/fs/cgroup/pids") == v1["pids"]
    assert ("/", "/sys/fs/cgroup/cpu,cpuacct") == v1["cpuacct"]
    assert ("/", "/sys/fs/cgroup/unified") == v2


def test_parse_cgroup_hybrid() -> None:
    """Our path by v1 controller, and in the unified hierarchy."""
    v1, v2 = cgroup.parse_cgroup(HYBRID_CGROUP)
    assert {"pids": "/", "memory": "/jobs/abc", "cpu": "/", "cpuacct": "/"} == v1
    assert "/" == v2


def test_directory_of_our_group() -> None:
    """A path in a mount, also where the mount shows a subtree only."""
    v1, _ = cgroup.parse_mountinfo(HYBRID_MOUNTINFO)
    assert "/sys/fs/cgroup/memory/jobs/abc" == cgroup.cgroup_directory(
        v1["memory"], "/jobs/abc"
    )
    _, v2 = cgroup.parse_mountinfo(CONTAINER_MOUNTINFO)
    assert v2 is not None
    assert "/sys/fs/cgroup/sub" == cgroup.cgroup_directory(v2, "/ctr/one/sub")
    assert "/sys/fs/cgroup/" == cgroup.cgroup_directory(v2, "/ctr/one")
    assert "/sys/fs/cgroup/ctr/oneish" == cgroup.cgroup_directory(v2, "/ctr/oneish")


def test_nothing_asked_nothing_made() -> None:
    """No limit asked for: no group."""
    assert RunCgroup.create(max_processes=None, max_memory_bytes=None) is None


def test_nothing_available_nothing_made(without_cgroups: None) -> None:
    """No controller writable: no group, whatever is asked."""
    assert RunCgroup.create(max_processes=5, max_memory_bytes=1 << 30) is None
    assert frozenset() == cgroup.available()


#: Joins the groups named on its command line, says so, then waits.
JOIN_AND_WAIT: Final = (
    "import os, sys, time\n"
    "for path in sys.argv[1:]:\n"
    "    open(path, 'w').write('0')\n"
    "os.write(1, b'in\\n')\n"
    "time.sleep(30)\n"
)


def _remove(group: RunCgroup) -> None:
    asyncio.run(group.remove())


@needs_pids_cgroup
def test_pids_group_life() -> None:
    """A group is made with its limit, counts its members, kills them, goes away."""
    group = RunCgroup.create(max_processes=7, max_memory_bytes=None)
    assert group is not None
    try:
        assert frozenset({"processes"}) == group.limits
        [directory] = group.directories
        with open(os.path.join(directory, "pids.max")) as file:
            assert "7" == file.read().strip()
        argv = [sys.executable, "-c", JOIN_AND_WAIT, *group.procs_files]
        with subprocess.Popen(argv, stdout=subprocess.PIPE) as child:
            assert child.stdout is not None
            assert b"in\n" == child.stdout.readline()
            assert {child.pid} == group.members()
            group.kill()
            assert -signal.SIGKILL == child.wait()
        assert set() == group.members()
    finally:
        _remove(group)
    assert not os.path.exists(directory)


@needs_pids_cgroup
def test_remove_kills_what_is_left() -> None:
    """Removing a group with members kills them first."""
    group = RunCgroup.create(max_processes=5, max_memory_bytes=None)
    assert group is not None
    argv = [sys.executable, "-c", JOIN_AND_WAIT, *group.procs_files]
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as child:
        assert child.stdout is not None
        assert b"in\n" == child.stdout.readline()
        _remove(group)
        assert -signal.SIGKILL == child.wait()
    assert not any(os.path.exists(d) for d in group.directories)


@needs_memory_cgroup
def test_memory_group_counts_oom_kills() -> None:
    """The kernel's kill for the memory limit is counted."""
    group = RunCgroup.create(max_processes=None, max_memory_bytes=64 << 20)
    assert group is not None
    try:
        assert frozenset({"memory"}) == group.limits
        assert 0 == group.oom_kills()
        code = (
            "import sys\n"
            "for path in sys.argv[1:]:\n"
            "    open(path, 'w').write('0')\n"
            "buffer = bytearray(256 << 20)\n"
        )
        child = subprocess.run(
            [sys.executable, "-c", code, *group.procs_files], check=False
        )
        assert -signal.SIGKILL == child.returncode
        assert 1 <= group.oom_kills()
    finally:
        _remove(group)


def test_create_undoes_a_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A limit that cannot be set: the error, and nothing left behind."""
    monkeypatch.setattr(
        cgroup, "_found", {"pids": cgroup._Hierarchy(os.fspath(tmp_path), False)}
    )

    def refuse(path: str, value: str) -> None:
        raise PermissionError(f"cannot write {path}")

    monkeypatch.setattr(cgroup, "_write", refuse)
    with pytest.raises(PermissionError, match=r"pids\.max"):
        RunCgroup.create(max_processes=5, max_memory_bytes=None)
    assert [] == list(tmp_path.iterdir())
