"""``python -m eventkit``: the ``eventkit`` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).parent.parent / "recipes" / "data" / "demo.jsonl"


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
