"""Helpers for the local executor's tests: reading runs, watching processes."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Final

import pytest

from eventkit.events import OUTPUT_TYPES
from eventkit.sources.local import cgroup, isolation

if TYPE_CHECKING:
    from pathlib import Path

    from eventkit.events import Event
    from eventkit.streams import EventStream

__all__ = [
    "FORKS",
    "GONE_WITHIN",
    "gone",
    "is_zombie",
    "needs_bwrap",
    "needs_memory_cgroup",
    "needs_pids_cgroup",
    "needs_root",
    "output",
    "pid_of",
    "read",
    "read_timed",
    "run_dirs",
    "types",
]

#: How long a killed process may take to disappear (or turn zombie) at most.
GONE_WITHIN: Final = 2.0
#: Forks children that wait, until a fork fails; prints how many it made.
FORKS: Final = """
import os, time
count = 0
try:
    while count < 500:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        count += 1
    print("not stopped", count)
except OSError as error:
    print("stopped", count, error.errno)
"""

#: Tests that need a bubblewrap sandbox to start on this machine.
needs_bwrap: Final = pytest.mark.skipif(
    not isolation.probe().bwrap, reason=f"no sandbox: {isolation.probe().reason}"
)
#: Tests that need run groups with a memory or pids controller.
needs_memory_cgroup: Final = pytest.mark.skipif(
    "memory" not in cgroup.available(), reason="no writable memory cgroup here"
)
needs_pids_cgroup: Final = pytest.mark.skipif(
    "pids" not in cgroup.available(), reason="no writable pids cgroup here"
)
#: Tests of what running as root changes.
needs_root: Final = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


async def read(stream: EventStream) -> list[Event]:
    """Return every event of ``stream``."""
    async with stream.stream() as streamer:
        events = [event async for event in streamer]
    return events


async def read_timed(stream: EventStream) -> list[tuple[float, Event]]:
    """Return every event of ``stream`` with its time of arrival (monotonic)."""
    async with stream.stream() as streamer:
        timed = [(time.monotonic(), event) async for event in streamer]
    return timed


def types(events: list[Event]) -> list[str]:
    """Return the types of ``events``, in order, a run of output types as one.

    ``python -u`` writes what one ``print`` prints and its newline in two
    system calls, which may arrive as one chunk or two.
    """
    kinds: list[str] = []
    for event in events:
        if not (kinds and event.type in OUTPUT_TYPES and kinds[-1] == event.type):
            kinds.append(event.type)
    return kinds


def output(events: list[Event], kind: str = "stdout") -> str:
    """Return the ``kind`` output of ``events``, joined."""
    return "".join(event.data for event in events if event.type == kind)


def pid_of(events: list[Event]) -> int:
    """Return the pid the ``started`` event reports."""
    pid = events[0].attrs["pid"]
    assert isinstance(pid, int)
    return pid


def is_zombie(pid: int) -> bool:
    """Tell whether process ``pid`` is dead and waiting to be reaped (or gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        # Gone before the open, or between the open and the read.
        return True


async def gone(pid: int) -> bool:
    """Tell whether process ``pid`` is gone, or dead and waiting to be reaped.

    A killed grandchild is reaped by whatever adopts it, which may be slow
    (or never happen in a container), so a zombie counts as gone.
    """
    deadline = time.monotonic() + GONE_WITHIN
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if is_zombie(pid):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)


def run_dirs(root: Path) -> list[Path]:
    """Return the temporary run directories left under ``root``."""
    return sorted(root.glob("eventkit-*"))
