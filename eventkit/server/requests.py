"""Requests: read from the wire, checked field by field.

:func:`read_json` and :func:`read_body` read an HTTP request's body, within
a time and a size; :func:`parse_hopx_execute`, :func:`parse_hopx_run`,
:func:`parse_command` and :func:`parse_aicomputer_execute` turn a decoded
request into an :class:`ExecuteRequest`, checked against the server's
:class:`~eventkit.server.limits.Limits`; :func:`parse_env` checks a set of
environment variables.

Failure behaviour: every check raises :exc:`RequestError` (a
:exc:`ValueError`) with a message meant for the client, naming the field
and what was wrong, and quoting at most a few dozen characters of the value;
nothing is coerced silently, except a ``timeout`` above ``max_timeout``,
which is lowered to it. The front ends answer it with 400 (HTTP) or an
``error`` frame and close 1008 (WebSocket). A body that does not arrive
within its time raises :exc:`BodyTimeoutError` (answered 408, the
connection closed); one over its size, aiohttp's 413.
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import msgspec
from aiohttp import web

from eventkit.exceptions import EventkitError
from eventkit.server.limits import MAX_TIMEOUT_ACCEPTED, is_int, is_number

if TYPE_CHECKING:
    from collections.abc import Mapping

    from eventkit.server.limits import Limits

__all__ = [
    "DEFAULT_WORKDIR",
    "BodyTimeoutError",
    "ExecuteRequest",
    "RequestError",
    "ResumeRequest",
    "parse_aicomputer_execute",
    "parse_command",
    "parse_env",
    "parse_hopx_execute",
    "parse_hopx_run",
    "parse_hopx_stream",
    "read_body",
    "read_json",
]

#: Where code runs when the request names no directory (the HOPX SDK default).
DEFAULT_WORKDIR: Final = "/workspace"
#: Bounds on the other fields, so that no request can make the server build
#: something huge: names, languages, variables.
_MAX_LANGUAGE: Final = 32
_MAX_WORKDIR: Final = 4096
_MAX_ENV_VARS: Final = 1024
_MAX_ENV_NAME: Final = 256
#: Characters of a rejected value quoted in an error message.
_MAX_SHOWN: Final = 80


class RequestError(EventkitError, ValueError):
    """A request is invalid; the message says why, for the client."""


class BodyTimeoutError(EventkitError):
    """A request's body did not arrive in time; the client is too slow."""


async def read_body(
    request: web.Request, *, body_timeout: float | None, max_bytes: int | None = None
) -> bytes:
    """Return the request's body, read within ``body_timeout`` seconds.

    Args:
        request: The request.
        body_timeout: Seconds for the whole body; None for no limit.
        max_bytes: The largest body accepted; the application's
            ``client_max_size`` when None.

    Raises:
        BodyTimeoutError: If it did not arrive in time.
        web.HTTPRequestEntityTooLarge: If it is larger than ``max_bytes``.
    """
    try:
        async with asyncio.timeout(body_timeout):
            if max_bytes is None:
                return await request.read()
            return await _read_at_most(request, max_bytes)
    except TimeoutError:
        raise BodyTimeoutError(
            f"the request body did not arrive within {body_timeout:g} s"
        ) from None


async def _read_at_most(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise web.HTTPRequestEntityTooLarge(
            max_size=max_bytes, actual_size=request.content_length
        )
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > max_bytes:
            raise web.HTTPRequestEntityTooLarge(
                max_size=max_bytes, actual_size=len(body)
            )
    return bytes(body)


async def read_json(
    request: web.Request,
    *,
    optional: bool = False,
    body_timeout: float | None = None,
    max_bytes: int | None = None,
) -> Any:
    """Return the request's JSON body (None when empty and ``optional``).

    Args:
        request: The request.
        optional: Whether an empty body is fine.
        body_timeout: Seconds for the whole body; see :func:`read_body`.
        max_bytes: The largest body; see :func:`read_body`.

    Raises:
        RequestError: If the body is missing (unless ``optional``) or not JSON.
        BodyTimeoutError: If it did not arrive in time.
    """
    raw = await read_body(request, body_timeout=body_timeout, max_bytes=max_bytes)
    if not raw.strip():
        if optional:
            return None
        raise RequestError("a JSON request body is required")
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeError, RecursionError) as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}") from None


@dataclass(frozen=True, slots=True)
class ExecuteRequest:
    """One validated request to run code.

    Attributes:
        code: The program.
        language: As requested (the local executor resolves it).
        timeout: Seconds, already lowered to ``max_timeout``.
        env: Variables added to the program's minimal environment.
        workdir: The directory inside the sandbox, an absolute POSIX path
            without ``..``.
        resumable: Whether the client asked for a resumable execution (see
            :mod:`eventkit.server.resume`).
    """

    code: str
    language: str = "python"
    timeout: float = 60.0
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = DEFAULT_WORKDIR
    resumable: bool = False


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """A ``resume`` message: go on with a resumable execution on this connection.

    Attributes:
        execution_id: The execution, as its first frame named it.
        after: The last frame the client received; -1 for none.
    """

    execution_id: str
    after: int


def parse_hopx_execute(message: Any, limits: Limits) -> ExecuteRequest:
    """Validate a HOPX ``execute`` message (already decoded from JSON).

    Accepts the keys ``hopx-ai`` sends (``type``, ``code``, ``language``,
    ``timeout``, ``workdir``, ``env``), the older ``working_dir``, and
    eventkit's ``resumable`` (true or false); other keys are ignored.

    Raises:
        RequestError: If the message is not an ``execute`` object or a field
            is missing, of the wrong type, or out of range.
    """
    if not isinstance(message, dict):
        raise RequestError("the message must be a JSON object")
    kind = message.get("type")
    if kind != "execute":
        raise RequestError(f"unknown message type {_show(kind)}: expected 'execute'")
    workdir = message.get("workdir")
    if workdir is None:
        workdir = message.get("working_dir")
    resumable = message.get("resumable", False)
    if not isinstance(resumable, bool):
        raise RequestError(f"resumable must be true or false, not {_show(resumable)}")
    return ExecuteRequest(
        code=_code(message.get("code"), limits),
        language=_language(message.get("language", "python")),
        timeout=_timeout(message.get("timeout"), 60.0, limits),
        env=_env(message.get("env"), "env"),
        workdir=_workdir(workdir),
        resumable=resumable,
    )


def parse_hopx_stream(message: Any, limits: Limits) -> ExecuteRequest | ResumeRequest:
    """Validate the first message of an ``/execute/stream`` connection.

    An ``execute`` message (:func:`parse_hopx_execute`), or eventkit's
    ``{"type": "resume", "execution_id": ID, "after": SEQ}``.

    Raises:
        RequestError: If it is neither, or a field is invalid.
    """
    if not isinstance(message, dict) or message.get("type") != "resume":
        return parse_hopx_execute(message, limits)
    execution_id = message.get("execution_id")
    if not isinstance(execution_id, str) or not 0 < len(execution_id) <= 64:
        raise RequestError("execution_id must be the id an execution frame named")
    after = message.get("after")
    if not is_int(after) or not -1 <= after < 2**63:  # type: ignore[operator]
        raise RequestError(f"after must be a whole number >= -1, not {_show(after)}")
    return ResumeRequest(execution_id, after)  # type: ignore[arg-type]


def parse_hopx_run(
    body: Any, limits: Limits, *, default_timeout: float = 60.0
) -> ExecuteRequest:
    """Validate a HOPX agent ``/execute`` (or ``/execute/background``) body.

    The fields of :func:`parse_hopx_execute`, without ``type``.

    Raises:
        RequestError: If the body is not an object or a field is invalid.
    """
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return parse_hopx_execute(
        {**body, "type": "execute", "timeout": body.get("timeout", default_timeout)},
        limits,
    )


def parse_command(body: Any, limits: Limits) -> tuple[ExecuteRequest, str]:
    """Validate a HOPX agent ``/commands/run`` (or ``/background``) body.

    ``{"command", "args"?, "timeout"?, "workdir"?, "env"?}``: the SDK sends
    ``bash`` with ``["-c", LINE]``. It runs as a one-line bash program that
    execs the command, so the program file is read once and the command's
    exit status is the run's.

    Returns:
        The run, and the command line as shown to the client.

    Raises:
        RequestError: If the body is not an object or a field is invalid.
    """
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    command = body.get("command")
    if not isinstance(command, str) or not command.strip():
        raise RequestError(f"command must be a non-empty string, not {_show(command)}")
    args = body.get("args", [])
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise RequestError("args must be a list of strings")
    argv = [command, *args]
    if any("\0" in arg for arg in argv):
        raise RequestError("command and args must not contain NUL")
    line = shlex.join(argv)
    workdir = body.get("workdir", body.get("working_dir"))
    run = ExecuteRequest(
        code=_code("exec " + line, limits),
        language="bash",
        timeout=_timeout(body.get("timeout"), 30.0, limits),
        env=_env(body.get("env"), "env"),
        workdir=_workdir(workdir),
    )
    shown = (
        args[1]
        if command in ("bash", "sh") and args[:1] == ["-c"] and len(args) == 2
        else line
    )
    return run, shown


def parse_env(value: object, name: str = "env_vars") -> dict[str, str]:
    """Validate a set of environment variables (names and string values).

    Raises:
        RequestError: If it is not an object of strings, has too many, or a
            name is invalid.
    """
    return _env(value, name)


def parse_aicomputer_execute(body: Any, limits: Limits) -> ExecuteRequest:
    """Validate an AI Computer execute body (already decoded from JSON).

    Accepts ``code``, ``timeout`` (30 s when absent, as the client's default)
    and ``environment``; Python only, in the sandbox's ``/workspace``.

    Raises:
        RequestError: If the body is not an object or a field is missing, of
            the wrong type, or out of range.
    """
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    if "file_path" in body and "code" not in body:
        raise RequestError("running a file (file_path) is not supported; send code")
    return ExecuteRequest(
        code=_code(body.get("code"), limits),
        timeout=_timeout(body.get("timeout"), 30.0, limits),
        env=_env(body.get("environment"), "environment"),
    )


# Field checks ---------------------------------------------------------------


def _code(value: object, limits: Limits) -> str:
    if value is None:
        raise RequestError("code is required")
    if not isinstance(value, str):
        raise RequestError(f"code must be a string, not {_kind(value)}")
    # Cheap bound first: a character is at most 4 UTF-8 bytes.
    if len(value) * 4 > limits.max_code_bytes:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > limits.max_code_bytes:
            raise RequestError(
                f"code is {size} bytes, over the limit of {limits.max_code_bytes}"
            )
    return value


def _language(value: object) -> str:
    if not isinstance(value, str):
        raise RequestError(f"language must be a string, not {_kind(value)}")
    name = value.strip()
    if not name or len(name) > _MAX_LANGUAGE:
        raise RequestError(
            f"language must be a short non-empty name, not {_show(value)}"
        )
    return name


def _timeout(value: object, default: float, limits: Limits) -> float:
    if value is None:
        return min(default, limits.max_timeout)
    if not is_number(value):
        raise RequestError(f"timeout must be a number of seconds, not {_show(value)}")
    seconds = float(value)  # type: ignore[arg-type]  # checked by is_number
    if not 0 < seconds <= MAX_TIMEOUT_ACCEPTED:
        raise RequestError(
            f"timeout must be in (0, {MAX_TIMEOUT_ACCEPTED:g}] seconds, "
            f"not {_show(value)}"
        )
    return min(seconds, limits.max_timeout)


def _env(value: object, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f"{name} must be an object of strings, not {_kind(value)}")
    if len(value) > _MAX_ENV_VARS:
        raise RequestError(f"{name} has {len(value)} variables, over {_MAX_ENV_VARS}")
    for key, item in value.items():
        if (
            not isinstance(key, str)
            or not key
            or len(key) > _MAX_ENV_NAME
            or "=" in key
            or "\0" in key
        ):
            raise RequestError(f"{name}: invalid variable name {_show(key)}")
        if not isinstance(item, str) or "\0" in item:
            raise RequestError(f"{name}[{_show(key)}] must be a string without NUL")
    return dict(value)


def _workdir(value: object) -> str:
    if value is None:
        return DEFAULT_WORKDIR
    if not isinstance(value, str):
        raise RequestError(f"workdir must be a string, not {_kind(value)}")
    if not value or len(value) > _MAX_WORKDIR or "\0" in value:
        raise RequestError(f"workdir must be a non-empty path, not {_show(value)}")
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise RequestError(f"workdir must not contain '..': {_show(value)}")
    # A relative path is taken from the default directory, as a shell would.
    if not value.startswith("/"):
        parts = [DEFAULT_WORKDIR.strip("/"), *parts]
    return "/" + "/".join(parts)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _show(value: object) -> str:
    """Return ``repr(value)``, cut short: error messages must stay small."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
