"""Tests for :mod:`eventkit.sources.local.source`: real subprocesses, real pipes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from errno import EAGAIN
from typing import TYPE_CHECKING, Any, Final

import pytest
import structlog

from eventkit.sources.local import isolation, local, procfs, source as source_module
from tests.sources.local.runs import (
    FORKS,
    gone,
    is_zombie,
    needs_memory_cgroup,
    needs_pids_cgroup,
    output,
    pid_of,
    read,
    read_timed,
    run_dirs,
    types,
)

if TYPE_CHECKING:
    from pathlib import Path

    from eventkit.events import Event


# --- the events of a run -----------------------------------------------------------


async def test_print_one(tmp_root: Path) -> None:
    """print(1): started, stdout, result 0, completed True, numbered from 0."""
    events = await read(local("print(1)"))
    assert types(events) == ["started", "stdout", "result", "completed"]
    started, result, completed = events[0], events[-2], events[-1]
    assert started.attrs["language"] == "python"
    assert isinstance(started.attrs["pid"], int)
    assert output(events) == "1\n"
    assert result.attrs["exit_code"] == 0
    assert isinstance(result.attrs["execution_time"], float)
    assert 0 < result.attrs["execution_time"] < 5
    assert completed.attrs["success"] is True
    assert list(range(len(events))) == [event.sequence for event in events]
    assert len({event.run for event in events}) == 1
    assert all(abs(event.timestamp - time.time()) < 60 for event in events)
    assert run_dirs(tmp_root) == []


async def test_run_id_given() -> None:
    """A given run id marks every event."""
    events = await read(local("print(1)", run="my-run"))
    assert {"my-run"} == {event.run for event in events}


async def test_interleaved_stdout_and_stderr_in_order() -> None:
    """Writes alternating between stdout and stderr come out in their order."""
    code = (
        "import sys, time\n"
        "for i in range(3):\n"
        "    sys.stdout.write(f'out{i}\\n')\n"
        "    time.sleep(0.02)\n"
        "    sys.stderr.write(f'err{i}\\n')\n"
        "    time.sleep(0.02)\n"
    )
    events = await read(local(code))
    chunks = [(e.type, e.data) for e in events if e.type in ("stdout", "stderr")]
    assert chunks == [
        ("stdout", "out0\n"),
        ("stderr", "err0\n"),
        ("stdout", "out1\n"),
        ("stderr", "err1\n"),
        ("stdout", "out2\n"),
        ("stderr", "err2\n"),
    ]


async def test_output_streams_before_the_exit() -> None:
    """The first output arrives while the process still runs."""
    code = (
        "import sys, time\n"
        "sys.stdout.write('early\\n')\n"
        "time.sleep(0.5)\n"
        "sys.stdout.write('late\\n')\n"
    )
    timed = await read_timed(local(code))
    arrival = {event.data: when for when, event in timed if event.type == "stdout"}
    done = timed[-1][0]
    assert done - arrival["early\n"] >= 0.4
    assert done - arrival["late\n"] < 0.3


async def test_chunks_are_not_only_whole_lines() -> None:
    """Output without a newline is delivered without waiting for one."""
    code = (
        "import sys, time\n"
        "sys.stdout.write('partial')\n"
        "sys.stdout.flush()\n"
        "time.sleep(0.2)\n"
        "sys.stdout.write(' rest')\n"
    )
    events = await read(local(code))
    assert [e.data for e in events if e.type == "stdout"] == ["partial", " rest"]


async def test_multibyte_character_split_across_writes() -> None:
    """A character written in two parts comes out whole, in one event."""
    code = (
        "import sys, time\n"
        "sys.stdout.buffer.write(b'\\xe2')\n"
        "sys.stdout.buffer.flush()\n"
        "time.sleep(0.1)\n"
        "sys.stdout.buffer.write(b'\\x82\\xac!')\n"
    )
    events = await read(local(code))
    assert [e.data for e in events if e.type == "stdout"] == ["€!"]


async def test_invalid_utf8_is_replaced() -> None:
    """Bytes that are not UTF-8 become U+FFFD, a truncated end included."""
    code = "import sys\nsys.stdout.buffer.write(b'a\\xffb\\xe2')\n"
    events = await read(local(code))
    assert output(events) == "a\ufffdb\ufffd"


async def test_stdin_is_empty() -> None:
    """The child reads end-of-file from stdin instead of waiting for input."""
    events = await read(local("import sys\nprint(repr(sys.stdin.read()))"))
    assert output(events) == "''\n"


async def test_traceback_names_the_code_file() -> None:
    """The code runs from a file, so a traceback names it and the line."""
    events = await read(local("x = 1\nraise RuntimeError('boom')\n"))
    err = output(events, "stderr")
    assert "main.py" in err
    assert "line 2" in err
    assert "RuntimeError: boom" in err


# --- exit and limits ---------------------------------------------------------------


async def test_nonzero_exit() -> None:
    """Exit code 3: result says 3, completed says failure, no error event."""
    events = await read(local("raise SystemExit(3)"))
    assert types(events) == ["started", "result", "completed"]
    assert events[1].attrs["exit_code"] == 3
    assert events[2].attrs["success"] is False


async def test_timeout_kills_the_process() -> None:
    """Past the timeout the process is interrupted and the run says so."""
    begin = time.monotonic()
    events = await read(local("import time; time.sleep(30)", timeout=0.3))
    assert time.monotonic() - begin < 2
    assert types(events) == [
        "started",
        "stderr",
        "resource_limit",
        "result",
        "completed",
    ]
    assert "KeyboardInterrupt" in output(events, "stderr")
    limit, result, completed = events[-3:]
    assert {"limit": "timeout", "signal": "SIGINT"} == limit.attrs
    assert limit.data == "timed out after 0.3s"
    assert -2 == result.attrs["exit_code"]
    assert "SIGINT" == result.attrs["signal"]
    assert 0.3 <= result.attrs["execution_time"] < 2
    assert completed.attrs["success"] is False
    with pytest.raises(ProcessLookupError):
        os.kill(pid_of(events), 0)


async def test_timeout_without_grace_kills_at_once() -> None:
    """interrupt_grace=0: the timeout is a SIGKILL, as before graceful stops."""
    events = await read(
        local("import time; time.sleep(30)", timeout=0.3, interrupt_grace=0)
    )
    assert types(events) == ["started", "resource_limit", "result", "completed"]
    assert {"limit": "timeout", "signal": "SIGKILL"} == events[1].attrs
    assert -9 == events[2].attrs["exit_code"]
    assert "SIGKILL" == events[2].attrs["signal"]


async def test_timeout_kills_what_ignores_the_interrupt() -> None:
    """A program ignoring SIGINT gets SIGKILL once the grace is over."""
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    begin = time.monotonic()
    events = await read(local(code, timeout=0.3, interrupt_grace=0.3))
    assert 0.6 <= time.monotonic() - begin < 3
    assert {"limit": "timeout", "signal": "SIGKILL"} == events[-3].attrs
    assert -9 == events[-2].attrs["exit_code"]
    assert events[-2].attrs["execution_time"] >= 0.6


async def test_timeout_keeps_the_output_before_it() -> None:
    """Output written before the timeout is delivered before resource_limit."""
    code = "import sys, time\nsys.stdout.write('before\\n')\ntime.sleep(30)\n"
    events = await read(local(code, timeout=0.3, interrupt_grace=0))
    assert types(events) == [
        "started",
        "stdout",
        "resource_limit",
        "result",
        "completed",
    ]
    assert output(events) == "before\n"


async def test_timeout_kills_the_process_group() -> None:
    """A grandchild in the process group dies with the child."""
    code = (
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '30'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    events = await read(local(code, timeout=0.3, interrupt_grace=0))
    assert events[-3].attrs["limit"] == "timeout"
    assert await gone(pid_of(events))
    assert await gone(int(output(events)))


async def test_no_timeout() -> None:
    """timeout=None sets no time limit."""
    events = await read(local("print(1)", timeout=None))
    assert events[-1].attrs["success"] is True


async def test_output_cap_is_exact() -> None:
    """Exactly the first max_output_bytes bytes, then resource_limit output."""
    code = "import sys\nsys.stdout.write('x' * 10000)\n"
    events = await read(local(code, max_output_bytes=1000))
    assert output(events) == "x" * 1000
    kinds = types(events)
    assert kinds[-3:] == ["resource_limit", "result", "completed"]
    assert {"stdout"} == set(kinds[1:-3])
    assert events[-3].attrs["limit"] == "output"
    # Interrupted, or exited before the interrupt came: a failure either way.
    assert events[-2].attrs["exit_code"] in (0, -2)
    assert events[-1].attrs["success"] is False
    assert await gone(pid_of(events))


async def test_output_cap_stops_endless_output() -> None:
    """Output that never stops is cut at the cap and the writer killed."""
    code = "import sys\nwhile True:\n    sys.stdout.write('y' * 100)\n"
    events = await read(local(code, max_output_bytes=5000))
    assert output(events) == "y" * 5000
    assert {"limit": "output", "signal": "SIGINT"} == events[-3].attrs
    # KeyboardInterrupt, its traceback past the cap and dropped.
    assert events[-2].attrs["exit_code"] == -2
    assert "" == output(events, "stderr")


async def test_output_cap_counts_both_streams() -> None:
    """stdout and stderr share the cap."""
    code = (
        "import sys, time\n"
        "print('a' * 60, flush=True)\n"
        "time.sleep(0.05)\n"
        "print('b' * 60, file=sys.stderr, flush=True)\n"
    )
    events = await read(local(code, max_output_bytes=100))
    assert output(events) == "a" * 60 + "\n"
    assert output(events, "stderr") == "b" * 39
    assert events[-3].attrs["limit"] == "output"


async def test_output_cap_reached_but_not_exceeded() -> None:
    """Output of exactly max_output_bytes bytes is no limit."""
    events = await read(local("print('x' * 9)", max_output_bytes=10))
    assert output(events) == "x" * 9 + "\n"
    assert types(events)[-2:] == ["result", "completed"]
    assert events[-1].attrs["success"] is True


async def test_output_cap_never_splits_a_character() -> None:
    """A character the cap cuts in two is dropped, not mangled."""
    code = "print('ab€')"  # 'ab' then the three bytes of '€'
    events = await read(local(code, max_output_bytes=3))
    assert output(events) == "ab"
    assert events[-3].attrs["limit"] == "output"


async def test_memory_cap(without_cgroups: None) -> None:
    """Allocating past max_memory_bytes (RLIMIT_AS): resource_limit memory."""
    code = "buffer = bytearray(1 << 30)"
    events = await read(local(code, max_memory_bytes=200 << 20))
    assert types(events)[-3:] == ["resource_limit", "result", "completed"]
    assert {"limit": "memory", "signal": None} == events[-3].attrs
    assert "MemoryError" in output(events, "stderr")
    assert events[-1].attrs["success"] is False


@needs_memory_cgroup
async def test_memory_cap_in_a_cgroup() -> None:
    """With a memory cgroup, the kernel's kill for the cap is a memory limit."""
    code = "buffer = bytearray(1 << 30)"
    events = await read(local(code, max_memory_bytes=200 << 20))
    assert types(events)[-3:] == ["resource_limit", "result", "completed"]
    assert {"limit": "memory", "signal": "SIGKILL"} == events[-3].attrs
    assert -9 == events[-2].attrs["exit_code"]
    assert events[-1].attrs["success"] is False


#: Four children of 100 MiB each, alive at once: 400 MiB for the whole tree.
FOUR_CHILDREN: Final = """
import subprocess, sys
child = (
    "import sys, time\\n"
    "buffer = bytearray(100 << 20)\\n"
    "print('allocated', flush=True)\\n"
    "time.sleep(2)\\n"
)
children = [subprocess.Popen([sys.executable, "-c", child]) for _ in range(4)]
print([child.wait() for child in children])
"""


@needs_memory_cgroup
async def test_memory_cap_covers_the_whole_tree() -> None:
    """Four children of 100 MiB under a 300 MiB cap: a memory limit, not a pass."""
    events = await read(local(FOUR_CHILDREN, max_memory_bytes=300 << 20))
    assert "memory" == events[-3].attrs["limit"]
    assert events[-1].attrs["success"] is False


async def test_memory_cap_per_process_without_a_cgroup(without_cgroups: None) -> None:
    """Without a cgroup, RLIMIT_AS caps each process: four children pass 300 MiB."""
    events = await read(local(FOUR_CHILDREN, max_memory_bytes=300 << 20))
    assert ["started", "stdout", "result", "completed"] == types(events)
    printed = output(events)
    assert 4 == printed.count("allocated")
    assert printed.endswith("[0, 0, 0, 0]\n")


async def test_memory_cap_too_small_to_start() -> None:
    """A cap the interpreter cannot even start under is a memory limit too."""
    events = await read(local("print(1)", max_memory_bytes=1))
    assert types(events) == ["started", "resource_limit", "result", "completed"]
    assert events[1].attrs["limit"] == "memory"


async def test_memory_cap_too_small_to_start_per_process(
    without_cgroups: None,
) -> None:
    """Under RLIMIT_AS too."""
    events = await read(local("print(1)", max_memory_bytes=1))
    assert types(events) == ["started", "resource_limit", "result", "completed"]
    assert events[1].attrs["limit"] == "memory"


async def test_memory_cap_not_hit() -> None:
    """A failure unrelated to memory is no memory limit, even with a cap."""
    events = await read(local("raise SystemExit(2)", max_memory_bytes=500 << 20))
    assert types(events) == ["started", "result", "completed"]


async def test_printed_memory_error_is_no_memory_limit(without_cgroups: None) -> None:
    """A program that prints "MemoryError" and fails did not hit the cap."""
    code = (
        "import sys\n"
        "sys.stderr.write('warning: MemoryError in the logs\\n')\n"
        "sys.exit(1)\n"
    )
    events = await read(local(code, max_memory_bytes=500 << 20))
    assert ["started", "stderr", "result", "completed"] == types(events)


async def test_bash_allocation_failure_is_a_memory_limit(without_cgroups: None) -> None:
    """bash's "xrealloc: cannot allocate" under the cap is a memory limit."""
    code = "x=$(head -c 300000000 /dev/zero | tr '\\0' a)\necho ${#x}\n"
    events = await read(local(code, language="bash", max_memory_bytes=100 << 20))
    assert "cannot allocate" in output(events, "stderr")
    assert "memory" == events[-3].attrs["limit"]


# --- early stop and cleanup --------------------------------------------------------

LOOP_FOREVER: Final = (
    "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.05)\n"
)


async def test_break_kills_the_child_and_removes_the_directory(tmp_root: Path) -> None:
    """Leaving the loop early kills the process and removes its directory."""
    seen: list[Event] = []
    async with local(LOOP_FOREVER).stream() as streamer:
        async for event in streamer:
            seen.append(event)
            if event.type == "stdout":
                assert len(run_dirs(tmp_root)) == 1
                break
    with pytest.raises(ProcessLookupError):
        os.kill(pid_of(seen), 0)
    assert run_dirs(tmp_root) == []
    assert {asyncio.current_task()} == asyncio.all_tasks()


async def test_aclose_kills_the_child(tmp_root: Path) -> None:
    """Closing the iterator by hand kills the process and removes its directory."""
    iterator = aiter(local(LOOP_FOREVER).source)
    started = await anext(iterator)
    assert (await anext(iterator)).type == "stdout"
    await iterator.aclose()  # type: ignore[attr-defined]
    with pytest.raises(ProcessLookupError):
        os.kill(started.attrs["pid"], 0)
    assert run_dirs(tmp_root) == []


async def test_cancel_kills_the_child(tmp_root: Path) -> None:
    """Cancelling the consuming task kills the process and removes its directory."""
    seen: list[Event] = []
    first_output = asyncio.Event()

    async def consume() -> None:
        async with local(LOOP_FOREVER).stream() as streamer:
            async for event in streamer:
                seen.append(event)
                if event.type == "stdout":
                    first_output.set()

    task = asyncio.create_task(consume())
    await first_output.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid_of(seen), 0)
    assert run_dirs(tmp_root) == []
    assert {asyncio.current_task()} == asyncio.all_tasks()


async def test_consumer_error_kills_the_child(tmp_root: Path) -> None:
    """An exception in the consumer's loop kills the process too."""
    seen: list[Event] = []

    async def consume() -> None:
        async with local(LOOP_FOREVER).stream() as streamer:
            async for event in streamer:
                seen.append(event)
                if event.type == "stdout":
                    raise KeyError("consumer failed")

    with pytest.raises(KeyError):
        await consume()
    with pytest.raises(ProcessLookupError):
        os.kill(pid_of(seen), 0)
    assert run_dirs(tmp_root) == []


async def test_reiterating_runs_the_code_again() -> None:
    """Each iteration of the same stream is a new run of the code."""
    stream = local("import os\nprint(os.getpid())")
    first, second = await read(stream), await read(stream)
    assert types(first) == types(second)
    assert output(first) != output(second)
    assert first[0].run != second[0].run
    assert second[0].sequence == 0


# --- graceful stops and the hard deadline ------------------------------------------

#: Waits in a try whose finally leaves a flag file: the mark of a graceful stop.
FLAG_ON_EXIT: Final = (
    "import time\n"
    "try:\n"
    "    print('ready', flush=True)\n"
    "    time.sleep(60)\n"
    "finally:\n"
    "    with open('flag', 'w') as flag:\n"
    "        flag.write('finally ran')\n"
)


async def test_break_lets_finally_blocks_run(tmp_path: Path) -> None:
    """Leaving the loop interrupts the program: its finally block runs."""
    async with local(FLAG_ON_EXIT, workdir=tmp_path).stream() as streamer:
        async for event in streamer:
            if event.type == "stdout":
                break
    assert "finally ran" == (tmp_path / "flag").read_text()


async def test_timeout_lets_finally_blocks_run(tmp_path: Path) -> None:
    """A timeout interrupts the program: its finally block runs, its output comes."""
    events = await read(local(FLAG_ON_EXIT, workdir=tmp_path, timeout=0.5))
    assert "finally ran" == (tmp_path / "flag").read_text()
    assert "KeyboardInterrupt" in output(events, "stderr")
    assert {"limit": "timeout", "signal": "SIGINT"} == events[-3].attrs


async def test_interrupt_reaches_the_child_when_eventkit_ignores_it() -> None:
    """SIGINT is at its default in the child even when this process ignores it."""
    code = (
        "import signal\n"
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    )
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        events = await read(local(code))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "True\n" == output(events)


#: Double-forks a daemon in a session of its own that writes to the inherited
#: stdout forever; its first line is its pid. The main process exits as soon
#: as the daemon is on its own (had it exited sooner, the kill of its group
#: would have caught the daemon before its setsid).
DAEMON_WRITER: Final = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(1, f"{os.getpid()}\\n".encode())
        while True:
            os.write(1, b"still here\\n")
            time.sleep(0.01)
    os._exit(0)
os.wait()
"""


async def test_timeout_is_a_hard_deadline_for_a_daemonizing_writer() -> None:
    """A setsid daemon writing into the pipes is dead and the run done within 3 s."""
    begin = time.monotonic()
    async with asyncio.timeout(10):  # the stream would never end before the fix
        events = await read(local(DAEMON_WRITER, timeout=2))
    assert time.monotonic() - begin < 3
    daemon = int(output(events).split()[0])
    assert await gone(daemon)
    assert "timeout" == events[-3].attrs["limit"]
    # The main process exited at once and by itself: the run failed all the same.
    assert 0 == events[-2].attrs["exit_code"]
    assert events[-1].attrs["success"] is False


async def test_a_run_over_in_time_is_no_timeout_for_a_slow_consumer() -> None:
    """The deadline ends with the run, not with the consumer's reading."""
    events = []
    async with local("print('x')", timeout=0.3).stream() as streamer:
        async for event in streamer:
            events.append(event)
            if event.type == "stdout":
                await asyncio.sleep(0.6)
    assert ["started", "stdout", "result", "completed"] == types(events)
    assert events[-1].attrs["success"] is True


async def test_close_returns_once_the_group_is_gone() -> None:
    """Leaving early returns once no process of the group runs any more."""
    code = (
        "import subprocess, time\n"
        "children = [subprocess.Popen(['sleep', '30']) for _ in range(3)]\n"
        "print(' '.join(str(child.pid) for child in children), flush=True)\n"
        "time.sleep(30)\n"
    )
    seen: list[Event] = []
    async with local(code).stream() as streamer:
        async for event in streamer:
            seen.append(event)
            if event.type == "stdout":
                break
    # Zombies count as gone: whoever adopted them reaps them when it can.
    assert [] == procfs.group_members(pid_of(seen), procfs.snapshot())
    assert all(is_zombie(int(pid)) for pid in output(seen).split())


# --- batches -----------------------------------------------------------------------


async def test_batches_hold_every_read_at_hand() -> None:
    """batches() gives what was read together as one list, in order, numbered."""
    code = (
        "import sys\n"
        "for i in range(200):\n"
        "    sys.stdout.write(f'{i}\\n')\n"
        "    sys.stderr.write(f'{i}\\n')\n"
    )
    source = local(code).source
    async with contextlib.aclosing(source.batches()) as batches:
        batched = [batch async for batch in batches]
    events = [event for batch in batched for event in batch]
    assert all(batched)
    assert len(batched) < len(events)
    assert ["started"] == [event.type for event in batched[0]]
    assert ["result", "completed"] == [event.type for event in batched[-1]]
    assert list(range(len(events))) == [event.sequence for event in events]
    expected = "".join(f"{i}\n" for i in range(200))
    assert expected == output(events) == output(events, "stderr")


async def test_iteration_flattens_the_batches() -> None:
    """Iterating the stream gives the events of its batches one by one."""
    events = await read(local("print(1)"))
    assert ["started", "stdout", "result", "completed"] == types(events)


# --- isolation settings ------------------------------------------------------------


async def test_auto_without_a_sandbox_runs_unisolated_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """isolation='auto' where no sandbox starts: runs as today, one warning."""
    unavailable = isolation.IsolationSupport(False, "tested", os.geteuid(), frozenset())
    monkeypatch.setattr(isolation, "_probed", unavailable)
    monkeypatch.setattr(source_module, "_warned", set())
    code = "import os\nprint(os.getuid())"
    with structlog.testing.capture_logs() as logs:
        first = await read(local(code, isolation="auto"))
        second = await read(local(code, isolation="auto"))
    assert f"{os.geteuid()}\n" == output(first) == output(second)
    assert [("isolation_unavailable", "tested")] == [
        (log["event"], log["reason"]) for log in logs
    ]


async def test_bwrap_without_a_sandbox_is_an_error_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """isolation='bwrap' where no sandbox starts: an error event, no run."""
    unavailable = isolation.IsolationSupport(False, "tested", 0, frozenset())
    monkeypatch.setattr(isolation, "_probed", unavailable)
    events = await read(local("print(1)", isolation="bwrap"))
    assert ["started", "error", "completed"] == types(events)
    assert "isolation_unavailable" == events[1].attrs["code"]
    assert "tested" in events[1].data
    assert events[-1].attrs["success"] is False


@needs_pids_cgroup
async def test_max_processes_stops_a_fork_loop() -> None:
    """max_processes: forks fail past the cap (the pids cgroup), and all are gone."""
    events = await read(local(FORKS, max_processes=10, timeout=20))
    said, count, errno = output(events).split()
    assert "stopped" == said
    assert int(count) < 10
    assert str(EAGAIN) == errno


async def test_max_processes_unenforced_says_so(
    monkeypatch: pytest.MonkeyPatch, without_cgroups: None
) -> None:
    """Without a pids cgroup nor a sandbox, max_processes is not enforced: a warning."""
    monkeypatch.setattr(source_module, "_warned", set())
    with structlog.testing.capture_logs() as logs:
        events = await read(local("print(1)", max_processes=5))
    assert events[-1].attrs["success"] is True
    assert ["max_processes_unenforced"] == [log["event"] for log in logs]


# --- arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": float("nan")},
        {"max_output_bytes": -1},
        {"max_memory_bytes": -1},
        {"max_memory_bytes": 0},
        {"language": ""},
        {"language": "  "},
        {"max_processes": 0},
        {"interrupt_grace": -1},
        {"interrupt_grace": float("nan")},
        {"interrupt_grace": float("inf")},
        {"isolation": "docker"},
        {"workdir_mount": "workspace"},
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any]) -> None:
    """Nonsense arguments raise ValueError at call time."""
    with pytest.raises(ValueError, match="must"):
        local("print(1)", **kwargs)
