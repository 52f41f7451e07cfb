"""Execute requests: read from the wire, checked field by field.

:func:`read_json` reads an HTTP request's JSON body; :func:`parse_hopx_execute`
and :func:`parse_aicomputer_execute` turn a decoded request into an
:class:`ExecuteRequest`, checked against the server's
:class:`~eventkit.server.limits.Limits`.

Failure behaviour: every check raises :exc:`RequestError` (a
:exc:`ValueError`) with a message meant for the client, naming the field
and what was wrong, and quoting at most a few dozen characters of the value;
nothing is coerced silently, except a ``timeout`` above ``max_timeout``,
which is lowered to it. The front ends answer it with 400 (HTTP) or an
``error`` frame and close 1008 (WebSocket).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import msgspec

from eventkit.exceptions import EventkitError
from eventkit.server.limits import MAX_TIMEOUT_ACCEPTED, is_number

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aiohttp import web

    from eventkit.server.limits import Limits

__all__ = [
    "DEFAULT_WORKDIR",
    "ExecuteRequest",
    "RequestError",
    "parse_aicomputer_execute",
    "parse_hopx_execute",
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


async def read_json(request: web.Request, *, optional: bool = False) -> Any:
    """Return the request's JSON body (None when empty and ``optional``).

    Raises:
        RequestError: If the body is missing (unless ``optional``) or not JSON.
    """
    raw = await request.read()
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
    """

    code: str
    language: str = "python"
    timeout: float = 60.0
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = DEFAULT_WORKDIR


def parse_hopx_execute(message: Any, limits: Limits) -> ExecuteRequest:
    """Validate a HOPX ``execute`` message (already decoded from JSON).

    Accepts the keys ``hopx-ai`` sends (``type``, ``code``, ``language``,
    ``timeout``, ``workdir``, ``env``) and the older ``working_dir``; other
    keys are ignored.

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
    return ExecuteRequest(
        code=_code(message.get("code"), limits),
        language=_language(message.get("language", "python")),
        timeout=_timeout(message.get("timeout"), 60.0, limits),
        env=_env(message.get("env"), "env"),
        workdir=_workdir(workdir),
    )


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
