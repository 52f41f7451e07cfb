"""The observability recipes run as they stand, and their files are valid.

``recipes/structured_logging.py``, ``recipes/prometheus/prometheus_metrics.py``
and the Prometheus configuration and Grafana dashboard beside it.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from eventkit.metrics import METRICS

if TYPE_CHECKING:
    from collections.abc import Iterator

RECIPES: Final = Path(__file__).parent.parent / "recipes"
PROMETHEUS: Final = RECIPES / "prometheus"
PROMTOOL: Final = shutil.which("promtool")
PUSHGATEWAY: Final = shutil.which("prometheus-pushgateway") or shutil.which(
    "pushgateway"
)
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: apt-get install prometheus"
)


def run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a recipe the way a reader would, any Python warning an error."""
    return subprocess.run(
        [sys.executable, "-W", "error", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    """Parse JSON lines."""
    return [json.loads(line) for line in text.splitlines()]


def test_structured_logging() -> None:
    """Output on stdout; lifecycle and summary JSON lines on stderr."""
    done = run(RECIPES / "structured_logging.py")
    assert 0 == done.returncode, done.stderr
    assert [f"step {i}/5" for i in range(1, 6)] == done.stdout.splitlines()
    entries = json_lines(done.stderr)
    assert ["started", "run_summary"] == [e["event"] for e in entries]
    assert {"recipe"} == {e["job"] for e in entries}
    summary = entries[-1]
    assert (True, 0, {"stdout": 45, "stderr": 8}, 100.0) == (
        summary["success"],
        summary["exit_code"],
        summary["bytes"],
        summary["percent"],
    )


def test_structured_logging_every_chunk() -> None:
    """``--every 1`` logs the output chunks as well."""
    done = run(RECIPES / "structured_logging.py", "--every", "1")
    assert 0 == done.returncode, done.stderr
    events = [e["event"] for e in json_lines(done.stderr)]
    assert {"stdout", "stderr", "run_summary"} <= set(events)


def test_structured_logging_console() -> None:
    """``--format console`` writes lines for people."""
    done = run(RECIPES / "structured_logging.py", "--format", "console")
    assert 0 == done.returncode, done.stderr
    assert "run_summary" in done.stderr
    assert "run=recipe-run" in done.stderr


def test_prometheus_metrics() -> None:
    """Three runs counted: one success, a failure and an output limit."""
    done = run(PROMETHEUS / "prometheus_metrics.py", "--port", "0")
    assert 0 == done.returncode, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"serving http://127\.0\.0\.1:\d+/metrics", lines[0])
    assert 'eventkit_runs_total{outcome="failure"} 2.0' in lines
    assert 'eventkit_runs_total{outcome="success"} 1.0' in lines
    assert 'eventkit_resource_limits_total{limit="output"} 1.0' in lines


def test_prometheus_metrics_push_failure_is_reported() -> None:
    """A gateway that is not there: the recipe says so and still succeeds."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run(
        PROMETHEUS / "prometheus_metrics.py",
        "--port",
        "0",
        "--pushgateway",
        f"http://127.0.0.1:{port}",
    )
    assert 0 == done.returncode, done.stderr
    assert f"pushed to http://127.0.0.1:{port}: 0 ok, 1 failed" in done.stdout


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    """A real Pushgateway on a free port."""
    if PUSHGATEWAY is None:
        pytest.skip(
            "prometheus-pushgateway not found: apt-get install prometheus-pushgateway"
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "log", "wb") as log:
        process = subprocess.Popen(
            [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=5).close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, (tmp_path / "log").read_text()
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_prometheus_metrics_push(gateway: str) -> None:
    """``--pushgateway`` pushes the final numbers; the gateway has them."""
    done = run(
        PROMETHEUS / "prometheus_metrics.py", "--port", "0", "--pushgateway", gateway
    )
    assert 0 == done.returncode, done.stderr
    assert f"pushed to {gateway}: 1 ok, 0 failed" in done.stdout
    with urllib.request.urlopen(f"{gateway}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert (
        'eventkit_runs_total{instance="",job="eventkit_recipe",outcome="failure"} 2'
        in (text.splitlines())
    )


def dashboard_queries() -> list[str]:
    """Return every PromQL expression of the Grafana dashboard."""
    dashboard = json.loads((PROMETHEUS / "grafana-dashboard.json").read_text())
    return [
        target["expr"] for panel in dashboard["panels"] for target in panel["targets"]
    ]


def test_dashboard_uses_the_metrics_as_named() -> None:
    """Every metric the dashboard queries exists; every aggregate one is shown."""
    used = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for query in dashboard_queries()
        for name in re.findall(r"\beventkit_\w+", query)
    }
    known = {f"eventkit_{info.name}" for info in METRICS}
    assert set() == used - known
    shown = {f"eventkit_{info.name}" for info in METRICS if info.group != "run"}
    assert set() == shown - used


@needs_promtool
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Each query is valid PromQL (checked by promtool as recording rules)."""
    assert PROMTOOL is not None
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:query_{index}",
                        "expr": query.replace("$__rate_interval", "1m").replace(
                            "$__range", "1h"
                        ),
                    }
                    for index, query in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert 0 == checked.returncode, checked.stdout + checked.stderr


@needs_promtool
def test_prometheus_yml_is_valid() -> None:
    """The sample configuration passes promtool."""
    assert PROMTOOL is not None
    checked = subprocess.run(
        [PROMTOOL, "check", "config", str(PROMETHEUS / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert 0 == checked.returncode, checked.stdout + checked.stderr
