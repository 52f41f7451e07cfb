"""``eventkit.cli.errors``: the failures a user can cause, each in one line."""

from __future__ import annotations

import argparse
import errno
import socket

import pytest
import websockets.exceptions
from websockets.http11 import Response

from eventkit.cli.errors import CommandFailure, describe, file_error
from eventkit.exceptions import HTTPError, SinkError, StreamClosedError


def args(**flags: object) -> argparse.Namespace:
    """The arguments of a ``run`` command with these flags."""
    return argparse.Namespace(
        **{"url": None, "aicomputer": None, "token": None, **flags}
    )


def refused(status: int) -> websockets.exceptions.InvalidStatus:
    """What websockets raises when the upgrade is answered ``status``."""
    return websockets.exceptions.InvalidStatus(
        Response(status, "No", websockets.Headers())
    )


def test_refused_token_says_pass_token() -> None:
    """401 on the WebSocket: the status, and to pass --token (a valid one)."""
    told = describe(refused(401), args(url="ws://h"))
    assert told is not None
    assert "401" in told
    assert told.endswith(": pass --token")
    assert str(describe(refused(403), args(url="ws://h", token="t"))).endswith(
        ": pass a valid --token"
    )
    assert not str(describe(refused(404), args())).endswith("--token")


def test_http_error_401_says_pass_token() -> None:
    """AI Computer's 401: the request, the status, the hint."""
    told = describe(HTTPError("POST", "http://h/dev/token", 401, ""), args())
    assert "POST http://h/dev/token answered HTTP 401: pass --token" == told


#: Errors a user can cause, and the line each reads as.
FAILURES = [
    (
        ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"),
        "cannot reach ws://h: connection refused",
    ),
    (
        socket.gaierror(-2, "Name or service not known"),
        "cannot reach ws://h: name or service not known",
    ),
    (TimeoutError(), "no answer from ws://h in time"),
    (
        FileNotFoundError(errno.ENOENT, "No such file or directory", "x.jsonl"),
        "no such file: x.jsonl",
    ),
    (
        PermissionError(errno.EACCES, "Permission denied", "out.jsonl"),
        "permission denied: out.jsonl",
    ),
    (
        StreamClosedError(1006, "lost"),
        "stream closed with code 1006 before the run completed: lost",
    ),
    (CommandFailure("said already"), "said already"),
]


@pytest.mark.parametrize(("error", "expected"), FAILURES)
def test_user_failures_are_one_line(error: BaseException, expected: str) -> None:
    """Each failure a user can cause reads as a short line, not an [Errno]."""
    assert expected == describe(error, args(url="ws://h"))


def test_output_failure_tells_its_cause() -> None:
    """A sink's failure is told by its cause."""
    error = SinkError("sink failed", [])
    error.__cause__ = OSError(errno.ENOSPC, "No space left on device", "out.jsonl")
    assert "an output failed: no space left on device: out.jsonl" == describe(error)


def test_unknown_errors_are_bugs() -> None:
    """An error nobody can cause from the command line keeps its traceback."""
    assert describe(KeyError("x")) is None


def test_file_error_without_a_known_errno() -> None:
    """Other file errors: the system's words, in lower case."""
    error = OSError(errno.EROFS, "Read-only file system")
    assert "read-only file system: /x" == file_error(error, "/x")
