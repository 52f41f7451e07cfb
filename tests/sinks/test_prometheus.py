"""Tests for :mod:`eventkit.sinks.prometheus`, against in-process HTTP servers.

The real Prometheus and Pushgateway are in ``tests/test_observability_real.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import socket
import threading
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

import eventkit
from eventkit import pipe, sinks, sources
from eventkit.sinks.prometheus import PrometheusHTTP, Pushgateway
from tests.factories import ev

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from eventkit.events import Event


def get(url: str) -> str:
    """GET ``url``; return the body."""
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


class Gateway:
    """A stand-in Pushgateway recording each request: (method, path, body)."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, str, str]] = []
        self.status = status
        self.pushed = threading.Event()
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length).decode()
                gateway.requests.append(("PUT", self.path, body))
                self.send_response(gateway.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                gateway.pushed.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )

    def __enter__(self) -> Gateway:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def free_port() -> int:
    """Return a port nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def gated(events: list[Event], gate: asyncio.Event) -> AsyncIterator[Event]:
    """Yield ``events``, then wait for ``gate`` before ending."""
    for event in events:
        yield event
    await gate.wait()


# prometheus_http -----------------------------------------------------------------


async def test_serves_metrics_while_the_pipeline_runs() -> None:
    """/metrics answers during the run with the counts so far; not after."""
    registry = CollectorRegistry()
    metrics = sinks.prometheus_http(0, registry=registry)
    gate = asyncio.Event()
    seen: list[str] = []

    async def check(event: Event) -> None:
        if event.sequence == 2:
            seen.append(await asyncio.to_thread(get, metrics.url))
            gate.set()

    await eventkit.run(
        gated(
            [
                ev("stdout", "x", run=""),
                ev("stdout", "x", 1, run=""),
                ev("stdout", "x", 2, run=""),
            ],
            gate,
        ),
        pipe.export_metrics(registry),
        sink=sinks.tee(metrics, sinks.call(check)),
    )
    assert 'eventkit_events_total{type="stdout"} 3.0' in seen[0]
    assert 'eventkit_stage_received_events_total{stage="0:export_metrics"}' in seen[0]
    with pytest.raises(urllib.error.URLError):
        get(metrics.url)


async def test_port_zero_exposes_the_bound_port() -> None:
    """With port 0, ``.port`` and ``.url`` tell the port chosen once open."""
    metrics = PrometheusHTTP(0, registry=CollectorRegistry())
    assert 0 == metrics.port
    async with metrics:
        assert metrics.port > 0
        assert f"http://127.0.0.1:{metrics.port}/metrics" == metrics.url
        assert "serving" in repr(metrics)
        assert "# HELP" in get(metrics.url) or "" == get(metrics.url)
    assert "closed" in repr(metrics)


async def test_a_fixed_port() -> None:
    """A given port is the one served."""
    port = free_port()
    async with sinks.prometheus_http(port, registry=CollectorRegistry()) as metrics:
        assert port == metrics.port  # type: ignore[attr-defined]
        get(f"http://127.0.0.1:{port}/metrics")


async def test_port_in_use_fails_before_any_event() -> None:
    """A port already bound raises OSError from open: the run reads nothing."""
    read: list[Event] = []

    async def source() -> AsyncIterator[Event]:
        read.append(ev("stdout", "x", run=""))
        yield ev("stdout", "x", run="")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):  # noqa: PT011 - the errno varies
            await eventkit.run(
                source(), sink=sinks.prometheus_http(port, registry=CollectorRegistry())
            )
    assert [] == read


async def test_default_registry() -> None:
    """Without a registry, the process's default registry is served."""
    async with sinks.prometheus_http(0) as metrics:
        text = await asyncio.to_thread(get, metrics.url)  # type: ignore[attr-defined]
    assert "python_info" in text or "process_" in text


async def test_open_twice_is_refused() -> None:
    """A sink serves once at a time."""
    metrics = sinks.prometheus_http(0, registry=CollectorRegistry())
    async with metrics:
        with pytest.raises(RuntimeError, match="open already"):
            await metrics.open()
    await metrics.close()  # closing again does nothing


async def test_send_ignores_events() -> None:
    """Events sent change nothing served; closing an unopened sink does nothing."""
    registry = CollectorRegistry()
    metrics = sinks.prometheus_http(0, registry=registry)
    await metrics.send(ev("stdout", "x", run=""))
    await metrics.close()
    async with metrics:
        await metrics.send(ev("completed", run="", success=True))
        text = await asyncio.to_thread(get, metrics.url)
    assert [] == list(registry.collect())
    assert "" == text


def test_ipv6_url() -> None:
    """An IPv6 address is bracketed in the URL."""
    assert "http://[::1]:9464/metrics" == PrometheusHTTP(9464, "::1").url
    assert "http://localhost:9464/metrics" == PrometheusHTTP(9464, "localhost").url


@pytest.mark.parametrize("port", [-1, 65536])
def test_invalid_port(port: int) -> None:
    """A port outside 0-65535 is refused at once."""
    with pytest.raises(ValueError, match="port"):
        sinks.prometheus_http(port)


# pushgateway ----------------------------------------------------------------------


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    """A stand-in Pushgateway on a free port."""
    with Gateway() as server:
        yield server


async def test_pushes_at_the_end(gateway: Gateway) -> None:
    """One PUT of the registry to /metrics/job/JOB when the run ends."""
    registry = CollectorRegistry()
    sink = sinks.pushgateway(gateway.url, "nightly", registry=registry)
    await eventkit.run(
        sources.iterate([ev("stdout", "x", run=""), ev("stdout", "x", 1, run="")]),
        pipe.export_metrics(registry),
        sink=sink,
    )
    [(method, path, body)] = gateway.requests
    assert ("PUT", "/metrics/job/nightly") == (method, path)
    assert 'eventkit_events_total{type="stdout"} 2.0' in body
    assert (1, 0, None) == (sink.pushes, sink.failures, sink.last_error)


async def test_grouping_key(gateway: Gateway) -> None:
    """A grouping key adds to the push path."""
    sink = sinks.pushgateway(
        gateway.url, "j", registry=CollectorRegistry(), grouping_key={"instance": "w1"}
    )
    async with sink:
        pass
    assert "/metrics/job/j/instance/w1" == gateway.requests[0][1]


async def test_pushes_every_interval(gateway: Gateway) -> None:
    """With an interval, pushes come while the run goes on, and at the end."""
    registry = CollectorRegistry()
    sink = sinks.pushgateway(gateway.url, "j", interval=0.05, registry=registry)
    gate = asyncio.Event()

    async def release() -> None:
        # The gateway's thread has no asyncio.Event to set: poll.
        while len(gateway.requests) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        gate.set()

    releasing = asyncio.ensure_future(release())
    await eventkit.run(
        gated([ev("stdout", "x", run="")], gate),
        pipe.export_metrics(registry),
        sink=sink,
    )
    await releasing
    assert len(gateway.requests) >= 3
    assert sink.pushes == len(gateway.requests)


async def test_a_failed_push_is_logged_and_counted() -> None:
    """Gateway down: the run completes, close does not raise, the failure shows."""
    port = free_port()
    registry = CollectorRegistry()
    sink = sinks.pushgateway(
        f"http://127.0.0.1:{port}", "j", registry=registry, timeout=2.0
    )
    collected = sinks.collect()
    with capture_logs() as logs:
        await eventkit.run(
            sources.iterate([ev("stdout", "x", run="")]),
            pipe.export_metrics(registry),
            sink=sinks.tee(collected, sink),
        )
    assert 1 == len(collected.events)
    assert (0, 1) == (sink.pushes, sink.failures)
    assert isinstance(sink.last_error, OSError)
    [entry] = [e for e in logs if e["event"] == "pushgateway push failed"]
    assert ("warning", "j", 1) == (entry["log_level"], entry["job"], entry["failures"])


async def test_an_http_error_is_a_failure() -> None:
    """A gateway answering 500 counts as a failed push."""
    with Gateway(status=500) as server:
        sink = sinks.pushgateway(server.url, "j", registry=CollectorRegistry())
        with capture_logs():
            ok = await sink.push()
    assert not ok
    assert 1 == sink.failures


async def test_periodic_failures_do_not_stop_the_pipeline() -> None:
    """Pushes failing every interval leave the run alone."""
    sink = sinks.pushgateway(
        f"http://127.0.0.1:{free_port()}",
        "j",
        interval=0.02,
        registry=CollectorRegistry(),
        timeout=1.0,
    )
    with capture_logs():
        async with sink:
            async with asyncio.timeout(10):
                # Failures are only counted: poll for them.
                while sink.failures < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
    assert sink.failures >= 3  # and the one at close
    assert 0 == sink.pushes


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"job": ""}, "job"),
        ({"interval": 0}, "interval"),
        ({"interval": float("nan")}, "interval"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_invalid_pushgateway_arguments(kwargs: dict[str, Any], match: str) -> None:
    """Nonsense arguments are refused at once."""
    arguments: dict[str, Any] = {"job": "j", **kwargs}
    job = arguments.pop("job")
    with pytest.raises(ValueError, match=match):
        sinks.pushgateway("http://127.0.0.1:9091", job, **arguments)


def test_pushgateway_repr() -> None:
    """The repr names the gateway and the job."""
    sink = Pushgateway("http://gw:9091", "nightly")
    assert "http://gw:9091" in repr(sink)
    assert "nightly" in repr(sink)


async def test_pushgateway_ignores_events(gateway: Gateway) -> None:
    """send() does nothing; only the registry is pushed."""
    sink = sinks.pushgateway(gateway.url, "j", registry=CollectorRegistry())
    await sink.send(ev("stdout", "x", run=""))
    with contextlib.suppress(Exception):
        await sink.close()
    assert 1 == len(gateway.requests)
