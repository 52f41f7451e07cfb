"""``eventkit run``: code on the local sandbox, its exit status, bad flags."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventkit.cli import main
from eventkit.protocol import jsonl

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
    """A program file that does not exist gives exit status 2 and a short line."""
    assert 2 == main(["run", "/nonexistent/program.py"])
    _, err = capsys.readouterr()
    assert "error: no such file: /nonexistent/program.py\n" == err
