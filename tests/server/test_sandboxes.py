"""Sandboxes: directories, paths inside them, tokens, deletion."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

import pytest

from eventkit.server.limits import Admission
from eventkit.server.requests import ExecuteRequest
from eventkit.server.sandboxes import (
    HOPX,
    Registry,
    SandboxGoneError,
    SandboxLimitError,
    WorkdirError,
)
from eventkit.stats import server_stats

if TYPE_CHECKING:
    from pathlib import Path


def registry(base: Path, **options: object) -> Registry:
    """A registry under ``base``."""
    settings: dict[str, object] = {"max_sandboxes": 4, "token_ttl": 60.0}
    settings.update(options)
    return Registry(str(base), **settings)  # type: ignore[arg-type]


def directory_of(fd: int) -> str:
    """Return the path of the directory ``fd`` is open on, and close it."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def test_workdir_maps_inside_the_sandbox(tmp_path: Path) -> None:
    """``/workspace`` is the sandbox's own directory (made if missing)."""
    sandbox = registry(tmp_path).create(HOPX, "owner")
    root = os.path.realpath(sandbox.root)
    assert os.path.join(root, "workspace") == directory_of(
        sandbox.open_workdir("/workspace")
    )
    assert os.path.join(root, "tmp", "x") == directory_of(
        sandbox.open_workdir("/tmp//./x")
    )
    assert os.path.join(root, "workspace", "rel") == directory_of(
        sandbox.open_workdir("rel")
    )


def test_escapes_are_refused(tmp_path: Path) -> None:
    """``..`` and links pointing out of the sandbox are refused."""
    (tmp_path / "base").mkdir()
    sandbox = registry(tmp_path / "base").create(HOPX, "owner")
    with pytest.raises(WorkdirError, match=r"\.\."):
        sandbox.open_workdir("/workspace/../../etc")
    os.symlink(tmp_path, os.path.join(sandbox.root, "workspace", "out"))
    with pytest.raises(WorkdirError, match="absolute path is not followed") as info:
        sandbox.open_workdir("/workspace/out")
    assert "PATH_OUTSIDE_SANDBOX" == info.value.reason
    os.symlink("../..", os.path.join(sandbox.root, "workspace", "up"))
    with pytest.raises(WorkdirError, match="leads out of the sandbox"):
        sandbox.open_workdir("/workspace/up/x")


def test_lookup_by_kind_owner_and_token(tmp_path: Path) -> None:
    """A sandbox answers only to its kind and owner; tokens expire and rotate."""
    now = [100.0]
    sandboxes = registry(tmp_path, clock=lambda: now[0])
    sandbox = sandboxes.create(HOPX, "alice")
    assert sandbox is sandboxes.get(HOPX, sandbox.id, "alice")
    assert None is sandboxes.get(HOPX, sandbox.id, "bob")
    assert None is sandboxes.get("aicomputer", sandbox.id, "alice")
    old = sandbox.token
    assert sandbox is sandboxes.by_token(old)
    sandboxes.refresh_token(sandbox)
    assert None is sandboxes.by_token(old)
    assert sandbox is sandboxes.by_token(sandbox.token)
    now[0] = 160.0
    assert None is sandboxes.by_token(sandbox.token)


def test_sandbox_count_is_bounded(tmp_path: Path) -> None:
    """Past ``max_sandboxes`` creation is refused."""
    sandboxes = registry(tmp_path, max_sandboxes=1)
    sandboxes.create(HOPX, "owner")
    with pytest.raises(SandboxLimitError, match="too many sandboxes"):
        sandboxes.create(HOPX, "owner")


async def test_delete_stops_runs_and_removes_the_directory(tmp_path: Path) -> None:
    """Deleting a sandbox cancels its run (killing it) and removes its files."""
    sandboxes = registry(tmp_path)
    sandbox = sandboxes.create(HOPX, "owner")
    started = asyncio.Event()
    pids: list[int] = []

    async def run() -> None:
        with Admission(1, 0).admit() as ticket:
            request = ExecuteRequest(
                "import time\nprint('up', flush=True)\ntime.sleep(60)"
            )
            async with sandbox.execute(
                request, ticket, max_output_bytes=None
            ) as events:
                async for event in events:
                    if event.type == "started":
                        pids.append(event.attrs["pid"])
                    if event.type == "stdout":
                        started.set()

    task = asyncio.create_task(sandbox.guard(run()))
    await asyncio.wait_for(started.wait(), 10)
    await sandboxes.delete(sandbox)
    with pytest.raises(SandboxGoneError):
        await task
    assert not os.path.exists(sandbox.root)  # noqa: ASYNC240 - a test's check
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)
    with pytest.raises(SandboxGoneError):
        await sandbox.guard(run())
    assert 0 == len(sandboxes)


async def test_runs_in_one_directory_run_their_own_program(tmp_path: Path) -> None:
    """Two runs in one directory at once: each runs its own main.py."""
    sandbox = registry(tmp_path).create(HOPX, "owner")
    admission = Admission(4, 4)

    async def run(tag: str) -> str:
        code = (
            f"import time\nprint('{tag}-start')\ntime.sleep(0.05)\nprint('{tag}-end')"
        )
        with admission.admit() as ticket:
            async with sandbox.execute(
                ExecuteRequest(code), ticket, max_output_bytes=None
            ) as events:
                return "".join([e.data async for e in events if e.type == "stdout"])

    outputs = await asyncio.gather(run("a"), run("b"))
    assert ["a-start\na-end\n", "b-start\nb-end\n"] == list(outputs)


async def test_cancelling_the_caller_cancels_the_run_and_waits(tmp_path: Path) -> None:
    """The run's task ends, cleaned up, before its cancelled caller returns."""
    sandbox = registry(tmp_path).create(HOPX, "owner")
    entered = asyncio.Event()
    cleaned: list[str] = []

    async def run() -> None:
        try:
            entered.set()
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.01)  # a cleanup that takes a while
            cleaned.append("done")

    caller = asyncio.create_task(sandbox.guard(run()))
    await entered.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert ["done"] == cleaned
    assert {asyncio.current_task()} == asyncio.all_tasks()


async def test_close_stops_the_runs_of_every_sandbox(tmp_path: Path) -> None:
    """Closing the registry deletes each sandbox: runs gone, directories removed."""
    sandboxes = registry(tmp_path)
    boxes = [sandboxes.create(HOPX, "owner") for _ in range(3)]
    entered = asyncio.Semaphore(0)

    async def run() -> None:
        entered.release()
        await asyncio.sleep(60)

    callers = [asyncio.create_task(box.guard(run())) for box in boxes]
    for _ in boxes:
        await entered.acquire()
    await sandboxes.close()
    for caller in callers:
        with pytest.raises(SandboxGoneError):
            await caller
    assert 0 == len(sandboxes)
    assert [] == [box.root for box in boxes if os.path.exists(box.root)]  # noqa: ASYNC240 - a test's check
    assert {asyncio.current_task()} == asyncio.all_tasks()


async def test_idle_and_timed_out_sandboxes_expire(tmp_path: Path) -> None:
    """Idle past idle_ttl, or past its deadline, a sandbox is reaped; in use, not."""
    now = [1000.0]
    sandboxes = registry(tmp_path, idle_ttl=100.0, clock=lambda: now[0])
    idle = sandboxes.create(HOPX, "owner")
    timed = sandboxes.create(HOPX, "owner")
    sandboxes.set_timeout(timed, 30)
    assert (1100.0, 1030.0) == (sandboxes.expires_at(idle), sandboxes.expires_at(timed))
    now[0] = 1031.0
    before = server_stats().aborts.get("sandbox_expired", 0)
    assert 1 == await sandboxes.reap()
    assert [idle] == sandboxes.owned(HOPX, "owner")
    now[0] = 1090.0
    assert idle is sandboxes.get(HOPX, idle.id, "owner")  # used: idle from now
    now[0] = 1150.0
    assert 0 == await sandboxes.reap()
    now[0] = 1191.0
    assert 1 == await sandboxes.reap()
    assert 0 == len(sandboxes)
    assert before + 2 == server_stats().aborts["sandbox_expired"]


def test_sandboxes_per_owner_are_bounded(tmp_path: Path) -> None:
    """Past max_per_owner one owner is refused; another owner is not."""
    sandboxes = registry(tmp_path, max_sandboxes=4, max_per_owner=1)
    sandboxes.create(HOPX, "alice")
    with pytest.raises(SandboxLimitError, match="for this key"):
        sandboxes.create("aicomputer", "alice")
    sandboxes.create(HOPX, "bob")


async def test_deleting_frees_the_owners_place(tmp_path: Path) -> None:
    """A deleted sandbox no longer counts against its owner."""
    sandboxes = registry(tmp_path, max_per_owner=1)
    first = sandboxes.create(HOPX, "alice")
    await sandboxes.delete(first)
    sandboxes.create(HOPX, "alice")


async def test_a_planted_program_link_is_replaced_not_followed(tmp_path: Path) -> None:
    """main.py planted as a link to a file outside: the run writes its own main.py."""
    outside = tmp_path / "precious.py"
    outside.write_text("# keep\n")
    (tmp_path / "base").mkdir()
    sandbox = registry(tmp_path / "base").create(HOPX, "owner")
    os.symlink(outside, os.path.join(sandbox.root, "workspace", "main.py"))
    with Admission(1, 0).admit() as ticket:
        async with sandbox.execute(
            ExecuteRequest("print('ran')"), ticket, max_output_bytes=None
        ) as events:
            output = "".join([e.data async for e in events if e.type == "stdout"])
    assert "ran\n" == output
    assert "# keep\n" == outside.read_text()
