"""The local sandbox server: HOPX and AI Computer on one aiohttp app.

:class:`LocalSandboxServer` serves, on one port, what the official
``hopx-ai`` and ``ai-computer-client`` SDKs call (see
:mod:`eventkit.server.hopx` and :mod:`eventkit.server.aicomputer`), and runs
the code they send with :func:`eventkit.sources.local`, each sandbox in a
directory of its own. :func:`serve` is what ``eventkit serve`` runs.

It is a development and test server, **not an isolation boundary**: the
code runs as the user running the server, with a scrubbed environment and
its own working directory, but it sees the file system and the network.

Failure behaviour:

- A non-loopback ``host`` without ``api_key``, an empty ``api_key``, or an
  invalid limit: :exc:`ValueError` from the constructor, before anything
  listens. A port in use: :exc:`OSError` from :meth:`start`.
- Errors in requests never stop the server: each gets its answer (400, 401,
  404, 429, an ``error`` frame...), see the front-end modules.
- On :meth:`close` every run is cancelled (process groups killed and
  reaped), open WebSockets are closed with 1001, and every sandbox directory
  is removed with the server's base directory.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from typing import TYPE_CHECKING, Final, Self

from aiohttp import WSCloseCode, web

from eventkit.server import aicomputer, hopx
from eventkit.server.auth import Auth
from eventkit.server.errors import error_middleware
from eventkit.server.limits import Admission, Limits
from eventkit.server.loopback import host_middleware, is_loopback
from eventkit.server.sandboxes import Registry
from eventkit.server.state import State
from eventkit.stats import server_stats

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = ["LocalSandboxServer", "serve"]

#: Addresses that mean "every interface".
_WILDCARDS: Final = frozenset({"", "0.0.0.0", "::"})
#: Seconds aiohttp waits for handlers at shutdown (runs are cancelled first,
#: so they end well before).
_SHUTDOWN_TIMEOUT: Final = 5.0


def _check_exposure(host: str, api_key: str | None) -> None:
    if api_key is None and not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host or 'every address'!r} without --api-key: "
            "anyone who can reach it could run code as this user. Pass "
            "--api-key KEY, or listen on 127.0.0.1"
        )


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
        max_output_bytes: Cap on a run's output (stdout and stderr together);
            None for none.
        max_sandboxes: Sandboxes alive at once.
        token_ttl: Seconds a sandbox or development token stays valid (the
            HOPX SDK refreshes tokens with less than an hour left).
        first_message_timeout: Seconds an agent WebSocket may wait before its
            ``execute`` message.
        close_timeout: Seconds to wait for a client's close after
            ``complete``.

    Raises:
        ValueError: If ``host`` is not loopback and there is no ``api_key``
            (the message names ``--api-key``), ``api_key`` is empty, or a
            limit is invalid.
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
        max_output_bytes: int | None = None,
        max_sandboxes: int = 1024,
        token_ttl: float = 24 * 3600.0,
        first_message_timeout: float = 10.0,
        close_timeout: float = 2.0,
    ) -> None:
        _check_exposure(host, api_key)
        if max_sandboxes < 1:
            raise ValueError(f"max_sandboxes must be >= 1, not {max_sandboxes!r}")
        for name, value in (
            ("first_message_timeout", first_message_timeout),
            ("close_timeout", close_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        self.host = host
        self.port = port
        self.limits = Limits(
            max_concurrent=max_concurrent,
            max_queue=max_queue,
            max_timeout=max_timeout,
            max_code_bytes=max_code_bytes,
            max_output_bytes=max_output_bytes,
        )
        self._auth = Auth(api_key, token_ttl=token_ttl)
        self._max_sandboxes = max_sandboxes
        self._token_ttl = token_ttl
        self._first_message_timeout = first_message_timeout
        self._close_timeout = close_timeout
        self._state: State | None = None
        self._runner: web.AppRunner | None = None
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
        base = tempfile.mkdtemp(prefix="eventkit-server-")
        state = State(
            limits=self.limits,
            auth=self._auth,
            sandboxes=Registry(
                base, max_sandboxes=self._max_sandboxes, token_ttl=self._token_ttl
            ),
            admission=Admission(self.limits.max_concurrent, self.limits.max_queue),
            wildcard=self.host in _WILDCARDS,
            first_message_timeout=self._first_message_timeout,
            close_timeout=self._close_timeout,
        )
        middlewares = [error_middleware]
        if is_loopback(self.host):
            middlewares.insert(0, host_middleware(is_loopback))
        app = web.Application(
            middlewares=middlewares, client_max_size=self.limits.max_message_bytes
        )
        hopx.add_routes(app, state)
        aicomputer.add_routes(app, state)
        runner = web.AppRunner(
            app,
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            shutil.rmtree(base, ignore_errors=True)
            raise
        self._runner, self._state = runner, state
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
        try:
            # Runs first: their handlers then close their own connections.
            await state.sandboxes.close()
            for ws in list(state.websockets):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server closing")
            await runner.cleanup()
        finally:
            # Every run has ended (or the close failed): stop reading it.
            server_stats().untrack(state.admission)
            await asyncio.to_thread(shutil.rmtree, state.sandboxes.base, True)

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
    api_key: str | None = None,
    max_concurrent: int = 8,
    max_queue: int = 64,
    max_timeout: float = 300.0,
    max_code_bytes: int = 1 << 20,
    max_output_bytes: int | None = None,
    on_ready: Callable[[str], object] | None = None,
) -> None:
    """Run a :class:`LocalSandboxServer` until cancelled; print nothing.

    What ``eventkit serve`` runs: cancelling it (Ctrl-C through
    :func:`asyncio.run`) closes the server as :meth:`LocalSandboxServer.close`
    does.

    Args:
        host: The address; a non-loopback one needs ``api_key``.
        port: The port (0 picks a free one).
        api_key: See :class:`LocalSandboxServer`.
        max_concurrent: See :class:`LocalSandboxServer`.
        max_queue: See :class:`LocalSandboxServer`.
        max_timeout: See :class:`LocalSandboxServer`.
        max_code_bytes: See :class:`LocalSandboxServer`.
        max_output_bytes: See :class:`LocalSandboxServer`.
        on_ready: Called with the server's URL once it listens (the CLI
            prints it).

    Raises:
        ValueError: Before listening, if ``host`` is not loopback and there
            is no ``api_key`` (the message names ``--api-key``), or an
            argument is invalid.
        OSError: If the address cannot be bound.
    """
    server = LocalSandboxServer(
        host,
        port,
        api_key=api_key,
        max_concurrent=max_concurrent,
        max_queue=max_queue,
        max_timeout=max_timeout,
        max_code_bytes=max_code_bytes,
        max_output_bytes=max_output_bytes,
    )
    async with server:
        if on_ready is not None:
            on_ready(server.url)
        await asyncio.Event().wait()
