"""Resumable executions: frames kept in a bounded ring past a lost connection.

The server's half of an eventkit extension of the HOPX agent protocol (the
wire is in :mod:`eventkit.protocol.hopx`, the WebSocket handling in
:mod:`eventkit.server.hopx`). A resumable execution's run is a task of
:class:`Executions`, not of the connection that asked for it: it writes its
frames, numbered from 0, into its :class:`Execution`'s ring, and whichever
connection is attached (a :class:`Reader`) sends them on.

- **Nothing lost while a client reads.** While a reader is attached, the
  ring never drops a frame the reader has not sent: the run waits (its
  process's output pipe fills and the program blocks, as without
  resumption). Frames already sent are kept too, up to the ring's size,
  since a connection lost mid-flight loses what was in it.
- **A lost connection** detaches its reader; the run goes on, its oldest
  frames dropped as the ring fills, for up to ``window`` seconds, after
  which the run is cancelled (its process killed). A reader attached with
  :meth:`Execution.attach` (a ``resume`` message) gets every frame after the
  one it names, or, when some are gone, :attr:`Reader.gap` says the first
  one held and it goes on from there.
- **A clean close** by the client cancels the run (:meth:`Execution.cancel`)
  and forgets the execution, as a non-resumable run is cancelled.
- **An ended execution** is kept ``window`` seconds, then forgotten; a
  resume after that is refused by the handler (``RESUME_UNAVAILABLE``).
- **Memory.** Each ring holds at most ``buffer_bytes`` (and always its
  newest frame); all of them together at most ``total_bytes``: past it, the
  oldest ended executions are forgotten first, then the growing ring drops
  its own oldest frames (never one its reader has not sent).

A second connection resuming an execution displaces the first
(:attr:`Reader.displaced`): a client that reconnects after a cut the server
has not noticed yet must not wait for the old connection to time out.
Nothing here raises on a client's input; :meth:`Executions.start` raises
:exc:`RuntimeError` once the server is closing.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from typing import TYPE_CHECKING, Final

import structlog

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

__all__ = [
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_TOTAL_BYTES",
    "DEFAULT_WINDOW",
    "Execution",
    "Executions",
    "Reader",
]

#: Bytes of frames one execution's ring holds by default.
DEFAULT_BUFFER_BYTES: Final = 16 << 20
#: Bytes of frames all rings together hold by default.
DEFAULT_TOTAL_BYTES: Final = 256 << 20
#: Seconds an execution waits for a resume, running or ended, by default.
DEFAULT_WINDOW: Final = 60.0

_log: Final = structlog.get_logger("eventkit.server.resume")


class Reader:
    """One connection's place in an execution's frames.

    Attributes:
        cursor: The sequence of the next frame to send.
        gap: The first frame held, when frames after the one asked for were
            gone at attach time (send ``RESUME_GAP`` first); else None.
        displaced: Whether another connection resumed the execution since:
            this one must stop sending.
    """

    __slots__ = ("_execution", "cursor", "displaced", "gap")

    def __init__(self, execution: Execution, cursor: int, gap: int | None) -> None:
        self._execution = execution
        self.cursor = cursor
        self.gap = gap
        self.displaced = False

    async def next(self) -> bytes | None:
        """Return the next frame to send, waiting for the run to write it.

        None once every frame is sent and the execution has ended, or when
        this reader was displaced. The frame counts as sent after
        :meth:`sent`.
        """
        execution = self._execution
        while not self.displaced:
            index = self.cursor - execution.first
            if index < len(execution.frames):
                return execution.frames[index]
            if execution.ended:
                return None
            execution.written.clear()
            await execution.written.wait()
        return None

    def sent(self) -> None:
        """Count the frame :meth:`next` returned as sent: the ring may drop it."""
        self.cursor += 1
        self._execution.room.set()


class Execution:
    """A resumable execution: its frames, its reader, its end.

    Made by :meth:`Executions.start`; the run writes with :meth:`append`
    and :meth:`end`, connections read through :meth:`attach`.

    Attributes:
        id: What the client resumes it by.
        owner: Who may resume it (the handler's choice: the sandbox).
        frames: The frames held, oldest first.
        first: The sequence of ``frames[0]``.
        size: Their bytes.
        ended: Whether the run is over: no frame will be added.
        close_code: The WebSocket close code a connection ends with once
            it has sent every frame (set by :meth:`end`).
        close_reason: Its reason.
        reader: The attached connection's reader, or None while detached.
        written: Set when a frame is added or the run ends.
        room: Set when a reader sends a frame or detaches.
    """

    __slots__ = (
        "_executions",
        "_expiry",
        "_task",
        "close_code",
        "close_reason",
        "ended",
        "first",
        "frames",
        "id",
        "owner",
        "reader",
        "room",
        "size",
        "written",
    )

    def __init__(self, executions: Executions, owner: object) -> None:
        self._executions = executions
        self.id = secrets.token_urlsafe(16)
        self.owner = owner
        self.frames: deque[bytes] = deque()
        self.first = 0
        self.size = 0
        self.ended = False
        self.close_code = 1000
        self.close_reason = ""
        self.reader: Reader | None = None
        self.written = asyncio.Event()
        self.room = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def next(self) -> int:
        """The sequence the next frame written gets."""
        return self.first + len(self.frames)

    async def append(self, frame: bytes) -> None:
        """Add the run's next frame; wait while room needs a frame not yet sent.

        Room is made by dropping the oldest frames: past the ring's size, or
        past the total of every ring once ended executions are forgotten.
        """
        self.frames.append(frame)
        self.size += len(frame)
        executions = self._executions
        executions.total += len(frame)
        self.written.set()
        while len(self.frames) > 1 and (
            self.size > executions.buffer_bytes or executions.over()
        ):
            reader = self.reader
            if reader is not None and reader.cursor <= self.first:
                # The reader has not sent it: wait for it to, or to leave.
                self.room.clear()
                await self.room.wait()
                continue
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        size = len(self.frames.popleft())
        self.first += 1
        self.size -= size
        self._executions.total -= size

    def end(self, code: int = 1000, reason: str = "") -> None:
        """Mark the run over; connections close with ``code`` once all is sent."""
        if self.ended:
            return
        self.ended = True
        self.close_code, self.close_reason = code, reason
        self.written.set()
        if self._executions.holds(self):
            self._expire_in(self._executions.window, self._expired)

    def _expired(self) -> None:
        """The window after the end is over: forget, unless a client still reads."""
        if self.reader is not None:
            self._expire_in(self._executions.window, self._expired)
        else:
            self._forget()

    def attach(self, after: int) -> Reader:
        """Attach a connection that has every frame up to ``after`` (-1: none).

        Displaces the reader attached before, if any.
        """
        if self.reader is not None:
            self.reader.displaced = True
            self.written.set()  # wakes it, to see it is displaced
        first = self.first
        cursor = min(max(after + 1, 0), self.next)
        gap = None
        if cursor < first:
            cursor, gap = first, first
        self.reader = reader = Reader(self, cursor, gap)
        if not self.ended:
            self._expire_in(None, None)
        return reader

    def detach(self, reader: Reader | None) -> None:
        """Detach ``reader``, whose connection is gone; the run goes on.

        The run is cancelled if no connection resumes it within the window.
        """
        if self.reader is not reader:
            return  # displaced already
        self.reader = None
        self.room.set()
        if not self.ended:
            self._expire_in(self._executions.window, self.cancel)

    def cancel(self) -> None:
        """Stop the run (its process killed) and forget the execution."""
        if self._task is not None:
            self._task.cancel()
        self._forget()

    def _expire_in(
        self, seconds: float | None, then: Callable[[], None] | None
    ) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if seconds is not None and then is not None:
            self._expiry = asyncio.get_running_loop().call_later(seconds, then)

    def _forget(self) -> None:
        self._expire_in(None, None)
        self._executions.forget(self)


class Executions:
    """The server's resumable executions: their runs, their rings, their expiry.

    Args:
        buffer_bytes: Most bytes of frames one execution holds.
        window: Seconds an execution without a connection waits for one
            (its run cancelled after), and an ended one is kept.
        total_bytes: Most bytes of frames all executions hold together.

    Attributes:
        total: Bytes held now, all executions together.

    Raises:
        ValueError: For a size or window that is not positive.
    """

    __slots__ = (
        "_by_id",
        "_closing",
        "_tasks",
        "buffer_bytes",
        "total",
        "total_bytes",
        "window",
    )

    def __init__(
        self,
        *,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        window: float = DEFAULT_WINDOW,
        total_bytes: int = DEFAULT_TOTAL_BYTES,
    ) -> None:
        for name, value in (
            ("resume buffer bytes", buffer_bytes),
            ("resume window", window),
            ("resume buffer total", total_bytes),
        ):
            if not value > 0:
                raise ValueError(f"the {name} must be positive, not {value!r}")
        self.buffer_bytes = buffer_bytes
        self.window = window
        self.total_bytes = total_bytes
        self.total = 0
        # Oldest first, so that the oldest ended ones go first.
        self._by_id: dict[str, Execution] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Execution]:
        """The executions held, oldest first."""
        return iter(list(self._by_id.values()))

    def start(
        self, owner: object, run: Callable[[Execution], Awaitable[None]]
    ) -> Execution:
        """Start ``run`` as a resumable execution; return it.

        ``run`` writes the frames (:meth:`Execution.append`) and ends the
        execution (:meth:`Execution.end`); if it returns without ending it,
        or raises, the execution ends with close code 1011, and a cancelled
        run ends it with 1001 ("going away").

        Raises:
            RuntimeError: Once :meth:`close` was called.
        """
        if self._closing:
            raise RuntimeError("the server is closing")
        execution = Execution(self, owner)
        self._by_id[execution.id] = execution
        task = asyncio.create_task(self._drive(execution, run))
        execution._task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # Without a connection until one attaches: the window counts already.
        execution.detach(None)
        return execution

    async def _drive(
        self, execution: Execution, run: Callable[[Execution], Awaitable[None]]
    ) -> None:
        try:
            await run(execution)
        except asyncio.CancelledError:
            execution.end(1001, "the run was stopped")
            raise
        except Exception:
            _log.exception("resumable_execution_failed", execution=execution.id)
            execution.end(1011, "internal error")
        else:
            execution.end(1011, "the run ended without a close")

    def get(self, execution_id: object, owner: object) -> Execution | None:
        """Return the execution named ``execution_id`` if ``owner`` owns it."""
        if not isinstance(execution_id, str):
            return None
        execution = self._by_id.get(execution_id)
        if execution is None or execution.owner != owner:
            return None
        return execution

    def holds(self, execution: Execution) -> bool:
        """Tell whether ``execution`` can still be resumed (not forgotten)."""
        return self._by_id.get(execution.id) is execution

    def forget(self, execution: Execution) -> None:
        """Drop ``execution`` and its frames (its run, if any, goes on)."""
        if self._by_id.pop(execution.id, None) is execution:
            self.total -= execution.size
            execution.frames.clear()
            execution.size = 0

    def over(self) -> bool:
        """Tell whether all rings hold too much once ended executions are forgotten."""
        if self.total <= self.total_bytes:
            return False
        for execution in list(self._by_id.values()):
            if execution.ended and execution.reader is None:
                execution._forget()
                if self.total <= self.total_bytes:
                    return False
        return True

    async def close(self) -> None:
        """Cancel every run and wait for them; forget every execution."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for execution in list(self._by_id.values()):
            execution.end(1001, "the server is closing")  # cancelled unstarted
            execution._forget()
