"""Fixtures for the local executor's tests."""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING

import pytest

from eventkit.sources.local import cgroup

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``tempfile`` create its directories under ``tmp_path``."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.fixture
def without_cgroups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make runs find no cgroup to use: limits fall back to setrlimit."""
    monkeypatch.setattr(cgroup, "_found", {})
