"""``eventkit serve``: the local sandbox from the command line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest

from eventkit.cli import main
from tests.sources.local.runs import needs_bwrap

if TYPE_CHECKING:
    import pathlib


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
        # /health needs no token: it tells nothing but that the server is up.
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            assert {"status": "healthy"} == json.loads(response.read())
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


def start(
    *flags: str, env: dict[str, str] | None = None, before: list[str] | None = None
) -> tuple[Any, str]:
    """Start ``eventkit serve --port 0 FLAGS``; return the process and its URL.

    The lines printed before the one saying where it listens go to ``before``.
    """
    server = subprocess.Popen(
        [sys.executable, "-m", "eventkit", "serve", "--port", "0", *flags],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert server.stderr is not None
    seen = [] if before is None else before
    while "listening on " not in (line := server.stderr.readline()):
        seen.append(line)
        assert line, "".join(seen)  # serve ended without listening
    return server, line.split("listening on ")[1].strip()


def post(url: str, body: object, headers: dict[str, str]) -> Any:
    """POST JSON; return the decoded answer."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def alive(pid: int) -> bool:
    """Tell whether ``pid`` runs (a zombie is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_stops_like_ctrl_c() -> None:
    """SIGTERM: runs killed (a grandchild too), sandbox directories removed, 143."""
    # Unisolated, so that the code's process ids are this machine's.
    server, url = start("--isolation", "none")
    try:
        token = post(f"{url}/dev/token", {}, {})["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        sandbox = post(f"{url}/api/v1/sandbox/create", {}, auth)["sandbox_id"]
        code = (
            "import os, subprocess, time\n"
            "child = subprocess.Popen(['sleep', '60'])\n"
            "print(os.getcwd(), os.getpid(), child.pid, flush=True)\n"
            "time.sleep(60)\n"
        )
        request = urllib.request.Request(
            f"{url}/api/v1/sandbox/{sandbox}/execute/stream",
            data=json.dumps({"code": code, "timeout": 120}).encode(),
            headers={"Content-Type": "application/json", **auth},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            cwd, *pids = json.loads(response.readline())["data"].split()
            assert all(alive(int(pid)) for pid in pids)
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stderr is not None:
            server.stderr.close()
    assert 128 + signal.SIGTERM == server.returncode
    assert not any(alive(int(pid)) for pid in pids)
    base = cwd.split("/sbx-")[0]
    assert os.path.basename(base).startswith("eventkit-server-")
    assert not os.path.exists(base)


@pytest.mark.parametrize("source", ["file", "environment"])
def test_api_key_from_a_file_or_the_environment(
    source: str, tmp_path: pathlib.Path
) -> None:
    """--api-key-file or EVENTKIT_API_KEY: the key works, and is not in argv."""
    env = dict(os.environ)
    env.pop("EVENTKIT_API_KEY", None)
    if source == "file":
        key_file = tmp_path / "key"
        key_file.write_text("s3cret\n")
        flags: tuple[str, ...] = ("--api-key-file", str(key_file))
    else:
        env["EVENTKIT_API_KEY"] = "s3cret"
        flags = ()
    server, url = start(*flags, env=env)
    try:
        assert not any("s3cret" in arg for arg in server.args)
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(f"{url}/v1/sandboxes", {}, {"X-API-Key": "wrong"})
        assert 401 == refused.value.code
        refused.value.close()
        created = post(f"{url}/v1/sandboxes", {}, {"X-API-Key": "s3cret"})
        assert created["id"].startswith("sbx-")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()


def test_empty_api_key_file_is_refused(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty key file is a usage error (2), with one line saying so."""
    key_file = tmp_path / "key"
    key_file.write_text("\n")
    assert 2 == main(["serve", "--port", "0", "--api-key-file", str(key_file)])
    assert "the key is empty" in " ".join(capsys.readouterr().err.split())


def test_flags_reach_the_server() -> None:
    """Every limit flag becomes the LocalSandboxServer option of the same name."""
    from eventkit.cli.arguments import build_parser
    from eventkit.cli.commands.serve import options

    args = build_parser().parse_args(
        [
            "serve",
            "--api-key",
            "k",
            "--max-sandboxes",
            "9",
            "--max-sandboxes-per-key",
            "3",
            "--sandbox-ttl",
            "60",
            "--send-timeout",
            "5",
            "--idle-timeout",
            "7",
            "--body-timeout",
            "8",
            "--max-file-bytes",
            "100",
        ]
    )
    settings = options(args)
    assert {
        "api_key": "k",
        "max_sandboxes": 9,
        "max_sandboxes_per_key": 3,
        "sandbox_ttl": 60.0,
        "send_timeout": 5.0,
        "idle_timeout": 7.0,
        "body_timeout": 8.0,
        "max_file_bytes": 100,
        "max_output_bytes": 64 << 20,
    }.items() <= settings.items()


@needs_bwrap
def test_runs_are_isolated_by_default() -> None:
    """serve isolates by default: its own processes only, /workspace, said at start."""
    server, url = start()
    try:
        assert server.stderr is not None
        lines = [server.stderr.readline() for _ in range(3)]
        assert "isolation: bwrap" in lines[-1]
        token = post(f"{url}/dev/token", {}, {})["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        sandbox = post(f"{url}/api/v1/sandbox/create", {}, auth)["sandbox_id"]
        code = (
            "import os\n"
            "pids = [int(p) for p in os.listdir('/proc') if p.isdigit()]\n"
            "print(os.getcwd(), max(pids))"
        )
        answer = post(f"{url}/api/v1/sandbox/{sandbox}/execute", {"code": code}, auth)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()
    cwd, highest = answer["output"].split()
    assert "/workspace" == cwd
    assert int(highest) < 10  # bwrap, the program: a PID namespace of its own


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "refusing to run code unisolated on '0.0.0.0'"),
        (["--isolation", "bwrap"], "isolation bwrap is not available here"),
    ],
)
def test_no_sandbox_on_a_public_address_is_refused(
    flags: list[str], message: str
) -> None:
    """Where bwrap cannot run, a public address needs --isolation none."""
    command = [sys.executable, "-m", "eventkit", "serve", "--port", "0"]
    done = subprocess.run(
        [*command, "--host", "0.0.0.0", "--api-key", "k", *flags],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PATH": "/nonexistent"},  # no bwrap to be found
    )
    assert 2 == done.returncode
    assert message in done.stderr


def test_dashboard_shows_the_servers_runs() -> None:
    """serve --dashboard: every run the server makes is a row, with its exit code."""
    before: list[str] = []
    server, url = start("--isolation", "none", "--dashboard", "0", before=before)
    try:
        (line,) = before
        board = line.split("dashboard: ")[1].strip().rstrip("/")
        token = post(f"{url}/dev/token", {}, {})["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        sandbox = post(f"{url}/api/v1/sandbox/create", {}, auth)["sandbox_id"]
        code = {"code": "import sys\nprint('hi')\nsys.exit(3)"}
        post(f"{url}/api/v1/sandbox/{sandbox}/execute", code, auth)
        with urllib.request.urlopen(f"{board}/api/runs", timeout=10) as response:
            runs = json.loads(response.read())["runs"]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()
    assert [("failed", 3, "serve")] == [
        (run["state"], run["exit_code"], run["source"]) for run in runs
    ]


def test_dashboard_needs_the_api_key() -> None:
    """With an API key, serve's dashboard answers only to it."""
    before: list[str] = []
    server, _ = start(
        "--isolation", "none", "--api-key", "sekrit", "--dashboard", "0", before=before
    )
    try:
        (line,) = before
        board = line.split("dashboard: ")[1].strip()
        assert board.endswith("/?token=sekrit")
        bare = board.split("?")[0] + "api/runs"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bare, timeout=10)
        refused.value.close()
        assert 401 == refused.value.code
        with urllib.request.urlopen(bare + "?token=sekrit", timeout=10) as response:
            assert [] == json.loads(response.read())["runs"]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()
