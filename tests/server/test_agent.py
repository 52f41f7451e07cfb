"""The HOPX agent's HTTP API, driven through the official SDK, sync and async.

Each test runs the same calls with ``AsyncSandbox`` and with the sync
``Sandbox`` (blocking, so in a thread), as the SDK's docs show them.
"""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

if TYPE_CHECKING:
    from eventkit.server import LocalSandboxServer

with warnings.catch_warnings():
    # hopx-ai 0.5.0 imports websockets' deprecated legacy client at import time.
    warnings.simplefilter("ignore", DeprecationWarning)
    from hopx_ai import AsyncSandbox, Sandbox  # type: ignore[import-untyped]
    from hopx_ai.errors import (  # type: ignore[import-untyped]
        AgentError,
        DesktopNotAvailableError,
        FileNotFoundError,
    )

# hopx-ai never closes some of its httpx clients; see the sdk_leaks fixture.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.usefixtures("sdk_leaks"),
]

KEY = "agent-key"
PRINTS = (
    "import os, sys\n"
    "print(os.environ.get('GLOBAL'), os.environ.get('LOCAL'))\n"
    "print('é', file=sys.stderr)\n"
    "sys.exit(3)"
)


async def create(server: LocalSandboxServer, **options: Any) -> Any:
    """An AsyncSandbox on ``server``."""
    return await AsyncSandbox.create(
        template="code-interpreter", api_key=KEY, base_url=server.url, **options
    )


def create_sync(server: LocalSandboxServer, **options: Any) -> Any:
    """A sync Sandbox on ``server`` (call it from a thread)."""
    return Sandbox.create(
        template="code-interpreter", api_key=KEY, base_url=server.url, **options
    )


# run_code ---------------------------------------------------------------------


def check_result(result: Any) -> None:
    """What PRINTS gives: its output, exit code, time, no rich outputs."""
    assert ("g l\n", "é\n", 3, False) == (
        result.stdout,
        result.stderr,
        result.exit_code,
        result.success,
    )
    assert result.execution_time > 0
    assert [] == result.rich_outputs


async def test_run_code_async(server: LocalSandboxServer) -> None:
    """run_code: stdout, stderr, exit code, time; the sandbox's env_vars given."""
    sandbox = await create(server, env_vars={"GLOBAL": "g"})
    check_result(await sandbox.run_code(PRINTS, env={"LOCAL": "l"}))
    ok = await sandbox.run_code("print(6 * 7)")
    assert ("42\n", 0, True) == (ok.stdout, ok.exit_code, ok.success)
    await sandbox.kill()


async def test_run_code_sync(server: LocalSandboxServer) -> None:
    """The same with the sync Sandbox."""

    def calls() -> None:
        sandbox = create_sync(server, env_vars={"GLOBAL": "g"})
        check_result(sandbox.run_code(PRINTS, env={"LOCAL": "l"}))
        sandbox.kill()

    await asyncio.to_thread(calls)


async def test_run_code_reports_a_timeout(server: LocalSandboxServer) -> None:
    """A run past its timeout: success false, interrupted (SIGINT first: -2)."""
    sandbox = await create(server)
    result = await sandbox.run_code(
        "import time\nprint('up', flush=True)\ntime.sleep(30)", timeout_seconds=1
    )
    assert ("up\n", -2, False) == (result.stdout, result.exit_code, result.success)
    await sandbox.kill()


# run_code_stream ---------------------------------------------------------------


async def test_run_code_stream_async_and_sync(server: LocalSandboxServer) -> None:
    """run_code_stream, from both classes, in the sandbox's own variables."""
    sandbox = await create(server, env_vars={"GLOBAL": "g"})
    messages = [m async for m in sandbox.run_code_stream(PRINTS)]
    assert "g None\n" == "".join(m["data"] for m in messages if m["type"] == "stdout")
    assert {"type": "complete", "success": False} == messages[-1]

    def calls() -> list[dict[str, Any]]:
        again = Sandbox(sandbox.sandbox_id, api_key=KEY, base_url=server.url)

        async def stream() -> list[dict[str, Any]]:
            return [m async for m in again.run_code_stream("print('sync')")]

        return asyncio.run(stream())

    messages = await asyncio.to_thread(calls)
    assert "sync\n" == "".join(m["data"] for m in messages if m["type"] == "stdout")
    await sandbox.kill()


# Background runs ----------------------------------------------------------------


SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)"


async def test_background_runs_async(server: LocalSandboxServer) -> None:
    """run_code_background, list_processes, kill_process; commands in the background."""
    sandbox = await create(server)
    started = await sandbox.run_code_background(SLEEPER, name="sleeper")
    process_id = started["process_id"]
    assert process_id.startswith("proc-")
    for _ in range(200):
        [process] = await sandbox.list_processes()
        if process["status"] == "running":
            break
        await asyncio.sleep(0.05)
    assert ("sleeper", "running", "python") == (
        process["name"],
        process["status"],
        process["language"],
    )
    pid = process["pid"]
    killed = await sandbox.kill_process(process_id)
    assert (True, "killed") == (killed["success"], killed["status"])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    command = await sandbox.commands.run("exit 4", background=True)
    assert command.stdout.startswith("Background process started: proc-")
    for _ in range(200):
        processes = await sandbox.list_processes()
        if processes[-1]["status"] == "failed":
            break
        await asyncio.sleep(0.05)
    assert ("failed", 4) == (processes[-1]["status"], processes[-1]["exit_code"])
    assert (0, 0) == (server.admission.running, server.admission.waiting)
    await sandbox.kill()


async def test_background_runs_sync(server: LocalSandboxServer) -> None:
    """The same with the sync Sandbox, and a run_code beside a background run."""

    def calls() -> tuple[list[str], str, str]:
        sandbox = create_sync(server)
        started = sandbox.run_code_background(SLEEPER, name="sleeper")
        # The background program keeps its own main.py: this one runs its own.
        beside = sandbox.run_code("print('beside')").stdout
        statuses = [p["status"] for p in sandbox.list_processes()]
        killed = sandbox.kill_process(started["process_id"])["status"]
        sandbox.kill()
        return statuses, beside, killed

    statuses, beside, killed = await asyncio.to_thread(calls)
    assert statuses in (["queued"], ["running"])
    assert ("beside\n", "killed") == (beside, killed)


async def test_unknown_process_is_404(client: Any) -> None:
    """Killing a process that does not exist: 404 PROCESS_NOT_FOUND."""
    created = await client.create_hopx()
    async with client.session.post(
        f"{created['public_host']}/processes/proc-nope/kill",
        headers={"Authorization": f"Bearer {created['auth_token']}"},
    ) as response:
        assert 404 == response.status
        assert "PROCESS_NOT_FOUND" == (await response.json())["code"]


# Commands --------------------------------------------------------------------


async def test_commands_run_async_and_sync(server: LocalSandboxServer) -> None:
    """commands.run in the foreground: output, exit code, working directory."""
    sandbox = await create(server)
    result = await sandbox.commands.run("echo hi; pwd; exit 2", working_dir="/work/x")
    lines = result.stdout.splitlines()
    assert ("hi", 2) == (lines[0], result.exit_code)
    assert lines[1].endswith("/work/x")

    def calls() -> Any:
        again = Sandbox(sandbox.sandbox_id, api_key=KEY, base_url=server.url)
        return again.commands.run('echo "$0" | tr a-z A-Z')

    result = await asyncio.to_thread(calls)
    assert ("BASH\n", 0) == (result.stdout, result.exit_code)
    await sandbox.kill()


# Files -------------------------------------------------------------------------


async def test_files_async(server: LocalSandboxServer) -> None:
    """files.*: text and bytes, list, exists, mkdir, remove, as the code sees them."""
    sandbox = await create(server)
    files = sandbox.files
    await files.write("/workspace/a.txt", "héllo")
    assert "héllo" == await files.read("/workspace/a.txt")
    # Bytes that read as base64 too: the SDK must not decode them twice.
    for data in (b"test", bytes(range(256)), b""):
        await files.write_bytes("/workspace/b.bin", data)
        assert data == await files.read_bytes("/workspace/b.bin")
    await files.mkdir("/workspace/d/e")
    listed = {f.name: f.is_directory for f in await files.list("/workspace")}
    assert {"a.txt": False, "b.bin": False, "d": True} == listed
    assert (True, False) == (
        await files.exists("/workspace/d/e"),
        await files.exists("/workspace/nope"),
    )
    seen = await sandbox.run_code("print(open('a.txt').read())")
    assert "héllo\n" == seen.stdout
    await files.remove("/workspace/d")
    assert not await files.exists("/workspace/d")
    with pytest.raises(FileNotFoundError):
        await files.read("/workspace/nope")
    await sandbox.kill()


async def test_files_sync(server: LocalSandboxServer, tmp_path: Any) -> None:
    """The same with the sync Sandbox, upload and download included."""
    local = tmp_path / "up.bin"
    local.write_bytes(b"\x00\xffupload")

    def calls() -> None:
        sandbox = create_sync(server)
        files = sandbox.files
        files.write("/workspace/a.txt", "héllo")
        assert "héllo" == files.read("/workspace/a.txt")
        for data in (b"test", bytes(range(256))):
            files.write_bytes("/workspace/b.bin", data)
            assert data == files.read_bytes("/workspace/b.bin")
        files.mkdir("/workspace/d/e")
        assert {"a.txt", "b.bin", "d"} == {f.name for f in files.list("/workspace")}
        assert files.exists("/workspace/d/e")
        files.remove("/workspace/d")
        assert not files.exists("/workspace/d")
        files.upload(str(local), "/workspace/up.bin")
        files.download("/workspace/up.bin", str(tmp_path / "down.bin"))
        with pytest.raises(FileNotFoundError):
            files.read("/workspace/nope")
        sandbox.kill()

    await asyncio.to_thread(calls)
    assert b"\x00\xffupload" == (tmp_path / "down.bin").read_bytes()


PLANT = """
import os
os.symlink('/etc/passwd', 'passwd')
os.symlink('/etc', 'etc')
os.symlink(os.path.abspath('../../{other}/workspace/secret.txt'), 'theirs')
os.symlink('../../{other}/workspace/secret.txt', 'theirs-relative')
"""


async def test_planted_links_are_refused(server: LocalSandboxServer) -> None:
    """Links the code plants to /etc/passwd or another sandbox: refused, never read."""
    sandbox = await create(server)
    other = await create(server)
    await other.files.write("/workspace/secret.txt", "the other owner's")
    [other_root] = [
        found.root
        for found in server.sandboxes.owned("hopx", KEY)
        if found.id == other.sandbox_id
    ]
    result = await sandbox.run_code(PLANT.format(other=os.path.basename(other_root)))
    assert 0 == result.exit_code, result.stderr
    for name in ("passwd", "etc/passwd", "theirs", "theirs-relative"):
        with pytest.raises(AgentError):
            await sandbox.files.read(f"/workspace/{name}")

    def calls() -> None:
        again = Sandbox(sandbox.sandbox_id, api_key=KEY, base_url=server.url)
        for name in ("passwd", "theirs"):
            with pytest.raises(AgentError, match="PATH_OUTSIDE_SANDBOX"):
                again.files.read(f"/workspace/{name}")
            with pytest.raises(AgentError, match="not followed"):
                again.files.write(f"/workspace/{name}", "overwritten")
        assert not again.files.exists("/workspace/passwd")  # the sync SDK's False

    await asyncio.to_thread(calls)
    assert "the other owner's" == await other.files.read("/workspace/secret.txt")
    await sandbox.kill()
    await other.kill()


# Environment variables -------------------------------------------------------


async def test_env_vars_async(server: LocalSandboxServer) -> None:
    """env: get all, set all, update, delete, get; runs see them."""
    sandbox = await create(server, env_vars={"A": "1"})
    env = sandbox.env
    assert {"A": "1"} == await env.get_all()
    await env.set_all({"B": "2", "C": "3"})
    await env.update({"D": "4"})
    await env.set("E", "5")
    await env.delete("C")
    assert {"B": "2", "D": "4", "E": "5"} == await env.get_all()
    assert "4" == await env.get("D")
    seen = await sandbox.run_code("import os\nprint(os.environ['B'] + os.environ['E'])")
    assert "25\n" == seen.stdout
    await sandbox.kill()


async def test_env_vars_sync(server: LocalSandboxServer) -> None:
    """The same with the sync Sandbox."""

    def calls() -> dict[str, str]:
        sandbox = create_sync(server, env_vars={"A": "1"})
        sandbox.env.set_all({"B": "2", "C": "3"})
        sandbox.env.update({"D": "4"})
        sandbox.env.delete("C")
        assert "2" == sandbox.env.get("B")
        found: dict[str, str] = sandbox.env.get_all()
        sandbox.kill()
        return found

    assert {"B": "2", "D": "4"} == await asyncio.to_thread(calls)


# What cannot mean anything here ---------------------------------------------------


async def test_desktop_is_501_naming_the_call(server: LocalSandboxServer) -> None:
    """Desktop automation: a JSON 501 naming the call; the SDK says so."""
    sandbox = await create(server)

    def calls() -> None:
        again = Sandbox(sandbox.sandbox_id, api_key=KEY, base_url=server.url)
        with pytest.raises(DesktopNotAvailableError):
            again.desktop.screenshot()

    await asyncio.to_thread(calls)
    token = await sandbox.get_token()
    agent = (await sandbox.get_info()).public_host
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{agent}/desktop/mouse/click",
            headers={"Authorization": f"Bearer {token}"},
            json={"x": 1, "y": 1},
        ) as response,
    ):
        assert 501 == response.status
        body = await response.json()
    assert "NOT_IMPLEMENTED" == body["code"]
    assert "POST /desktop/mouse/click" in body["error"]
    await sandbox.kill()


async def test_agent_info_and_metrics(server: LocalSandboxServer) -> None:
    """get_agent_info and get_metrics_snapshot answer with what is known."""
    sandbox = await create(server)
    info = await sandbox.get_agent_info()
    assert (sandbox.sandbox_id, "eventkit") == (info["vm_id"], info["agent"])
    assert "total_executions" in await sandbox.get_metrics_snapshot()
    await sandbox.kill()


async def test_agent_errors_have_the_agent_shape(client: Any) -> None:
    """No token: 401 in the agent's shape; another sandbox's path: 404."""
    first = await client.create_hopx()
    second = await client.create_hopx()
    async with client.session.get(f"{first['public_host']}/env") as response:
        assert 401 == response.status
        body = await response.json()
    assert ("UNAUTHORIZED", str) == (body["code"], type(body["error"]))
    async with client.session.get(
        f"{first['public_host']}/env",
        headers={"Authorization": f"Bearer {second['auth_token']}"},
    ) as response:
        assert 404 == response.status
    async with client.session.post(
        f"{first['public_host']}/execute",
        data=json.dumps({"code": 5}),
        headers={"Authorization": f"Bearer {first['auth_token']}"},
    ) as response:
        assert 400 == response.status
        assert "INVALID_REQUEST" == (await response.json())["code"]


@pytest.mark.server(max_file_bytes=10)
async def test_files_over_the_limit_are_413(server: LocalSandboxServer) -> None:
    """Writing or reading a file over --max-file-bytes: 413 FILE_TOO_LARGE."""
    sandbox = await create(server)
    with pytest.raises(AgentError):
        await sandbox.files.write("/workspace/big.txt", "x" * 11)
    await sandbox.run_code("open('big.txt', 'w').write('x' * 11)")

    def calls() -> None:
        again = Sandbox(sandbox.sandbox_id, api_key=KEY, base_url=server.url)
        with pytest.raises(AgentError, match="FILE_TOO_LARGE"):
            again.files.read("/workspace/big.txt")
        again.files.write("/workspace/small.txt", "x" * 10)

    await asyncio.to_thread(calls)
    await sandbox.kill()
