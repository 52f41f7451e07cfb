"""``eventkit serve``: the local sandbox from the command line."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from eventkit.cli import main

if TYPE_CHECKING:
    import pytest


def test_serve_refuses_public_address_without_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Asked for a non-loopback address without --api-key, serve exits non-zero."""
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    _, err = capsys.readouterr()
    assert "--api-key" in err


def test_serve_answers_and_stops_on_interrupt() -> None:
    """`eventkit serve` prints its URL, answers /health, exits on SIGINT."""
    server = subprocess.Popen(
        [sys.executable, "-m", "eventkit", "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        url = line.split("listening on ")[1].strip()
        request = urllib.request.Request(
            f"{url}/health", headers={"Authorization": "Bearer none"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                status = response.status
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            status, body = exc.code, {}
        # The agent endpoints want the sandbox's own token: without it, 401.
        assert status in (200, 401)
        if status == 200:
            assert "healthy" == body["status"]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()
    assert server.returncode in (0, 130)


def test_serve_exposes_its_metrics() -> None:
    """`eventkit serve --metrics-port` serves the server's executions and refusals."""

    def post(url: str, body: object, token: str | None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    def sample(exposition: str, name: str) -> float:
        for line in exposition.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name} not in the exposition")

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventkit",
            "serve",
            "--port",
            "0",
            "--metrics-port",
            "0",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        metrics = server.stderr.readline().split("metrics on ")[1].strip()
        url = server.stderr.readline().split("listening on ")[1].strip()
        token = post(f"{url}/dev/token", {}, None)["access_token"]
        sandbox = post(f"{url}/api/v1/sandbox/create", {}, token)["sandbox_id"]
        result = post(
            f"{url}/api/v1/sandbox/{sandbox}/execute", {"code": "print(6 * 7)"}, token
        )
        assert "42" in json.dumps(result)
        with contextlib.suppress(urllib.error.HTTPError):
            post(f"{url}/api/v1/sandbox/create", {}, "")
        with urllib.request.urlopen(metrics, timeout=10) as response:
            exposition = response.read().decode()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()
    assert sample(exposition, "eventkit_server_executions_total") == 1
    assert sample(exposition, "eventkit_server_running_executions") == 0
    assert 'eventkit_server_refusals_total{reason="unauthorized"} 1.0' in exposition
