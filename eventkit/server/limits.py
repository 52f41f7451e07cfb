"""The server's limits, the validation of execute requests, and admission.

:class:`Limits` holds what an operator configures (``eventkit serve`` flags).
:func:`parse_hopx_execute` and :func:`parse_aicomputer_execute` turn a decoded
request into an :class:`ExecuteRequest` or raise :exc:`RequestError` with a
message meant for the client. :class:`Admission` bounds how many runs execute
at once and how many may wait for a turn.

Failure behaviour:

- Invalid limits raise :exc:`ValueError` when :class:`Limits` is made.
- Every check of a request raises :exc:`RequestError` (a :exc:`ValueError`)
  naming the field and what was wrong; nothing is coerced silently, except a
  ``timeout`` above ``max_timeout``, which is lowered to it.
- :meth:`Admission.admit` raises :exc:`TooManyRequestsError` at once when all
  slots run and the queue is full: a refusal, never a wait without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from eventkit.exceptions import EventkitError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from types import TracebackType

__all__ = [
    "DEFAULT_WORKDIR",
    "MAX_TIMEOUT_ACCEPTED",
    "Admission",
    "ExecuteRequest",
    "Limits",
    "RequestError",
    "Ticket",
    "TooManyRequestsError",
    "parse_aicomputer_execute",
    "parse_hopx_execute",
]

#: Where code runs when the request names no directory (the HOPX SDK default).
DEFAULT_WORKDIR: Final = "/workspace"
#: The largest ``timeout`` a request may ask for, in seconds; larger values
#: are refused, values up to it are lowered to ``max_timeout``.
MAX_TIMEOUT_ACCEPTED: Final = 86_400.0
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


class TooManyRequestsError(EventkitError):
    """Every slot runs and the queue is full: the request is refused."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What the server allows.

    Args:
        max_concurrent: Runs executing at once, across all sandboxes.
        max_queue: Runs that may wait for a slot (or for their directory,
            see :class:`Admission`) beyond those; more are refused.
        max_timeout: Upper bound on a run's time, in seconds: a request asking
            for more gets this.
        max_code_bytes: Largest program accepted, in UTF-8 bytes.
        max_output_bytes: Cap on one run's stdout and stderr together, in
            bytes; None for no cap (streaming is bounded by backpressure).

    Raises:
        ValueError: If a limit is not positive (``max_queue`` may be 0, and
            ``max_output_bytes`` 0 or None).
    """

    max_concurrent: int = 8
    max_queue: int = 64
    max_timeout: float = 300.0
    max_code_bytes: int = 1 << 20
    max_output_bytes: int | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.max_concurrent) or self.max_concurrent < 1:
            raise ValueError(
                f"max_concurrent must be >= 1, not {self.max_concurrent!r}"
            )
        if not _is_int(self.max_queue) or self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, not {self.max_queue!r}")
        if (
            not _is_number(self.max_timeout)
            or not 0 < self.max_timeout <= MAX_TIMEOUT_ACCEPTED
        ):
            raise ValueError(
                f"max_timeout must be in (0, {MAX_TIMEOUT_ACCEPTED:g}] seconds, "
                f"not {self.max_timeout!r}"
            )
        if not _is_int(self.max_code_bytes) or self.max_code_bytes < 1:
            raise ValueError(
                f"max_code_bytes must be >= 1, not {self.max_code_bytes!r}"
            )
        if self.max_output_bytes is not None and (
            not _is_int(self.max_output_bytes) or self.max_output_bytes < 0
        ):
            raise ValueError(
                f"max_output_bytes must be >= 0 or None, not {self.max_output_bytes!r}"
            )

    @property
    def max_message_bytes(self) -> int:
        """The largest request body or WebSocket message read, in bytes.

        JSON may spell a character of code with up to 6 bytes (``\\u0001``);
        64 KiB more leave room for the other fields.
        """
        return 6 * self.max_code_bytes + (64 << 10)


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


def _is_int(value: object) -> bool:
    # bool is an int subclass, and True is not a count.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


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
    if not _is_number(value):
        raise RequestError(f"timeout must be a number of seconds, not {_show(value)}")
    seconds = float(value)  # type: ignore[arg-type]  # checked by _is_number
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


# Admission ------------------------------------------------------------------


class Ticket:
    """A run's place: counted from :meth:`Admission.admit` until released.

    Use it as a context manager (``with ticket:`` releases it however the run
    ends); :meth:`running` waits for an execution slot.
    """

    __slots__ = ("_admission", "_released")

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._released = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Wait for a free slot (the run is queued meanwhile), hold it inside."""
        slots = self._admission._slots
        await slots.acquire()
        self._admission._running += 1
        try:
            yield
        finally:
            self._admission._running -= 1
            slots.release()

    def release(self) -> None:
        """Give the place back; idempotent."""
        if not self._released:
            self._released = True
            self._admission._admitted -= 1

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class Admission:
    """Bounds running and waiting runs: ``max_concurrent`` + ``max_queue``.

    A request is admitted (:meth:`admit`) before it waits for anything; while
    admitted and not running it counts as queued, whatever it waits for (a
    slot, or its directory, which one run at a time may use). Slots are
    granted in arrival order (:class:`asyncio.Semaphore` is fair).

    Args:
        max_concurrent: Slots: runs executing at once.
        max_queue: Admitted runs that may wait beyond those.
    """

    __slots__ = ("_admitted", "_capacity", "_running", "_slots")

    def __init__(self, max_concurrent: int, max_queue: int) -> None:
        self._slots = asyncio.Semaphore(max_concurrent)
        self._capacity = max_concurrent + max_queue
        self._admitted = 0
        self._running = 0

    def admit(self) -> Ticket:
        """Return a ticket, or refuse at once.

        Raises:
            TooManyRequestsError: If ``max_concurrent + max_queue`` runs are
                admitted already.
        """
        if self._admitted >= self._capacity:
            raise TooManyRequestsError(
                f"too many executions: {self._running} running and "
                f"{self._admitted - self._running} waiting; try again later"
            )
        self._admitted += 1
        return Ticket(self)

    @property
    def running(self) -> int:
        """Runs holding a slot now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Admitted runs not holding a slot yet."""
        return self._admitted - self._running
