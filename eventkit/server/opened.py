"""Knowing when a run's program has been opened: :class:`OpenWatch`.

The local executor writes each run's program to a fixed name in its working
directory (``main.py``, ``main.sh``, ``main.js``) and starts the
interpreter, which then opens it. Two runs in one directory must not
overlap between the write and that open, or the second write would replace
the first program before its interpreter read it. Once it is open, the
server removes the name before the next run writes its own (a new file), so
the program already running keeps reading its own, unlinked, file.

:class:`OpenWatch` tells that moment with inotify: the first ``IN_OPEN`` of
the name after it was written (``IN_CLOSE_WRITE``, or ``IN_MOVED_TO`` for a
program written aside and renamed). inotify is per inode, so the open is
seen however the interpreter reaches the file (a bind mount included).

Failure behaviour: where inotify is not available (not Linux, no libc, the
per-user watch limit reached), :attr:`OpenWatch.active` is False and the
callback never comes; the caller then holds the directory until the run
ends. Nothing here raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import struct
import sys
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["OpenWatch"]

_IN_OPEN: Final = 0x00000020
_IN_CLOSE_WRITE: Final = 0x00000008
_IN_MOVED_TO: Final = 0x00000080
_IN_ONLYDIR: Final = 0x01000000
_IN_IGNORED: Final = 0x00008000
_IN_NONBLOCK: Final = os.O_NONBLOCK
_IN_CLOEXEC: Final = os.O_CLOEXEC
_EVENT: Final = struct.Struct("iIII")


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint32,
        ]
    except (OSError, AttributeError):
        return None
    return libc


_libc: Final = _load_libc()


class OpenWatch:
    """Calls ``on_open`` once ``name`` in ``directory`` is opened after a write.

    Args:
        directory: The directory (any path to it, ``/proc/self/fd/N`` too).
        name: The file's name in it.
        on_open: Called once, from the event loop, at that open.

    Attributes:
        active: Whether the watch runs; False where inotify is unavailable.
    """

    __slots__ = ("_fd", "_loop", "_name", "_on_open", "_written", "active")

    def __init__(self, directory: str, name: str, on_open: Callable[[], None]) -> None:
        self._name = os.fsencode(name)
        self._on_open: Callable[[], None] | None = on_open
        self._written = False
        self._fd = -1
        self._loop = asyncio.get_running_loop()
        self.active = False
        if _libc is None:
            return
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return
        mask = _IN_OPEN | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_ONLYDIR
        if _libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
            os.close(fd)
            return
        self._fd = fd
        self._loop.add_reader(fd, self._read)
        self.active = True

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            _, mask, _, size = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            name = data[start : start + size].rstrip(b"\0")
            offset = start + size
            if mask & _IN_IGNORED:
                self.close()  # the directory went away
                return
            if name != self._name:
                continue
            if mask & (_IN_CLOSE_WRITE | _IN_MOVED_TO):
                self._written = True
            elif mask & _IN_OPEN and self._written:
                callback, self._on_open = self._on_open, None
                self.close()
                if callback is not None:
                    callback()
                return

    def close(self) -> None:
        """Stop watching; idempotent. The callback will not come after this."""
        self._on_open = None
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(ValueError, RuntimeError):
                self._loop.remove_reader(fd)
            os.close(fd)
