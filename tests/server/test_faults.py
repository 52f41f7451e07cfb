"""Faults the server survives: disconnects, floods, huge output, garbage."""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from typing import Any

import pytest

with warnings.catch_warnings():
    # hopx-ai 0.5.0 imports websockets' deprecated legacy client at import time.
    warnings.simplefilter("ignore", DeprecationWarning)
    from hopx_ai import AsyncSandbox  # type: ignore[import-untyped]

#: A run that reports its pid and a grandchild's, then waits to be killed.
LINGER = (
    "import os, subprocess, time\n"
    "child = subprocess.Popen(['sleep', '60'])\n"
    "print(os.getpid(), child.pid, flush=True)\n"
    "time.sleep(60)\n"
)
#: 50 MiB of output in 64 KiB writes.
FIFTY_MIB = (
    "import sys\n"
    "line = 'x' * 65535 + '\\n'\n"
    "for _ in range(800):\n"
    "    sys.stdout.write(line)\n"
)


def alive(pid: int) -> bool:
    """Tell whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        # Gone before the open, or between the open and the read.
        return False


async def gone(*pids: int) -> bool:
    """Wait up to 5 s for every pid to die."""
    for _ in range(100):
        if not any(alive(pid) for pid in pids):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_websocket_client_leaving_mid_run_kills_the_group(client: Any) -> None:
    """The client closes mid-run: process and grandchild die, the server serves on."""
    token = (await client.create_hopx())["auth_token"]
    async with client.agent(token) as ws:
        await ws.send(json.dumps({"type": "execute", "code": LINGER}))
        pids = [int(pid) for pid in json.loads(await ws.recv())["data"].split()]
        assert all(alive(pid) for pid in pids)
    assert await gone(*pids)
    frames = await client.run_hopx(token, "print('still here')")
    assert "still here\n" == client.output(frames)


async def test_websocket_connection_dropped_mid_run(client: Any) -> None:
    """The TCP connection drops without a close frame: the run is killed too."""
    token = (await client.create_hopx())["auth_token"]
    ws = await client.agent(token)
    await ws.send(json.dumps({"type": "execute", "code": LINGER}))
    pids = [int(pid) for pid in json.loads(await ws.recv())["data"].split()]
    ws.transport.abort()
    assert await gone(*pids)
    assert (0, 0) == (client.server.admission.running, client.server.admission.waiting)


async def test_ndjson_client_leaving_mid_run_kills_the_group(client: Any) -> None:
    """An AI Computer client leaving mid-body stops the run the same way."""
    sandbox_id = await client.create_aicomputer()
    async with client.session.post(
        f"{client.url}/api/v1/sandbox/{sandbox_id}/execute/stream",
        json={"code": LINGER},
        headers={"Authorization": "Bearer test-key"},
    ) as response:
        line = json.loads(await response.content.readline())
        pids = [int(pid) for pid in line["data"].split()]
        response.close()
    assert await gone(*pids)


@pytest.mark.server(max_concurrent=8, max_queue=8)
async def test_flood_of_200_executions(client: Any) -> None:
    """200 at once against 8 slots: admitted runs finish whole, the rest are refused."""
    tokens = [(await client.create_hopx())["auth_token"] for _ in range(200)]
    sockets = await asyncio.gather(*(client.agent(token) for token in tokens))
    # Every connection is open before any execute leaves: a real flood.
    await asyncio.gather(
        *(
            ws.send(json.dumps({"type": "execute", "code": f"print({n})"}))
            for n, ws in enumerate(sockets)
        )
    )
    answers = await asyncio.gather(*(client.read_all(ws) for ws in sockets))
    await asyncio.gather(*(ws.close() for ws in sockets))
    done = refused = 0
    for n, (ws, frames) in enumerate(zip(sockets, answers, strict=True)):
        if frames[0]["type"] == "error":
            assert "TOO_MANY_REQUESTS" == frames[0]["code"]
            assert 1013 == ws.close_code
            refused += 1
        else:
            assert f"{n}\n" == client.output(frames)
            assert {"type": "complete", "success": True} == frames[-1]
            done += 1
    assert 200 == done + refused
    assert done >= 16
    assert refused > 0
    assert (0, 0) == (client.server.admission.running, client.server.admission.waiting)
    frames = await client.run_hopx(tokens[0], "print('up')")
    assert "up\n" == client.output(frames)


async def test_fifty_mebibytes_in_frames_under_one_mebibyte(client: Any) -> None:
    """50 MiB of output arrives whole, in frames the SDK's 1 MiB limit takes."""
    token = (await client.create_hopx())["auth_token"]
    # websockets' default max_size is the SDK's: 1 MiB; a bigger frame fails.
    async with client.agent(token, max_size=2**20) as ws:
        await ws.send(json.dumps({"type": "execute", "code": FIFTY_MIB}))
        size = frames = 0
        async for raw in ws:
            assert len(raw) < 2**20
            frame = json.loads(raw)
            frames += 1
            if frame["type"] == "stdout":
                size += len(frame["data"])
            elif frame["type"] == "complete":
                assert frame["success"]
                break
    assert 50 * 2**20 == size


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.usefixtures("sdk_leaks")
async def test_fifty_mebibytes_through_the_official_sdk(server: Any) -> None:
    """The official client, compression and all, reads 50 MiB to complete."""
    sandbox = await AsyncSandbox.create(
        template="code-interpreter", api_key="k", base_url=server.url
    )
    size, last = 0, None
    async for message in sandbox.run_code_stream(FIFTY_MIB):
        if message["type"] == "stdout":
            size += len(message["data"])
        last = message
    assert 50 * 2**20 == size
    assert {"type": "complete", "success": True} == last
    await sandbox.kill()


@pytest.mark.server(max_output_bytes=1_000_000)
async def test_output_cap_on_fifty_mebibytes(client: Any) -> None:
    """With an output cap: exactly that much, OUTPUT_LIMIT, result, failed complete."""
    token = (await client.create_hopx())["auth_token"]
    frames = await client.run_hopx(token, FIFTY_MIB)
    assert 1_000_000 == len(client.output(frames))
    error, result, complete = frames[-3:]
    assert ("error", "OUTPUT_LIMIT") == (error["type"], error["code"])
    assert "result" == result["type"]
    assert {"type": "complete", "success": False} == complete


@pytest.mark.server(max_output_bytes=1_000_000)
async def test_output_cap_on_ndjson(client: Any) -> None:
    """The cap holds on AI Computer too: an error line, then completed."""
    sandbox_id = await client.create_aicomputer()
    async with client.session.post(
        f"{client.url}/api/v1/sandbox/{sandbox_id}/execute/stream",
        json={"code": FIFTY_MIB},
        headers={"Authorization": "Bearer test-key"},
    ) as response:
        lines = [json.loads(line) async for line in response.content]
    assert 1_000_000 == sum(len(x["data"]) for x in lines if x["type"] == "stdout")
    assert [
        {"type": "error", "data": "output exceeded 1000000 bytes"},
        {"type": "completed", "data": "", "exit_code": -9, "success": False},
    ] == lines[-2:]


@pytest.mark.server(first_message_timeout=0.2)
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("not json at all", "not valid JSON"),
        (os.urandom(512), "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        ('{"type": "interrupt"}', "unknown message type 'interrupt'"),
        ('["execute"]', "must be a JSON object"),
        ('{"type": "execute", "code": 42}', "code must be a string"),
        ('{"type": "execute", "code": "1", "timeout": -5}', "timeout must be in"),
        (None, "no execute message within 0.2 s"),
    ],
)
async def test_garbage_gets_an_error_frame_and_1008(
    client: Any, message: str | bytes | None, expected: str
) -> None:
    """Garbage, noise, unknown types, bad fields and silence: error, then 1008."""
    token = (await client.create_hopx())["auth_token"]
    async with client.agent(token) as ws:
        if message is not None:
            await ws.send(message)
        frames = await client.read_all(ws)
    assert 1 == len(frames)
    assert ("error", "INVALID_REQUEST") == (frames[0]["type"], frames[0]["code"])
    assert expected in frames[0]["error"]
    assert 1008 == ws.close_code
    frames = await client.run_hopx(token, "print('fine')")
    assert "fine\n" == client.output(frames)


@pytest.mark.server(max_concurrent=1, max_queue=0)
async def test_full_server_refuses_with_429(client: Any) -> None:
    """With the only slot taken and no queue, AI Computer gets a JSON 429."""
    token = (await client.create_hopx())["auth_token"]
    sandbox_id = await client.create_aicomputer()
    async with client.agent(token) as ws:
        await ws.send(json.dumps({"type": "execute", "code": LINGER}))
        await ws.recv()  # it runs
        async with client.session.post(
            f"{client.url}/api/v1/sandbox/{sandbox_id}/execute/stream",
            json={"code": "print(1)"},
            headers={"Authorization": "Bearer test-key"},
        ) as response:
            assert 429 == response.status
            assert "too many executions" in (await response.json())["message"]


async def test_client_leaving_while_queued(client: Any) -> None:
    """A run abandoned while queued leaves no trace in the admission counts."""
    token = (await client.create_hopx())["auth_token"]
    admission = client.server.admission
    async with client.agent(token) as ws:
        await ws.send(json.dumps({"type": "execute", "code": LINGER}))
        await ws.recv()
        # Same sandbox, same directory: this one queues behind the first.
        async with client.agent(token) as queued:
            await queued.send(json.dumps({"type": "execute", "code": "print(1)"}))
            for _ in range(100):
                if admission.waiting:
                    break
                await asyncio.sleep(0.01)
            assert (1, 1) == (admission.running, admission.waiting)
    for _ in range(100):
        if not admission.running + admission.waiting:
            break
        await asyncio.sleep(0.05)
    assert (0, 0) == (admission.running, admission.waiting)
