"""``eventkit run``: its exit status on every sandbox, one-line errors, bad flags."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import aiohttp
import pytest

from eventkit.cli import main
from eventkit.cli.commands.run import status
from eventkit.protocol import jsonl
from eventkit.server import LocalSandboxServer
from eventkit.summary import RunSummary
from tests.sources.local.runs import needs_bwrap

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest.fixture
async def server() -> AsyncIterator[LocalSandboxServer]:
    """A local sandbox server (HOPX and AI Computer) on a free port."""
    async with LocalSandboxServer(port=0) as running:
        yield running


def test_exit_status_is_the_codes_own() -> None:
    """The command exits with the status the code exited with."""
    assert 3 == main(["run", "-c", "import sys; sys.exit(3)", "--json"])


def test_language_comes_from_the_file_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .sh file runs with bash; its output comes out as events."""
    program = tmp_path / "hello.sh"
    program.write_text("echo hello from $0\n")
    assert 0 == main(["run", str(program), "--json"])
    out, _ = capsys.readouterr()
    events = [jsonl.decode(line) for line in out.splitlines()]
    output = "".join(event.data for event in events if event.type == "stdout")
    assert output.startswith("hello from ")


def test_malformed_env_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """An --env item without = gives exit status 2 and says what it wants."""
    assert 2 == main(["run", "-c", "pass", "--env", "NOVALUE"])
    _, err = capsys.readouterr()
    assert "--env takes NAME=VALUE" in err


def test_missing_program_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """A program file that does not exist gives exit status 2 and a short line."""
    assert 2 == main(["run", "/nonexistent/program.py"])
    _, err = capsys.readouterr()
    assert "error: no such file: /nonexistent/program.py\n" == err


async def eventkit_cli(*args: str) -> tuple[int, str, str]:
    """Run ``python -m eventkit ARGS`` in a child process; status, stdout, stderr.

    A child, so that a server in this test's event loop can answer it.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventkit",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_status_is_the_codes_whatever_only_drops(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--only stdout`` drops result and completed: the status is still 0.

    It failed before: the outcome was read after the chain (exit 1, incomplete).
    """
    assert 0 == main(["run", "-c", "print(1)", "--only", "stdout"])
    out, err = capsys.readouterr()
    assert "1\n" == out
    assert "success" in err
    assert "incomplete" not in err


def test_replay_summary_is_the_recorded_runs_whatever_only_drops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``replay --only stdout`` of a successful run: status 0, the run a success."""
    recording = tmp_path / "run.jsonl"
    assert 0 == main(["run", "-c", "print(1)", "--jsonl", str(recording), "--json"])
    capsys.readouterr()
    assert 0 == main(["replay", str(recording), "--only", "stdout", "--json"])
    _, err = capsys.readouterr()
    (run,) = json.loads(err)["runs"]
    assert (True, 0) == (run["success"], run["exit_code"])


def test_only_leaves_the_file_argument_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--only stdout FILE`` runs FILE (it was taken as a second type before)."""
    program = tmp_path / "hello.py"
    program.write_text("print('from the file')\n")
    assert 0 == main(["run", "--only", "stdout", str(program)])
    out, _ = capsys.readouterr()
    assert "from the file\n" == out


def test_death_by_signal_exits_128_plus_the_signal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Code killed by SIGKILL: status 137, as a shell says it (1 before)."""
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert 128 + signal.SIGKILL == main(["run", "-c", code])
    _, err = capsys.readouterr()
    assert "killed by SIGKILL" in err


def test_status_of_runs() -> None:
    """The status from a run's summary: its code, 128+N, else its success."""
    assert 1 == status([])
    assert [0, 3, 255, 137, 1, 0, 1, 1] == [
        status([RunSummary("r", 0, 0, exit_code=code, success=success)])
        for code, success in [
            (0, True),
            (3, False),
            (255, False),
            (-9, False),
            (256, False),
            (None, True),
            (None, False),
            (None, None),
        ]
    ]


async def test_aicomputer_status_is_the_codes(server: LocalSandboxServer) -> None:
    """``--aicomputer``: print(1) exits 0 and is a success (1, failure before)."""
    code, out, err = await eventkit_cli(
        "run", "--aicomputer", server.url, "-c", "print(1)"
    )
    assert 0 == code, err
    assert "1\n" == out
    assert "success" in err


async def test_aicomputer_failure_is_a_failure(server: LocalSandboxServer) -> None:
    """A program that fails on AI Computer makes ``run`` fail too."""
    code, _, err = await eventkit_cli(
        "run", "--aicomputer", server.url, "-c", "import sys; sys.exit(3)"
    )
    assert 0 != code
    assert "failure" in err


async def test_hopx_token_missing_is_one_line(server: LocalSandboxServer) -> None:
    """``--url`` without ``--token``: one line saying 401 and what to pass.

    It was a traceback before (websockets' InvalidStatus).
    """
    code, out, err = await eventkit_cli("run", "--url", server.url, "-c", "print(1)")
    assert 1 == code
    assert "" == out
    (line,) = err.splitlines()
    assert line.startswith("error: ")
    assert "401" in line
    assert line.endswith(": pass --token")


async def test_hopx_runs_with_its_token(server: LocalSandboxServer) -> None:
    """``--url`` and the sandbox's token: the output, status the code's own."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.url}/v1/sandboxes",
            json={"template_name": "code-interpreter"},
            headers={"X-API-Key": "key"},
        ) as response,
    ):
        sandbox = await response.json()
    code, out, err = await eventkit_cli(
        "run",
        "--url",
        sandbox["public_host"],
        "--token",
        sandbox["auth_token"],
        "--only",
        "stdout",
        "-c",
        "print('agent'); raise SystemExit(4)",
    )
    assert (4, "agent\n") == (code, out), err


@pytest.mark.parametrize(
    "flag", ["--url=ws://127.0.0.1:9/execute/stream", "--aicomputer=http://127.0.0.1:9"]
)
def test_unreachable_sandbox_is_one_line(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening: status 1 and one line naming the URL."""
    assert 1 == main(["run", flag, "-c", "print(1)"])
    out, err = capsys.readouterr()
    assert "" == out
    (line,) = err.splitlines()
    url = flag.partition("=")[2]
    assert f"error: cannot reach {url}: connection refused" == line


def test_redis_down_fails_in_one_line_after_the_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--to-redis`` with nothing listening: stdout stays JSON Lines, the summary
    is printed, one line says what failed, status 1.

    Before: a structlog warning on stdout, ~31 s of retries, no summary.
    """
    status_ = main(
        [
            "run",
            "-c",
            "print(1)",
            "--json",
            "--to-redis",
            "redis://127.0.0.1:9",
            "--redis-timeout",
            "0.3",
        ]
    )
    out, err = capsys.readouterr()
    assert 1 == status_
    events = [jsonl.decode(line) for line in out.splitlines()]
    assert events
    lines = err.splitlines()
    assert lines[-1].startswith("error: cannot publish to redis://127.0.0.1:9")
    assert "0.3 s" in lines[-1]
    summary = json.loads(lines[-2])
    (run,) = summary["runs"]
    assert run["run"] == events[0].run


def test_sigterm_stops_the_run_with_its_summary(tmp_path: Path) -> None:
    """SIGTERM: the program is stopped, the summary says so, status 128 + 15."""
    marker = tmp_path / "still-running"
    code = (
        "import sys, time\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
        f"open({str(marker)!r}, 'w').close()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "eventkit", "run", "-c", code, "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert "ready\n" == process.stdout.readline()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert 128 + signal.SIGTERM == process.returncode
    assert "interrupted by SIGTERM" in err
    assert "incomplete" in err
    assert not marker.exists()


@needs_bwrap
def test_isolate_runs_the_code_in_a_sandbox(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--isolate: the code sees only its own processes."""
    code = (
        "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"
    )
    assert 0 == main(["run", "-c", code, "--isolate", "--json"])
    out, _ = capsys.readouterr()
    events = [jsonl.decode(line) for line in out.splitlines()]
    assert "[1, 2]\n" == "".join(e.data for e in events if e.type == "stdout")


async def test_ctrl_c_lets_the_program_finish(tmp_path: Path) -> None:
    """Ctrl-C on eventkit run: the program gets SIGINT and its finally block runs."""
    flag = tmp_path / "flag"
    code = (
        "import time\n"
        "try:\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        "finally:\n"
        f"    open({str(flag)!r}, 'w').write('finally ran')\n"
    )
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventkit",
        "run",
        "-c",
        code,
        "--json",
        stdout=asyncio.subprocess.PIPE,
    )
    assert command.stdout is not None
    async with asyncio.timeout(20):
        while b'"stdout"' not in await command.stdout.readline():
            pass
        command.send_signal(signal.SIGINT)
        await command.communicate()
    assert "finally ran" == flag.read_text()
