"""Knowing when a written program file is opened: OpenWatch."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING

import pytest

from eventkit.server.opened import OpenWatch

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="inotify is Linux's"
)


async def test_open_after_the_write_is_told(tmp_path: Path) -> None:
    """The writer's own open is not the one: the reader's, after the write, is."""
    opened = asyncio.Event()
    watch = OpenWatch(str(tmp_path), "main.py", opened.set)
    assert watch.active
    (tmp_path / "main.py").write_text("print(1)")
    (tmp_path / "other.py").write_text("x")
    (tmp_path / "other.py").read_text()
    await asyncio.sleep(0.05)
    assert not opened.is_set()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL
    )
    await asyncio.wait_for(opened.wait(), 10)
    await process.wait()
    watch.close()
    watch.close()  # idempotent


async def test_closed_watch_tells_nothing(tmp_path: Path) -> None:
    """After close() the callback never comes."""
    calls: list[int] = []
    watch = OpenWatch(str(tmp_path), "main.py", lambda: calls.append(1))
    watch.close()
    (tmp_path / "main.py").write_text("x")
    (tmp_path / "main.py").read_text()
    await asyncio.sleep(0.05)
    assert [] == calls


async def test_a_missing_directory_is_no_watch(tmp_path: Path) -> None:
    """A directory that does not exist: inactive, nothing raised."""
    watch = OpenWatch(os.path.join(tmp_path, "gone"), "main.py", lambda: None)
    assert not watch.active
    watch.close()
