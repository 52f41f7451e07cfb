"""A sandbox's files, reached by descriptor: no path leads out of it.

Every path a client names is a path inside one sandbox: ``/workspace/a.txt``
is ``<sandbox>/workspace/a.txt``, and a relative path is taken from
``/workspace``, as a shell there would. The code running in the sandbox can
rename, replace and link anything in it while the server works there, so a
path is never checked and then used: it is walked from the sandbox's root
one component at a time, each opened with ``openat(2)`` and ``O_NOFOLLOW``
relative to the directory descriptor of the one before, and the operation
then acts on the last descriptor (``*at`` calls, ``O_NOFOLLOW`` again). What
was checked is what is used, whatever is swapped in meanwhile.

Symbolic links met on the way: a *relative* link is followed when it stays
inside the sandbox (its components walked the same way, a ``..`` climbing
back through the directories walked); an *absolute* link is never followed
(its target means the host's file system to unisolated code and the
sandbox's to isolated code, so either reading would be wrong for the other),
nor is a link whose ``..`` would climb above the sandbox's root. At most
:data:`MAX_LINKS` links per path.

Failure behaviour: every operation raises :exc:`PathError` (never a bare
:exc:`OSError`), whose :attr:`~PathError.code` and
:attr:`~PathError.status` are the HOPX agent's error code and HTTP status,
and whose message names the path as the client wrote it, never the host's
path. The functions block (reads and writes can be large): the front end
calls them in a thread.
"""

from __future__ import annotations

import datetime
import errno
import os
import shutil
import stat
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from eventkit.exceptions import EventkitError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "MAX_LINKS",
    "MAX_LISTED",
    "PathError",
    "exists",
    "list_dir",
    "make_dirs",
    "open_dir",
    "parts_of",
    "read_file",
    "remove",
    "write_file",
]

#: Symbolic links followed while walking one path (Linux's own limit).
MAX_LINKS: Final = 40
#: Directories deep a path may go.
MAX_DEPTH: Final = 256
#: Entries :func:`list_dir` returns at most.
MAX_LISTED: Final = 10_000
#: Longest path accepted, in characters.
MAX_PATH: Final = 4096
#: The directory a relative path starts from.
WORKSPACE: Final = "workspace"

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must never wait for its other end.
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_WRITE_FLAGS: Final = (
    os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
)
_CHUNK: Final = 1 << 20


class PathError(EventkitError):
    """A path cannot be used as asked; the message says why, for the client.

    The codes for a path leading out and a permission refused are not the
    agent's ``PATH_NOT_ALLOWED`` and ``PERMISSION_DENIED``: ``hopx-ai``
    0.5.0's async client fails with a :exc:`TypeError` on those two (it
    passes ``path=`` to an exception that takes none), and with these its
    sync and async clients both raise ``AgentError`` with the code.

    Attributes:
        code: The agent's error code: ``FILE_NOT_FOUND``,
            ``PATH_OUTSIDE_SANDBOX`` (it leads out of the sandbox),
            ``NOT_A_DIRECTORY``, ``IS_A_DIRECTORY``, ``NOT_A_FILE`` (a FIFO,
            a socket), ``SYMLINK_LOOP``, ``FILE_ALREADY_EXISTS``,
            ``FILE_TOO_LARGE``, ``ACCESS_DENIED``, ``INVALID_PATH``,
            ``FILE_OPERATION_FAILED``.
        status: The HTTP status that answers it.
        path: The path as the client named it.
    """

    def __init__(self, code: str, status: int, path: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.path = path


def parts_of(path: str) -> list[str]:
    """Return the components of a sandbox path, from the sandbox's root.

    Raises:
        PathError: If the path is empty, too long, has a NUL or a ``..``.
    """
    if not path or len(path) > MAX_PATH or "\0" in path:
        raise PathError(
            "INVALID_PATH",
            400,
            str(path)[:80],
            "a non-empty path without NUL is needed",
        )
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise PathError("INVALID_PATH", 400, path, f"{path}: '..' is not accepted")
    if not path.startswith("/"):
        parts.insert(0, WORKSPACE)
    if len(parts) > MAX_DEPTH:
        raise PathError("INVALID_PATH", 400, path, f"{path}: too deep")
    return parts


#: What an operating system error means here: (code, HTTP status, what).
_OS_ERRORS: Final[dict[int, tuple[str, int, str]]] = {
    errno.ENOENT: ("FILE_NOT_FOUND", 404, "no such file or directory"),
    errno.ENOTDIR: ("NOT_A_DIRECTORY", 400, "not a directory"),
    errno.EISDIR: ("IS_A_DIRECTORY", 400, "is a directory"),
    errno.EEXIST: ("FILE_ALREADY_EXISTS", 409, "already exists"),
    errno.EACCES: ("ACCESS_DENIED", 403, "permission denied"),
    errno.EPERM: ("ACCESS_DENIED", 403, "permission denied"),
    errno.ELOOP: ("SYMLINK_LOOP", 400, "too many symbolic links"),
    errno.ENXIO: ("NOT_A_FILE", 400, "not a regular file"),
    errno.ENOSPC: ("FILE_OPERATION_FAILED", 507, "no space left"),
    errno.EDQUOT: ("FILE_OPERATION_FAILED", 507, "no space left"),
    errno.ENAMETOOLONG: ("INVALID_PATH", 400, "name too long"),
}


def _os_error(exc: OSError, path: str) -> PathError:
    """Return the :exc:`PathError` an operating system error means here."""
    known = None if exc.errno is None else _OS_ERRORS.get(exc.errno)
    if known is not None:
        code, status, what = known
        return PathError(code, status, path, f"{path}: {what}")
    reason = exc.strerror or type(exc).__name__
    return PathError("FILE_OPERATION_FAILED", 400, path, f"{path}: {reason}")


def _leads_out(path: str, why: str) -> PathError:
    return PathError("PATH_OUTSIDE_SANDBOX", 403, path, f"{path}: {why}")


class _Walk:
    """The directories walked so far: a stack of descriptors, root first."""

    __slots__ = ("fds", "links", "path")

    def __init__(self, root: str, path: str) -> None:
        self.path = path
        self.links = 0
        try:
            self.fds = [os.open(root, _DIR_FLAGS)]
        except OSError as exc:
            # The sandbox's own directory is gone: it was deleted meanwhile.
            raise PathError(
                "FILE_NOT_FOUND", 404, path, f"{path}: the sandbox has no files"
            ) from exc

    @property
    def fd(self) -> int:
        """The directory reached."""
        return self.fds[-1]

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()

    def link_target(self, name: str) -> list[str] | None:
        """Return the components of ``name`` if it is a link we may follow.

        None if it is no link. Raises for a link that leads out or one too many.
        """
        try:
            info = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except OSError as exc:
            raise _os_error(exc, self.path) from None
        if not stat.S_ISLNK(info.st_mode):
            return None
        self.links += 1
        if self.links > MAX_LINKS:
            raise PathError(
                "SYMLINK_LOOP", 400, self.path, f"{self.path}: too many symbolic links"
            )
        try:
            target = os.readlink(name, dir_fd=self.fd)
        except OSError as exc:
            raise _os_error(exc, self.path) from None
        if target.startswith("/"):
            raise _leads_out(
                self.path, "a symbolic link to an absolute path is not followed"
            )
        return [part for part in target.split("/") if part not in ("", ".")]

    def step(self, name: str, *, create: bool) -> list[str] | None:
        """Enter directory ``name``; return a link's components to walk instead.

        Raises:
            PathError: If it is missing (unless ``create``), not a directory,
                or leads out.
        """
        if name == "..":
            if len(self.fds) == 1:
                raise _leads_out(self.path, "a symbolic link leads out of the sandbox")
            os.close(self.fds.pop())
            return None
        if len(self.fds) > MAX_DEPTH:
            raise PathError("INVALID_PATH", 400, self.path, f"{self.path}: too deep")
        for _ in range(2):
            try:
                self.fds.append(os.open(name, _DIR_FLAGS, dir_fd=self.fd))
                return None
            except FileNotFoundError:
                if not create:
                    raise _os_error(
                        FileNotFoundError(errno.ENOENT, ""), self.path
                    ) from None
                try:
                    os.mkdir(name, 0o755, dir_fd=self.fd)
                except FileExistsError:
                    pass  # made meanwhile: open it on the next turn
                except OSError as exc:
                    raise _os_error(exc, self.path) from None
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise _os_error(exc, self.path) from None
                # A link, or something that is not a directory.
                target = self.link_target(name)
                if target is None:
                    raise PathError(
                        "NOT_A_DIRECTORY",
                        400,
                        self.path,
                        f"{self.path}: not a directory",
                    ) from None
                return target
        raise _os_error(FileNotFoundError(errno.ENOENT, ""), self.path)

    def walk(self, parts: list[str], *, create: bool) -> None:
        """Enter every directory of ``parts``, following links as they come."""
        todo = deque(parts)
        while todo:
            target = self.step(todo.popleft(), create=create)
            if target:
                todo.extendleft(reversed(target))

    def parent_of(self, parts: list[str], *, follow: bool) -> str:
        """Walk to the directory holding the last of ``parts``; return its name.

        With ``follow``, a last component that is a link is followed (its
        target walked from the link's directory), so the name returned is
        never a link: it is missing, or not a link at all.

        Raises:
            PathError: If the path names the sandbox's root, or a directory
                through a link ending in ``..`` (``IS_A_DIRECTORY``).
        """
        todo = parts
        while True:
            if not todo:
                raise PathError(
                    "INVALID_PATH", 400, self.path, f"{self.path}: not a file path"
                )
            *directories, name = todo
            self.walk(directories, create=False)
            if name == "..":
                # Only a link's target ends so: it names a directory.
                self.step(name, create=False)
                raise PathError(
                    "IS_A_DIRECTORY", 400, self.path, f"{self.path}: is a directory"
                )
            if not follow:
                return name
            target = self.link_target_if_any(name)
            if target is None:
                return name
            todo = target

    def link_target_if_any(self, name: str) -> list[str] | None:
        """:meth:`link_target`, but a missing ``name`` is no link."""
        try:
            return self.link_target(name)
        except PathError as exc:
            if exc.code == "FILE_NOT_FOUND":
                return None
            raise


def open_dir(root: str, path: str, *, create: bool = False) -> int:
    """Return a descriptor of the directory ``path`` names in the sandbox ``root``.

    The caller owns it (closes it). With ``create``, missing directories are
    made (``mkdir -p``).

    Raises:
        PathError: If it leads out, is not a directory (a file, a FIFO, a link
            loop) or is missing and not ``create``.
    """
    walk = _Walk(root, path)
    try:
        walk.walk(parts_of(path), create=create)
        return os.dup(walk.fd)
    finally:
        walk.close()


def make_dirs(root: str, path: str) -> None:
    """Make the directory ``path`` and its parents; nothing if it exists.

    Raises:
        PathError: As :func:`open_dir`; ``NOT_A_DIRECTORY`` if a file is in
            the way.
    """
    os.close(open_dir(root, path, create=True))


def read_file(root: str, path: str, *, max_bytes: int) -> bytes:
    """Return the content of the regular file ``path``.

    Raises:
        PathError: ``FILE_TOO_LARGE`` over ``max_bytes``, ``IS_A_DIRECTORY``,
            ``NOT_A_FILE`` for anything but a regular file, and as
            :func:`open_dir`.
    """
    walk = _Walk(root, path)
    try:
        name = walk.parent_of(parts_of(path), follow=True)
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=walk.fd)
        except OSError as exc:
            raise _os_error(exc, path) from None
    finally:
        walk.close()
    try:
        info = os.fstat(fd)
        _check_regular(info, path)
        if info.st_size > max_bytes:
            raise _too_large(path, max_bytes)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb", buffering=0) as file:
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while chunk := file.read(_CHUNK):
            size += len(chunk)
            # It may grow while read: the cap holds whatever it does.
            if size > max_bytes:
                raise _too_large(path, max_bytes)
            chunks.append(chunk)
    return b"".join(chunks)


def write_file(
    root: str, path: str, data: bytes | Iterator[bytes], *, mode: int = 0o644
) -> int:
    """Write ``data`` to the file ``path``, replacing it; return the bytes written.

    Missing parent directories are made. ``data`` may be an iterator of
    chunks (an upload), written as they come.

    Raises:
        PathError: ``IS_A_DIRECTORY``, ``NOT_A_FILE`` (a FIFO...), and as
            :func:`open_dir`.
    """
    parts = parts_of(path)
    walk = _Walk(root, path)
    try:
        walk.walk(parts[:-1], create=True)
        name = walk.parent_of(parts[-1:], follow=True)
        try:
            fd = os.open(name, _WRITE_FLAGS, mode & 0o7777, dir_fd=walk.fd)
        except OSError as exc:
            raise _os_error(exc, path) from None
    finally:
        walk.close()
    try:
        _check_regular(os.fstat(fd), path)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "wb", buffering=0) as file:
        os.set_blocking(fd, True)
        try:
            os.ftruncate(fd, 0)
            os.fchmod(fd, mode & 0o7777)
            size = 0
            for chunk in [data] if isinstance(data, bytes) else data:
                size += len(chunk)
                file.write(chunk)
        except OSError as exc:
            raise _os_error(exc, path) from None
    return size


def exists(root: str, path: str) -> bool:
    """Tell whether ``path`` exists (a link counts by what it points to).

    Raises:
        PathError: If it leads out of the sandbox (or is invalid).
    """
    walk = _Walk(root, path)
    try:
        try:
            name = walk.parent_of(parts_of(path), follow=True)
        except PathError as exc:
            if exc.code in ("FILE_NOT_FOUND", "NOT_A_DIRECTORY"):
                return False
            if exc.code == "IS_A_DIRECTORY" or (
                exc.code == "INVALID_PATH" and not parts_of(path)
            ):
                return True  # a directory through a link, or the root itself
            raise
        try:
            os.stat(name, dir_fd=walk.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _os_error(exc, path) from None
        return True
    finally:
        walk.close()


def list_dir(root: str, path: str) -> list[dict[str, Any]]:
    """Return the entries of directory ``path`` as the agent lists them.

    Each is ``{"name", "path", "size", "is_directory", "permissions",
    "modified_time"}``; a link is listed as itself (``is_directory`` False,
    permissions starting with ``l``). At most :data:`MAX_LISTED`, by name.

    Raises:
        PathError: As :func:`open_dir`.
    """
    fd = open_dir(root, path)
    base = "/" + "/".join(parts_of(path))
    entries: list[dict[str, Any]] = []
    try:
        with os.scandir(fd) as listing:
            for entry in listing:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed meanwhile
                entries.append(
                    {
                        "name": entry.name,
                        "path": f"{base.rstrip('/')}/{entry.name}",
                        "size": info.st_size,
                        "is_directory": stat.S_ISDIR(info.st_mode),
                        "permissions": stat.filemode(info.st_mode),
                        "modified_time": _iso(info.st_mtime),
                    }
                )
                if len(entries) >= MAX_LISTED:
                    break
    except OSError as exc:
        raise _os_error(exc, path) from None
    finally:
        os.close(fd)
    entries.sort(key=lambda entry: entry["name"])
    return entries


def remove(root: str, path: str) -> None:
    """Remove the file, link or directory (with all it holds) ``path`` names.

    A link is removed itself, never what it points to.

    Raises:
        PathError: ``INVALID_PATH`` for the sandbox's root, and as
            :func:`open_dir`.
    """
    walk = _Walk(root, path)
    try:
        name = walk.parent_of(parts_of(path), follow=False)
        try:
            info = os.stat(name, dir_fd=walk.fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                # rmtree with dir_fd works by descriptor too: no link in the
                # tree is followed (shutil.rmtree.avoids_symlink_attacks).
                shutil.rmtree(name, dir_fd=walk.fd)
            else:
                os.unlink(name, dir_fd=walk.fd)
        except OSError as exc:
            raise _os_error(exc, path) from None
    finally:
        walk.close()


def _check_regular(info: os.stat_result, path: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise PathError("IS_A_DIRECTORY", 400, path, f"{path}: is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise PathError("NOT_A_FILE", 400, path, f"{path}: not a regular file")


def _too_large(path: str, max_bytes: int) -> PathError:
    return PathError(
        "FILE_TOO_LARGE",
        413,
        path,
        f"{path}: larger than the limit of {max_bytes} bytes",
    )


def _iso(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")
