"""Tests for :mod:`eventkit.sources.local.source`: real subprocesses, real pipes."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any, Final

import pytest

from eventkit.sources.local import local
from tests.sources.local.runs import (
    gone,
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
    """Past the timeout the process is killed and the run says so."""
    begin = time.monotonic()
    events = await read(local("import time; time.sleep(30)", timeout=0.3))
    assert time.monotonic() - begin < 2
    assert types(events) == ["started", "resource_limit", "result", "completed"]
    limit, result, completed = events[1:]
    assert limit.attrs["limit"] == "timeout"
    assert limit.data == "timed out after 0.3s"
    assert result.attrs["exit_code"] == -9
    assert 0.3 <= result.attrs["execution_time"] < 2
    assert completed.attrs["success"] is False
    with pytest.raises(ProcessLookupError):
        os.kill(pid_of(events), 0)


async def test_timeout_keeps_the_output_before_it() -> None:
    """Output written before the timeout is delivered before resource_limit."""
    code = "import sys, time\nsys.stdout.write('before\\n')\ntime.sleep(30)\n"
    events = await read(local(code, timeout=0.3))
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
    events = await read(local(code, timeout=0.3))
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
    # Killed, or exited before the kill came: a failure either way.
    assert events[-2].attrs["exit_code"] in (0, -9)
    assert events[-1].attrs["success"] is False
    assert await gone(pid_of(events))


async def test_output_cap_stops_endless_output() -> None:
    """Output that never stops is cut at the cap and the writer killed."""
    code = "import sys\nwhile True:\n    sys.stdout.write('y' * 100)\n"
    events = await read(local(code, max_output_bytes=5000))
    assert output(events) == "y" * 5000
    assert events[-3].attrs["limit"] == "output"
    assert events[-2].attrs["exit_code"] == -9


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


async def test_memory_cap() -> None:
    """Allocating past max_memory_bytes is reported as resource_limit memory."""
    code = "buffer = bytearray(1 << 30)"
    events = await read(local(code, max_memory_bytes=200 << 20))
    assert types(events)[-3:] == ["resource_limit", "result", "completed"]
    assert events[-3].attrs["limit"] == "memory"
    assert "MemoryError" in output(events, "stderr")
    assert events[-1].attrs["success"] is False


async def test_memory_cap_too_small_to_start() -> None:
    """A cap the interpreter cannot even start under is a memory limit too."""
    events = await read(local("print(1)", max_memory_bytes=1))
    assert types(events) == ["started", "resource_limit", "result", "completed"]
    assert events[1].attrs["limit"] == "memory"


async def test_memory_cap_not_hit() -> None:
    """A failure unrelated to memory is no memory limit, even with a cap."""
    events = await read(local("raise SystemExit(2)", max_memory_bytes=500 << 20))
    assert types(events) == ["started", "result", "completed"]


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
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any]) -> None:
    """Nonsense arguments raise ValueError at call time."""
    with pytest.raises(ValueError, match="must"):
        local("print(1)", **kwargs)
