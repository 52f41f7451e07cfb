"""The working directory of a local run, and the program file in it.

:func:`make_workdir` returns the directory a run uses (the caller's, made if
missing, or a fresh temporary one), :func:`write_code` puts the program
there, and :func:`remove_workdir` removes a temporary one after the run.

Failure behaviour: :func:`make_workdir` and :func:`write_code` raise the
:exc:`OSError` of the file system, which ends the iteration with it;
:func:`remove_workdir` ignores errors, and still removes the directory when
the event loop can no longer run a thread (interpreter exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile

__all__ = ["make_workdir", "remove_workdir", "write_code"]


def make_workdir(workdir: str | os.PathLike[str] | None) -> str:
    """Return the working directory: ``workdir`` (made if missing) or a new one.

    Blocking, as is :func:`write_code`, but making a directory and writing
    one small file cost microseconds: less than a trip to a thread.

    Args:
        workdir: The caller's directory, or None for a new temporary one
            (``eventkit-*``), which the caller must remove.
    """
    if workdir is None:
        return tempfile.mkdtemp(prefix="eventkit-")
    path = os.fspath(workdir)
    os.makedirs(path, exist_ok=True)
    return path


def write_code(workdir: str, filename: str, code: str) -> None:
    """Write the program text into the working directory, as UTF-8.

    The file is made anew: whatever had its name (a file, or a link an
    earlier run of other people's code left there, pointing anywhere) is
    removed first, and a link made meanwhile is refused, never followed.
    """
    path = os.path.join(workdir, filename)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with open(fd, "w", encoding="utf-8") as file:
        file.write(code)


async def remove_workdir(path: str) -> None:
    """Remove a temporary working directory without blocking the loop.

    The code may have filled it with any number of files, so this runs in a
    thread; shielded, so that a second cancellation cannot stop it before it
    starts.
    """
    loop = asyncio.get_running_loop()
    try:
        future = loop.run_in_executor(None, shutil.rmtree, path, True)
    except RuntimeError:
        # The loop's executor is shut down (interpreter exit): block instead.
        shutil.rmtree(path, ignore_errors=True)
        return
    await asyncio.shield(future)
