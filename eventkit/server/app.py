"""The local sandbox server: HOPX and AI Computer on one aiohttp app.

:class:`LocalSandboxServer` serves, on one port, what the official
``hopx-ai`` and ``ai-computer-client`` SDKs call (see
:mod:`eventkit.server.hopx`, :mod:`eventkit.server.agent` and
:mod:`eventkit.server.aicomputer`), and runs the code they send with
:func:`eventkit.sources.local`, each sandbox in a directory of its own.
:func:`serve` is what ``eventkit serve`` runs.

How far the code it runs is kept from the rest of the machine is the local
executor's ``isolation`` (see ``docs/security.md``): with ``"bwrap"`` each
run is in a bubblewrap sandbox (its own PID namespace, its directory at its
``workdir``, the system read-only, nothing of the server's files or
environment; as root, an unprivileged uid); with ``"none"`` the code runs as
the user running the server, with a scrubbed environment and its own working
directory, but it sees the file system and the network (and the server's
process). ``"auto"`` is ``"bwrap"`` where a sandbox starts, else ``"none"``
(logged once, ``isolation_unavailable``). A server on an address other than
loopback refuses to run unisolated unless ``isolation="none"`` is given. The
server itself never follows a path out of a sandbox
(:mod:`eventkit.server.fs`).

Every connection is bounded in time: ``idle_timeout`` seconds without a
whole request (idle between requests, or still sending its headers) closes
it; a body has ``body_timeout`` seconds to arrive (408); a send waiting
``send_timeout`` seconds for a client that does not read drops the
connection and kills its run; sandboxes idle for ``sandbox_ttl`` seconds are
deleted.

Failure behaviour:

- A non-loopback ``host`` without ``api_key``, an empty ``api_key``, or an
  invalid limit: :exc:`ValueError` from the constructor, before anything
  listens. A port in use: :exc:`OSError` from :meth:`start`.
- Errors in requests never stop the server: each gets its answer (400, 401,
  403, 404, 408, 429, 501, an ``error`` frame...), see the front-end
  modules; an unexpected one a JSON 500, logged.
- On :meth:`close` every run is cancelled (process groups killed and
  reaped), open WebSockets are closed with 1001, and every sandbox directory
  is removed with the server's base directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, Final, Literal, Self

import structlog
from aiohttp import WSCloseCode, web

from eventkit.server import aicomputer, hopx
from eventkit.server.agent import FILE_TRANSFERS
from eventkit.server.auth import Auth
from eventkit.server.errors import error_middleware
from eventkit.server.limits import (
    DEFAULT_MAX_OUTPUT_BYTES,
    Admission,
    Limits,
    is_int,
    is_number,
)
from eventkit.server.loopback import host_middleware, is_loopback
from eventkit.server.resume import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_TOTAL_BYTES,
    DEFAULT_WINDOW,
    Executions,
)
from eventkit.server.sandboxes import Registry
from eventkit.server.state import State
from eventkit.sources.local import probe_isolation
from eventkit.stats import server_stats

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from eventkit.sinks import Sink
    from eventkit.sources.local import Isolation

__all__ = ["LocalSandboxServer", "serve"]

_log: Final = structlog.get_logger("eventkit.server")

#: Addresses that mean "every interface".
_WILDCARDS: Final = frozenset({"", "0.0.0.0", "::"})
#: Seconds aiohttp waits for handlers at shutdown (runs are cancelled first,
#: so they end well before).
_SHUTDOWN_TIMEOUT: Final = 5.0
#: Seconds the rest of an unread request body is read and dropped after the
#: answer, before the connection closes.
_LINGER: Final = 1.0
#: The longest the reaper sleeps between two looks at the sandboxes.
_REAP_EVERY: Final = 10.0


def _check_exposure(host: str, api_key: str | None) -> None:
    if api_key is None and not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host or 'every address'!r} without --api-key: "
            "anyone who can reach it could run code as this user. Pass "
            "--api-key KEY, or listen on 127.0.0.1"
        )


def _isolation(host: str, asked: Isolation | None) -> Isolation:
    """Return the isolation runs get: ``asked``, with ``"auto"`` resolved.

    Raises:
        ValueError: If ``"bwrap"`` cannot start a sandbox here, or runs would
            be unisolated on an address other than loopback without an
            explicit ``"none"``.
    """
    if asked not in (None, "auto", "bwrap", "none"):
        raise ValueError(f"isolation must be 'auto', 'bwrap' or 'none', not {asked!r}")
    if asked is None or asked == "none":
        if asked is None and not is_loopback(host):
            raise ValueError(
                f"refusing to run code unisolated on {host or 'every address'!r}: "
                "pass --isolation auto or bwrap (bubblewrap), or --isolation none "
                "to accept that the code sees this machine as the server's user"
            )
        return "none"
    support = probe_isolation()
    if support.bwrap:
        return "bwrap"
    if asked == "bwrap":
        raise ValueError(f"isolation bwrap is not available here: {support.reason}")
    if not is_loopback(host):
        raise ValueError(
            f"refusing to run code unisolated on {host or 'every address'!r}: "
            f"no sandbox starts here ({support.reason}); install bubblewrap, or "
            "pass --isolation none to accept that the code sees this machine"
        )
    _log.warning("isolation_unavailable", reason=support.reason)
    return "none"


class LocalSandboxServer:
    """A local sandbox speaking the HOPX and AI Computer APIs, as a context manager.

    Example::

        async with LocalSandboxServer() as server:
            sandbox = await AsyncSandbox.create(
                template="code-interpreter", api_key="any", base_url=server.url
            )
            async for message in sandbox.run_code_stream("print(1)"):
                ...

    While it is started, its executions, refusals and the runs executing and
    queued show in :func:`eventkit.stats.server_stats`, which every
    collector with self-metrics exposes (``eventkit_server_*``).

    Args:
        host: The address to listen on. Anything but a loopback address
            (``127.0.0.1``, ``::1``, ``localhost``) needs ``api_key``.
        port: The port; 0 picks a free one (see :attr:`url`).
        api_key: The only key (HOPX ``X-API-Key``, AI Computer bearer) the
            public API accepts, with the tokens issued from ``/dev/token``;
            None accepts any non-empty one.
        max_concurrent: Runs executing at once.
        max_queue: Runs that may wait for a slot beyond those; more are
            refused (HTTP 429, or a ``TOO_MANY_REQUESTS`` error frame).
        max_timeout: The longest a run may take, in seconds; a request
            asking for more gets this.
        max_code_bytes: The largest program accepted, in UTF-8 bytes.
        max_output_bytes: Cap on a run's output (stdout and stderr together),
            64 MiB by default; None for none on streams (the non-streaming
            answers, which hold the output, keep 64 MiB then).
        max_file_bytes: The largest file the files API reads or writes.
        max_sandboxes: Sandboxes alive at once.
        max_sandboxes_per_key: Sandboxes alive at once for one API key (or
            one issued token, or one key string where keys are not checked).
        sandbox_ttl: Seconds a sandbox may stay idle (no request naming it,
            no run) before it is deleted.
        token_ttl: Seconds a sandbox or development token stays valid (the
            HOPX SDK refreshes tokens with less than an hour left).
        first_message_timeout: Seconds an agent WebSocket may wait before its
            ``execute`` message.
        close_timeout: Seconds to wait for a client's close after
            ``complete``.
        send_timeout: Seconds a send may wait for a client that does not
            read before its connection is dropped and its run killed (a
            resumable execution's run goes on, waiting for a resume).
        idle_timeout: Seconds a connection may stay without a whole request
            (idle, or still sending its headers) before it is closed.
        body_timeout: Seconds a request's body may take to arrive (408).
        resume_buffer_bytes: Bytes of frames a resumable execution keeps
            for a client that reconnects (:mod:`eventkit.server.resume`).
        resume_window: Seconds a resumable execution waits for a client
            to reconnect (its run goes on meanwhile), and is kept once ended.
        resume_buffer_total: Bytes of frames all resumable executions keep
            together; the oldest ended ones are forgotten first.
        output_policy: What a run over ``max_output_bytes`` gets:
            ``"kill"``, stopped with an ``OUTPUT_LIMIT`` error; or
            ``"truncate"``, going on with stdout and stderr each keeping
            their first and last half of the cap (what is cut out is
            dropped) and ``complete`` carrying ``"truncated": true``.
        isolation: ``"bwrap"``, ``"auto"`` or ``"none"`` (above). None, the
            default, is ``"none"`` on loopback and refused elsewhere.
        network: Whether isolated runs may use the network; a HOPX sandbox
            created with ``internet_access=False`` runs without it either
            way (refused with 400 when runs are not isolated).
        observer: A sink that gets a copy of every run's events as they come,
            opened and closed with the server (``eventkit serve
            --dashboard``: :func:`eventkit.sinks.dashboard`); its failures
            are logged (``observer_failed``) and never reach a run.
        local_options: Further keyword arguments for every run's
            :func:`eventkit.sources.local`: ``max_memory_bytes``,
            ``max_processes``, ``interrupt_grace``.

    Raises:
        ValueError: If ``host`` is not loopback and there is no ``api_key``
            (the message names ``--api-key``), ``api_key`` is empty, a limit
            is invalid, ``isolation`` is ``"bwrap"`` where no sandbox starts,
            or runs would be unisolated on a non-loopback ``host`` without an
            explicit ``isolation="none"``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        max_concurrent: int = 8,
        max_queue: int = 64,
        max_timeout: float = 300.0,
        max_code_bytes: int = 1 << 20,
        max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES,
        max_file_bytes: int = 32 << 20,
        max_sandboxes: int = 1024,
        max_sandboxes_per_key: int = 256,
        sandbox_ttl: float = 3600.0,
        token_ttl: float = 24 * 3600.0,
        first_message_timeout: float = 10.0,
        close_timeout: float = 2.0,
        send_timeout: float = 30.0,
        idle_timeout: float = 30.0,
        body_timeout: float = 30.0,
        resume_buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        resume_window: float = DEFAULT_WINDOW,
        resume_buffer_total: int = DEFAULT_TOTAL_BYTES,
        output_policy: Literal["kill", "truncate"] = "kill",
        isolation: Isolation | None = None,
        network: bool = True,
        observer: Sink | None = None,
        local_options: Mapping[str, Any] | None = None,
    ) -> None:
        _check_exposure(host, api_key)
        self.isolation = _isolation(host, isolation)
        if output_policy not in ("kill", "truncate"):
            raise ValueError(
                f"output_policy must be 'kill' or 'truncate', not {output_policy!r}"
            )
        self._truncate_output = output_policy == "truncate"
        self._observer = observer
        for name, count in (
            ("max_sandboxes", max_sandboxes),
            ("max_sandboxes_per_key", max_sandboxes_per_key),
            ("resume_buffer_bytes", resume_buffer_bytes),
            ("resume_buffer_total", resume_buffer_total),
        ):
            if not is_int(count) or count < 1:
                raise ValueError(f"{name} must be >= 1, not {count!r}")
        for name, value in (
            ("sandbox_ttl", sandbox_ttl),
            ("first_message_timeout", first_message_timeout),
            ("close_timeout", close_timeout),
            ("send_timeout", send_timeout),
            ("idle_timeout", idle_timeout),
            ("body_timeout", body_timeout),
            ("resume_window", resume_window),
        ):
            if not is_number(value) or not value > 0:
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        self.host = host
        self.port = port
        self.limits = Limits(
            max_concurrent=max_concurrent,
            max_queue=max_queue,
            max_timeout=max_timeout,
            max_code_bytes=max_code_bytes,
            max_output_bytes=max_output_bytes,
            max_file_bytes=max_file_bytes,
        )
        self._auth = Auth(api_key, token_ttl=token_ttl)
        self._max_sandboxes = max_sandboxes
        self._max_per_key = max_sandboxes_per_key
        self._sandbox_ttl = sandbox_ttl
        self._token_ttl = token_ttl
        self._first_message_timeout = first_message_timeout
        self._close_timeout = close_timeout
        self._send_timeout = send_timeout
        self._idle_timeout = idle_timeout
        self._body_timeout = body_timeout
        self._resume = (resume_buffer_bytes, resume_window, resume_buffer_total)
        self._local_options = {
            **(local_options or {}),
            "isolation": self.isolation,
            "network": network,
        }
        self._state: State | None = None
        self._runner: web.AppRunner | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._url = ""

    @property
    def url(self) -> str:
        """The server's base URL, ``http://127.0.0.1:PORT``; set by :meth:`start`.

        Raises:
            RuntimeError: Before :meth:`start`.
        """
        if not self._url:
            raise RuntimeError("the server is not started")
        return self._url

    @property
    def admission(self) -> Admission:
        """The runs executing and waiting now (for tests and monitoring).

        Raises:
            RuntimeError: Before :meth:`start`.
        """
        return self._started().admission

    @property
    def executions(self) -> Executions:
        """The resumable executions held now.

        Raises:
            RuntimeError: Before :meth:`start`.
        """
        return self._started().executions

    @property
    def sandboxes(self) -> Registry:
        """The sandboxes alive now.

        Raises:
            RuntimeError: Before :meth:`start`.
        """
        return self._started().sandboxes

    def _started(self) -> State:
        if self._state is None:
            raise RuntimeError("the server is not started")
        return self._state

    async def start(self) -> None:
        """Listen; :attr:`url` is set when this returns.

        Raises:
            RuntimeError: If already started.
            OSError: If the address cannot be bound.
        """
        if self._runner is not None:
            raise RuntimeError("the server is already started")
        if self._observer is not None:
            await self._observer.open()
        base = tempfile.mkdtemp(prefix="eventkit-server-")
        state = State(
            limits=self.limits,
            auth=self._auth,
            sandboxes=Registry(
                base,
                max_sandboxes=self._max_sandboxes,
                max_per_owner=self._max_per_key,
                idle_ttl=self._sandbox_ttl,
                token_ttl=self._token_ttl,
                local_options=self._local_options,
                can_cut_network=self.isolation == "bwrap",
                truncate_output=self._truncate_output,
                observer=self._observer,
            ),
            admission=Admission(self.limits.max_concurrent, self.limits.max_queue),
            executions=Executions(
                buffer_bytes=self._resume[0],
                window=self._resume[1],
                total_bytes=self._resume[2],
            ),
            wildcard=self.host in _WILDCARDS,
            first_message_timeout=self._first_message_timeout,
            close_timeout=self._close_timeout,
            send_timeout=self._send_timeout,
            body_timeout=self._body_timeout,
            transfers=asyncio.Semaphore(FILE_TRANSFERS),
        )
        # The Host check runs first, before anything reads the Host header.
        # A loopback server serves loopback names only (no DNS rebinding);
        # any server refuses a Host it cannot read.
        allowed = is_loopback if is_loopback(self.host) else None
        app = web.Application(
            middlewares=[host_middleware(allowed), error_middleware],
            client_max_size=self.limits.max_message_bytes,
        )
        hopx.add_routes(app, state)
        aicomputer.add_routes(app, state)
        runner = web.AppRunner(
            app,
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
            # One timer for an idle connection and one still sending its
            # headers: aiohttp's keep-alive, armed from the connection's start
            # and after each answer, and not reset by a partial request.
            keepalive_timeout=self._idle_timeout,
            # After an answer given before the whole body came (a 408, a
            # 413), the rest is read and dropped this long, not aiohttp's 10 s.
            lingering_time=_LINGER,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            shutil.rmtree(base, ignore_errors=True)
            if self._observer is not None:
                await self._observer.close()
            raise
        self._runner, self._state = runner, state
        self._reaper = asyncio.create_task(
            state.sandboxes.reap_forever(min(_REAP_EVERY, self._sandbox_ttl / 4)),
            name="eventkit-server-reaper",
        )
        # The running and queued gauges read the admission at scrape time.
        server_stats().track(state.admission)
        address, port = runner.addresses[0][:2]
        if address in _WILDCARDS:
            address = "::1" if ":" in address else "127.0.0.1"
        shown = f"[{address}]" if ":" in address else address
        self._url = state.url = f"http://{shown}:{port}"

    async def close(self) -> None:
        """Stop every run, close every connection, remove every sandbox."""
        runner, state = self._runner, self._state
        if runner is None or state is None:
            return
        self._runner = None
        reaper, self._reaper = self._reaper, None
        try:
            if reaper is not None:
                reaper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reaper
            # Runs first: their handlers then close their own connections.
            await state.executions.close()
            await state.sandboxes.close()
            for ws in list(state.websockets):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server closing")
            await runner.cleanup()
        finally:
            # Every run has ended (or the close failed): stop reading it.
            server_stats().untrack(state.admission)
            await asyncio.to_thread(shutil.rmtree, state.sandboxes.base, True)
            if self._observer is not None:
                await self._observer.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


async def serve(
    host: str = "127.0.0.1",
    port: int = 7777,
    *,
    on_ready: Callable[[str], object] | None = None,
    **options: Any,
) -> None:
    """Run a :class:`LocalSandboxServer` until cancelled; print nothing.

    What ``eventkit serve`` runs: cancelling it (Ctrl-C or SIGTERM through
    the CLI) closes the server as :meth:`LocalSandboxServer.close` does.

    Args:
        host: The address; a non-loopback one needs ``api_key``.
        port: The port (0 picks a free one).
        on_ready: Called with the server's URL once it listens (the CLI
            prints it).
        **options: :class:`LocalSandboxServer`'s keyword arguments
            (``api_key``, the limits and timeouts, ``local_options``).

    Raises:
        ValueError: Before listening, if ``host`` is not loopback and there
            is no ``api_key`` (the message names ``--api-key``), or an
            argument is invalid.
        OSError: If the address cannot be bound.
    """
    server = LocalSandboxServer(host, port, **options)
    async with server:
        if on_ready is not None:
            on_ready(server.url)
        await asyncio.Event().wait()
