"""``recipes/redis/``: fan-in of sandbox runs to three workers, each with metrics."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from eventkit.protocol import jsonl

if TYPE_CHECKING:
    from .conftest import RedisServer

RECIPE = Path(__file__).parent.parent.parent / "recipes" / "redis"
RUNS = 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def completed_runs(outputs: list[Path]) -> set[str]:
    runs = set()
    for path in outputs:
        if path.exists():
            for line in path.read_bytes().splitlines():
                event = jsonl.decode(line)
                if event.type == "completed":
                    runs.add(event.run)
    return runs


def runs_counted(port: int) -> float:
    """Sum of eventkit_runs_total over outcomes on a worker's /metrics."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("eventkit_runs_total{")
    )


def test_fan_in_to_three_workers(redis_server: RedisServer, tmp_path: Path) -> None:
    """The producer's runs are all processed, and every worker serves metrics."""
    ports = [free_port() for _ in range(3)]
    outputs = [tmp_path / f"worker{n}.jsonl" for n in range(3)]
    workers = []
    for port, output in zip(ports, outputs, strict=True):
        command = [
            sys.executable, "-m", "eventkit", "worker",
            "--redis", redis_server.url, "--stream", "sandbox:events",
            "--group", "reporters", "--shards", "6",
            "--reorder", "--buffer-bytes", "4096",
            "--metrics-port", str(port), "--jsonl", str(output),
        ]  # fmt: skip
        workers.append(
            subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
    try:
        producer = subprocess.run(
            [
                sys.executable, str(RECIPE / "fan_in.py"),
                "--redis", redis_server.url, "--runs", str(RUNS),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        assert producer.returncode == 0, producer.stderr
        assert f"of {RUNS} runs to sandbox:events" in producer.stdout
        deadline = time.monotonic() + 60
        want = {f"job-{n}" for n in range(RUNS)}
        while completed_runs(outputs) != want:
            assert time.monotonic() < deadline, completed_runs(outputs)
            time.sleep(0.1)
        assert sum(runs_counted(port) for port in ports) >= RUNS
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(timeout=30) for worker in workers]
    assert codes == [0, 0, 0]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not found")
def test_prometheus_config_is_valid() -> None:
    """The recipe's prometheus.yml passes promtool."""
    promtool = shutil.which("promtool")
    assert promtool is not None
    result = subprocess.run(
        [promtool, "check", "config", str(RECIPE / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
