"""The ``eventkit`` command."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventkit import Event
from eventkit.cli import main
from eventkit.protocol import jsonl

if TYPE_CHECKING:
    import pytest

DEMO = Path(__file__).parent.parent / "recipes" / "data" / "demo.jsonl"


def write(path: Path, events: list[Event]) -> Path:
    path.write_bytes(b"".join(jsonl.encode(event) for event in events))
    return path


def test_replay_shows_output_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """Program stdout goes to stdout as is; the summary table goes to stderr."""
    assert main(["replay", str(DEMO), "--reorder", "--progress"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Progress: 5.0% (1/20)\n")
    assert out.endswith("All steps completed!\n")
    assert "Warning: retrying batch 3" in err
    assert "Summary" in err
    assert "success" in err


def test_replay_reorder_restores_order(capsys: pytest.CaptureFixture[str]) -> None:
    """With --reorder the demo's swapped events come out in sequence order."""
    assert main(["replay", str(DEMO), "--reorder", "--json"]) == 0
    out, _ = capsys.readouterr()
    sequences = [jsonl.decode(line).sequence for line in out.splitlines()]
    assert sorted(sequences) == sequences


def test_replay_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    """--json: JSON Lines events on stdout, one JSON summary on stderr."""
    assert main(["replay", str(DEMO), "--only", "stdout", "completed", "--json"]) == 0
    out, err = capsys.readouterr()
    events = [jsonl.decode(line) for line in out.splitlines()]
    assert {"stdout", "completed"} == {event.type for event in events}
    summary = json.loads(err)
    assert summary["invalid_lines"] == 0
    (run,) = summary["runs"]
    assert run["run"] == "demo-run-1"
    assert run["success"] is True


def test_replay_records_jsonl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--jsonl records the processed stream, which replays to the same events."""
    recorded = tmp_path / "out.jsonl"
    args = ["replay", str(DEMO), "--buffer-bytes", "64", "--jsonl", str(recorded)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["replay", str(recorded), "--json"]) == 0
    out, _ = capsys.readouterr()
    replayed = [jsonl.decode(line) for line in out.splitlines()]
    kept = [jsonl.decode(line) for line in recorded.read_bytes().splitlines()]
    assert kept == replayed
    assert all(len(e.data.encode()) <= 64 for e in kept)
    assert any(e.attrs.get("count", 0) > 1 for e in kept)


def test_invalid_line_names_line_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid line stops the replay with exit status 1 and its line number."""
    path = write(tmp_path / "bad.jsonl", [Event(type="stdout", data="a\n", run="r")])
    with path.open("ab") as file:
        file.write(b"{not json}\n")
        file.write(jsonl.encode(Event(type="completed", run="r", sequence=1)))
    assert main(["replay", str(path)]) == 1
    _, err = capsys.readouterr()
    assert "line 2" in err
    assert "--skip-invalid" in err


def test_skip_invalid_counts_and_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--skip-invalid reports the bad line on stderr, counts it, exits 0."""
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        jsonl.encode(Event(type="stdout", data="a\n", run="r"))
        + b'{"data": "no type"}\n'
        + jsonl.encode(Event(type="completed", run="r", sequence=1))
    )
    assert main(["replay", str(path), "--skip-invalid", "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2
    assert "line 2" in err
    assert json.loads(err.splitlines()[-1])["invalid_lines"] == 1


def test_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A file that does not exist gives exit status 1 and a message."""
    assert main(["replay", "/nonexistent/x.jsonl"]) == 1
    _, err = capsys.readouterr()
    assert "No such file" in err


def test_bad_chain_argument(capsys: pytest.CaptureFixture[str]) -> None:
    """A nonsense --buffer-bytes is refused with exit status 2."""
    assert main(["replay", str(DEMO), "--buffer-bytes", "2"]) == 2
    _, err = capsys.readouterr()
    assert "limit" in err


def test_log_json_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """--log json: lifecycle events and a run summary, as JSON lines on stderr."""
    assert main(["replay", str(DEMO), "--log", "json", "--json"]) == 0
    _, err = capsys.readouterr()
    entries = [json.loads(line) for line in err.splitlines() if '"level"' in line]
    assert [e["event"] for e in entries] == ["started", "result", "run_summary"]
    assert entries[-1]["exit_code"] == 0
    assert all(e["run"] == "demo-run-1" for e in entries)


def test_python_dash_m() -> None:
    """``python -m eventkit`` is the same command."""
    done = subprocess.run(
        [sys.executable, "-m", "eventkit", "replay", str(DEMO), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 27


def test_serve_refuses_public_address_without_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Asked for a non-loopback address without --api-key, serve exits non-zero."""
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    _, err = capsys.readouterr()
    assert "--api-key" in err


def test_serve_answers_and_stops_on_interrupt() -> None:
    """`eventkit serve` prints its URL, answers /health, exits on SIGINT."""
    import json as jsonlib
    import signal
    import urllib.request

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
                body = jsonlib.loads(response.read())
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
    import signal
    import urllib.error
    import urllib.request

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
