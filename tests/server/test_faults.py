"""Faults the server survives: disconnects, floods, huge output, garbage."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import warnings
from typing import Any

import aiohttp
import pytest

from eventkit.stats import server_stats

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


@pytest.mark.server(max_output_bytes=1000, output_policy="truncate")
async def test_output_policy_truncate_keeps_head_and_tail(client: Any) -> None:
    """truncate: the run goes on; each stream keeps its first and last 500 bytes."""
    token = (await client.create_hopx())["auth_token"]
    code = (
        "import sys\n"
        "print('H' * 600 + 'x' * 100_000 + 'T' * 600)\n"
        "print('e' * 10, file=sys.stderr)\n"
        "sys.exit(4)\n"
    )
    frames = await client.run_hopx(token, code)
    whole = "H" * 600 + "x" * 100_000 + "T" * 600 + "\n"
    assert whole[:500] + whole[-500:] == client.output(frames)
    assert "e" * 10 + "\n" == client.output(frames, "stderr")
    result, complete = frames[-2:]
    assert 4 == result["exit_code"]
    assert {"type": "complete", "success": False, "truncated": True} == complete
    assert "OUTPUT_LIMIT" not in json.dumps(frames)


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
    error, completed = lines[-2:]
    assert {"type": "error", "data": "output exceeded 1000000 bytes"} == error
    # Stopped with SIGINT (-2), or SIGKILL (-9) should the grace run out.
    assert completed.pop("exit_code") in (-2, -9)
    assert {"type": "completed", "data": "", "success": False} == completed


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


@pytest.mark.server(max_concurrent=1)
async def test_client_leaving_while_queued(client: Any) -> None:
    """A run abandoned while queued leaves no trace in the admission counts."""
    token = (await client.create_hopx())["auth_token"]
    admission = client.server.admission
    async with client.agent(token) as ws:
        await ws.send(json.dumps({"type": "execute", "code": LINGER}))
        await ws.recv()
        # The only slot is taken: this one queues behind the first.
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


# Hostile clients --------------------------------------------------------------

#: Output without end, in 64 KiB writes.
ENDLESS = (
    "import sys\nline = 'x' * 65535 + '\\n'\nwhile True:\n    sys.stdout.write(line)\n"
)


@pytest.mark.server(
    max_concurrent=8, max_queue=8, send_timeout=1.0, max_output_bytes=None
)
async def test_clients_that_stop_reading_lose_their_slots(client: Any) -> None:
    """8 clients that never read hold every slot; after --send-timeout they are
    dropped, their runs killed, and an honest client's run completes.
    """
    server = client.server
    before = dict(server_stats().aborts)
    token = (await client.create_hopx())["auth_token"]
    # Four WebSocket clients that never call recv() (websockets stops reading
    # after 16 frames), four AI Computer clients that never read the body.
    hogs = [
        await client.agent(token, max_queue=1, ping_interval=None) for _ in range(4)
    ]
    for ws in hogs:
        await ws.send(json.dumps({"type": "execute", "code": ENDLESS}))
    sandbox_id = await client.create_aicomputer()
    streams = []
    for _ in range(4):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", int(client.url.rsplit(":", 1)[1])
        )
        body = json.dumps({"code": ENDLESS, "timeout": 300}).encode()
        writer.write(
            f"POST /api/v1/sandbox/{sandbox_id}/execute/stream HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer test-key\r\n"
            f"Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        streams.append((reader, writer))
    for _ in range(200):
        if server.admission.running == 8:
            break
        await asyncio.sleep(0.05)
    assert 8 == server.admission.running

    async def honest() -> str:
        frames = await client.run_hopx(token, "print('honest')")
        return client.output(frames)

    # Its run waits for a slot, then runs: within the send timeout and 5 s.
    assert "honest\n" == await asyncio.wait_for(honest(), 1.0 + 5.0)

    def dropped() -> int:
        return server_stats().aborts.get("send_timeout", 0) - before.get(
            "send_timeout", 0
        )

    # Every hog goes (the honest run needed only the first free slot).
    for _ in range(200):
        if dropped() == 8 and not server.admission.running:
            break
        await asyncio.sleep(0.05)
    assert 8 == dropped()
    assert (0, 0) == (server.admission.running, server.admission.waiting)
    for ws in hogs:
        ws.transport.abort()
    for _, writer in streams:
        writer.close()


async def raw_request(client: Any, data: bytes) -> bytes:
    """Send ``data`` on a new connection; return all the server answers."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", int(client.url.rsplit(":", 1)[1])
    )
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_host_without_brackets_is_403(client: Any) -> None:
    """``Host: ::1`` (an IPv6 address without brackets) gets a JSON 403."""
    answer = await raw_request(
        client, b"GET /health HTTP/1.1\r\nHost: ::1\r\nConnection: close\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403")
    assert b"application/json" in head
    assert "FORBIDDEN" == json.loads(body)["error"]["code"]
    answer = await raw_request(
        client, b"GET /health HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200")


@pytest.mark.server(idle_timeout=0.3)
@pytest.mark.parametrize("sent", [b"", b"GET /health HTTP/1.1\r\nHo"])
async def test_idle_and_header_less_connections_are_closed(
    client: Any, sent: bytes
) -> None:
    """A connection that sends nothing, or never ends its headers, is closed."""
    # raw_request reads until the server closes: it returns, with nothing.
    assert b"" == await raw_request(client, sent)


@pytest.mark.server(body_timeout=0.3)
async def test_a_body_that_never_comes_is_408(client: Any) -> None:
    """A body slower than --body-timeout: 408, the connection closed, counted."""
    before = server_stats().aborts.get("body_timeout", 0)
    answer = await raw_request(
        client,
        b"POST /v1/sandboxes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"X-API-Key: k\r\nContent-Length: 100\r\n\r\n{",
    )
    assert answer.startswith(b"HTTP/1.1 408")
    assert before + 1 == server_stats().aborts["body_timeout"]


#: 100 MB of two-byte characters (the worst case for ASCII-escaped JSON).
HUNDRED_MB = (
    "import sys\n"
    "chunk = 'é' * 65536\n"
    "for _ in range(100_000_000 // len(chunk.encode())):\n"
    "    sys.stdout.write(chunk)\n"
)


def peak_rss(pid: int) -> int:
    """Return a process's peak resident memory (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_non_streaming_execute_memory_is_bounded() -> None:
    """16 execute calls (HOPX and AI Computer) printing 100 MB each: the server's
    peak memory grows by about the output cap per slot, not per byte printed.
    """
    cap = 8 << 20
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventkit",
        "serve",
        "--port",
        "0",
        "--max-output-bytes",
        str(cap),
        stderr=asyncio.subprocess.PIPE,
    )
    assert server.stderr is not None
    try:
        line = (await server.stderr.readline()).decode()
        url = line.split("listening on ")[1].strip()
        start = peak_rss(server.pid)
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{url}/api/v1/sandbox/create", headers={"Authorization": "Bearer k"}
            ) as response:
                sandbox_id = (await response.json())["sandbox_id"]
            async with session.post(
                f"{url}/v1/sandboxes", json={}, headers={"X-API-Key": "k"}
            ) as response:
                created = await response.json()

            async def execute(target: str, headers: dict[str, str]) -> int:
                async with session.post(
                    target, json={"code": HUNDRED_MB, "timeout": 120}, headers=headers
                ) as response:
                    assert 200 == response.status
                    size = 0
                    async for chunk in response.content.iter_chunked(1 << 20):
                        size += len(chunk)
                    return size

            sizes = await asyncio.gather(
                *(
                    execute(
                        f"{url}/api/v1/sandbox/{sandbox_id}/execute",
                        {"Authorization": "Bearer k"},
                    )
                    for _ in range(8)
                ),
                *(
                    execute(
                        f"{created['public_host']}/execute",
                        {"Authorization": f"Bearer {created['auth_token']}"},
                    )
                    for _ in range(8)
                ),
            )
        # Each answer holds the cap's worth of output, as UTF-8 (not \\u00e9).
        assert all(cap <= size < cap + 4096 for size in sizes)
        grown = peak_rss(server.pid) - start
        # 8 slots hold at most 8 caps (64 MiB); ASCII-escaped or held twice,
        # the same calls took over 400 MB.
        assert grown < 160 << 20, f"peak grew by {grown >> 20} MiB"
    finally:
        server.send_signal(signal.SIGINT)
        await server.wait()
