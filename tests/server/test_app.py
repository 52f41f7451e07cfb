"""The server as a whole: binding, serve(), guards, shutdown."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiohttp
import pytest

from eventkit.server import LocalSandboxServer, serve


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com", ""])
async def test_serve_refuses_exposure_without_api_key(host: str) -> None:
    """A non-loopback address without --api-key is refused before listening."""
    with pytest.raises(ValueError, match="--api-key"):
        await serve(host, 0)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_needs_no_api_key(host: str) -> None:
    """Loopback addresses are fine without a key."""
    LocalSandboxServer(host)


def test_invalid_arguments() -> None:
    """An empty key and nonsense limits are refused when made."""
    with pytest.raises(ValueError, match="--api-key must not be empty"):
        LocalSandboxServer(api_key="")
    with pytest.raises(ValueError, match="max_concurrent"):
        LocalSandboxServer(max_concurrent=0)
    with pytest.raises(ValueError, match="close_timeout"):
        LocalSandboxServer(close_timeout=0)
    with pytest.raises(RuntimeError, match="not started"):
        _ = LocalSandboxServer().url


async def test_serve_runs_until_cancelled() -> None:
    """serve() reports its URL, answers, and stops when cancelled."""
    ready: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(serve("127.0.0.1", 0, on_ready=ready.put_nowait))
    url = await asyncio.wait_for(ready.get(), 10)
    assert url.startswith("http://127.0.0.1:")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/dev/token") as response,
    ):
        assert 200 == response.status
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.post(f"{url}/dev/token")


async def test_foreign_host_header_is_refused(client: Any) -> None:
    """A Host that is not loopback (DNS rebinding) gets 403."""
    async with client.session.post(
        f"{client.url}/dev/token", headers={"Host": "evil.example:80"}
    ) as response:
        assert 403 == response.status
        assert "FORBIDDEN" == (await response.json())["error"]["code"]
    async with client.session.post(
        f"{client.url}/dev/token", headers={"Host": "localhost"}
    ) as response:
        assert 200 == response.status


async def test_errors_are_json(client: Any) -> None:
    """Unknown paths and methods answer with JSON too."""
    async with client.session.get(f"{client.url}/nowhere") as response:
        assert 404 == response.status
        assert "NOT_FOUND" == (await response.json())["error"]["code"]
    async with client.session.put(f"{client.url}/v1/sandboxes") as response:
        assert 405 == response.status
        assert "METHOD_NOT_ALLOWED" == (await response.json())["error"]["code"]
    token = (await client.create_hopx())["auth_token"]
    async with client.session.get(
        f"{client.url}/execute/stream", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert 400 == response.status
        assert "WebSocket upgrade" in (await response.json())["message"]


async def test_shutdown_stops_runs_and_removes_sandboxes() -> None:
    """Closing the server kills what runs, closes with 1001, removes directories."""
    async with LocalSandboxServer() as server, aiohttp.ClientSession() as session:
        async with session.post(
            f"{server.url}/v1/sandboxes", headers={"X-API-Key": "k"}
        ) as response:
            token = (await response.json())["auth_token"]
        base = server.sandboxes.base
        ws = await session.ws_connect(
            server.url + "/execute/stream",
            headers={"Authorization": f"Bearer {token}"},
        )
        code = "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)"
        await ws.send_str(json.dumps({"type": "execute", "code": code}))
        pid = int(json.loads(await ws.receive_str())["data"])
        await server.close()
        message = await ws.receive()
        assert aiohttp.WSMsgType.CLOSE == message.type
        assert 1001 == message.data
        await ws.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not os.path.exists(base)  # noqa: ASYNC240 - a test's check
