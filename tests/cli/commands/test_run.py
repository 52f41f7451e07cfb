"""``eventkit run``: code on the local sandbox, its exit status, bad flags."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TYPE_CHECKING

from eventkit.cli import main
from eventkit.protocol import jsonl
from tests.sources.local.runs import needs_bwrap

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


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
    """A program file that does not exist gives exit status 2 and a message."""
    assert 2 == main(["run", "/nonexistent/program.py"])
    _, err = capsys.readouterr()
    assert "No such file" in err


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
