"""The dashboard sink: :func:`dashboard` and :class:`Dashboard`.

Failure behaviour: a non-loopback ``host`` without a token, an empty token or
invalid bounds raise :exc:`ValueError` from :func:`dashboard`, before
anything listens; a port in use raises :exc:`OSError` from :meth:`Dashboard.start`
(or the ``open`` of the pipeline). Once serving, nothing the browsers do
reaches the pipeline: sending to the sink only updates the board, never waits
on a browser and never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from aiohttp import web

from eventkit._hosts import is_loopback
from eventkit.dashboard.app import DashboardApp
from eventkit.dashboard.board import Board
from eventkit.dashboard.selfmetrics import Chains, ChainWatch
from eventkit.sinks._base import Sink
from eventkit.streams import Stage

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventkit.events import Event

__all__ = ["Dashboard", "dashboard"]

#: Seconds aiohttp gives open streams at shutdown (they are ended first).
_SHUTDOWN_TIMEOUT: Final = 1.0


class Dashboard(Sink):
    """A sink serving a live web page of the runs it sees; see :func:`dashboard`.

    Attributes:
        board: The runs as shown (:class:`~eventkit.dashboard.board.Board`).
        host: The address it listens on.
        port: The port asked for (0: any free one).
        url: The page's address once serving (with ``?token=`` when a token
            is set), else None.
        source: The label of the runs it sees first, in the table's
            ``source`` column.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        token: str | None = None,
        keep_runs: int = 500,
        tail_bytes: int = 262_144,
        source: str = "",
        refresh: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if token is not None and not token:
            raise ValueError("the dashboard token must not be empty")
        if token is None and not is_loopback(host):
            raise ValueError(
                f"refusing to serve the dashboard on {host or 'every address'!r} "
                "without a token: anyone who can reach it could read the runs' "
                "output. Pass a token (--dashboard-token or "
                "EVENTKIT_DASHBOARD_TOKEN), or serve on 127.0.0.1"
            )
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0-65535, got {port!r}")
        if refresh <= 0:
            raise ValueError(f"refresh must be positive, got {refresh!r}")
        self.board = Board(keep_runs=keep_runs, tail_bytes=tail_bytes)
        self.host = host
        self.port = port
        self.source = source
        self.url: str | None = None
        self._token = token
        self._clock = clock
        self._chains = Chains()
        self._app = DashboardApp(
            self.board,
            self._chains,
            clock,
            token=token,
            loopback_only=is_loopback(host),
            refresh=refresh,
        )
        self._runner: web.AppRunner | None = None
        self._publisher: asyncio.Task[None] | None = None
        # Feeds open now (this sink, its upstream feed); whether open() started
        # the server (then the last close() stops it).
        self._feeds = 0
        self._started_by_feed = False
        self._upstream: _Upstream | None = None

    # Serving -------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        """Whether the page is served now."""
        return self._runner is not None

    @property
    def app(self) -> DashboardApp:
        """The web application (its browsers, what they missed)."""
        return self._app

    async def start(self) -> None:
        """Serve the page until :meth:`stop`; nothing happens if it already is.

        Raises:
            OSError: If the port cannot be bound.
        """
        if self._runner is not None:
            return
        runner = web.AppRunner(
            self._app.application(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address, port = runner.addresses[0][:2]
        if address in {"", "0.0.0.0", "::"}:
            address = "::1" if ":" in address else "127.0.0.1"
        shown = f"[{address}]" if ":" in address else address
        query = "" if self._token is None else f"?token={quote(self._token, safe='')}"
        self.url = f"http://{shown}:{port}/{query}"
        # Owned here: cancelled and awaited by stop().
        self._publisher = asyncio.get_running_loop().create_task(
            self._app.publish_forever()
        )

    async def stop(self) -> None:
        """Stop serving: end every browser's stream, close the port."""
        runner, publisher = self._runner, self._publisher
        self._runner = self._publisher = None
        self.url = None
        if publisher is not None:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
        if runner is not None:
            # One last publication, so that what the pipeline ended with shows.
            self._app.publish()
            self._app.close_streams()
            await runner.cleanup()

    # Feeding -------------------------------------------------------------------

    @property
    def upstream(self) -> Sink:
        """A second feed, for the events before the chain (the run records).

        Once taken, the runs' records (state, counts, exit code, limits) come
        from this feed only, and the dashboard itself only adds the events it
        is sent to the runs' logs (what the page shows and downloads): feed
        it the source's events (``source | pipe.tap(dashboard.upstream)``) and
        send it the chain's output, as ``eventkit run --dashboard`` does, so
        that states and exit codes hold whatever the chain drops. Opening and
        closing it counts like opening and closing the dashboard.
        """
        if self._upstream is None:
            self._upstream = _Upstream(self)
        return self._upstream

    def watch(self) -> Stage:
        """Return a stage to fuse into a chain, so that the page shows its stages.

        The chain then counts the events entering each stage (an integer
        add per batch and stage), and the page reads, per stage, the events
        in, out and dropped. The stage passes every event through unchanged.
        """
        chains = self._chains
        return Stage("dashboard", lambda: ChainWatch(chains))

    async def open(self) -> None:
        """Serve the page if it is not served yet; count this feed open."""
        await self._open_feed()

    async def _open_feed(self) -> None:
        if self._runner is None:
            await self.start()
            self._started_by_feed = True
        self._feeds += 1

    async def send(self, event: Event) -> None:
        """Add ``event`` to the board."""
        await self.send_batch([event])

    async def send_batch(self, events: list[Event]) -> None:
        """Add the batch to the board: cheap, and never waits on a browser."""
        self.board.feed(
            events, self._clock(), source=self.source, record=self._upstream is None
        )

    async def close(self) -> None:
        """Count this feed closed; after the last, end the board's input.

        Runs still running then are cut short (``truncated``). The server
        stops too if opening started it; after :meth:`start`, it serves on
        until :meth:`stop`.
        """
        await self._close_feed()

    async def _close_feed(self) -> None:
        self._feeds = max(self._feeds - 1, 0)
        if self._feeds:
            return
        self.board.end(self._clock())
        if self._started_by_feed:
            self._started_by_feed = False
            await self.stop()

    def __repr__(self) -> str:
        where = self.url or f"{self.host}:{self.port}"
        return f"<dashboard sink {where}>"


class _Upstream(Sink):
    """The record feed of a :class:`Dashboard`: see :attr:`Dashboard.upstream`."""

    def __init__(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard

    async def open(self) -> None:
        """Count the dashboard open."""
        await self._dashboard._open_feed()

    async def send(self, event: Event) -> None:
        """Record ``event``."""
        await self.send_batch([event])

    async def send_batch(self, events: list[Event]) -> None:
        """Record the batch into the runs' records."""
        dashboard = self._dashboard
        dashboard.board.feed(
            events, dashboard._clock(), source=dashboard.source, log=False
        )

    async def close(self) -> None:
        """Count the dashboard closed."""
        await self._dashboard._close_feed()

    def __repr__(self) -> str:
        return f"<upstream of {self._dashboard!r}>"


def dashboard(
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    token: str | None = None,
    keep_runs: int = 500,
    tail_bytes: int = 262_144,
    source: str = "",
) -> Dashboard:
    """Return a sink that serves a live web page of the runs it sees.

    The page (one address, served by eventkit itself, nothing fetched from
    the network) shows a live table of the runs (state, progress and ETA,
    events, bytes, rate, duration, exit code, limits hit), each run's output
    as it arrives, the throughput of the last five minutes and the
    pipeline's self-metrics; its JSON API is documented in
    ``docs/dashboard.md``. Opening the sink starts serving (:attr:`Dashboard.url`
    says where); closing it stops, unless :meth:`Dashboard.start` was called
    before, in which case it serves until :meth:`Dashboard.stop`.

    Example::

        board = eventkit.sinks.dashboard(8080)
        await board.start()
        print(board.url)
        await eventkit.run(source, *stages, board.watch(), sink=board)
        ...  # the page stays until
        await board.stop()

    It is cheap on the pipeline: sending only updates an in-memory model;
    browsers are served from it by a task of their own, each with a bounded
    queue. What it holds is bounded: running runs are always kept, at most
    ``keep_runs`` finished ones (oldest first out), and ``tail_bytes`` of
    each run's events (oldest first out, counted; the download says so).

    Args:
        port: The port; 0 picks a free one.
        host: The address to serve on; anything but loopback needs a token.
        token: A secret every API request must carry (``?token=`` or a bearer
            header); the page's :attr:`~Dashboard.url` carries it.
        keep_runs: Finished runs kept, at most.
        tail_bytes: Bytes of each run's events held, at most (UTF-8 data plus
            64 an event).
        source: The label of the runs in the table's ``source`` column.

    Raises:
        ValueError: If ``host`` is not loopback and there is no token, the
            token is empty, or a bound is invalid.
    """
    return Dashboard(
        port,
        host,
        token=token,
        keep_runs=keep_runs,
        tail_bytes=tail_bytes,
        source=source,
    )
