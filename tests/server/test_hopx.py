"""The HOPX public API and agent WebSocket, spoken to directly."""

from __future__ import annotations

import asyncio
import json
import os
import time
import warnings
from datetime import datetime
from typing import Any

import pytest
from structlog.testing import capture_logs
from websockets.exceptions import ConnectionClosed, InvalidStatus

from eventkit.protocol.hopx import parse_timestamp
from eventkit.server.sandboxes import Sandbox
from eventkit.stats import server_stats
from tests.polling import until

KEY = "test-key"


async def test_sandbox_lifecycle(client: Any) -> None:
    """Create, describe, refresh the token, delete: the shapes the SDK reads."""
    created = await client.create_hopx()
    agent = f"{client.url}/agent/{created['id']}.local.vms.hopx.dev"
    assert agent == created["public_host"]
    assert "running" == created["status"]
    expires = datetime.fromisoformat(created["token_expires_at"].replace("Z", "+00:00"))
    assert expires.timestamp() > time.time() + 23 * 3600
    url = f"{client.url}/v1/sandboxes/{created['id']}"
    headers = {"X-API-Key": KEY}
    async with client.session.get(url, headers=headers) as response:
        info = await response.json()
    assert {"id", "status", "public_host"} <= set(info)
    assert "auth_token" not in info
    async with client.session.post(f"{url}/token/refresh", headers=headers) as response:
        refreshed = await response.json()
    assert refreshed["auth_token"] != created["auth_token"]
    for token, status in ((created["auth_token"], 401), (refreshed["auth_token"], 200)):
        async with client.session.get(
            f"{agent}/env", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert status == response.status
    async with client.session.delete(url, headers=headers) as response:
        assert {"id": created["id"], "status": "deleted"} == await response.json()
    async with client.session.get(url, headers=headers) as response:
        assert 404 == response.status
        assert "not found" in (await response.json())["error"]["message"]
    assert 0 == len(client.server.sandboxes)


async def test_public_api_needs_a_key_and_the_owner(client: Any) -> None:
    """No X-API-Key is 401; another key does not see the sandbox."""
    async with client.session.post(f"{client.url}/v1/sandboxes") as response:
        assert 401 == response.status
        body = await response.json()
    assert "X-API-Key" in body["error"]["message"]
    created = await client.create_hopx()
    async with client.session.get(
        f"{client.url}/v1/sandboxes/{created['id']}", headers={"X-API-Key": "other"}
    ) as response:
        assert 404 == response.status


@pytest.mark.server(api_key="K")
async def test_configured_api_key_is_the_only_one(client: Any) -> None:
    """With an API key set, other keys get 401."""
    for key, status in (("wrong", 401), ("K", 200)):
        async with client.session.post(
            f"{client.url}/v1/sandboxes", headers={"X-API-Key": key}
        ) as response:
            assert status == response.status


@pytest.mark.server(token_ttl=0.2)
@pytest.mark.parametrize("token", [None, "wrong", "expired"])
async def test_upgrade_without_a_valid_token_is_401(
    client: Any, token: str | None
) -> None:
    """No token, a wrong or an expired one: 401 on the upgrade, nothing runs."""
    created = await client.create_hopx()
    if token == "expired":
        token = created["auth_token"]
        await asyncio.sleep(0.25)
    with pytest.raises(InvalidStatus) as refused:
        async with client.agent(token) as ws:
            await ws.send(json.dumps({"type": "execute", "code": "print(1)"}))
    assert 401 == refused.value.response.status_code
    assert (0, 0) == (client.server.admission.running, client.server.admission.waiting)


async def test_frames_of_a_run(client: Any) -> None:
    """stdout/stderr with timestamp and sequence, then result, then complete."""
    token = (await client.create_hopx())["auth_token"]
    code = "import sys\nprint('out')\nprint('err', file=sys.stderr)\n"
    before = time.time()
    frames = await client.run_hopx(token, code, language="python", timeout=5)
    assert "out\n" == client.output(frames)
    assert "err\n" == client.output(frames, "stderr")
    output = [f for f in frames if f["type"] in ("stdout", "stderr")]
    assert list(range(len(output))) == [f["sequence"] for f in output]
    for frame in output:
        assert {"type", "data", "timestamp", "sequence"} == set(frame)
        assert before <= (parse_timestamp(frame["timestamp"]) or 0) <= time.time()
    result, complete = frames[-2:]
    assert {"type", "exit_code", "execution_time", "timestamp"} == set(result)
    assert 0 == result["exit_code"]
    assert 0 < result["execution_time"] < 5
    assert {"type": "complete", "success": True} == complete


@pytest.mark.server(close_timeout=0.1)
async def test_close_after_complete(client: Any) -> None:
    """After complete the client's close is answered with 1000, or the server closes."""
    token = (await client.create_hopx())["auth_token"]
    message = json.dumps({"type": "execute", "code": "print(1)"})
    async with client.agent(token) as ws:
        await ws.send(message)
        await client.read_all(ws)
    assert 1000 == ws.close_code  # the client closed first
    async with client.agent(token) as ws:
        await ws.send(message)
        await client.read_all(ws)
        await asyncio.wait_for(ws.wait_closed(), 5)  # the server closes
        assert 1000 == ws.close_code
        assert ws.protocol.close_rcvd is not None
        assert 1000 == ws.protocol.close_rcvd.code


async def test_workdir_is_inside_the_sandbox_and_kept(client: Any) -> None:
    """/workspace is the sandbox's directory; files stay across runs."""
    token = (await client.create_hopx())["auth_token"]
    frames = await client.run_hopx(
        token,
        "import os\nopen('kept.txt', 'w').write('x')\nprint(os.getcwd())",
        workdir="/workspace",
    )
    cwd = client.output(frames).strip()
    assert cwd.endswith("/workspace")
    assert cwd != "/workspace"
    assert os.path.commonpath([cwd, client.server.sandboxes.base]) == (
        client.server.sandboxes.base
    )
    frames = await client.run_hopx(token, "print(open('kept.txt').read())")
    assert "x\n" == client.output(frames)
    frames = await client.run_hopx(
        token, "import os\nprint(os.getcwd())", working_dir="/data/sub"
    )
    assert client.output(frames).strip().endswith("/data/sub")


@pytest.mark.parametrize("workdir", ["/workspace/../../..", "../etc"])
async def test_workdir_escape_is_refused(client: Any, workdir: str) -> None:
    """A workdir with .. gets an error frame and close 1008, nothing runs."""
    token = (await client.create_hopx())["auth_token"]
    async with client.agent(token) as ws:
        await ws.send(json.dumps({"type": "execute", "code": "1", "workdir": workdir}))
        frames = await client.read_all(ws)
    assert ["error"] == [f["type"] for f in frames]
    assert "INVALID_REQUEST" == frames[0]["code"]
    assert ".." in frames[0]["error"]
    assert 1008 == ws.close_code


async def test_environment_is_scrubbed(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code sees the env it was sent and none of the server's variables."""
    monkeypatch.setenv("EVENTKIT_SERVER_SECRET", "do-not-leak")
    token = (await client.create_hopx())["auth_token"]
    frames = await client.run_hopx(
        token,
        "import os\nprint(sorted(os.environ))\nprint(os.environ['A'])",
        env={"A": "1"},
    )
    names, value = client.output(frames).splitlines()
    assert "EVENTKIT_SERVER_SECRET" not in names
    assert "1" == value


@pytest.mark.server(max_timeout=0.5)
async def test_timeout_is_capped_and_reported(client: Any) -> None:
    """A run past max_timeout ends with EXECUTION_TIMEOUT, result, failed complete."""
    token = (await client.create_hopx())["auth_token"]
    begin = time.monotonic()
    frames = await client.run_hopx(
        token, "import time\nprint('begun', flush=True)\ntime.sleep(30)", timeout=60
    )
    assert time.monotonic() - begin < 5
    assert "begun\n" == client.output(frames)
    error, result, complete = frames[-3:]
    assert ("error", "EXECUTION_TIMEOUT") == (error["type"], error["code"])
    # The timeout's SIGINT: Python's KeyboardInterrupt ended the program.
    assert -2 == result["exit_code"]
    assert {"type": "complete", "success": False} == complete


async def test_failing_program_and_unknown_language(client: Any) -> None:
    """A non-zero exit fails the run; an unknown language is an error frame."""
    token = (await client.create_hopx())["auth_token"]
    frames = await client.run_hopx(token, "raise SystemExit(3)")
    assert (3, False) == (frames[-2]["exit_code"], frames[-1]["success"])
    frames = await client.run_hopx(token, "x", language="cobol")
    assert ["error", "complete"] == [f["type"] for f in frames]
    assert "LANGUAGE_UNAVAILABLE" == frames[0]["code"]
    frames = await client.run_hopx(token, "echo $0 in bash", language="bash")
    assert "in bash" in client.output(frames)


@pytest.mark.server(max_code_bytes=100)
async def test_oversized_message_is_closed_1009(client: Any) -> None:
    """A message over the size limit closes the connection with 1009."""
    token = (await client.create_hopx())["auth_token"]
    async with client.agent(token) as ws:
        await ws.send(json.dumps({"type": "execute", "code": "#" * 10**6}))
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert 1009 == ws.close_code


async def test_internal_failure_is_an_error_frame_and_a_log(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run failing inside the server: INTERNAL_ERROR, close 1011, execution_failed."""

    class BrokenExecution:
        """What Sandbox.execute gives when the executor itself fails."""

        async def __aenter__(self) -> Any:
            raise RuntimeError("the executor broke")

        async def __aexit__(self, *exc_info: object) -> None:
            return None

    monkeypatch.setattr(Sandbox, "execute", lambda *_, **__: BrokenExecution())
    token = (await client.create_hopx())["auth_token"]
    with capture_logs() as logs:
        async with client.agent(token) as ws:
            await ws.send(json.dumps({"type": "execute", "code": "print(1)"}))
            frames = await client.read_all(ws)
    assert [("error", "INTERNAL_ERROR", "internal error")] == [
        (f["type"], f["code"], f["error"]) for f in frames
    ]
    assert 1011 == ws.close_code
    [log] = logs
    assert ("execution_failed", "error") == (log["event"], log["log_level"])
    assert isinstance(log["exc_info"], RuntimeError)
    assert log["sandbox"].startswith("sbx-")
    assert (0, 0) == (client.server.admission.running, client.server.admission.waiting)


def server_tasks() -> list[str]:
    """Return the coroutines of the live tasks the server's own code started."""
    names = []
    for task in asyncio.all_tasks():
        coroutine: Any = task.get_coro()
        code = getattr(coroutine, "cr_code", None)
        if (
            code is not None
            and "eventkit/server/" in code.co_filename
            and code.co_qualname != "Registry.reap_forever"
        ):
            names.append(code.co_qualname)
    return sorted(names)


@pytest.mark.parametrize("leave", ["close", "drop"])
async def test_client_leaving_mid_run_leaves_no_task(client: Any, leave: str) -> None:
    """Closed or dropped mid-run, the connection's run and reader tasks all end."""
    token = (await client.create_hopx())["auth_token"]
    ws = await client.agent(token)
    # One write: print() writes the newline apart, which may come as a frame.
    code = "import os, time\nos.write(1, b'up\\n')\ntime.sleep(60)"
    await ws.send(json.dumps({"type": "execute", "code": code}))
    assert "up\n" == json.loads(await ws.recv())["data"]
    assert server_tasks()  # the run and the reader
    if leave == "close":
        await ws.close()
    else:
        ws.transport.abort()
    for _ in range(100):
        if not server_tasks():
            break
        await asyncio.sleep(0.05)
    assert [] == server_tasks()
    assert (0, 0) == (client.server.admission.running, client.server.admission.waiting)


# The public API through the official SDK ------------------------------------


def sdk() -> tuple[Any, Any, Any]:
    """Import the SDK's classes (its import warns of websockets' legacy client)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from hopx_ai import AsyncSandbox, Sandbox  # type: ignore[import-untyped]
        from hopx_ai.errors import NotFoundError  # type: ignore[import-untyped]
    return AsyncSandbox, Sandbox, NotFoundError


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.usefixtures("sdk_leaks")
async def test_list_info_timeout_pause_async(client: Any) -> None:
    """Sandbox.list/iter, get_info's fields, set_timeout, pause and resume."""
    async_sandbox, _, _ = sdk()
    url = client.url
    first = await async_sandbox.create(
        template="code-interpreter", api_key=KEY, base_url=url, timeout_seconds=600
    )
    second = await async_sandbox.create(template="python", api_key=KEY, base_url=url)
    await async_sandbox.create(template="base", api_key="someone-else", base_url=url)
    listed = await async_sandbox.list(api_key=KEY, base_url=url)
    assert [first.sandbox_id, second.sandbox_id] == [s.sandbox_id for s in listed]
    iterated = [
        s.sandbox_id async for s in async_sandbox.iter(api_key=KEY, base_url=url)
    ]
    assert [first.sandbox_id, second.sandbox_id] == iterated
    info = await first.get_info()
    assert ("running", "code-interpreter", 600, True) == (
        info.status,
        info.template_name,
        info.timeout_seconds,
        info.internet_access,
    )
    assert info.resources.vcpu >= 1
    assert info.resources.memory_mb > 0
    assert 0 < (await first.get_time_to_expiry()) <= 600
    assert None is (await second.get_info()).timeout_seconds
    # Idle sandboxes go after the server's time to live (an hour by default).
    assert 3500 < (await second.get_time_to_expiry()) <= 3600
    await first.set_timeout(1200)
    assert 1200 == (await first.get_info()).timeout_seconds
    await first.pause()
    assert "paused" == (await first.get_info()).status
    await first.resume()
    assert "running" == (await first.get_info()).status
    await first.kill()
    await second.kill()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.usefixtures("sdk_leaks")
async def test_list_info_timeout_pause_sync(client: Any) -> None:
    """The same calls with the sync Sandbox."""
    _, sync_sandbox, _ = sdk()
    url = client.url

    def calls() -> tuple[list[str], list[str], Any, Any, str]:
        sandbox = sync_sandbox.create(
            template="code-interpreter", api_key=KEY, base_url=url, timeout_seconds=60
        )
        listed = [s.sandbox_id for s in sync_sandbox.list(api_key=KEY, base_url=url)]
        iterated = [s.sandbox_id for s in sync_sandbox.iter(api_key=KEY, base_url=url)]
        sandbox.set_timeout(120)
        info = sandbox.get_info()
        sandbox.pause()
        paused = sandbox.get_info().status
        again = sync_sandbox.connect(sandbox.sandbox_id, api_key=KEY, base_url=url)
        resumed = again.get_info()  # connect() resumes a paused sandbox
        sandbox.kill()
        return listed, iterated, info, resumed, paused

    listed, iterated, info, resumed, paused = await asyncio.to_thread(calls)
    assert listed == iterated
    assert 1 == len(listed)
    assert (120, True) == (info.timeout_seconds, info.internet_access)
    assert info.resources.disk_mb > 0
    assert ("paused", "running") == (paused, resumed.status)


def state_of(pid: int) -> str:
    """Return a process's state letter (``T`` when stopped)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0]


async def test_pause_stops_the_processes_and_refuses_runs(client: Any) -> None:
    """pause: the run's process is stopped, new runs refused; resume: it goes on."""
    created = await client.create_hopx()
    token, sandbox_id = created["auth_token"], created["id"]
    api = f"{client.url}/v1/sandboxes/{sandbox_id}"
    headers = {"X-API-Key": KEY}
    async with client.agent(token) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "execute",
                    "code": "import os, time\nprint(os.getpid(), flush=True)\n"
                    "time.sleep(0.5)\nprint('after')",
                }
            )
        )
        pid = int(json.loads(await ws.recv())["data"])
        async with client.session.post(f"{api}/pause", headers=headers) as response:
            assert "paused" == (await response.json())["status"]
        for _ in range(100):
            if state_of(pid) == "T":
                break
            await asyncio.sleep(0.01)
        assert "T" == state_of(pid)
        frames = await client.run_hopx(token, "print(1)")
        assert [("error", "SANDBOX_PAUSED")] == [(f["type"], f["code"]) for f in frames]
        async with client.session.post(f"{api}/resume", headers=headers) as response:
            assert "running" == (await response.json())["status"]
        rest = await client.read_all(ws)
    assert "after\n" == client.output(rest)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.usefixtures("sdk_leaks")
async def test_preview_url_and_agent_url(client: Any) -> None:
    """get_preview_url and agent_url parse public_host (sync and async)."""
    async_sandbox, sync_sandbox, _ = sdk()
    sandbox = await async_sandbox.create(
        template="code-interpreter", api_key=KEY, base_url=client.url
    )
    preview = await sandbox.get_preview_url(8080)
    assert preview.startswith("https://8080-")
    assert preview.endswith(f"/agent/{sandbox.sandbox_id}.local.vms.hopx.dev/")
    assert (await sandbox.agent_url).startswith("https://7777-")

    def calls() -> tuple[str, str]:
        again = sync_sandbox(sandbox.sandbox_id, api_key=KEY, base_url=client.url)
        return again.get_preview_url(3000), again.agent_url

    preview, agent = await asyncio.to_thread(calls)
    assert preview.startswith("https://3000-")
    assert agent.startswith("https://7777-")
    await sandbox.kill()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.usefixtures("sdk_leaks")
async def test_unknown_template_is_the_sdks_not_found(client: Any) -> None:
    """An unknown template: 404, the SDK's NotFoundError (with suggestions)."""
    async_sandbox, sync_sandbox, not_found = sdk()
    with pytest.raises(not_found, match="Did you mean 'python'"):
        await async_sandbox.create(template="pythn", api_key=KEY, base_url=client.url)

    def calls() -> None:
        with pytest.raises(not_found):
            sync_sandbox.create(template_id="999", api_key=KEY, base_url=client.url)
        names = [
            t.name
            for t in sync_sandbox.list_templates(api_key=KEY, base_url=client.url)
        ]
        assert "code-interpreter" in names
        template = sync_sandbox.get_template("nodejs", api_key=KEY, base_url=client.url)
        assert "javascript" == template.language

    await asyncio.to_thread(calls)
    assert 0 == len(client.server.sandboxes)


async def test_template_building_is_501(client: Any) -> None:
    """Building or deleting a template: a JSON 501 naming the call."""
    for method, path in (
        ("POST", "/v1/templates/build"),
        ("GET", "/v1/templates/build/7/status"),
        ("DELETE", "/v1/templates/code-interpreter"),
    ):
        async with client.session.request(
            method, f"{client.url}{path}", headers={"X-API-Key": KEY}
        ) as response:
            assert 501 == response.status
            body = await response.json()
        assert "NOT_IMPLEMENTED" == body["error"]["code"]
        assert f"{method} {path}" in body["message"]


async def test_internet_access_false_needs_network_isolation(client: Any) -> None:
    """internet_access=false is refused (400) by a server that cannot cut it."""
    async with client.session.post(
        f"{client.url}/v1/sandboxes",
        json={"template_name": "code-interpreter", "internet_access": False},
        headers={"X-API-Key": KEY},
    ) as response:
        assert 400 == response.status
        assert "network" in (await response.json())["message"]
    assert 0 == len(client.server.sandboxes)


@pytest.mark.server(max_sandboxes=4, max_sandboxes_per_key=2)
async def test_one_key_cannot_take_every_sandbox(client: Any) -> None:
    """Past --max-sandboxes-per-key a key gets 429 (either API); others get theirs."""
    for _ in range(2):
        await client.create_hopx("greedy")
    async with client.session.post(
        f"{client.url}/v1/sandboxes", headers={"X-API-Key": "greedy"}
    ) as response:
        assert 429 == response.status
        assert "TOO_MANY_SANDBOXES" == (await response.json())["error"]["code"]
    async with client.session.post(
        f"{client.url}/api/v1/sandbox/create",
        headers={"Authorization": "Bearer greedy"},
    ) as response:
        assert 429 == response.status  # the same key through the other API
    await client.create_hopx("modest")
    await client.create_aicomputer("modest")


@pytest.mark.server(sandbox_ttl=0.2)
async def test_idle_sandboxes_expire(client: Any) -> None:
    """A sandbox idle past --sandbox-ttl is deleted, its directory with it."""
    before = server_stats().aborts.get("sandbox_expired", 0)
    created = await client.create_hopx()
    [sandbox] = client.server.sandboxes.owned("hopx", KEY)
    # Forgotten at once; its directory removed after its runs stopped, in a
    # thread.
    await until(lambda: not len(client.server.sandboxes))
    await until(lambda: not os.path.exists(sandbox.root))
    assert before + 1 == server_stats().aborts["sandbox_expired"]
    async with client.session.get(
        f"{client.url}/v1/sandboxes/{created['id']}", headers={"X-API-Key": KEY}
    ) as response:
        assert 404 == response.status


async def test_token_refresh_only_for_its_creator(client: Any) -> None:
    """Another key (or token) cannot refresh, and so cannot take, a sandbox's token."""
    created = await client.create_hopx("owner")
    url = f"{client.url}/v1/sandboxes/{created['id']}/token/refresh"
    async with client.session.post(url, headers={"X-API-Key": "other"}) as response:
        assert 404 == response.status
    async with client.session.post(url, headers={"X-API-Key": "owner"}) as response:
        assert 200 == response.status


async def test_health_needs_no_token(client: Any) -> None:
    """GET /health answers healthy to anyone, revealing nothing else."""
    async with client.session.get(f"{client.url}/health") as response:
        assert 200 == response.status
        assert {"status": "healthy"} == await response.json()


# Working directories ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "fifo", "loop"])
async def test_workdir_that_is_not_a_directory(client: Any, kind: str) -> None:
    """A file, a FIFO, a link loop as workdir: INVALID_WORKDIR, 1008; then fine."""
    token = (await client.create_hopx())["auth_token"]
    make = {
        "file": "open('thing', 'w').close()",
        "fifo": "import os\nos.mkfifo('thing')",
        "loop": "import os\nos.symlink('thing', 'thing')",
    }[kind]
    frames = await client.run_hopx(token, make)
    assert frames[-1]["success"], frames
    async with client.agent(token) as ws:
        await ws.send(
            json.dumps(
                {"type": "execute", "code": "print(1)", "workdir": "/workspace/thing"}
            )
        )
        frames = await client.read_all(ws)
    assert [("error", "INVALID_WORKDIR")] == [(f["type"], f["code"]) for f in frames]
    assert "/workspace/thing" in frames[0]["error"]
    assert 1008 == ws.close_code
    frames = await client.run_hopx(token, "print('still fine')")
    assert "still fine\n" == client.output(frames)
    assert (0, 0) == (client.server.admission.running, client.server.admission.waiting)


@pytest.mark.server(max_concurrent=1)
async def test_workdir_is_the_one_checked_when_admitted(
    client: Any, tmp_path: Any
) -> None:
    """A queued run's workdir swapped for a link meanwhile: the run stays put."""
    outside = tmp_path / "outside"
    outside.mkdir()
    token = (await client.create_hopx())["auth_token"]
    frames = await client.run_hopx(
        token, "import os\nos.mkdir('sub')\nprint(os.getcwd())"
    )
    assert frames[-1]["success"]
    sub = os.path.join(client.output(frames).strip(), "sub")
    async with client.agent(token) as blocker:
        await blocker.send(
            json.dumps(
                {
                    "type": "execute",
                    "code": "import time\nprint(1, flush=True)\ntime.sleep(60)",
                }
            )
        )
        await blocker.recv()  # it runs, holding the only slot
        async with client.agent(token) as queued:
            code = "import os\nopen('mine.txt', 'w').close()\nprint(os.getcwd())"
            await queued.send(
                json.dumps(
                    {"type": "execute", "code": code, "workdir": "/workspace/sub"}
                )
            )
            for _ in range(200):
                if client.server.admission.waiting:
                    break
                await asyncio.sleep(0.01)
            assert 1 == client.server.admission.waiting
            # What code racing the server does: the directory becomes a link out.
            os.rename(sub, sub + ".old")
            os.symlink(outside, sub)
            await blocker.close()
            frames = await client.read_all(queued)
    assert frames[-1]["success"], frames
    assert [] == os.listdir(outside)
    assert os.path.exists(sub + ".old/mine.txt")  # noqa: ASYNC240
    assert client.output(frames).strip().endswith("/workspace/sub.old")
