"""``--dashboard`` on the commands: the address line, the runs, keep, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from typing import IO, TYPE_CHECKING, Any

import pytest

from eventkit.cli import main
from eventkit.cli.arguments import build_parser
from eventkit.cli.dashboard import TOKEN_VARIABLE

if TYPE_CHECKING:
    from pathlib import Path


def fetch(url: str) -> Any:
    """GET ``url`` as JSON."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def address(stderr: IO[str]) -> str:
    """Read stderr up to the ``dashboard: URL`` line; return the URL."""
    for line in stderr:
        if line.startswith("dashboard: http"):
            return line.removeprefix("dashboard: ").strip()
    raise AssertionError("no dashboard line")


def test_the_flags_parse_on_each_command() -> None:
    """run, replay and worker take the flags; --dashboard-keep is for those that end."""
    parser = build_parser()
    args = parser.parse_args(
        ["run", "-c", "pass", "--dashboard", "0", "--dashboard-keep"]
    )
    assert (0, "127.0.0.1", None, True) == (
        args.dashboard,
        args.dashboard_host,
        args.dashboard_token,
        args.dashboard_keep,
    )
    args = parser.parse_args(["replay", "f.jsonl", "--dashboard", "8080"])
    assert (8080, False) == (args.dashboard, args.dashboard_keep)
    worker = ["worker", "--redis", "redis://h", "--group", "g", "--dashboard", "1"]
    assert 1 == parser.parse_args(worker).dashboard
    with pytest.raises(SystemExit):
        parser.parse_args([*worker, "--dashboard-keep"])


def test_a_public_host_without_a_token_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One line, exit 2, nothing run: as serve refuses it."""
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    status = main(
        ["run", "-c", "print(1)", "--dashboard", "0", "--dashboard-host", "0.0.0.0"]
    )
    assert 2 == status
    out, err = capsys.readouterr()
    assert "" == out
    assert "without a token" in err
    assert 1 == len(err.strip().splitlines()) or "--dashboard-token" in err


CODE = "import sys\nprint('hello')\nprint('oops', file=sys.stderr)\nsys.exit(4)"


def test_run_serves_its_runs_and_keeps_them_until_interrupted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--dashboard-keep: the run ends, the page stays; Ctrl-C ends the command.

    The page's state and exit code come from the source: they hold what the
    chain (--only stderr) drops.
    """
    # What the command exits with for these flags, without a dashboard.
    expected = main(["run", "-c", CODE, "--only", "stderr", "--json"])
    capsys.readouterr()
    env = {**os.environ, TOKEN_VARIABLE: "tok"}
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventkit",
            "run",
            "-c",
            CODE,
            "--only",
            "stderr",
            "--dashboard",
            "0",
            "--dashboard-keep",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        try:
            assert child.stderr is not None
            url = address(child.stderr)
            assert url.endswith("/?token=tok")
            for line in child.stderr:
                if "still serving" in line:
                    break
            runs = fetch(url.replace("/?", "/api/runs?"))["runs"]
            assert [("failed", 4, "local")] == [
                (run["state"], run["exit_code"], run["source"]) for run in runs
            ]
            detail = fetch(url.replace("/?", f"/api/runs/{runs[0]['run']}?"))
            # The chain kept stderr only: that is what the page shows.
            assert ["stderr"] == [event["type"] for event in detail["events"]]
            child.send_signal(signal.SIGINT)
            assert expected == child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()


def test_replay_serves_the_recorded_runs_and_stops_at_the_end(tmp_path: Path) -> None:
    """Without --dashboard-keep, the dashboard stops when the command ends."""
    recording = tmp_path / "run.jsonl"
    recording.write_text(
        "\n".join(
            json.dumps(line)
            for line in (
                {"type": "started", "run": "rec"},
                {"type": "stdout", "data": "50%\n", "run": "rec", "sequence": 1},
            )
        )
        + "\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "eventkit",
            "replay",
            str(recording),
            "--dashboard",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == result.returncode
    (line,) = [
        line for line in result.stderr.splitlines() if line.startswith("dashboard:")
    ]
    assert line.startswith("dashboard: http://127.0.0.1:")
