"""The server as a whole: binding, serve(), guards, shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any

import aiohttp
import pytest
from yarl import URL

from eventkit.server import LocalSandboxServer, serve
from eventkit.server.loopback import is_loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com", ""])
async def test_serve_refuses_exposure_without_api_key(host: str) -> None:
    """A non-loopback address without --api-key is refused before listening."""
    with pytest.raises(ValueError, match="--api-key"):
        await serve(host, 0)


def has_ipv6_loopback() -> bool:
    """Tell whether this machine can listen on ``::1``."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
async def test_loopback_needs_no_api_key(host: str) -> None:
    """Loopback addresses are fine without a key: the server listens, open to any."""
    if host == "::1" and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    async with LocalSandboxServer(host) as server, aiohttp.ClientSession() as session:
        assert is_loopback(URL(server.url).host or "")
        async with session.post(
            f"{server.url}/v1/sandboxes", headers={"X-API-Key": "any-key-at-all"}
        ) as response:
            assert 200 == response.status
            created = await response.json()
        assert (
            f"{server.url}/agent/{created['id']}.local.vms.hopx.dev"
            == (created["public_host"])
        )


def test_invalid_arguments() -> None:
    """An empty key and nonsense limits are refused when made."""
    with pytest.raises(ValueError, match="--api-key must not be empty"):
        LocalSandboxServer(api_key="")
    with pytest.raises(ValueError, match="max_concurrent"):
        LocalSandboxServer(max_concurrent=0)
    with pytest.raises(ValueError, match="close_timeout"):
        LocalSandboxServer(close_timeout=0)
    with pytest.raises(ValueError, match="max_sandboxes_per_key"):
        LocalSandboxServer(max_sandboxes_per_key=0)
    for name in ("send_timeout", "idle_timeout", "body_timeout", "sandbox_ttl"):
        with pytest.raises(ValueError, match=name):
            LocalSandboxServer(**{name: float("nan")})
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


def test_public_address_needs_isolation_chosen() -> None:
    """On a public address, unisolated runs need isolation="none" said outright."""
    with pytest.raises(ValueError, match="refusing to run code unisolated"):
        LocalSandboxServer("0.0.0.0", api_key="k")
    assert (
        "none" == LocalSandboxServer("0.0.0.0", api_key="k", isolation="none").isolation
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"isolation": "chroot"}, "isolation must be"),
        ({"output_policy": "drop"}, "output_policy must be"),
        ({"resume_window": 0}, "resume_window must be"),
        ({"resume_buffer_bytes": 0}, "resume_buffer_bytes must be"),
    ],
)
def test_invalid_server_settings(options: dict[str, Any], message: str) -> None:
    """Isolation, output policy and resume settings are checked at once."""
    with pytest.raises(ValueError, match=message):
        LocalSandboxServer(**options)
