"""The HOPX public API and agent WebSocket, spoken to directly."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import datetime
from typing import Any

import pytest
from structlog.testing import capture_logs
from websockets.exceptions import ConnectionClosed, InvalidStatus

from eventkit.protocol.hopx import parse_timestamp
from eventkit.server.sandboxes import Sandbox

KEY = "test-key"


async def test_sandbox_lifecycle(client: Any) -> None:
    """Create, describe, refresh the token, delete: the shapes the SDK reads."""
    created = await client.create_hopx()
    assert client.url == created["public_host"]
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
            f"{client.url}/health", headers={"Authorization": f"Bearer {token}"}
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
        if code is not None and "eventkit/server/" in code.co_filename:
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
