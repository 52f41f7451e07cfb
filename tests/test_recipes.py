"""Every recipe runs as it stands, on the local executor, and prints what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

RECIPES = Path(__file__).parent.parent / "recipes"


#: A warning Python printed (``UserWarning: ...``, ``ResourceWarning: ...``),
#: or one it could not raise (in a finalizer: ``Exception ignored in``).
PYTHON_WARNING = re.compile(r"\b[A-Z]\w*Warning\b|Exception ignored in")


def run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a recipe the way a reader would, with a secret in our environment.

    With ``-W error``: a recipe that makes Python warn fails; one that warns
    where no exception can go (a finalizer) fails the check below.
    """
    done = subprocess.run(
        [sys.executable, "-W", "error", str(RECIPES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"EVENTKIT_RECIPE_SECRET": "do-not-leak", "PATH": "/usr/bin:/bin"},
    )
    assert not PYTHON_WARNING.search(done.stderr), done.stderr
    return done


def test_every_recipe_is_run_here() -> None:
    """Each recipe at the top of recipes/ has a test in this module."""
    source = Path(__file__).read_text()
    for recipe in sorted(RECIPES.glob("*.py")):
        if recipe.name != "structured_logging.py":  # test_observability_recipes.py
            assert f'run("{recipe.name}"' in source, recipe.name


def test_basic_streaming() -> None:
    """Five steps stream out, then the exit code, time and completion."""
    done = run("basic_streaming.py", "--step", "0.01")
    assert 0 == done.returncode, done.stderr
    lines = done.stdout.splitlines()
    assert ["Step 1/5", "Step 2/5", "Step 3/5", "Step 4/5", "Step 5/5", "Done!"] == (
        lines[:6]
    )
    assert "Exit code: 0" in lines
    assert "Execution completed" in lines


def test_message_types() -> None:
    """stdout, stderr, result and completion are each labelled."""
    done = run("message_types.py")
    assert 0 == done.returncode, done.stderr
    out = done.stdout
    assert "[STDOUT] This is stdout\n" in out
    assert "[STDOUT] This is also stdout\n" in out
    assert "[STDERR] This is stderr\n" in out
    assert "[RESULT] Exit: 0, Time: " in out
    assert out.endswith("[COMPLETE] Execution finished\n")


def test_progress_monitoring() -> None:
    """Progress lines stream, with the parsed percentage after each."""
    done = run("progress_monitoring.py", "--step", "0.01")
    assert 0 == done.returncode, done.stderr
    out = done.stdout
    reports = [
        float(line.split()[1].rstrip("%"))
        for line in out.splitlines()
        if line.startswith("  -> ")
    ]
    assert reports
    assert sorted(reports) == reports
    assert 100.0 == reports[-1]
    assert "Progress: 50.0% (10/20)\n" in out
    assert "All steps completed!\n" in out
    assert out.endswith("Task completed successfully\n")


def test_environment_variables() -> None:
    """The code sees the env it was given and none of ours."""
    done = run("environment_variables.py")
    assert 0 == done.returncode, done.stderr
    assert [
        "API key: sk-123",
        "Debug mode: true",
        "Shell secrets visible: False",
    ] == done.stdout.splitlines()


def test_error_handling() -> None:
    """A failing program shows its traceback, exit code and failure."""
    done = run("error_handling.py")
    assert 1 == done.returncode
    out = done.stdout
    assert "Starting..." in out
    assert "ERROR: " in out
    assert "NameError: name 'undefined_variable' is not defined" in out
    assert "Execution failed with exit code: 1" in out
    assert "This won't be reached" not in out.replace('print("This won', "")


def test_complete_example() -> None:
    """The whole chain: output, summary, progress and Prometheus counters."""
    done = run("complete_example.py", "--step", "0.002")
    assert 0 == done.returncode, done.stderr
    out = done.stdout
    assert "Processed 90/100 items" in out
    assert "Exit code: 0" in out
    assert "Streaming completed" in out
    assert "last progress: 90.0%" in out
    assert 'eventkit_events_total{type="completed"} 1.0' in out


def test_event_loop() -> None:
    """One match statement handles every event type."""
    done = run("event_loop.py")
    assert 0 == done.returncode, done.stderr
    assert [
        "Execution started",
        "Output: hello from the sandbox",
        "Error: a warning",
        "Execution completed",
    ] == done.stdout.splitlines()


def test_progress_tracking() -> None:
    """Sequences count from 0 and elapsed times grow."""
    done = run("progress_tracking.py")
    assert 0 == done.returncode, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Event 0 at 0.00s: started"
    assert lines[-1].startswith("Execution completed in ")
    times = [float(line.split(" at ")[1].split("s:")[0]) for line in lines[:-1]]
    assert sorted(times) == times


@pytest.mark.parametrize("size", [256, 1024])
def test_output_buffering(size: int) -> None:
    """Output comes in chunks of at most the buffer size."""
    done = run("output_buffering.py", "--buffer-size", str(size))
    assert 0 == done.returncode, done.stderr
    chunks = [line for line in done.stdout.splitlines() if line.startswith("chunk")]
    sizes = [int(line.split(", ")[1].split()[0]) for line in chunks]
    assert max(sizes) <= size
    assert sum(sizes) == 200 * len("line 000: " + "x" * 40 + "\n")
    assert done.stdout.endswith("done\n")
