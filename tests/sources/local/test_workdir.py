"""Tests for :mod:`eventkit.sources.local.workdir`: where a run's files live."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from eventkit.sources.local import local
from eventkit.sources.local.workdir import remove_workdir
from tests.sources.local.runs import output, read, run_dirs

if TYPE_CHECKING:
    from pathlib import Path


async def test_workdir_is_used_and_kept(tmp_path: Path) -> None:
    """A given working directory is created, used, and left in place."""
    workdir = tmp_path / "given" / "nested"
    code = "open('made.txt', 'w').write('x')\nimport os\nprint(os.getcwd())"
    events = await read(local(code, workdir=workdir))
    assert str(workdir) + "\n" == output(events)
    assert (workdir / "made.txt").read_text() == "x"
    assert (workdir / "main.py").exists()
    # An existing directory is used as is.
    events = await read(
        local("import os\nprint(sorted(os.listdir()))", workdir=workdir)
    )
    assert output(events) == "['made.txt', 'main.py']\n"


async def test_temporary_directory_is_removed(tmp_root: Path) -> None:
    """The default working directory is removed, with what the code put there."""
    code = "import os\nos.makedirs('a/b')\nopen('a/b/c', 'w').write('x')\nprint(1)"
    events = await read(local(code))
    assert events[-1].attrs["success"] is True
    assert run_dirs(tmp_root) == []


async def test_remove_after_the_executor_shut_down(tmp_path: Path) -> None:
    """At interpreter exit, with no executor left, the directory still goes."""
    doomed = tmp_path / "doomed"
    (doomed / "sub").mkdir(parents=True)
    await asyncio.get_running_loop().shutdown_default_executor()
    await remove_workdir(str(doomed))
    assert not doomed.exists()
