"""Fixtures for the local sandbox server tests: a server, a client, helpers."""

from __future__ import annotations

import contextlib
import gc
import json
import warnings
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from eventkit.server import LocalSandboxServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from websockets.asyncio.client import ClientConnection

KEY = "test-key"


class Client:
    """Raw HTTP and WebSocket calls to one server, for protocol-level tests."""

    def __init__(self, server: LocalSandboxServer, session: aiohttp.ClientSession):
        self.server = server
        self.url = server.url
        self.session = session

    async def create_hopx(self, key: str = KEY) -> dict[str, Any]:
        """Create a HOPX sandbox; return the answer."""
        async with self.session.post(
            f"{self.url}/v1/sandboxes",
            json={"template_name": "code-interpreter"},
            headers={"X-API-Key": key},
        ) as response:
            assert 200 == response.status, await response.text()
            answer: dict[str, Any] = await response.json()
            return answer

    def agent(self, token: str | None, **options: Any) -> Any:
        """Open the agent WebSocket with ``token`` (no compression by default)."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        options.setdefault("compression", None)
        return connect(
            self.url.replace("http", "ws") + "/execute/stream",
            additional_headers=headers,
            **options,
        )

    async def run_hopx(
        self, token: str, code: str, **fields: Any
    ) -> list[dict[str, Any]]:
        """Run ``code`` over the agent WebSocket; return every frame, decoded."""
        async with self.agent(token) as ws:
            await ws.send(json.dumps({"type": "execute", "code": code, **fields}))
            return await self.read_all(ws)

    async def create_aicomputer(self, token: str = KEY) -> str:
        """Create an AI Computer sandbox; return its id."""
        async with self.session.post(
            f"{self.url}/api/v1/sandbox/create",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert 200 == response.status, await response.text()
            sandbox_id: str = (await response.json())["sandbox_id"]
            return sandbox_id

    @staticmethod
    async def read_all(ws: ClientConnection) -> list[dict[str, Any]]:
        """Read frames until ``complete`` or the close (any code); decode them."""
        frames: list[dict[str, Any]] = []
        with contextlib.suppress(ConnectionClosed):
            while not frames or frames[-1]["type"] != "complete":
                frames.append(json.loads(await ws.recv()))
        return frames

    @staticmethod
    def output(frames: list[dict[str, Any]], kind: str = "stdout") -> str:
        """Return the concatenated ``data`` of the frames of ``kind``."""
        return "".join(f["data"] for f in frames if f["type"] == kind)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker that configures the ``server`` fixture."""
    config.addinivalue_line(
        "markers", "server(**options): LocalSandboxServer options for the test"
    )


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[LocalSandboxServer]:
    """A server on a free port, configured by the test's ``server`` marker."""
    marker = request.node.get_closest_marker("server")
    options = marker.kwargs if marker is not None else {}
    async with LocalSandboxServer(**options) as running:
        yield running


@pytest.fixture
def sdk_leaks() -> Iterator[None]:
    """Collect, quietly, the HTTP clients the official SDKs never close.

    ``hopx-ai`` opens httpx clients it never closes (``AsyncSandbox.create``
    makes one and drops it); their sockets would raise ResourceWarnings in
    whichever test happens to collect them. Tests using the SDKs also carry
    ``filterwarnings("ignore::ResourceWarning")`` for the same reason.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
async def client(server: LocalSandboxServer) -> AsyncIterator[Client]:
    """A raw client of ``server``."""
    async with aiohttp.ClientSession() as session:
        yield Client(server, session)
