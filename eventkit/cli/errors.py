"""How a command stops: :exc:`CommandExit`, :exc:`CommandFailure`, and one-line errors.

A command that has printed why it stops raises :exc:`CommandExit` from however
deep it is; :func:`eventkit.cli.main` returns the status it carries.
:func:`describe` turns the failures a user can cause (a wrong token, an
unreachable URL, Redis down, a missing file) into one line for ``error:``;
anything it does not know is a bug, and keeps its traceback.

The exit statuses, for every command (``eventkit --help`` and the README say
the same): :data:`USAGE` for a usage error (bad flags, a missing input file),
:data:`FAILURE` for a runtime failure; ``run`` exits with the code's own
status otherwise, 128 + N for a run killed by (or interrupted with) signal N.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import TYPE_CHECKING, Final

from eventkit.exceptions import (
    DecodeError,
    EventkitError,
    HTTPError,
    SandboxError,
    SinkError,
    StreamClosedError,
)

if TYPE_CHECKING:
    import argparse

__all__ = [
    "FAILURE",
    "USAGE",
    "CommandExit",
    "CommandFailure",
    "describe",
    "file_error",
]

#: The exit status of a usage error: bad flags, a missing input file.
USAGE: Final = 2
#: The exit status of a runtime failure: a sandbox, Redis or an output that
#: cannot be reached, a stream that broke off.
FAILURE: Final = 1

#: HTTP statuses that mean the token is missing or wrong.
_REFUSED_STATUSES: Final = frozenset({401, 403})
#: File errors said in a few words, as ``ls`` and ``cat`` say them.
_FILE_ERRORS: Final = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "not a directory",
}


class CommandExit(EventkitError):
    """Stop the command with this exit status; the message was printed.

    Args:
        status: The exit status of the command.
    """

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class CommandFailure(EventkitError):
    """A runtime failure, already said in one line: its message is the line."""


def describe(exc: BaseException, args: argparse.Namespace | None = None) -> str | None:
    """Return one line telling what went wrong, or None for an unknown error.

    Args:
        exc: What a command caught.
        args: The command's arguments, for hints (``--token``) and to name
            what could not be reached (``--url``, ``--aicomputer``).
    """
    token = getattr(args, "token", None)
    target = getattr(args, "url", None) or getattr(args, "aicomputer", None)
    if isinstance(exc, CommandFailure | DecodeError | StreamClosedError):
        return str(exc)
    if isinstance(exc, SandboxError):
        return f"the sandbox failed: {exc}"
    if isinstance(exc, HTTPError):
        return f"{exc}{_token_hint(exc.status, token)}"
    if isinstance(exc, SinkError):
        cause = exc.__cause__
        told = describe(cause, args) if cause is not None else None
        return f"an output failed: {told or repr(cause)}"
    told = _library_error(exc, token, target)
    if told is not None:
        return told
    if isinstance(exc, TimeoutError):
        where = f" from {target}" if target else ""
        return f"no answer{where} in time"
    if isinstance(exc, OSError):
        return _os_error(exc, target)
    return None


def file_error(exc: OSError, path: object) -> str:
    """Return ``no such file: PATH`` and the like, for an error opening ``path``."""
    told = _FILE_ERRORS.get(exc.errno or 0)
    if told is None:
        told = (exc.strerror or str(exc)).lower()
    return f"{told}: {path}"


def _os_error(exc: OSError, target: str | None) -> str:
    """A socket or file error in a few words."""
    if exc.filename is not None:
        return file_error(exc, exc.filename)
    # asyncio's "Connect call failed ('127.0.0.1', 1)" says less than errno.
    if exc.errno is not None and exc.errno > 0:
        reason = os.strerror(exc.errno)
    else:
        reason = exc.strerror or str(exc) or type(exc).__name__
    where = f"cannot reach {target}" if target else "cannot connect"
    return f"{where}: {reason[:1].lower()}{reason[1:]}"


def _library_error(
    exc: BaseException, token: str | None, target: str | None
) -> str | None:
    """The errors of websockets, aiohttp and redis, if their modules are loaded.

    Looked up in :data:`sys.modules`: an error of a library that was never
    imported cannot have been raised, and importing it here would cost time.
    """
    websockets = sys.modules.get("websockets.exceptions")
    if websockets is not None:
        if isinstance(exc, websockets.InvalidStatus):
            status = exc.response.status_code
            return f"{exc}{_token_hint(status, token)}"
        if isinstance(exc, websockets.InvalidURI):
            return f"not a WebSocket URL: {exc.uri}"
        if isinstance(exc, websockets.WebSocketException):
            return f"{target or 'the sandbox'}: {exc}"
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None:
        if isinstance(exc, aiohttp.ClientConnectorError):
            return _os_error(exc.os_error, target or f"{exc.host}:{exc.port}")
        if isinstance(exc, aiohttp.InvalidURL):
            return f"not a URL: {exc.url}"
        if isinstance(exc, aiohttp.ClientError):
            return f"{target or 'the sandbox'}: {exc}"
    redis = sys.modules.get("redis.exceptions")
    if redis is not None and isinstance(exc, redis.RedisError):
        return f"redis: {exc}"
    return None


def _token_hint(status: int, token: str | None) -> str:
    """What to do about a refused token, after the status."""
    if status not in _REFUSED_STATUSES:
        return ""
    return ": pass a valid --token" if token else ": pass --token"
