"""Tests for :mod:`eventkit.sources.local`: real subprocesses, real pipes."""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import resource
import shutil
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any, Final

import pytest

from eventkit.events import OUTPUT_TYPES
from eventkit.sources.local import local

#: The module itself: ``eventkit.sources.local`` is also the function's name.
local_module = importlib.import_module("eventkit.sources.local")

if TYPE_CHECKING:
    from pathlib import Path

    from eventkit.events import Event
    from eventkit.streams import EventStream

#: How long a killed process may take to disappear (or turn zombie) at most.
GONE_WITHIN: Final = 2.0


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


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``tempfile`` create its directories under ``tmp_path``."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


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


# --- the environment ---------------------------------------------------------------


async def test_env_is_passed_and_the_parent_env_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the minimal environment and ``env`` reach the child."""
    monkeypatch.setenv("EVENTKIT_TEST_SECRET", "hunter2")
    code = "import json, os\nprint(json.dumps(dict(os.environ)))"
    events = await read(local(code, env={"GREETING": "hello"}))
    env: dict[str, Any] = __import__("json").loads(output(events))
    assert env["GREETING"] == "hello"
    assert "EVENTKIT_TEST_SECRET" not in env
    assert env["LANG"] == "C.UTF-8"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith(os.path.dirname(sys.executable) + ":")
    assert env["HOME"].startswith(tempfile.gettempdir())


async def test_env_overrides_the_defaults() -> None:
    """``env`` wins over the minimal environment's own values."""
    code = "import os\nprint(os.environ['LANG'])"
    events = await read(local(code, env={"LANG": "en_US.UTF-8"}))
    assert output(events) == "en_US.UTF-8\n"


async def test_home_and_cwd_are_the_working_directory() -> None:
    """The code runs in its working directory, which is also HOME."""
    code = "import os\nprint(os.getcwd() == os.path.realpath(os.environ['HOME']))"
    events = await read(local(code))
    assert output(events) == "True\n"


async def test_bash_finds_programs_on_path() -> None:
    """Shell code finds the usual programs and the running Python."""
    code = "ls / > /dev/null && echo ls-ok\npython -c 'print(2)'\n"
    events = await read(local(code, language="bash"))
    assert output(events) == "ls-ok\n2\n"
    assert events[-1].attrs["success"] is True


# --- languages ---------------------------------------------------------------------


@pytest.mark.parametrize("language", ["bash", "sh", "shell", "BASH"])
async def test_shells(language: str) -> None:
    """Shell code runs under bash or sh."""
    events = await read(local("echo hi; exit 4", language=language))
    assert output(events) == "hi\n"
    assert events[-2].attrs["exit_code"] == 4


@pytest.mark.parametrize("language", ["python3", "py", "Python"])
async def test_python_aliases(language: str) -> None:
    """Every spelling of python runs python."""
    events = await read(local("print(6 * 7)", language=language))
    assert output(events) == "42\n"
    assert events[0].attrs["language"] == "python"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_node() -> None:
    """JavaScript runs under node."""
    events = await read(local("console.log(1 + 1)", language="js"))
    assert types(events) == ["started", "stdout", "result", "completed"]
    assert events[0].attrs["language"] == "javascript"
    assert output(events) == "2\n"
    assert events[-1].attrs["success"] is True


async def test_unknown_language() -> None:
    """An unknown language is an error event, not an exception."""
    events = await read(local("DISPLAY 'HI'.", language="cobol"))
    assert types(events) == ["started", "error", "completed"]
    assert dict(events[0].attrs) == {"language": "cobol", "pid": None}
    assert events[1].attrs["code"] == "language_unavailable"
    assert "cobol" in events[1].data
    assert events[2].attrs["success"] is False
    assert [event.sequence for event in events] == [0, 1, 2]


async def test_language_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A known language whose interpreter is missing is an error event."""
    monkeypatch.setattr(shutil, "which", lambda _: None)
    events = await read(local("console.log(1)", language="javascript"))
    assert types(events) == ["started", "error", "completed"]
    assert events[1].attrs["code"] == "language_unavailable"
    assert "not installed" in events[1].data
    assert "'node'" in events[1].data


async def test_spawn_failure_is_an_error_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process the OS refuses to start is an error event, not an exception."""
    monkeypatch.setattr(shutil, "which", lambda _: "/nonexistent/bash")
    events = await read(local("echo 1", language="bash"))
    assert types(events) == ["started", "error", "completed"]
    assert events[1].attrs["code"] == "spawn_failed"
    assert events[0].attrs["pid"] is None
    assert events[2].attrs["success"] is False


async def test_python_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a known interpreter of its own, python is unavailable."""
    monkeypatch.setattr(sys, "executable", "")
    events = await read(local("print(1)"))
    assert types(events) == ["started", "error", "completed"]
    assert events[1].attrs["code"] == "language_unavailable"


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


async def test_exit_kills_what_the_process_left_running() -> None:
    """The run ends with its main process; background jobs are killed."""
    begin = time.monotonic()
    events = await read(local("sleep 30 &\necho $!", language="bash"))
    assert time.monotonic() - begin < 1
    assert events[-1].attrs["success"] is True
    assert await gone(int(output(events)))


async def test_pipes_held_from_outside_the_group_are_given_up() -> None:
    """A process that left the group cannot keep the run open for long."""
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
    finally:
        os.kill(escaped, 9)


async def test_pipes_held_from_outside_are_read_while_they_speak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Output from outside the group after the exit is read until it stops."""
    monkeypatch.setattr(local_module, "_LINGER", 0.2)
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
    finally:
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


async def test_workdir_is_used_and_kept(tmp_path: Path) -> None:
    """A given working directory is created, used, and left in place."""
    workdir = tmp_path / "given" / "nested"
    code = "open('made.txt', 'w').write('x')\nimport os\nprint(os.getcwd())"
    events = await read(local(code, workdir=workdir))
    assert str(workdir) + "\n" == output(events)
    assert (workdir / "made.txt").read_text() == "x"
    assert (workdir / "main.py").exists()
    # An existing directory is used as is.
    events = await read(
        local("import os\nprint(sorted(os.listdir()))", workdir=workdir)
    )
    assert output(events) == "['made.txt', 'main.py']\n"


async def test_temporary_directory_is_removed(tmp_root: Path) -> None:
    """The default working directory is removed, with what the code put there."""
    code = "import os\nos.makedirs('a/b')\nopen('a/b/c', 'w').write('x')\nprint(1)"
    events = await read(local(code))
    assert events[-1].attrs["success"] is True
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


# --- helpers -----------------------------------------------------------------------


def test_memory_cap_is_kept_under_the_hard_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cap above the hard limit is lowered to it: raising it would fail."""
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1 << 20, 1 << 30))
    preexec = local_module._limit_memory(1 << 40)
    assert isinstance(preexec, functools.partial)
    assert preexec.args == (resource.RLIMIT_AS, (1 << 30, 1 << 30))
    monkeypatch.setattr(resource, "getrlimit", lambda _: (-1, resource.RLIM_INFINITY))
    preexec = local_module._limit_memory(1 << 40)
    assert isinstance(preexec, functools.partial)
    assert preexec.args == (resource.RLIMIT_AS, (1 << 40, 1 << 40))


async def test_remove_after_the_executor_shut_down(tmp_path: Path) -> None:
    """At interpreter exit, with no executor left, the directory still goes."""
    doomed = tmp_path / "doomed"
    (doomed / "sub").mkdir(parents=True)
    await asyncio.get_running_loop().shutdown_default_executor()
    await local_module._remove(str(doomed))
    assert not doomed.exists()
