"""Tests for :mod:`eventkit.sources.local.procfs`: this machine's real processes."""

from __future__ import annotations

import os
import subprocess

from eventkit.sources.local import procfs


def test_snapshot_holds_this_process() -> None:
    """The table has this process, its parent and its group."""
    table = procfs.snapshot()
    assert procfs.Process(os.getppid(), os.getpgrp(), False) == table[os.getpid()]


def test_descendants_and_group_members() -> None:
    """A child in its own group, and its child: descendants; the group's members."""
    with subprocess.Popen(
        ["sh", "-c", "sleep 30 & echo $!; wait"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    ) as leader:
        try:
            assert leader.stdout is not None
            grandchild = int(leader.stdout.readline())
            table = procfs.snapshot()
            mine = set(procfs.descendants(os.getpid(), table))
            assert {leader.pid, grandchild} <= mine
            assert [grandchild] == procfs.descendants(leader.pid, table)
            members = set(procfs.group_members(leader.pid, table))
            assert {leader.pid, grandchild} == members
        finally:
            os.killpg(leader.pid, 9)
    assert procfs.is_gone(leader.pid)


def test_pipe_holders() -> None:
    """Whoever holds a pipe open is found by its inode; the excluded pid is not."""
    read_end, write_end = os.pipe()
    try:
        holder = subprocess.Popen(["sleep", "30"], stdout=write_end)
        try:
            inode = procfs.pipe_inode(read_end)
            assert [holder.pid] == procfs.pipe_holders([inode], exclude=os.getpid())
            assert os.getpid() in procfs.pipe_holders([inode], exclude=holder.pid)
        finally:
            holder.kill()
            holder.wait()
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_pid_that_does_not_exist_is_gone() -> None:
    """No such process: gone; this one: not."""
    assert procfs.is_gone(1 << 30)
    assert not procfs.is_gone(os.getpid())
