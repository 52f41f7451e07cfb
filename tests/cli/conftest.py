"""Fixtures of the ``eventkit`` command's tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import structlog

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put structlog's configuration back after each command run in-process.

    A command configures logging for the whole process (``--log``, workers);
    the tests that run after these ones must not log through it.
    """
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def minimal_args() -> dict[str, list[str]]:
    """The least each command needs to parse, after its name."""
    return {
        "run": ["-c", "pass"],
        "serve": [],
        "replay": ["run.jsonl"],
        "worker": ["--redis", "redis://127.0.0.1:1", "--group", "g"],
        "top": ["http://127.0.0.1:1/"],
    }
