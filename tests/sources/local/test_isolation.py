"""Tests for :mod:`eventkit.sources.local.isolation`: real bubblewrap sandboxes."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from errno import EAGAIN
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from eventkit.sources.local import isolation, local
from tests.sources.local.runs import (
    FORKS,
    gone,
    needs_bwrap,
    needs_memory_cgroup,
    needs_pids_cgroup,
    needs_root,
    output,
    pid_of,
    read,
    types,
)

if TYPE_CHECKING:
    from eventkit.events import Event


async def run_isolated(code: str, **kwargs: object) -> list[Event]:
    """Return the events of ``code`` run in a sandbox."""
    return await read(local(code, isolation="bwrap", **kwargs))  # type: ignore[arg-type]


# --- what the code cannot see or do ------------------------------------------------


@needs_bwrap
async def test_cannot_read_a_file_outside_its_directory(tmp_path: Path) -> None:
    """A file next to the run's directory, readable by all, is not there."""
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    secret.chmod(0o644)
    code = (
        "import os\n"
        f"print(os.path.exists({str(secret)!r}), os.path.exists({__file__!r}))\n"
        "print(sorted(os.listdir('..')))\n"
    )
    events = await run_isolated(code, workdir=tmp_path / "run")
    assert "False False\n['run']\n" == output(events)
    assert events[-1].attrs["success"] is True


@needs_bwrap
async def test_cannot_see_the_parent_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Neither its environment nor any process's in /proc holds the parent's."""
    monkeypatch.setenv("EVENTKIT_TEST_SECRET", "hunter2")
    code = (
        "import os\n"
        "seen = str(dict(os.environ))\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        seen += open(f'/proc/{pid}/environ', 'rb').read().decode()\n"
        "    except OSError:\n"
        "        pass\n"
        "print('hunter2' in seen, os.getppid())\n"
    )
    events = await run_isolated(code)
    # Its parent is the sandbox's init, pid 1: eventkit is not in its /proc.
    assert "False 1\n" == output(events)


@needs_bwrap
async def test_ps_shows_only_its_own_processes() -> None:
    """ps -e inside lists the sandbox's init, the code and ps: nothing else."""
    events = await run_isolated("ps -e -o pid=,comm=", language="bash")
    listed = [line.split() for line in output(events).splitlines()]
    assert [["1", "bwrap"], ["2", "bash"], ["3", "ps"]] == listed


@needs_bwrap
async def test_other_runs_are_invisible(tmp_path: Path) -> None:
    """Another run's directory, in the same parent, is not there."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "data").write_text("theirs")
    code = f"import os\nprint(os.path.exists({str(other)!r}))\n"
    events = await run_isolated(code, workdir=tmp_path / "mine")
    assert "False\n" == output(events)


@needs_bwrap
async def test_system_is_read_only_and_tmp_private(tmp_path: Path) -> None:
    """/usr and /etc cannot be written; /tmp can, and it is the sandbox's own.

    Only the host's /tmp files are looked for: an interpreter installed under
    /tmp (a virtual environment there) is mounted, read-only, where it is.
    """
    marker = f"eventkit-test-{uuid.uuid4().hex}"
    host_file = Path("/tmp") / f"eventkit-host-{uuid.uuid4().hex}"
    host_file.write_text("the host's")
    code = (
        "import os\n"
        "for path in ('/usr/x', '/etc/x'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "        print('wrote', path)\n"
        "    except OSError as error:\n"
        "        print('refused', path)\n"
        f"open('/tmp/{marker}', 'w').write('x')\n"
        f"print({marker!r} in os.listdir('/tmp'), os.path.exists({str(host_file)!r}))\n"
    )
    try:
        events = await run_isolated(code, workdir_mount="/workspace")
    finally:
        host_file.unlink()
    assert "refused /usr/x\nrefused /etc/x\nTrue False\n" == output(events)
    assert not host_has(f"/tmp/{marker}")


@needs_bwrap
@needs_root
async def test_runs_as_an_unprivileged_uid_as_root() -> None:
    """As root, the code runs as nobody: root-only files stay unreadable."""
    code = (
        "import os\n"
        "print(os.getuid(), os.getgid(), os.getgroups())\n"
        "try:\n"
        "    open('/etc/shadow').read()\n"
        "    print('read')\n"
        "except PermissionError:\n"
        "    print('refused')\n"
    )
    events = await run_isolated(code)
    uid, gid = isolation.ISOLATED_UID, isolation.ISOLATED_GID
    assert f"{uid} {gid} []\nrefused\n" == output(events)


@needs_bwrap
async def test_the_interpreter_is_visible_read_only() -> None:
    """Python's prefixes are there, and cannot be written."""
    code = (
        "import os, sys\n"
        "print(sys.prefix, sys.base_prefix)\n"
        "print(os.access(sys.prefix, os.W_OK), os.access(sys.base_prefix, os.W_OK))\n"
    )
    events = await run_isolated(code)
    assert f"{sys.prefix} {sys.base_prefix}\nFalse False\n" == output(events)


@needs_bwrap
async def test_workdir_mount(tmp_path: Path) -> None:
    """The run's directory at /workspace: its cwd and HOME, its files the host's."""
    code = (
        "import os\n"
        "print(os.getcwd(), os.environ['HOME'])\n"
        "open('made-inside', 'w').write('hello')\n"
    )
    events = await run_isolated(code, workdir=tmp_path, workdir_mount="/workspace")
    assert "/workspace /workspace\n" == output(events)
    assert "hello" == (tmp_path / "made-inside").read_text()


@needs_bwrap
async def test_network_false_has_only_its_own_loopback() -> None:
    """network=False: a server on this machine's loopback is out of reach."""

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
        "    print('connected')\n"
        "except OSError:\n"
        "    print('refused')\n"
    )
    async with server:
        shared = await run_isolated(code)
        unshared = await run_isolated(code, network=False)
    assert "connected\n" == output(shared)
    assert "refused\n" == output(unshared)


# --- nothing outlives the run ------------------------------------------------------


def host_has(path: str) -> bool:
    """Tell whether ``path`` exists on this machine, outside any sandbox."""
    return os.path.exists(path)


def processes_with(marker: str) -> list[int]:
    """Return the pids on this machine whose command line holds ``marker``."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as file:
                if marker.encode() in file.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


@needs_bwrap
async def test_a_daemon_is_gone_after_the_run() -> None:
    """A double-forked setsid daemon, its stdio closed, dies with the run."""
    seconds = f"1000.{uuid.uuid4().int % 10**9}"
    code = (
        "import os\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        devnull = os.open('/dev/null', os.O_RDWR)\n"
        "        for fd in (0, 1, 2):\n"
        "            os.dup2(devnull, fd)\n"
        f"        os.execvp('sleep', ['sleep', {seconds!r}])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "print('daemon started', flush=True)\n"
    )
    events = await run_isolated(code)
    assert "daemon started\n" == output(events)
    for _ in range(200):
        if not processes_with(seconds):
            break
        await asyncio.sleep(0.01)
    assert [] == processes_with(seconds)


@needs_bwrap
async def test_timeout_is_a_hard_deadline_for_a_daemonizing_writer() -> None:
    """In a sandbox too: the daemon writing into the pipes is done within 3 s."""
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        while True:\n"
        "            os.write(1, b'still here\\n')\n"
        "            time.sleep(0.01)\n"
        "    os._exit(0)\n"
        "time.sleep(30)\n"
    )
    begin = time.monotonic()
    async with asyncio.timeout(10):
        events = await run_isolated(code, timeout=2, interrupt_grace=0.5)
    assert time.monotonic() - begin < 3
    assert "timeout" == events[-3].attrs["limit"]
    assert await gone(pid_of(events))


@needs_bwrap
@needs_pids_cgroup
async def test_fork_loop_is_stopped() -> None:
    """max_processes in a sandbox: the pids cgroup stops the forks."""
    events = await run_isolated(FORKS, max_processes=10, timeout=20)
    said, count, errno = output(events).split()
    assert ("stopped", str(EAGAIN)) == (said, errno)
    assert int(count) < 10


@needs_bwrap
@needs_root
async def test_fork_loop_is_stopped_by_rlimit_without_a_cgroup(
    without_cgroups: None,
) -> None:
    """Without a pids cgroup, RLIMIT_NPROC of the isolated uid stops the forks."""
    events = await run_isolated(FORKS, max_processes=10, timeout=20)
    said, count, errno = output(events).split()
    assert ("stopped", str(EAGAIN)) == (said, errno)
    assert int(count) < 10


@needs_bwrap
@needs_pids_cgroup
async def test_fork_bomb_ends_with_the_run() -> None:
    """A bash fork bomb under max_processes: the run times out, nothing is left."""
    begin = time.monotonic()
    code = "bomb() { bomb | bomb & }\nbomb\nsleep 30\n"
    events = await run_isolated(code, language="bash", max_processes=32, timeout=1)
    assert time.monotonic() - begin < 5
    assert "timeout" == events[-3].attrs["limit"]
    assert await gone(pid_of(events))


@needs_bwrap
@needs_memory_cgroup
async def test_memory_cap_covers_the_sandbox() -> None:
    """Four children of 100 MiB under a 300 MiB cap, in a sandbox: a memory limit."""
    code = (
        "import subprocess, sys\n"
        "child = 'import time\\nbuffer = bytearray(100 << 20)\\ntime.sleep(2)'\n"
        "children = [subprocess.Popen([sys.executable, '-c', child]) "
        "for _ in range(4)]\n"
        "print([child.wait() for child in children])\n"
    )
    events = await run_isolated(code, max_memory_bytes=300 << 20)
    assert "memory" == events[-3].attrs["limit"]


# --- stops and exit codes ----------------------------------------------------------

FLAG_ON_EXIT: Final = (
    "import time\n"
    "try:\n"
    "    print('ready', flush=True)\n"
    "    time.sleep(60)\n"
    "finally:\n"
    "    with open('flag', 'w') as flag:\n"
    "        flag.write('finally ran')\n"
)


@needs_bwrap
async def test_break_lets_finally_blocks_run(tmp_path: Path) -> None:
    """Leaving early interrupts the sandboxed program: its finally block runs."""
    stream = local(FLAG_ON_EXIT, workdir=tmp_path, isolation="bwrap")
    async with stream.stream() as streamer:
        async for event in streamer:
            if event.type == "stdout":
                break
    assert "finally ran" == (tmp_path / "flag").read_text()


@needs_bwrap
async def test_timeout_lets_finally_blocks_run(tmp_path: Path) -> None:
    """A timeout interrupts the sandboxed program: finally runs, SIGINT ended it."""
    events = await run_isolated(FLAG_ON_EXIT, workdir=tmp_path, timeout=0.5)
    assert "finally ran" == (tmp_path / "flag").read_text()
    assert {"limit": "timeout", "signal": "SIGINT"} == events[-3].attrs
    assert (-2, "SIGINT") == (events[-2].attrs["exit_code"], events[-2].attrs["signal"])


@needs_bwrap
async def test_timeout_kills_a_sandbox_ignoring_the_interrupt() -> None:
    """A sandboxed program ignoring SIGINT is killed after the grace."""
    code = "trap '' INT\necho ready\nsleep 30\n"
    events = await run_isolated(code, language="bash", timeout=0.3, interrupt_grace=0.3)
    assert {"limit": "timeout", "signal": "SIGKILL"} == events[-3].attrs
    assert -9 == events[-2].attrs["exit_code"]


@pytest.mark.parametrize(
    ("code", "exit_code"), [("exit 3", 3), ("kill -SEGV $$", -11), ("exit 0", 0)]
)
@needs_bwrap
async def test_exit_codes_are_the_code_s(code: str, exit_code: int) -> None:
    """The code's exit code, not bwrap's 128 + N for a death by signal N."""
    events = await run_isolated(code, language="bash")
    assert exit_code == events[-2].attrs["exit_code"]
    assert ["started", "result", "completed"] == types(events)


# --- the arguments bwrap gets ------------------------------------------------------


def test_sandbox_argv_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """As root: setpriv drops to the isolated uid; no user namespace."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    argv = isolation.sandbox_argv(
        ["python", "main.py"],
        workdir="/srv/runs/a",
        mount="/workspace",
        network=True,
        tmp_size=None,
    )
    tail = argv[argv.index("--") + 1 :]
    assert tail[0].endswith("setpriv")
    assert f"--reuid={isolation.ISOLATED_UID}" in tail
    assert ["python", "main.py"] == tail[-2:]
    assert "--unshare-user" not in argv
    assert "--unshare-net" not in argv
    assert ["--bind", "/srv/runs/a", "/workspace", "--chdir", "/workspace"] == argv[
        argv.index("--bind") : argv.index("--bind") + 5
    ]


def test_sandbox_argv_unprivileged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root: a user namespace, nested ones refused; no setpriv."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    argv = isolation.sandbox_argv(
        ["sh", "main.sh"], workdir="/w", mount=None, network=False, tmp_size=1 << 20
    )
    assert ["sh", "main.sh"] == argv[argv.index("--") + 1 :]
    assert {"--unshare-user", "--disable-userns", "--unshare-net"} <= set(argv)
    assert 2 == argv.count(str(1 << 20))


def test_sandbox_argv_makes_the_parents_of_its_mounts() -> None:
    """Roots inside one another are mounted once; their parents made for all."""
    argv = isolation.sandbox_argv(
        ["x"],
        workdir="/tmp/a/b/run",
        mount=None,
        network=True,
        tmp_size=None,
        roots=["/home/u/.pyenv/versions/3", "/home/u/.pyenv/versions/3/lib", "/opt/v"],
    )
    binds = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--ro-bind"]
    assert ["/home/u/.pyenv/versions/3", "/opt/v"] == [
        bind for bind in binds if not bind.startswith(("/usr", "/etc"))
    ]
    made = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--dir"]
    assert [
        "/home",
        "/home/u",
        "/home/u/.pyenv",
        "/home/u/.pyenv/versions",
        "/opt",
        "/tmp/a",
        "/tmp/a/b",
    ] == made


def test_interpreter_roots_of_python() -> None:
    """Python's prefixes outside the system directories are its roots."""
    roots = isolation.interpreter_roots(sys.executable)
    for prefix in (sys.prefix, sys.base_prefix):
        real = os.path.realpath(prefix)
        assert real in roots or real.startswith(("/usr/", "/usr"))


def test_interpreter_roots_of_a_system_program() -> None:
    """A program under /usr needs nothing more."""
    sh = shutil.which("sh")
    assert sh is not None
    if not os.path.realpath(sh).startswith("/usr/"):
        pytest.skip("sh is not under /usr here")
    assert [] == isolation.interpreter_roots(sh)


def test_probe_without_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without bwrap installed, the probe says so, and how to install it."""
    monkeypatch.setattr(shutil, "which", lambda _: None)
    reason = isolation._try_sandbox()
    assert reason is not None
    assert "bwrap is not installed" in reason


def test_describe() -> None:
    """The probe's result in one line, for eventkit serve's start-up."""
    on = isolation.IsolationSupport(True, None, 65534, frozenset({"pids", "memory"}))
    off = isolation.IsolationSupport(False, "no bwrap", 1000, frozenset())
    assert "isolation: bwrap, code runs as uid 65534; cgroups: memory, pids" == (
        on.describe()
    )
    assert "isolation unavailable (no bwrap); cgroups: none" == off.describe()


@needs_bwrap
def test_probe_is_cached() -> None:
    """probe() starts a sandbox once: later calls give the same answer."""
    assert isolation.probe() is isolation.probe() is isolation.probed()


@needs_bwrap
async def test_auto_uses_the_sandbox_where_it_starts() -> None:
    """isolation='auto' on a machine where bwrap works: the code is sandboxed."""
    code = (
        "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"
    )
    events = await read(local(code, isolation="auto"))
    assert "[1, 2]\n" == output(events)
