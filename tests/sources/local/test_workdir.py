"""Tests for :mod:`eventkit.sources.local.workdir`: where a run's files live."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from eventkit.sources.local import local
from eventkit.sources.local.workdir import remove_workdir, write_code
from tests.sources.local.runs import needs_bwrap, output, read, run_dirs

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


def test_code_file_replaces_a_link_never_follows_it(tmp_path: Path) -> None:
    """A link left where the code file goes is replaced; its target is untouched."""
    target = tmp_path / "precious"
    target.write_text("keep me")
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "main.py").symlink_to(target)
    write_code(str(workdir), "main.py", "print(1)\n")
    assert "keep me" == target.read_text()
    assert not (workdir / "main.py").is_symlink()
    assert "print(1)\n" == (workdir / "main.py").read_text()


@needs_bwrap
async def test_sandboxed_code_cannot_aim_the_next_write(tmp_path: Path) -> None:
    """Code that links its code file elsewhere cannot make the next run write there."""
    target = tmp_path / "precious"
    target.write_text("keep me")
    target.chmod(0o666)  # writable by the sandbox's uid, were it visible
    workdir = tmp_path / "run"
    code = f"import os\nos.remove('main.py')\nos.symlink({str(target)!r}, 'main.py')\n"
    first = await read(local(code, workdir=workdir, isolation="bwrap"))
    assert first[-1].attrs["success"] is True
    second = await read(local("print(2)", workdir=workdir, isolation="bwrap"))
    assert "2\n" == output(second)
    assert "keep me" == target.read_text()
