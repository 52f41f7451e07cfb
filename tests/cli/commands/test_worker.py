"""``eventkit worker`` before it reaches Redis (tests/redis/ runs real workers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventkit.cli import main

if TYPE_CHECKING:
    import pytest


def test_bad_chain_argument_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A nonsense --buffer-bytes stops the worker before it connects."""
    worker = ["worker", "--redis", "redis://127.0.0.1:1", "--group", "g"]
    assert 2 == main([*worker, "--buffer-bytes", "2"])
    _, err = capsys.readouterr()
    assert "limit" in err
