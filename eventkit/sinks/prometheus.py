"""Sinks that publish metrics: a ``/metrics`` endpoint, a Pushgateway.

They take no interest in the events themselves (:meth:`send` does nothing):
what they publish is a Prometheus registry, the one
:func:`eventkit.pipe.export_metrics` counts into. Their use is their
lifetime, which is the pipeline's: put them beside the real sink with
:func:`eventkit.sinks.tee`::

    registry = CollectorRegistry()
    await eventkit.run(
        source,
        eventkit.pipe.export_metrics(registry),
        sink=sinks.tee(sinks.console(), sinks.prometheus_http(9464, registry=registry)),
    )

Both also work as async context managers, around any number of runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import socketserver
import threading
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import REGISTRY, make_wsgi_app, push_to_gateway

from eventkit.sinks._base import Sink

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from prometheus_client.registry import Collector

    from eventkit.events import Event

__all__ = ["PrometheusHTTP", "Pushgateway", "prometheus_http", "pushgateway"]

_log = structlog.get_logger("eventkit.sinks.prometheus")


class PrometheusHTTP(Sink):
    """Serve a registry's metrics over HTTP while the sink is open.

    :meth:`open` binds ``addr:port`` and serves ``/metrics`` (any path, in
    fact: prometheus_client's exposition) from a daemon thread, so scrapes
    never wait for the event loop; :meth:`close` stops the server and frees
    the port. Events are ignored.

    Failure behaviour: a port that cannot be bound (in use, no permission)
    raises :exc:`OSError` from :meth:`open`, before the run reads any event.
    Once serving, nothing the server does can stop the pipeline.

    Args:
        port: The TCP port; 0 picks a free one (see :attr:`port`).
        addr: The address to bind; the loopback interface by default, since
            metrics can tell a lot about what runs.
        registry: What to expose; prometheus_client's default registry when
            None (where ``export_metrics()`` counts by default).

    Attributes:
        addr: The address bound.
    """

    def __init__(
        self,
        port: int,
        addr: str = "127.0.0.1",
        registry: Collector | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be from 0 to 65535, not {port!r}")
        self.addr = addr
        self._port = port
        self._registry = REGISTRY if registry is None else registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port served: the one bound once open, the one asked for before."""
        if self._server is not None:
            return int(self._server.server_port)
        return self._port

    @property
    def url(self) -> str:
        """The metrics URL, such as ``http://127.0.0.1:9464/metrics``."""
        host = self.addr
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        return f"http://{host}:{self.port}/metrics"

    async def open(self) -> None:
        """Start serving; raise :exc:`OSError` if the port cannot be bound.

        Raises:
            RuntimeError: If the sink is open already.
        """
        if self._server is not None:
            raise RuntimeError(f"{self!r} is open already")
        # Binding is quick and local: no thread needed for it.
        server = _serve(self.addr, self._port, self._registry)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL},
            name=f"eventkit metrics {self.addr}:{server.server_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread

    async def send(self, event: Event) -> None:
        """Ignore ``event``: the metrics come from the registry."""

    async def send_batch(self, events: list[Event]) -> None:
        """Ignore the batch: the metrics come from the registry."""

    async def close(self) -> None:
        """Stop serving and free the port; nothing happens if not open."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        # shutdown() waits for the serving loop to notice: not in the event
        # loop's thread.
        await asyncio.to_thread(_stop, server, thread)

    def __repr__(self) -> str:
        state = "serving" if self._server is not None else "closed"
        return f"<prometheus_http sink {self.url} ({state})>"


#: Seconds between the serving loop's checks for shutdown: closing waits as long.
_POLL = 0.05


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """prometheus_client's server: a thread per scrape, which never blocks exit."""

    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    """No access log on standard error: stderr is the program's."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(addr: str, port: int, registry: Collector) -> WSGIServer:
    """Bind ``addr:port`` and return the server, not serving yet."""
    family = socket.AF_INET
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(addr).version == 6:
            family = socket.AF_INET6
    server_class = type("_Server", (_Server,), {"address_family": family})
    return make_server(
        addr, port, make_wsgi_app(registry), server_class, handler_class=_Quiet
    )


def _stop(server: WSGIServer, thread: threading.Thread | None) -> None:
    server.shutdown()
    server.server_close()
    if thread is not None:
        thread.join()


class Pushgateway(Sink):
    """Push a registry's metrics to a Prometheus Pushgateway.

    For runs too short to be scraped: pushes when closed, at the end of the
    run, and every ``interval`` seconds while open when set. Each push
    replaces what the gateway holds for ``job`` and ``grouping_key`` (HTTP
    PUT, prometheus_client's :func:`~prometheus_client.push_to_gateway`),
    in a worker thread since it blocks. Events are ignored.

    Mind what the Prometheus documentation says: the gateway never forgets
    what was pushed (delete it there when a job is gone), it is a single
    point of failure, and scraped through it a job has no ``up`` series.

    Failure behaviour: a failed push (gateway down, HTTP error, timeout) is
    logged as a ``warning`` entry ``pushgateway push failed`` and counted in
    :attr:`failures`, with the exception kept in :attr:`last_error`; it never
    stops the pipeline and :meth:`close` does not raise for it, so metrics
    trouble cannot fail a run whose work succeeded. Check :attr:`failures`
    after the run when the push matters.

    Args:
        url: The gateway, such as ``http://127.0.0.1:9091`` (``http://`` is
            assumed without a scheme).
        job: The ``job`` label of the pushed series.
        interval: Seconds between pushes while open; None to push only at
            close.
        registry: What to push; prometheus_client's default registry when
            None.
        grouping_key: More labels identifying this pusher (``instance``,
            say), so that several do not overwrite each other.
        timeout: Seconds a push may take.

    Attributes:
        pushes: Successful pushes.
        failures: Failed pushes.
        last_error: The exception of the last failed push, if any.
    """

    def __init__(
        self,
        url: str,
        job: str,
        *,
        interval: float | None = None,
        registry: Collector | None = None,
        grouping_key: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not job:
            raise ValueError("job must not be empty")
        # Negated >= so that NaN is refused too.
        if interval is not None and not interval > 0:
            raise ValueError(
                f"interval must be positive seconds or None, not {interval!r}"
            )
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, not {timeout!r}")
        self.url = url
        self.job = job
        self.interval = interval
        self._registry = REGISTRY if registry is None else registry
        self._grouping_key = dict(grouping_key) if grouping_key else None
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.pushes = 0
        self.failures = 0
        self.last_error: Exception | None = None

    async def open(self) -> None:
        """Start pushing every ``interval`` seconds, if set."""
        if self.interval is not None and self._task is None:
            self._stopping = asyncio.Event()
            self._task = asyncio.create_task(self._every(self.interval))

    async def send(self, event: Event) -> None:
        """Ignore ``event``: the metrics come from the registry."""

    async def send_batch(self, events: list[Event]) -> None:
        """Ignore the batch: the metrics come from the registry."""

    async def close(self) -> None:
        """Stop the periodic pushes and push once more; never raises for a push."""
        task, self._task = self._task, None
        if task is not None:
            # Let a push under way finish rather than cancel it: its thread
            # would go on without anyone to hear how it ended.
            self._stopping.set()
            await task
        await self.push()

    async def push(self) -> bool:
        """Push now, in a worker thread; return whether it worked.

        A failure is logged and counted (see the class), not raised.
        """
        try:
            await asyncio.to_thread(
                push_to_gateway,
                self.url,
                job=self.job,
                registry=self._registry,
                grouping_key=self._grouping_key,
                timeout=self._timeout,
                handler=_put,
            )
        except Exception as exc:
            self.failures += 1
            self.last_error = exc
            _log.warning(
                "pushgateway push failed",
                url=self.url,
                job=self.job,
                error=repr(exc),
                failures=self.failures,
            )
            return False
        self.pushes += 1
        return True

    async def _every(self, interval: float) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), interval)
            except TimeoutError:
                await self.push()
            else:
                return

    def __repr__(self) -> str:
        return f"<pushgateway sink {self.url} job={self.job!r}>"


def _put(
    url: str,
    method: str,
    timeout: float | None,
    headers: Sequence[tuple[str, str]],
    data: bytes,
) -> Callable[[], None]:
    """prometheus_client's push handler, closing the response it gets.

    The stock handler leaves the connection for the garbage collector.
    """

    def handle() -> None:
        request = urllib.request.Request(url, data=data, method=method)
        for name, value in headers:
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            raise OSError(
                f"error talking to pushgateway: {exc.code} {exc.reason}"
            ) from None

    return handle


def prometheus_http(
    port: int, addr: str = "127.0.0.1", registry: Collector | None = None
) -> PrometheusHTTP:
    """Return a sink serving ``registry``'s metrics on ``http://addr:port/metrics``.

    Serves while the pipeline runs (from :meth:`~PrometheusHTTP.open` to
    :meth:`~PrometheusHTTP.close`); events are ignored. With ``port`` 0 a
    free port is chosen: read it from ``.port`` or ``.url`` once open.

    Example::

        metrics = sinks.prometheus_http(9464, registry=registry)
        await eventkit.run(
            source,
            pipe.export_metrics(registry),
            sink=sinks.tee(sinks.console(), metrics),
        )

    Args:
        port: The TCP port, 0 for any free one.
        addr: The address to bind (loopback by default).
        registry: What to expose; prometheus_client's default registry when
            None.

    Raises:
        ValueError: For a port outside 0-65535.
    """
    return PrometheusHTTP(port, addr, registry)


def pushgateway(
    url: str,
    job: str,
    *,
    interval: float | None = None,
    registry: Collector | None = None,
    grouping_key: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Pushgateway:
    """Return a sink pushing ``registry`` to a Pushgateway at the end of the run.

    Pushes when the run ends and, with ``interval``, every ``interval``
    seconds while it runs; events are ignored. A failed push is logged and
    counted in ``.failures``, never raised (see :class:`Pushgateway`).

    Example::

        gateway = sinks.pushgateway("http://127.0.0.1:9091", "nightly-eval",
                                    registry=registry)
        await eventkit.run(source, pipe.export_metrics(registry), sink=gateway)

    Args:
        url: The gateway's base URL.
        job: The ``job`` label.
        interval: Seconds between pushes while running; None for only at the
            end.
        registry: What to push; prometheus_client's default registry when
            None.
        grouping_key: More labels identifying this pusher.
        timeout: Seconds a push may take.

    Raises:
        ValueError: For an empty ``job`` or a ``interval`` or ``timeout``
            that is not positive.
    """
    return Pushgateway(
        url,
        job,
        interval=interval,
        registry=registry,
        grouping_key=grouping_key,
        timeout=timeout,
    )
