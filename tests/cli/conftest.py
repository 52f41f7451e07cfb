"""Fixtures of the ``eventkit`` command's tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def minimal_args() -> dict[str, list[str]]:
    """The least each command needs to parse, after its name."""
    return {
        "run": ["-c", "pass"],
        "serve": [],
        "replay": ["run.jsonl"],
        "worker": ["--redis", "redis://127.0.0.1:1", "--group", "g"],
    }
