"""``eventkit replay``: a recorded stream through the chain, to the terminal or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from eventkit import Event
from eventkit.cli import main
from eventkit.protocol import jsonl

if TYPE_CHECKING:
    import pytest

DEMO = Path(__file__).parents[3] / "recipes" / "data" / "demo.jsonl"


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
    assert main(["replay", str(DEMO), "--only", "stdout,completed", "--json"]) == 0
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


def test_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A file that does not exist: status 2 as in ``run``, and a short line."""
    assert 2 == main(["replay", "/nonexistent/x.jsonl"])
    _, err = capsys.readouterr()
    assert "error: no such file: /nonexistent/x.jsonl\n" == err


def test_log_json_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """--log json: lifecycle events and a run summary, as JSON lines on stderr."""
    assert main(["replay", str(DEMO), "--log", "json", "--json"]) == 0
    _, err = capsys.readouterr()
    entries = [json.loads(line) for line in err.splitlines() if '"level"' in line]
    assert [e["event"] for e in entries] == ["started", "run_summary"]
    assert entries[-1]["exit_code"] == 0
    assert all(e["run"] == "demo-run-1" for e in entries)


def test_run_without_completed_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recording that stops before ``completed``: the run's notes say so."""
    path = write(tmp_path / "cut.jsonl", [Event(type="stdout", data="a\n", run="r")])
    assert 0 == main(["replay", str(path), "--json"])
    _, err = capsys.readouterr()
    (run,) = json.loads(err)["runs"]
    assert run["success"] is None
    assert "the stream ended before the run's completed event" == run["reason"]
