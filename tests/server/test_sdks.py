"""The official SDKs, used unchanged, and eventkit's own sources, end to end."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from ai_computer import SandboxClient  # type: ignore[import-untyped]

import eventkit
from eventkit.server import LocalSandboxServer

with warnings.catch_warnings():
    # hopx-ai 0.5.0 imports websockets' deprecated legacy client at import time.
    warnings.simplefilter("ignore", DeprecationWarning)
    from hopx_ai import AsyncSandbox, Sandbox  # type: ignore[import-untyped]
    from hopx_ai.errors import AuthenticationError  # type: ignore[import-untyped]

# hopx-ai never closes some of its httpx clients; see the sdk_leaks fixture.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.usefixtures("sdk_leaks"),
]

CODE = """
import os, sys
print("out", os.environ.get("A"))
print("err", file=sys.stderr)
"""


async def test_hopx_async_sandbox(server: LocalSandboxServer) -> None:
    """AsyncSandbox.create, run_code_stream, kill: what the docs show."""
    sandbox = await AsyncSandbox.create(
        template="code-interpreter", api_key="anything", base_url=server.url
    )
    messages = [m async for m in sandbox.run_code_stream(CODE, env={"A": "1"})]
    assert "out 1\n" == "".join(m["data"] for m in messages if m["type"] == "stdout")
    assert "err\n" == "".join(m["data"] for m in messages if m["type"] == "stderr")
    assert 0 == messages[-2]["exit_code"]
    assert {"type": "complete", "success": True} == messages[-1]
    assert all("sequence" in m for m in messages if m["type"] == "stdout")
    await sandbox.kill()
    assert 0 == len(server.sandboxes)


async def test_hopx_sandbox_by_id_refreshes_its_token(
    server: LocalSandboxServer,
) -> None:
    """A sandbox built from its id fetches a token through token/refresh."""
    created = await AsyncSandbox.create(
        template="code-interpreter", api_key="k", base_url=server.url
    )
    again = AsyncSandbox(created.sandbox_id, api_key="k", base_url=server.url)
    await again.refresh_token()  # what connect() does; the cache had one
    messages = [m async for m in again.run_code_stream("print(2)")]
    assert "2\n" == "".join(m["data"] for m in messages if m["type"] == "stdout")


async def test_hopx_wrong_api_key_is_refused() -> None:
    """With --api-key set, the SDK's create fails with AuthenticationError."""
    async with LocalSandboxServer(api_key="right") as server:
        with pytest.raises(AuthenticationError, match="X-API-Key"):
            await AsyncSandbox.create(
                template="code-interpreter", api_key="wrong", base_url=server.url
            )
        assert 0 == len(server.sandboxes)


def _sync_sandbox(url: str) -> list[dict[str, Any]]:
    """Use the sync Sandbox as its docs do: blocking calls, then asyncio.run."""
    sandbox = Sandbox.create(template="code-interpreter", api_key="k", base_url=url)

    async def stream() -> list[dict[str, Any]]:
        return [m async for m in sandbox.run_code_stream("print('sync')")]

    try:
        return asyncio.run(stream())
    finally:
        sandbox.kill()


async def test_hopx_sync_sandbox_in_a_thread(server: LocalSandboxServer) -> None:
    """The sync Sandbox works from a thread (it blocks inside its own loop)."""
    messages = await asyncio.to_thread(_sync_sandbox, server.url)
    assert "sync\n" == "".join(m["data"] for m in messages if m["type"] == "stdout")
    assert messages[-1]["success"]
    assert 0 == len(server.sandboxes)


@pytest.mark.parametrize("token", ["given-token", None])
async def test_aicomputer_client(server: LocalSandboxServer, token: str | None) -> None:
    """SandboxClient with a token, and without one (it asks /dev/token)."""
    client = SandboxClient(base_url=server.url, token=token)
    assert (await client.setup()).success
    events = [e async for e in client.execute_code_stream(CODE)]
    assert "out None\n" == "".join(e.data for e in events if e.type == "stdout")
    assert "err\n" == "".join(e.data for e in events if e.type == "stderr")
    assert "completed" == events[-1].type
    answer = await client.execute_code("print(6 * 7)")
    assert answer.success
    assert "42\n" == answer.data["output"]
    assert (await client.cleanup()).success
    assert 0 == len(server.sandboxes)


async def test_aicomputer_client_sees_errors(server: LocalSandboxServer) -> None:
    """A failing program ends with an error event, then completed."""
    client = SandboxClient(base_url=server.url, token="t")
    assert (await client.setup()).success
    events = [e async for e in client.execute_code_stream("1/0", timeout=5)]
    assert ["error", "completed"] == [e.type for e in events[-2:]]
    assert "ZeroDivisionError" in "".join(e.data for e in events if e.type == "stderr")
    await client.cleanup()


async def test_eventkit_websocket_source(server: LocalSandboxServer) -> None:
    """eventkit's websocket source, through reorder and buffer_bytes, to a sink."""
    sandbox = await AsyncSandbox.create(
        template="code-interpreter", api_key="k", base_url=server.url
    )
    token = await sandbox.get_token()
    sink = eventkit.sinks.collect()
    await eventkit.run(
        eventkit.sources.websocket(
            server.url, "for i in range(3): print(i)", token=token, compression=None
        ),
        eventkit.pipe.reorder(),
        eventkit.pipe.buffer_bytes(1024),
        sink=sink,
    )
    types = [e.type for e in sink.events]
    assert "started" == types[0]
    assert ["result", "completed"] == types[-2:]
    assert "0\n1\n2\n" == "".join(e.data for e in sink.events if e.type == "stdout")
    assert sink.events[-1].attrs["success"] is True


async def test_eventkit_aicomputer_source(server: LocalSandboxServer) -> None:
    """eventkit's aicomputer source, through the same chain, to a sink."""
    sink = eventkit.sinks.collect()
    await eventkit.run(
        eventkit.sources.aicomputer(server.url, "print('ndjson')\nraise SystemExit(2)"),
        eventkit.pipe.reorder(),
        eventkit.pipe.buffer_bytes(1024),
        sink=sink,
    )
    assert "ndjson\n" == "".join(e.data for e in sink.events if e.type == "stdout")
    assert ["error", "result", "completed"] == [e.type for e in sink.events[-3:]]
    assert "process exited with code 2" == sink.events[-3].data
    assert 2 == sink.events[-2].attrs["exit_code"]
    assert sink.events[-1].attrs["success"] is False
    assert 0 == len(server.sandboxes)  # the source deleted its sandbox
