"""A new user's first minutes: a fresh clone, the README's set-up and main command.

**Slow** (marked ``slow``; a minute or more): it clones the repository into
a temporary directory and runs ``make demo`` there, which creates the
virtual environment and installs eventkit and its dependencies from PyPI
before running the demo, as the README's first lines promise. A missing
install step, a dependency left out of ``pyproject.toml`` or a demo that no
longer runs fails here, where the suite's own environment would hide it.
Deselect it with ``-m "not slow"``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).parent.parent


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_fresh_clone_runs_make_demo(tmp_path: Path) -> None:
    """``git clone`` then ``make demo``: exit 0, the program's output on stdout."""
    git, make = shutil.which("git"), shutil.which("make")
    if git is None or make is None:
        pytest.skip("git and make are needed to act as a new user")
    if not (REPOSITORY / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    clone = tmp_path / "eventkit"
    subprocess.run(
        [git, "clone", "--quiet", str(REPOSITORY), str(clone)],
        check=True,
        timeout=300,
    )
    # The user's environment, without this suite's virtual environment.
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
        and not name.startswith("PYTEST")
    }
    venv_bin = str(REPOSITORY / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(
        entry for entry in env.get("PATH", "").split(os.pathsep) if entry != venv_bin
    )
    done = subprocess.run(
        [make, "demo"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "Starting data processing...\n" in done.stdout
    assert "Progress: 100.0% (20/20)\n" in done.stdout
    assert "All steps completed!\n" in done.stdout
    assert "success" in done.stderr
