"""Execute requests: reading and checking them, without a server."""

from __future__ import annotations

import math
from typing import Any, cast

import pytest

from eventkit.server.limits import Limits
from eventkit.server.requests import (
    ExecuteRequest,
    RequestError,
    parse_aicomputer_execute,
    parse_command,
    parse_env,
    parse_hopx_execute,
    parse_hopx_run,
    read_json,
)

LIMITS = Limits(max_timeout=30, max_code_bytes=100)


def test_hopx_message_as_the_sdk_sends_it() -> None:
    """The SDK's message is read field by field."""
    request = parse_hopx_execute(
        {
            "type": "execute",
            "code": "print(1)",
            "language": "python",
            "timeout": 5,
            "workdir": "/workspace/sub",
            "env": {"A": "1"},
        },
        LIMITS,
    )
    assert (
        ExecuteRequest("print(1)", "python", 5.0, {"A": "1"}, "/workspace/sub")
        == request
    )


def test_hopx_old_key_and_defaults() -> None:
    """``working_dir`` (hopx 0.1.10) works; defaults fill the rest."""
    request = parse_hopx_execute(
        {"type": "execute", "code": "", "working_dir": "data"}, LIMITS
    )
    assert ("python", 30.0, {}, "/workspace/data") == (
        request.language,
        request.timeout,
        request.env,
        request.workdir,
    )


def test_timeout_is_lowered_to_max_timeout() -> None:
    """A timeout above the server's maximum is capped, not refused."""
    request = parse_aicomputer_execute({"code": "", "timeout": 3600}, LIMITS)
    assert 30.0 == request.timeout


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ([], "must be a JSON object"),
        ({"type": "run", "code": ""}, "unknown message type 'run'"),
        ({"type": "execute"}, "code is required"),
        ({"type": "execute", "code": 1}, "code must be a string"),
        ({"type": "execute", "code": "x" * 101}, "over the limit of 100"),
        ({"type": "execute", "code": "é" * 51}, "code is 102 bytes"),
        ({"type": "execute", "code": "", "timeout": 0}, "timeout must be in"),
        ({"type": "execute", "code": "", "timeout": -1}, "timeout must be in"),
        ({"type": "execute", "code": "", "timeout": 1e9}, "timeout must be in"),
        ({"type": "execute", "code": "", "timeout": True}, "timeout must be a"),
        ({"type": "execute", "code": "", "timeout": "5"}, "timeout must be a"),
        ({"type": "execute", "code": "", "timeout": math.nan}, "timeout must be a"),
        ({"type": "execute", "code": "", "language": ""}, "language must be"),
        ({"type": "execute", "code": "", "language": 3}, "language must be"),
        ({"type": "execute", "code": "", "env": []}, "env must be an object"),
        ({"type": "execute", "code": "", "env": {"A=B": "1"}}, "invalid variable"),
        ({"type": "execute", "code": "", "env": {"A": 1}}, "must be a string"),
        ({"type": "execute", "code": "", "workdir": 7}, "workdir must be a string"),
        ({"type": "execute", "code": "", "workdir": ""}, "non-empty path"),
        ({"type": "execute", "code": "", "workdir": "/a/../.."}, "must not contain"),
    ],
)
def test_invalid_hopx_messages(message: object, expected: str) -> None:
    """Each invalid field gets a message that names it."""
    with pytest.raises(RequestError, match=expected.replace(".", r"\.")):
        parse_hopx_execute(message, LIMITS)


@pytest.mark.parametrize("field", ["type", "language", "timeout", "workdir"])
def test_error_messages_stay_small(field: str) -> None:
    """A huge rejected value is quoted only in part."""
    message = {"type": "execute", "code": "", field: ["x" * 10**6]}
    with pytest.raises(RequestError) as refused:
        parse_hopx_execute(message, LIMITS)
    assert len(str(refused.value)) < 200


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("print(1)", "must be a JSON object"),
        ({}, "code is required"),
        ({"file_path": "/x.py"}, "file_path"),
        ({"code": "", "environment": {"": "x"}}, "invalid variable"),
    ],
)
def test_invalid_aicomputer_bodies(body: object, expected: str) -> None:
    """AI Computer bodies are checked the same way."""
    with pytest.raises(RequestError, match=expected):
        parse_aicomputer_execute(body, LIMITS)


class Body:
    """A request as read_json sees it: only its body."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    async def read(self) -> bytes:
        """Return the body."""
        return self.raw


async def test_read_json() -> None:
    """A JSON body is decoded; an empty one is None only where optional."""
    assert {"code": "1"} == await read_json(cast("Any", Body(b'{"code": "1"}')))
    assert None is await read_json(cast("Any", Body(b" \n")), optional=True)
    with pytest.raises(RequestError, match="a JSON request body is required"):
        await read_json(cast("Any", Body(b"")))


@pytest.mark.parametrize("raw", [b"{", b"\xff", b"[" * 100_000])
async def test_read_json_refuses_what_is_not_json(raw: bytes) -> None:
    """Broken JSON, bytes that are not UTF-8, absurd nesting: RequestError."""
    with pytest.raises(RequestError, match="not valid JSON"):
        await read_json(cast("Any", Body(raw)))


def test_hopx_run_body_and_its_default_timeout() -> None:
    """The HTTP /execute body: the execute message's fields, without type."""
    run = parse_hopx_run(
        {"code": "1", "language": "bash", "working_dir": "/w"},
        LIMITS,
        default_timeout=9,
    )
    assert ("bash", 9.0, "/w") == (run.language, run.timeout, run.workdir)
    with pytest.raises(RequestError, match="JSON object"):
        parse_hopx_run([], LIMITS)


def test_commands_run_as_one_exec_line() -> None:
    """bash -c LINE: a one-line program exec-ing it; the line shown as written."""
    run, shown = parse_command(
        {"command": "bash", "args": ["-c", "echo 'hi'; exit 2"], "workdir": "/x"},
        LIMITS,
    )
    assert ("bash", "/x", "echo 'hi'; exit 2") == (run.language, run.workdir, shown)
    assert run.code == "exec bash -c 'echo '\"'\"'hi'\"'\"'; exit 2'"
    run, shown = parse_command({"command": "ls", "args": ["-l", "a b"]}, LIMITS)
    assert ("exec ls -l 'a b'", "ls -l 'a b'", 30.0) == (run.code, shown, run.timeout)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"command": ""}, "command must be a non-empty string"),
        ({"command": "ls", "args": "-l"}, "args must be a list of strings"),
        ({"command": "ls", "args": ["\0"]}, "must not contain NUL"),
    ],
)
def test_invalid_commands(body: dict[str, object], expected: str) -> None:
    """Commands without a name, args that are not strings, NUL: refused."""
    with pytest.raises(RequestError, match=expected):
        parse_command(body, LIMITS)


def test_env_vars_are_checked() -> None:
    """Sandbox variables: names and string values, as a run's env."""
    assert {"A": "1"} == parse_env({"A": "1"})
    with pytest.raises(RequestError, match="env_vars"):
        parse_env({"A=B": "1"})
