"""The metrics against the real thing: promtool, Prometheus and the Pushgateway.

Needs Debian's ``prometheus`` (which brings ``promtool``) and
``prometheus-pushgateway`` on the PATH; each test is skipped, saying so, when
its binary is missing. Every server binds 127.0.0.1 on a free port, keeps its
data in a temporary directory, and is stopped at the end of its test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any, Final

import pytest
from prometheus_client import CollectorRegistry

import eventkit
from eventkit import pipe, sinks, sources
from eventkit.metrics import server_stats, source_stats
from tests.factories import ev

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from eventkit.events import Event

PROMETHEUS: Final = shutil.which("prometheus")
PROMTOOL: Final = shutil.which("promtool")
PUSHGATEWAY: Final = shutil.which("prometheus-pushgateway") or shutil.which(
    "pushgateway"
)
#: Seconds a server may take to come up, and Prometheus to show the counts.
WAIT: Final = 20.0

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: apt-get install prometheus",
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus not found: apt-get install prometheus",
)
needs_pushgateway = pytest.mark.skipif(
    PUSHGATEWAY is None,
    reason="prometheus-pushgateway not found: apt-get install prometheus-pushgateway",
)


def free_port() -> int:
    """Return a port nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def get(url: str) -> str:
    """GET ``url``; return the body."""
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


@contextlib.contextmanager
def server(args: list[str], ready: str, log: Path) -> Iterator[None]:
    """Run a server until the block ends; wait for ``ready`` to answer 200 first."""
    with open(log, "wb") as output:
        process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            if process.poll() is not None:
                pytest.fail(f"{args[0]} exited: {log.read_text()[-2000:]}")
            try:
                get(ready)
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(f"{args[0]} not ready: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
            process.kill()
            process.wait()


def workload(runs: int, lines: int) -> list[Event]:
    """``runs`` complete runs of ``lines`` stdout lines, one stderr line each."""
    events = []
    for index in range(runs):
        run = f"run-{index}"
        events.append(ev("started", run=run))
        for line in range(lines):
            events.append(ev("stdout", f"line {line}\n", 1 + line, run=run))
        events.append(ev("stderr", "warning\n", lines + 1, run=run))
        events.append(
            ev(
                "result",
                "",
                lines + 2,
                run=run,
                exit_code=0,
                execution_time=0.1 * index,
            )
        )
        events.append(ev("completed", "", lines + 3, run=run, success=True))
    return events


async def held(events: list[Event], release: asyncio.Event) -> AsyncIterator[Event]:
    """Yield ``events``, then keep the pipeline alive until ``release``."""
    for event in events:
        yield event
    await release.wait()


def chain(registry: CollectorRegistry, **options: Any) -> list[eventkit.Stage]:
    """The chain under test: every operator with self-metrics.

    export_metrics comes before buffer_bytes so that it counts the events as
    they were sent, not the chunks; the self-metrics cover the whole chain.
    """
    return [
        pipe.reorder(),
        pipe.only("started", "stdout", "stderr", "result", "completed"),
        pipe.export_metrics(registry, **options),
        pipe.buffer_bytes(64),
        pipe.track_progress(),
    ]


@needs_promtool
async def test_promtool_accepts_the_exposition() -> None:
    """`promtool check metrics` finds nothing to say about a full exposition."""
    assert PROMTOOL is not None
    registry = CollectorRegistry()
    source_stats("websocket").frames += 0  # make the source families non-empty
    server_stats()
    release = asyncio.Event()
    metrics = sinks.prometheus_http(0, registry=registry)
    events = workload(3, 5)
    # A run still going, so that the per-run series and gauges are there.
    events += [ev("started", run="live"), ev("stdout", "50%\n", 1, run="live")]
    running = asyncio.ensure_future(
        eventkit.run(
            held(events, release),
            *chain(registry, run_labels=True),
            sink=metrics,
        )
    )
    try:
        text = ""
        while 'run="live"' not in text:
            await asyncio.sleep(0.01)
            with contextlib.suppress(urllib.error.URLError, ConnectionError):
                text = await asyncio.to_thread(get, metrics.url)
    finally:
        release.set()
        await running
    checked = await asyncio.to_thread(
        subprocess.run,
        [PROMTOOL, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (0, "", "") == (checked.returncode, checked.stdout, checked.stderr), text
    for family in (
        "eventkit_events_total",
        "eventkit_stage_received_events_total",
        "eventkit_reorder_held_events",
        "eventkit_buffer_chunks_total",
        "eventkit_progress_active_runs",
        "eventkit_source_frames_total",
        "eventkit_server_running_executions",
        "eventkit_run_events_total",
        "eventkit_run_duration_seconds_bucket",
    ):
        assert family in text


async def query(base: str, promql: str) -> list[dict[str, Any]]:
    """Return the result vector of an instant query to Prometheus' HTTP API."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    answer = json.loads(await asyncio.to_thread(get, url))
    assert "success" == answer["status"], answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


async def value_of(base: str, promql: str) -> float | None:
    """Return the single value of ``promql``, or None while there is none."""
    result = await query(base, promql)
    if not result:
        return None
    assert 1 == len(result), result
    return float(result[0]["value"][1])


@needs_prometheus
async def test_prometheus_scrapes_the_pipeline(tmp_path: Path) -> None:
    """A real Prometheus scrapes a running pipeline; its counts are what was sent."""
    assert PROMETHEUS is not None
    registry = CollectorRegistry()
    metrics = sinks.prometheus_http(0, registry=registry)
    release = asyncio.Event()
    runs, lines = 4, 25
    events = workload(runs, lines)
    running = asyncio.ensure_future(
        eventkit.run(held(events, release), *chain(registry), sink=metrics)
    )
    try:
        # Opened once the run starts; a sink has no event to wait on.
        while metrics.port == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: eventkit\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{metrics.port}']\n"
        )
        base = f"http://127.0.0.1:{port}"
        with server(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            f"{base}/-/ready",
            tmp_path / "prometheus.log",
        ):
            filtered = 'reason="filtered",stage="1:only"'
            expected = {
                'eventkit_events_total{type="stdout"}': runs * lines,
                'eventkit_events_total{type="completed"}': runs,
                'eventkit_runs_total{outcome="success"}': runs,
                "eventkit_run_duration_seconds_count": runs,
                'eventkit_stage_received_events_total{stage="0:reorder"}': len(events),
                f"eventkit_stage_dropped_events_total{{{filtered}}}": 0,
                'up{job="eventkit"}': 1,
            }
            deadline = time.monotonic() + WAIT
            seen: dict[str, float | None] = {}
            while True:
                seen = {q: await value_of(base, q) for q in expected}
                if seen == expected or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
            assert expected == seen
            # Output went out in chunks of at most 64 bytes: fewer events than in.
            chunks = await value_of(
                base, 'sum(eventkit_buffer_chunks_total{stage="3:buffer_bytes"})'
            )
            assert chunks is not None
            assert 0 < chunks < runs * (lines + 1)
    finally:
        release.set()
        await running


@needs_pushgateway
async def test_pushgateway_round_trip(tmp_path: Path) -> None:
    """A short run pushes at its end; the real gateway serves what was pushed."""
    assert PUSHGATEWAY is not None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with server(
        [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}"],
        f"{base}/-/ready",
        tmp_path / "pushgateway.log",
    ):
        registry = CollectorRegistry()
        gateway = sinks.pushgateway(
            base, "eventkit_test", registry=registry, grouping_key={"instance": "ci"}
        )
        events = workload(2, 3)
        await eventkit.run(sources.iterate(events), *chain(registry), sink=gateway)
        assert (1, 0) == (gateway.pushes, gateway.failures)
        text = await asyncio.to_thread(get, f"{base}/metrics")
    labels = 'instance="ci",job="eventkit_test"'
    for line in (
        f'eventkit_events_total{{{labels},type="stdout"}} 6',
        f'eventkit_runs_total{{{labels},outcome="success"}} 2',
        f"eventkit_run_duration_seconds_count{{{labels}}} 2",
        f'eventkit_stage_received_events_total{{{labels},stage="0:reorder"}} '
        f"{len(events)}",
        # The result event of each run flushes its stdout and stderr buffers.
        f'eventkit_buffer_chunks_total{{{labels},reason="terminal",'
        f'stage="3:buffer_bytes"}} 4',
    ):
        assert line in text.splitlines(), line
    assert f"push_time_seconds{{{labels}}}" in text
