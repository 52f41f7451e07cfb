"""The server's limits, and the admission of runs under them.

:class:`Limits` holds what an operator configures (``eventkit serve`` flags).
:class:`Admission` bounds how many runs execute at once and how many may wait
for a turn; a :class:`Ticket` is one run's place. The requests themselves are
read and checked against the limits in :mod:`eventkit.server.requests`.

Failure behaviour:

- Invalid limits raise :exc:`ValueError` when :class:`Limits` is made.
- :meth:`Admission.admit` raises :exc:`TooManyRequestsError` at once when all
  slots run and the queue is full: a refusal, never a wait without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from eventkit.exceptions import EventkitError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import TracebackType

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_OUTPUT_BYTES",
    "MAX_TIMEOUT_ACCEPTED",
    "Admission",
    "Limits",
    "Ticket",
    "TooManyRequestsError",
    "is_int",
    "is_number",
]

#: The largest ``timeout`` a request may ask for, in seconds; larger values
#: are refused, values up to it are lowered to ``max_timeout``.
MAX_TIMEOUT_ACCEPTED: Final = 86_400.0
#: ``eventkit serve``'s cap on a run's output, and the cap of the
#: non-streaming ``execute`` answers whatever the configured one.
DEFAULT_MAX_OUTPUT_BYTES: Final = 64 << 20
#: The largest file the files API reads or writes by default.
DEFAULT_MAX_FILE_BYTES: Final = 32 << 20


class TooManyRequestsError(EventkitError):
    """Every slot runs and the queue is full: the request is refused."""


def is_int(value: object) -> bool:
    """Tell whether ``value`` is an integer: a count, so not a bool."""
    # bool is an int subclass, and True is not a count.
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Tell whether ``value`` is a finite number: an integer (not a bool), a float."""
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


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
            bytes; None for no cap on streams (bounded by backpressure; the
            non-streaming answers, which hold it, then keep
            :data:`DEFAULT_MAX_OUTPUT_BYTES`).
        max_file_bytes: The largest file the files API reads or writes.

    Raises:
        ValueError: If a limit is not positive (``max_queue`` may be 0, and
            ``max_output_bytes`` 0 or None).
    """

    max_concurrent: int = 8
    max_queue: int = 64
    max_timeout: float = 300.0
    max_code_bytes: int = 1 << 20
    max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    def __post_init__(self) -> None:
        if not is_int(self.max_concurrent) or self.max_concurrent < 1:
            raise ValueError(
                f"max_concurrent must be >= 1, not {self.max_concurrent!r}"
            )
        if not is_int(self.max_queue) or self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, not {self.max_queue!r}")
        if (
            not is_number(self.max_timeout)
            or not 0 < self.max_timeout <= MAX_TIMEOUT_ACCEPTED
        ):
            raise ValueError(
                f"max_timeout must be in (0, {MAX_TIMEOUT_ACCEPTED:g}] seconds, "
                f"not {self.max_timeout!r}"
            )
        if not is_int(self.max_code_bytes) or self.max_code_bytes < 1:
            raise ValueError(
                f"max_code_bytes must be >= 1, not {self.max_code_bytes!r}"
            )
        if self.max_output_bytes is not None and (
            not is_int(self.max_output_bytes) or self.max_output_bytes < 0
        ):
            raise ValueError(
                f"max_output_bytes must be >= 0 or None, not {self.max_output_bytes!r}"
            )
        if not is_int(self.max_file_bytes) or self.max_file_bytes < 1:
            raise ValueError(
                f"max_file_bytes must be >= 1, not {self.max_file_bytes!r}"
            )

    @property
    def collected_output_bytes(self) -> int:
        """The output a non-streaming answer holds at most, in bytes."""
        if self.max_output_bytes is None:
            return DEFAULT_MAX_OUTPUT_BYTES
        return self.max_output_bytes

    @property
    def max_file_body_bytes(self) -> int:
        """The largest files-API request body: a file in base64, in JSON."""
        return self.max_file_bytes * 4 // 3 + (64 << 10)

    @property
    def max_message_bytes(self) -> int:
        """The largest request body or WebSocket message read, in bytes.

        JSON may spell a character of code with up to 6 bytes (``\\u0001``);
        64 KiB more leave room for the other fields.
        """
        return 6 * self.max_code_bytes + (64 << 10)


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
