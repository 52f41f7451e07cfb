"""Tests for :mod:`eventkit.sources.local.languages`: languages and environment."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

import pytest

from eventkit.sources.local import local
from eventkit.sources.local.languages import SAFE_PATH, Language, child_env, resolve
from tests.sources.local.runs import output, read, types

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


async def test_python_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a known interpreter of its own, python is unavailable."""
    monkeypatch.setattr(sys, "executable", "")
    events = await read(local("print(1)"))
    assert types(events) == ["started", "error", "completed"]
    assert events[1].attrs["code"] == "language_unavailable"


# --- resolving a language, without running it ---------------------------------------


def test_python_resolves_to_this_interpreter_unbuffered() -> None:
    """Python runs with sys.executable, -u, and PYTHONUNBUFFERED."""
    language = resolve("py")
    assert isinstance(language, Language)
    assert (
        Language(
            "python",
            [sys.executable, "-u", "main.py"],
            "main.py",
            {"PYTHONUNBUFFERED": "1"},
        )
        == language
    )


def test_shell_falls_back_to_sh(monkeypatch: pytest.MonkeyPatch) -> None:
    """``shell`` is bash where installed, else sh; the file is main.sh."""
    monkeypatch.setattr(
        shutil, "which", lambda name: "/bin/sh" if name == "sh" else None
    )
    assert Language("bash", ["/bin/sh", "main.sh"], "main.sh", {}) == resolve("shell")


def test_unknown_language_lists_the_known_ones() -> None:
    """An unknown name resolves to a sentence naming every canonical language."""
    reason = resolve("cobol")
    assert isinstance(reason, str)
    assert "unknown language 'cobol'; known: bash, javascript, python, sh" == reason


def test_child_env_is_built_from_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH, HOME, LANG, the language's variables, then the caller's, in that order."""
    monkeypatch.setattr(sys, "executable", "/opt/py/bin/python")
    language = Language("python", [], "main.py", {"PYTHONUNBUFFERED": "1"})
    env = child_env(language, {"LANG": "en_US.UTF-8", "A": "1"}, "/work/run")
    assert {
        "PATH": f"/opt/py/bin:{SAFE_PATH}",
        "HOME": "/work/run",
        "LANG": "en_US.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "A": "1",
    } == env


def test_child_path_without_a_known_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without sys.executable, PATH is the safe directories only."""
    monkeypatch.setattr(sys, "executable", "")
    env = child_env(Language("sh", [], "main.sh", {}), {}, "/h")
    assert SAFE_PATH == env["PATH"]
