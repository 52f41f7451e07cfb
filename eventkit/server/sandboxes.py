"""Sandboxes: a directory, a token, and the runs inside, for each.

A sandbox is a directory of its own under the server's base directory, kept
across its executions and removed with it. The paths a client names (the
HOPX SDK's default ``/workspace``) are paths *inside* that directory, never
the host's: ``/workspace`` is ``<sandbox>/workspace``.

Code runs with :func:`eventkit.sources.local`, whose limits apply (see that
module for what a timeout, the output cap or an early stop does). The local
executor writes the program to ``main.py`` (``main.sh``, ``main.js``) in the
working directory, so two runs in the same directory at once would overwrite
each other's program: runs that share a directory take turns (waiting counts
as queued for :class:`~eventkit.server.limits.Admission`).

Failure behaviour:

- A path that leaves the sandbox (``..``, or a symbolic link pointing out)
  raises :exc:`~eventkit.server.requests.RequestError` before anything runs.
- Creating more than ``max_sandboxes`` raises :exc:`SandboxLimitError`.
- Deleting a sandbox (or closing the registry) cancels its runs first: each
  run's process group is killed and reaped (the local source's cleanup), and
  the run's front end sees :exc:`SandboxGoneError`. The directory is removed
  afterwards, in a thread, ignoring errors.
- An expired per-sandbox token is forgotten when it is next presented.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
import time
from typing import TYPE_CHECKING, Any, Final

from eventkit.exceptions import EventkitError
from eventkit.server.auth import new_token
from eventkit.server.requests import RequestError
from eventkit.sources.local import local
from eventkit.stats import server_stats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine

    from eventkit.events import Event
    from eventkit.server.limits import Ticket
    from eventkit.server.requests import ExecuteRequest

__all__ = [
    "Registry",
    "Sandbox",
    "SandboxGoneError",
    "SandboxLimitError",
]

#: What a sandbox is: which API made it, and so which endpoints reach it.
HOPX: Final = "hopx"
AICOMPUTER: Final = "aicomputer"


class SandboxLimitError(EventkitError):
    """The server holds ``max_sandboxes`` already."""


class SandboxGoneError(EventkitError):
    """The sandbox was deleted (or the server closed) while the run went on."""


class _DirectoryLock:
    """A lock for one directory, with a count of its users, so it can go."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Sandbox:
    """One sandbox.

    Attributes:
        id: Its id, unique for the server's life.
        kind: ``"hopx"`` or ``"aicomputer"``: the API that made it.
        owner: The credential that created it; only the same one reaches it.
        root: Its directory on the host.
        template: The template asked for (HOPX), for the record.
        created_at: Unix time.
        token: Its agent token (HOPX), or None.
        token_expires_at: Unix time the token expires.
        deleted: Whether it was deleted: nothing more runs in it.
    """

    __slots__ = (
        "_locks",
        "_runs",
        "created_at",
        "deleted",
        "id",
        "kind",
        "owner",
        "root",
        "template",
        "token",
        "token_expires_at",
    )

    def __init__(
        self, id: str, kind: str, owner: str, root: str, template: str | None
    ) -> None:
        self.id = id
        self.kind = kind
        self.owner = owner
        self.root = root
        self.template = template
        self.created_at = time.time()
        self.token: str | None = None
        self.token_expires_at = 0.0
        self.deleted = False
        self._locks: dict[str, _DirectoryLock] = {}
        #: The runs going on here, each a task this sandbox owns: awaited by
        #: its caller in guard(), cancelled and awaited by stop().
        self._runs: set[asyncio.Task[None]] = set()

    def directory(self, workdir: str) -> str:
        """Return the host directory for ``workdir``, a path inside the sandbox.

        Raises:
            RequestError: If the path leaves the sandbox, by ``..`` or through
                a symbolic link.
        """
        parts = [part for part in workdir.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise RequestError(f"workdir must not contain '..': {workdir!r}")
        path = os.path.join(self.root, *parts)
        # The code may have made links; follow them before trusting the path.
        real, root = os.path.realpath(path), os.path.realpath(self.root)
        if os.path.commonpath([real, root]) != root:
            raise RequestError(f"workdir {workdir!r} leads out of the sandbox")
        return real

    @contextlib.asynccontextmanager
    async def _turn(self, directory: str) -> AsyncIterator[None]:
        """Hold ``directory`` for one run; others wait their turn."""
        entry = self._locks.get(directory)
        if entry is None:
            entry = self._locks[directory] = _DirectoryLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._locks[directory]

    @contextlib.asynccontextmanager
    async def execute(
        self,
        request: ExecuteRequest,
        ticket: Ticket,
        *,
        max_output_bytes: int | None,
    ) -> AsyncIterator[AsyncIterator[Event]]:
        """Run ``request`` here once its directory and a slot are free.

        Yields the run's events (see :func:`eventkit.sources.local`); leaving
        the block early kills and reaps the process. The run counts in
        ``server_stats().executions`` once it holds its slot.

        Raises:
            RequestError: If the working directory leaves the sandbox.
        """
        directory = self.directory(request.workdir)
        stream = local(
            request.code,
            language=request.language,
            timeout=request.timeout,
            env=request.env,
            workdir=directory,
            max_output_bytes=max_output_bytes,
        )
        async with self._turn(directory), ticket.running(), stream.stream() as events:
            # Its slot is held: the execution starts.
            server_stats().executions += 1
            yield events

    async def guard(self, run: Coroutine[Any, Any, None]) -> None:
        """Await ``run`` as a task of this sandbox, which deleting it cancels.

        The task belongs to the sandbox: :meth:`stop` cancels it and waits for
        its end, as this call does. Cancelling the caller cancels the run too.

        Raises:
            SandboxGoneError: If the sandbox was deleted before the run ended.
        """
        if self.deleted:
            run.close()
            raise SandboxGoneError(f"sandbox {self.id} was deleted")
        task = asyncio.create_task(run, name=f"eventkit-server-run-{self.id}")
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                raise SandboxGoneError(f"sandbox {self.id} was deleted") from None
            raise

    async def stop(self) -> None:
        """Cancel every run and wait until each has cleaned up.

        Call it once :attr:`deleted` is set, so that no run starts meanwhile.
        """
        runs = list(self._runs)
        for task in runs:
            # Never twice: a second cancellation would cut short the local
            # source's wait for the killed process, leaving it unreaped.
            if not task.cancelling():
                task.cancel()
        if runs:
            await asyncio.wait(runs)


class Registry:
    """The server's sandboxes, their tokens, and their directories.

    Args:
        base: The directory that holds every sandbox's directory.
        max_sandboxes: Sandboxes alive at once.
        token_ttl: Seconds an agent token stays valid.
        clock: Unix time, for token expiry.
    """

    __slots__ = (
        "_by_token",
        "_clock",
        "_sandboxes",
        "base",
        "max_sandboxes",
        "token_ttl",
    )

    def __init__(
        self,
        base: str,
        *,
        max_sandboxes: int,
        token_ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base = base
        self.max_sandboxes = max_sandboxes
        self.token_ttl = token_ttl
        self._clock = clock
        self._sandboxes: dict[str, Sandbox] = {}
        self._by_token: dict[str, Sandbox] = {}

    def __len__(self) -> int:
        return len(self._sandboxes)

    def create(self, kind: str, owner: str, template: str | None = None) -> Sandbox:
        """Make a sandbox with an empty ``/workspace``; give HOPX ones a token.

        Raises:
            SandboxLimitError: If ``max_sandboxes`` exist already.
        """
        if len(self._sandboxes) >= self.max_sandboxes:
            raise SandboxLimitError(
                f"too many sandboxes ({self.max_sandboxes}); delete some first"
            )
        sandbox_id = "sbx-" + secrets.token_hex(8)
        root = tempfile.mkdtemp(prefix=f"{sandbox_id}-", dir=self.base)
        os.mkdir(os.path.join(root, "workspace"))
        sandbox = Sandbox(sandbox_id, kind, owner, root, template)
        self._sandboxes[sandbox_id] = sandbox
        if kind == HOPX:
            self.refresh_token(sandbox)
        return sandbox

    def get(self, kind: str, sandbox_id: str, owner: str) -> Sandbox | None:
        """Return the sandbox if it exists, is of ``kind`` and ``owner``'s."""
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.kind != kind or sandbox.owner != owner:
            return None
        return sandbox

    def by_token(self, token: str | None) -> Sandbox | None:
        """Return the sandbox whose unexpired agent token is ``token``."""
        if not token:
            return None
        sandbox = self._by_token.get(token)
        if sandbox is None:
            return None
        if sandbox.token_expires_at <= self._clock():
            del self._by_token[token]
            return None
        return sandbox

    def refresh_token(self, sandbox: Sandbox) -> None:
        """Give ``sandbox`` a new agent token; the old one stops working."""
        if sandbox.token is not None:
            self._by_token.pop(sandbox.token, None)
        sandbox.token = new_token()
        sandbox.token_expires_at = self._clock() + self.token_ttl
        self._by_token[sandbox.token] = sandbox

    async def delete(self, sandbox: Sandbox) -> None:
        """Forget ``sandbox``, stop its runs, then remove its directory."""
        if self._sandboxes.pop(sandbox.id, None) is None:
            return
        sandbox.deleted = True
        if sandbox.token is not None:
            self._by_token.pop(sandbox.token, None)
        await sandbox.stop()
        await asyncio.to_thread(shutil.rmtree, sandbox.root, True)

    async def close(self) -> None:
        """Delete every sandbox, at once; return when every one is gone."""
        async with asyncio.TaskGroup() as deletions:
            for sandbox in list(self._sandboxes.values()):
                deletions.create_task(self.delete(sandbox))
