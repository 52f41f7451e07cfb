"""Tests for :mod:`eventkit.sources.local.process`: flow control, kills, lingering."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import time
from typing import Any

import pytest

from eventkit.sources.local import local, process
from tests.sources.local.runs import gone, output, pid_of, read, types


async def test_large_output_arrives_whole_with_a_slow_consumer() -> None:
    """Megabytes of output arrive complete and in order past the backpressure."""
    code = (
        "import sys\nfor i in range(40):\n    sys.stdout.write(str(i % 10) * 50_000)\n"
    )
    received: list[str] = []
    async with local(code).stream() as streamer:
        async for event in streamer:
            if event.type == "stdout":
                received.append(event.data)
                await asyncio.sleep(0.002)  # slower than the child writes
    assert "".join(str(i % 10) * 50_000 for i in range(40)) == "".join(received)


async def test_spawn_failure_is_an_error_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process the OS refuses to start is an error event, not an exception."""
    monkeypatch.setattr(shutil, "which", lambda _: "/nonexistent/bash")
    events = await read(local("echo 1", language="bash"))
    assert types(events) == ["started", "error", "completed"]
    assert events[1].attrs["code"] == "spawn_failed"
    assert events[0].attrs["pid"] is None
    assert events[2].attrs["success"] is False


async def test_exit_kills_what_the_process_left_running() -> None:
    """The run ends with its main process; background jobs are killed."""
    begin = time.monotonic()
    events = await read(local("sleep 30 &\necho $!", language="bash"))
    assert time.monotonic() - begin < 1
    assert events[-1].attrs["success"] is True
    assert await gone(int(output(events)))


async def test_pipes_held_from_outside_the_group_are_given_up() -> None:
    """A process that left the group cannot keep the run open; it dies at the end."""
    code = (
        "import subprocess\n"
        "child = subprocess.Popen(['sleep', '30'], start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
    )
    begin = time.monotonic()
    events = await read(local(code))
    escaped = int(output(events))
    try:
        assert time.monotonic() - begin < 2
        kinds = [kind for kind in types(events) if kind != "stdout"]
        assert kinds == ["started", "result", "completed"]
        assert events[-1].attrs["success"] is True
        # It held the run's pipes: found in /proc and killed with the run.
        assert await gone(escaped)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(escaped, 9)


async def test_pipes_held_from_outside_are_read_while_they_speak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Output from outside the group after the exit is read until it stops."""
    monkeypatch.setattr(process, "_LINGER", 0.2)
    # The outsider writes once before the main process exits (it waits for
    # the file), the rest after.
    script = (
        "echo 1; touch begun; for i in 2 3 4 5; do sleep 0.02; echo $i; done; "
        "exec sleep 30"
    )
    code = (
        "import os, subprocess, time\n"
        f"child = subprocess.Popen(['sh', '-c', {script!r}], start_new_session=True)\n"
        # One write: print() under -u writes the newline apart, and the
        # outsider's "1" could land in between.
        "os.write(1, f'pid {child.pid}\\n'.encode())\n"
        "while not os.path.exists('begun'):\n"
        "    time.sleep(0.005)\n"
    )
    events = await read(local(code))
    lines = output(events).splitlines()
    [pid] = [int(line[4:]) for line in lines if line.startswith("pid ")]
    try:
        assert [line for line in lines if not line.startswith("pid ")] == list("12345")
        assert events[-1].attrs["success"] is True
        assert await gone(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


async def test_closed_pipes_do_not_end_the_run() -> None:
    """A process that closes stdout and stderr still runs into its timeout."""
    code = (
        "import os, sys, time\n"
        "sys.stdout.write('bye\\n')\n"
        "os.close(1)\n"
        "os.close(2)\n"
        "time.sleep(30)\n"
    )
    events = await read(local(code, timeout=0.3))
    assert output(events) == "bye\n"
    assert types(events)[-3:] == ["resource_limit", "result", "completed"]
    assert events[-3].attrs["limit"] == "timeout"
    assert await gone(pid_of(events))


async def test_cancel_while_waiting_for_the_exit() -> None:
    """Cancelled while it waits for the exit, the stream still kills and reaps."""
    code = "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(30)\n"
    iterator = aiter(local(code).source)
    started = await anext(iterator)
    step = asyncio.ensure_future(anext(iterator))
    await asyncio.sleep(0.1)  # both pipes end: it now waits for the exit
    assert not step.done()
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    with pytest.raises(ProcessLookupError):
        os.kill(started.attrs["pid"], 0)
    await iterator.aclose()  # type: ignore[attr-defined]


def test_memory_cap_is_kept_under_the_hard_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cap above the hard limit is lowered to it: raising it would fail."""
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1 << 20, 1 << 30))
    assert (resource.RLIMIT_AS, (1 << 30, 1 << 30)) == process.memory_rlimit(1 << 40)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (-1, resource.RLIM_INFINITY))
    assert (resource.RLIMIT_AS, (1 << 40, 1 << 40)) == process.memory_rlimit(1 << 40)


def test_process_cap_is_kept_under_the_hard_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RLIMIT_NPROC too is lowered to the hard limit."""
    monkeypatch.setattr(resource, "getrlimit", lambda _: (10, 100))
    assert (resource.RLIMIT_NPROC, (100, 100)) == process.process_rlimit(1000)
    assert (resource.RLIMIT_NPROC, (50, 50)) == process.process_rlimit(50)


# --- when output is handed over: whole lines at once, partial lines a moment later ---


async def test_whole_lines_go_at_once_the_line_being_written_waits() -> None:
    """Whole lines are taken at once; the end of the newest read waits for its rest."""
    child = process.ChildProcess(asyncio.get_running_loop())
    child.pipe_data_received(1, b"one\ntw")
    assert (1, b"one\n") == child.take()
    assert child.take() is None
    child.pipe_data_received(1, b"o\n")
    assert (1, b"two\n") == child.take()
    assert child.take() is None


async def test_a_partial_line_goes_after_a_moment() -> None:
    """A line that does not end soon is handed over without its newline."""
    child = process.ChildProcess(asyncio.get_running_loop())
    child.pipe_data_received(1, b"Password: ")
    assert child.take() is None
    await child.changed()  # the timer wakes the consumer
    assert (1, b"Password: ") == child.take()


async def test_later_output_releases_a_partial_line() -> None:
    """Output of the other pipe, or a pipe's end, hands a partial line over first."""
    child = process.ChildProcess(asyncio.get_running_loop())
    child.pipe_data_received(1, b"progress 10%")
    child.pipe_data_received(2, b"warning\n")
    assert (1, b"progress 10%") == child.take()
    assert (2, b"warning\n") == child.take()
    child.pipe_data_received(1, b"last words")
    child.pipe_connection_lost(1, None)
    assert (1, b"last words") == child.take()
    assert (1, None) == child.take()


async def test_a_pipe_closed_before_connection_made_is_skipped() -> None:
    """A child that exited at once may have its pipes closed already: no error.

    It failed before: ``fileno()`` of the closed pipe raised ValueError in the
    loop's callback (635 times in one ``make bench``).
    """
    read_end, write_end = os.pipe()
    os.close(write_end)
    closed = os.fdopen(read_end, "rb")
    closed.close()
    open_read, open_write = os.pipe()
    still_open = os.fdopen(open_read, "rb")

    class Pipe(asyncio.ReadTransport):
        def __init__(self, file: Any) -> None:
            super().__init__({"pipe": file})

    class Transport(asyncio.SubprocessTransport):
        def get_pid(self) -> int:
            return 1

        def get_pipe_transport(self, fd: int) -> Any:
            return Pipe(closed if fd == 1 else still_open)

    child = process.ChildProcess(asyncio.get_running_loop())
    child.connection_made(Transport())
    assert [os.fstat(open_write).st_ino] == child._inodes
    still_open.close()
    os.close(open_write)


async def test_output_pipes_hold_a_whole_read() -> None:
    """Both output pipes are widened to what the event loop reads at once."""
    code = (
        "from fcntl import fcntl, F_GETPIPE_SZ\n"
        "print(fcntl(1, F_GETPIPE_SZ), fcntl(2, F_GETPIPE_SZ))\n"
    )
    events = await read(local(code))
    assert [process._PIPE_SIZE] * 2 == [int(size) for size in output(events).split()]
