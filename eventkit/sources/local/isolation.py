"""Isolation for local runs: a bubblewrap sandbox around the code.

:func:`sandbox_argv` wraps a run's command in ``bwrap`` (bubblewrap), which
starts it in new namespaces: its own process ids (``ps`` shows only the
run; when the command exits, the kernel kills everything it left, daemons
included), its own IPC and host name, its own network when asked, and a
file system made of

- the system read-only: ``/usr``, ``/etc`` and the ``/bin``, ``/sbin``,
  ``/lib*`` directories (or links) of this machine;
- the interpreter read-only wherever it lives: for Python its
  ``sys.prefix``, ``sys.base_prefix`` and their exec counterparts (a
  virtual environment under ``/tmp``, a pyenv build under a home
  directory), for other languages the prefix of the program found on
  ``PATH`` when it is outside the system directories;
- a private ``/proc``, a minimal ``/dev``, an empty ``/tmp`` and
  ``/dev/shm`` (memory file systems, sized by the memory limit if any);
- the run's own directory, the only place writable, at its own path or at
  ``mount`` (the server mounts each sandbox's at ``/workspace``).

Nothing else: no home directory, no other run's directory, no ``/run``,
``/var``, ``/sys`` or ``/opt``. The environment is the one the source builds
(none of the parent's variables). ``bwrap`` runs with ``--die-with-parent``:
if eventkit dies, so does the sandbox.

Run as root, eventkit starts ``bwrap`` as root (it needs root's right to
read the interpreter under ``/root``, say) and the command drops to an
unprivileged uid and gid, :data:`ISOLATED_UID`/:data:`ISOLATED_GID`
(``nobody``), with ``setpriv`` (no supplementary groups, no capabilities,
no new privileges): root-only files stay unreadable even where ``/etc``
shows them. Otherwise ``bwrap`` makes an unprivileged user namespace and
the code runs as the same user as eventkit, unable to create namespaces of
its own.

:func:`probe` tells, once per process, whether such a sandbox starts on this
machine (``bwrap`` installed, namespaces allowed, ``setpriv`` there when
root): it starts one.

Failure behaviour: nothing here raises. :func:`probe` returns why isolation
is unavailable rather than raising; a sandbox that fails later (a bind
source gone) makes ``bwrap`` print why on the run's stderr and exit with 1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "ISOLATED_GID",
    "ISOLATED_UID",
    "IsolationSupport",
    "hand_over",
    "interpreter_roots",
    "probe",
    "probed",
    "sandbox_argv",
]

#: The uid and gid isolated code runs as when eventkit runs as root.
ISOLATED_UID: Final = 65534
ISOLATED_GID: Final = 65534
#: The system, shown read-only (a link stays a link: /bin -> usr/bin).
SYSTEM_PATHS: Final = (
    "/usr",
    "/etc",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
)
#: Mounted fresh in every sandbox.
_FRESH: Final = ("/proc", "/dev", "/tmp", "/dev/shm")
#: How long the probe's sandbox may take to start and exit.
_PROBE_TIMEOUT: Final = 10.0


class IsolationSupport(NamedTuple):
    """What isolation this machine offers local runs, as :func:`probe` found.

    Attributes:
        bwrap: Whether a bubblewrap sandbox starts here.
        reason: Why not, when it does not.
        uid: The uid isolated code runs as: :data:`ISOLATED_UID` when
            eventkit runs as root, else eventkit's own.
        cgroups: The controllers runs get a control group of their own with
            (``"pids"``, ``"memory"``); see
            :mod:`eventkit.sources.local.cgroup`.
    """

    bwrap: bool
    reason: str | None
    uid: int
    cgroups: frozenset[str]

    def describe(self) -> str:
        """Return one line for people: what isolation runs get here."""
        groups = ", ".join(sorted(self.cgroups)) or "none"
        if not self.bwrap:
            return f"isolation unavailable ({self.reason}); cgroups: {groups}"
        return f"isolation: bwrap, code runs as uid {self.uid}; cgroups: {groups}"


_probed: IsolationSupport | None = None


def _is_root() -> bool:
    return os.geteuid() == 0


def probed() -> IsolationSupport | None:
    """Return what :func:`probe` found, or None when it has not run yet."""
    return _probed


def probe() -> IsolationSupport:
    """Tell whether a sandbox starts here: start one, once per process.

    Blocks for the time a sandbox takes to start a Python interpreter (tens
    of milliseconds), the first time only; the answer is cached.
    """
    global _probed
    if _probed is None:
        from eventkit.sources.local import cgroup

        uid = ISOLATED_UID if _is_root() else os.geteuid()
        reason = _try_sandbox()
        _probed = IsolationSupport(reason is None, reason, uid, cgroup.available())
    return _probed


def _try_sandbox() -> str | None:
    """Start a sandbox running Python; return why it failed, or None."""
    if sys.platform != "linux":
        return f"bubblewrap needs Linux, not {sys.platform}"
    if shutil.which("bwrap") is None:
        return "bwrap is not installed (Debian/Ubuntu: apt install bubblewrap)"
    if _is_root() and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is needed to drop root, and not installed"
    workdir = tempfile.mkdtemp(prefix="eventkit-probe-")
    try:
        hand_over(workdir)
        command = [sys.executable, "-I", "-S", "-c", "pass"]
        argv = sandbox_argv(
            command,
            workdir=workdir,
            mount=None,
            network=False,
            tmp_size=None,
            roots=interpreter_roots(sys.executable),
        )
        try:
            done = subprocess.run(
                argv,
                cwd=workdir,
                env={"PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_PROBE_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bwrap could not start: {exc}"
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            why = said[-1] if said else f"exit code {done.returncode}"
            return f"bwrap cannot start a sandbox here: {why}"
        return None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def interpreter_roots(program: str) -> list[str]:
    """Return the directories that ``program`` needs, outside the system's.

    For the interpreter eventkit runs on: its prefixes (a virtual
    environment and the Python it was made from). For another program: the
    prefix it was installed under (the parent of its ``bin``), if not in
    the system directories.
    """
    if program == sys.executable:
        candidates = [
            sys.prefix,
            sys.exec_prefix,
            sys.base_prefix,
            sys.base_exec_prefix,
            os.path.dirname(os.path.dirname(os.path.realpath(program))),
        ]
    else:
        candidates = [os.path.dirname(os.path.dirname(os.path.realpath(program)))]
    roots: list[str] = []
    for candidate in candidates:
        path = os.path.realpath(candidate)
        if path not in roots and not _within(path, SYSTEM_PATHS):
            roots.append(path)
    return roots


def _within(path: str, tops: Iterable[str]) -> bool:
    """Tell whether ``path`` is one of ``tops`` or inside one."""
    return any(path == top or path.startswith(top.rstrip("/") + "/") for top in tops)


def hand_over(workdir: str, *files: str) -> None:
    """Give the run's directory (and ``files`` in it) to the isolated uid, as root.

    Only what root owns is handed over: a directory someone else owns keeps
    its owner. Does nothing when eventkit does not run as root.
    """
    if not _is_root():
        return
    with contextlib.suppress(OSError):
        if os.stat(workdir).st_uid == 0:
            os.chown(workdir, ISOLATED_UID, ISOLATED_GID)
    for name in files:
        path = os.path.join(workdir, name)
        with contextlib.suppress(OSError):
            if os.lstat(path).st_uid == 0:
                os.chown(path, ISOLATED_UID, ISOLATED_GID, follow_symlinks=False)


def sandbox_argv(
    command: list[str],
    *,
    workdir: str,
    mount: str | None,
    network: bool,
    tmp_size: int | None,
    roots: Iterable[str] = (),
) -> list[str]:
    """Return ``command`` wrapped in ``bwrap`` (see the module's description).

    Args:
        command: What runs in the sandbox, its paths as the sandbox sees them.
        workdir: The run's directory on this machine: writable, and the
            sandbox's working directory.
        mount: Where the sandbox sees ``workdir``; None for its own path.
        network: Whether the sandbox shares this machine's network; if not,
            it has only a loopback interface of its own.
        tmp_size: The size of ``/tmp`` and ``/dev/shm`` in bytes; None for
            the kernel's default (half the memory).
        roots: More directories shown read-only at their own paths.
    """
    target = mount if mount is not None else workdir
    argv = [
        shutil.which("bwrap") or "bwrap",
        "--die-with-parent",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]
    if not network:
        argv.append("--unshare-net")
    if _is_root():
        # bwrap keeps root for the set-up; the command drops to the
        # isolated uid with setpriv, which needs these two, and no more.
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--disable-userns"]
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    size = [] if tmp_size is None else ["--size", str(tmp_size)]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--perms", "1777", *size, "--tmpfs", "/tmp"]
    argv += ["--perms", "1777", *size, "--tmpfs", "/dev/shm"]
    # Directories on the way to a mount are made in the sandbox's own root
    # (or /tmp), readable by all: bwrap would make them for root alone.
    made: set[str] = set()
    shown: list[str] = []
    for root in sorted({*roots} - {target}):
        if _within(root, shown):
            continue  # inside another root, shown with it
        shown.append(root)
        argv += _parents(root, made)
        argv += ["--ro-bind", root, root]
    argv += _parents(target, made)
    argv += ["--bind", workdir, target, "--chdir", target]
    argv.append("--")
    if _is_root():
        argv += [
            shutil.which("setpriv") or "setpriv",
            f"--reuid={ISOLATED_UID}",
            f"--regid={ISOLATED_GID}",
            "--clear-groups",
            "--inh-caps=-all",
            "--no-new-privs",
            "--",
        ]
    return argv + command


def _parents(path: str, made: set[str]) -> list[str]:
    """Return the ``--dir`` arguments making the missing parents of ``path``."""
    argv: list[str] = []
    parent = os.path.dirname(path)
    missing: list[str] = []
    while parent not in ("/", "") and parent not in made:
        if _within(parent, SYSTEM_PATHS) or parent in _FRESH:
            break
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        made.add(directory)
        argv += ["--perms", "0755", "--dir", directory]
    return argv
