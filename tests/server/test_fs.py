"""A sandbox's files by descriptor: what is checked is what is used."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import pytest

from eventkit.server import fs

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def root(tmp_path: Path) -> str:
    """A sandbox's directory, with its /workspace, beside another sandbox's."""
    sandbox = tmp_path / "sbx-a"
    (sandbox / "workspace").mkdir(parents=True)
    other = tmp_path / "sbx-b" / "workspace"
    other.mkdir(parents=True)
    (other / "secret.txt").write_text("the other owner's")
    return str(sandbox)


def plant(root: str, name: str, target: str) -> None:
    """Make a link in /workspace, as the code in the sandbox can."""
    os.symlink(target, os.path.join(root, "workspace", name))


def test_write_read_list_exists_remove(root: str) -> None:
    """The operations the files API offers, on paths inside the sandbox."""
    assert 6 == fs.write_file(root, "/workspace/d/a.txt", "héllo".encode())
    assert "héllo".encode() == fs.read_file(root, "d/a.txt", max_bytes=100)
    fs.make_dirs(root, "/workspace/d/e/f")
    listed = fs.list_dir(root, "/workspace/d")
    assert [("a.txt", False), ("e", True)] == [
        (entry["name"], entry["is_directory"]) for entry in listed
    ]
    assert 6 == listed[0]["size"]
    assert "/workspace/d/a.txt" == listed[0]["path"]
    assert listed[0]["permissions"].startswith("-rw")
    assert listed[0]["modified_time"].endswith("Z")
    assert fs.exists(root, "/workspace/d/e")
    fs.remove(root, "/workspace/d")
    assert not fs.exists(root, "/workspace/d")
    assert fs.exists(root, "/")


def test_write_sets_the_mode(root: str) -> None:
    """The mode asked for is the file's, whatever the umask."""
    fs.write_file(root, "run.sh", b"#!/bin/sh\n", mode=0o755)
    assert 0o755 == os.stat(os.path.join(root, "workspace", "run.sh")).st_mode & 0o777


@pytest.mark.parametrize("target", ["/etc/passwd", "/etc"])
def test_link_to_an_absolute_path_is_refused(root: str, target: str) -> None:
    """A link planted to /etc/passwd (or /etc) is never followed, for any operation."""
    plant(root, "link", target)
    for call in (
        lambda: fs.read_file(root, "/workspace/link", max_bytes=1 << 20),
        lambda: fs.read_file(root, "/workspace/link/passwd", max_bytes=1 << 20),
        lambda: fs.write_file(root, "/workspace/link", b"x"),
        lambda: fs.list_dir(root, "/workspace/link"),
        lambda: fs.exists(root, "/workspace/link"),
        lambda: fs.make_dirs(root, "/workspace/link/sub"),
    ):
        with pytest.raises(fs.PathError) as info:
            call()
        assert ("PATH_OUTSIDE_SANDBOX", 403) == (info.value.code, info.value.status)
        assert target not in str(info.value)


def test_link_to_another_sandbox_is_refused(root: str) -> None:
    """A relative link climbing into another sandbox is refused."""
    plant(root, "theirs", "../../sbx-b/workspace/secret.txt")
    with pytest.raises(fs.PathError, match="leads out of the sandbox") as info:
        fs.read_file(root, "/workspace/theirs", max_bytes=100)
    assert "PATH_OUTSIDE_SANDBOX" == info.value.code


def test_link_inside_the_sandbox_is_followed(root: str) -> None:
    """A relative link that stays inside is followed, files and directories."""
    fs.write_file(root, "/workspace/data/v2.csv", b"a,b\n")
    plant(root, "latest.csv", "data/v2.csv")
    plant(root, "current", "data")
    os.symlink("workspace/data", os.path.join(root, "alias"))
    plant(root, "up", "../workspace/data")
    assert b"a,b\n" == fs.read_file(root, "latest.csv", max_bytes=100)
    assert b"a,b\n" == fs.read_file(root, "current/v2.csv", max_bytes=100)
    assert b"a,b\n" == fs.read_file(root, "/alias/v2.csv", max_bytes=100)
    assert b"a,b\n" == fs.read_file(root, "up/v2.csv", max_bytes=100)
    fs.write_file(root, "latest.csv", b"c\n")
    assert b"c\n" == fs.read_file(root, "data/v2.csv", max_bytes=100)


def test_link_loop_is_an_error(root: str) -> None:
    """Links pointing at each other end in SYMLINK_LOOP, not a hang."""
    plant(root, "a", "b")
    plant(root, "b", "a")
    with pytest.raises(fs.PathError) as info:
        fs.read_file(root, "a", max_bytes=100)
    assert "SYMLINK_LOOP" == info.value.code


def test_writing_through_a_planted_link_leaves_its_target(
    root: str, tmp_path: Path
) -> None:
    """A write to a link planted to a file outside is refused; the file is intact."""
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    plant(root, "notes.txt", str(outside))
    with pytest.raises(fs.PathError):
        fs.write_file(root, "notes.txt", b"overwritten")
    assert "keep" == outside.read_text()


def test_removing_a_link_removes_the_link_only(root: str, tmp_path: Path) -> None:
    """remove() of a link to a directory outside removes the link, not the directory."""
    outside = tmp_path / "keep"
    outside.mkdir()
    (outside / "file").write_text("x")
    plant(root, "out", str(outside))
    fs.remove(root, "/workspace/out")
    assert not os.path.lexists(os.path.join(root, "workspace", "out"))
    assert "x" == (outside / "file").read_text()


def test_not_regular_files(root: str) -> None:
    """A FIFO is refused at once (never waited on); a directory is no file."""
    os.mkfifo(os.path.join(root, "workspace", "pipe"))
    with pytest.raises(fs.PathError) as info:
        fs.read_file(root, "pipe", max_bytes=100)
    assert "NOT_A_FILE" == info.value.code
    with pytest.raises(fs.PathError) as info:
        fs.read_file(root, "/workspace", max_bytes=100)
    assert "IS_A_DIRECTORY" == info.value.code
    with pytest.raises(fs.PathError) as info:
        fs.open_dir(root, "/workspace/pipe")
    assert "NOT_A_DIRECTORY" == info.value.code


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/workspace/../../etc", "INVALID_PATH"),
        ("", "INVALID_PATH"),
        ("a\0b", "INVALID_PATH"),
        ("/workspace/missing.txt", "FILE_NOT_FOUND"),
    ],
)
def test_invalid_and_missing_paths(root: str, path: str, code: str) -> None:
    """``..``, empty paths and NUL are refused; a missing file is not found."""
    with pytest.raises(fs.PathError) as info:
        fs.read_file(root, path, max_bytes=100)
    assert code == info.value.code


def test_size_limit(root: str) -> None:
    """A file over max_bytes is refused, FILE_TOO_LARGE (413)."""
    fs.write_file(root, "big", b"x" * 101)
    with pytest.raises(fs.PathError) as info:
        fs.read_file(root, "big", max_bytes=100)
    assert ("FILE_TOO_LARGE", 413) == (info.value.code, info.value.status)


def test_root_cannot_be_removed(root: str) -> None:
    """remove('/') is refused; the sandbox keeps its directory."""
    with pytest.raises(fs.PathError):
        fs.remove(root, "/")
    assert os.path.isdir(os.path.join(root, "workspace"))


def test_a_link_swapped_in_after_the_check_is_not_followed(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory replaced by a link to /etc mid-walk: refused, /etc never read.

    Checking a resolved path and then opening it would read /etc/passwd here:
    the swap happens after the walk entered /workspace, as code racing the
    server could make it happen.
    """
    fs.write_file(root, "/workspace/data/passwd", b"mine")
    real_open = os.open
    swapped = threading.Event()

    def racing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        if path == "workspace" and not swapped.is_set():
            swapped.set()
            data = os.path.join(root, "workspace", "data")
            os.rename(data, data + ".old")
            os.symlink("/etc", data)
        return fd

    monkeypatch.setattr(os, "open", racing_open)
    with pytest.raises(fs.PathError) as info:
        fs.read_file(root, "/workspace/data/passwd", max_bytes=1 << 20)
    assert swapped.is_set()
    assert "PATH_OUTSIDE_SANDBOX" == info.value.code
