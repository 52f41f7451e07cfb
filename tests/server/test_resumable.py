"""Resumable executions end to end: eventkit serve, a proxy that cuts, the source.

The proxy (:mod:`tests.proxy`) resets connections as a network does; the
server and the client are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import eventkit
from eventkit import pipe, sinks, sources
from eventkit.exceptions import StreamClosedError
from eventkit.stats import source_stats
from tests.polling import until
from tests.proxy import CuttingProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from eventkit.events import Event
    from eventkit.server import LocalSandboxServer
    from tests.server.conftest import Client

LINES = 400
#: Prints LINES numbered lines, slowly enough to be cut mid-run, counting
#: its runs in the file named by argv-free formatting; exits 3.
COUNTED = """
import sys, time
open({counter!r}, "a").write("ran\\n")
for i in range({lines}):
    print(i, flush=True)
    time.sleep(0.002)
sys.exit(3)
"""


@pytest.fixture
async def proxy(server: LocalSandboxServer) -> AsyncIterator[CuttingProxy]:
    """A cutting proxy in front of the server."""
    port = int(server.url.rsplit(":", 1)[1])
    async with CuttingProxy("127.0.0.1", port) as running:
        yield running


async def token_of(client: Client) -> str:
    """Create a HOPX sandbox; return its token."""
    token: str = (await client.create_hopx())["auth_token"]
    return token


def stdout_of(events: list[Event]) -> str:
    """The run's stdout, concatenated."""
    return "".join(e.data for e in events if e.type == "stdout")


async def test_three_cuts_lose_nothing_and_run_once(
    client: Client, proxy: CuttingProxy, tmp_path: Path
) -> None:
    """Cut 3 times mid-run: the code ran once, every byte came once, in order."""
    counter = tmp_path / "counter"
    stream = sources.websocket(
        proxy.url(),
        COUNTED.format(counter=str(counter), lines=LINES),
        token=await token_of(client),
        reconnect=True,
        compression=None,
    )
    reconnects = source_stats("websocket").reconnects
    events: list[Event] = []
    async with asyncio.timeout(60):
        async for event in stream:
            events.append(event)
            if event.type == "stdout" and event.data.startswith(
                ("50\n", "150\n", "250\n")
            ):
                proxy.cut()
    assert "ran\n" == counter.read_text()
    assert "".join(f"{i}\n" for i in range(LINES)) == stdout_of(events)
    result = next(e for e in events if e.type == "result")
    assert 3 == result.attrs["exit_code"]
    assert "completed" == events[-1].type
    assert list(range(len(events))) == [e.sequence for e in events]
    assert 3 == proxy.cuts
    assert 4 == proxy.connections
    assert 3 == source_stats("websocket").reconnects - reconnects


@pytest.mark.server(resume_buffer_bytes=4096)
async def test_a_cut_past_the_ring_is_one_exact_gap(
    server: LocalSandboxServer, client: Client, proxy: CuttingProxy, tmp_path: Path
) -> None:
    """A 4 KiB ring, a cut during a 1 MiB burst: one gap, its exact range, no more."""
    done = tmp_path / "done"
    line = "x" * 1023 + "\n"
    code = (
        f"import sys\nfor _ in range(1024): sys.stdout.write({line!r})\n"
        f"sys.stdout.flush()\nopen({str(done)!r}, 'w').close()\n"
    )
    stream = sources.websocket(
        proxy.url(),
        code,
        token=await token_of(client),
        reconnect=True,
        reconnect_backoff=0.05,
        max_reconnects=50,
        compression=None,
    )
    proxy.cut_after(256 * 1024)

    async def reconnect_once_run_is_over() -> None:
        await proxy.cut_done.wait()
        proxy.block()  # the link stays down until the run is over
        await until(
            lambda: done.exists() and all(e.ended for e in server.executions),
            within=30,
        )
        proxy.unblock()

    out = sinks.collect()
    async with asyncio.timeout(60), asyncio.TaskGroup() as tasks:
        tasks.create_task(reconnect_once_run_is_over())
        # reorder downstream: the gap covers its range, no second gap, no stall.
        await eventkit.run(stream, pipe.reorder(max_delay=3600), sink=out)
    events = out.events
    (gap,) = [e for e in events if e.type == "gap"]
    first, last = gap.attrs["first_missing"], gap.attrs["last_missing"]
    assert first == gap.sequence
    assert last >= first
    # Every sequence is there once, or inside the gap.
    numbers = sorted(
        n
        for e in events
        for n in (range(first, last + 1) if e is gap else [e.sequence])
    )
    assert list(range(len(numbers))) == numbers
    # What came is the output's head and tail: nothing else is missing.
    whole = line * 1024
    before = stdout_of([e for e in events if e.sequence < first])
    after = stdout_of([e for e in events if e.sequence > last])
    assert whole.startswith(before)
    assert whole.endswith(after)
    assert len(before) + len(after) < len(whole)
    assert "completed" == events[-1].type
    assert events[-1].attrs["success"] is True


async def test_a_clean_close_cancels_the_run(
    server: LocalSandboxServer, client: Client, tmp_path: Path
) -> None:
    """break after the first line: the run interrupted (finally ran), forgotten."""
    flag = tmp_path / "flag"
    code = (
        "import time\ntry:\n    print('up', flush=True)\n    time.sleep(60)\n"
        f"finally:\n    open({str(flag)!r}, 'w').write('finally')\n"
    )
    stream = sources.websocket(
        server.url, code, token=await token_of(client), reconnect=True
    )
    async with asyncio.timeout(30):
        async for event in stream:
            if event.type == "stdout":
                break
        await until(flag.exists, within=25)
    assert "finally" == flag.read_text()
    assert 0 == len(server.executions)


async def raw_resume(
    server: LocalSandboxServer, token: str, execution_id: str, after: int = -1
) -> tuple[list[dict[str, Any]], int | None]:
    """Send a resume on a new connection; return the frames and the close code."""
    async with connect(
        server.url.replace("http", "ws") + "/execute/stream",
        additional_headers={"Authorization": f"Bearer {token}"},
    ) as ws:
        await ws.send(
            json.dumps({"type": "resume", "execution_id": execution_id, "after": after})
        )
        frames = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                frames.append(json.loads(await ws.recv()))
        return frames, ws.close_code


async def test_resume_of_an_unknown_execution(
    server: LocalSandboxServer, client: Client
) -> None:
    """An id the server never gave: RESUME_UNAVAILABLE, then 1008."""
    frames, code = await raw_resume(server, await token_of(client), "nope")
    assert ["RESUME_UNAVAILABLE"] == [f["code"] for f in frames]
    assert 1008 == code


async def test_resume_from_another_sandbox_is_refused(
    server: LocalSandboxServer, client: Client
) -> None:
    """An execution resumes only with its own sandbox's token."""
    mine, theirs = await token_of(client), await token_of(client)
    async with client.agent(mine) as ws:
        await ws.send(
            json.dumps({"type": "execute", "code": "print(1)", "resumable": True})
        )
        execution = json.loads(await ws.recv())
        await client.read_all(ws)
    frames, code = await raw_resume(server, theirs, execution["execution_id"])
    assert ["RESUME_UNAVAILABLE"] == [f["code"] for f in frames]
    assert 1008 == code
    frames, code = await raw_resume(server, mine, execution["execution_id"], after=0)
    assert ["result", "complete"] == [f["type"] for f in frames]
    assert 1000 == code


async def test_resumable_frames_are_numbered_from_0(client: Client) -> None:
    """The execution frame first, unnumbered; every other frame numbered in order."""
    token = await token_of(client)
    async with client.agent(token) as ws:
        await ws.send(
            json.dumps({"type": "execute", "code": "print(1)", "resumable": True})
        )
        frames = await client.read_all(ws)
    assert "execution" == frames[0]["type"]
    assert "sequence" not in frames[0]
    assert list(range(len(frames) - 1)) == [f["sequence"] for f in frames[1:]]
    assert ["stdout", "result", "complete"] == [f["type"] for f in frames[1:]]


@pytest.mark.server(resume_window=0.5)
async def test_no_resume_within_the_window_stops_the_run(
    server: LocalSandboxServer, client: Client, proxy: CuttingProxy, tmp_path: Path
) -> None:
    """A lost client that never comes back: the run is stopped after the window."""
    flag = tmp_path / "flag"
    code = (
        "import time\ntry:\n    print('up', flush=True)\n    time.sleep(60)\n"
        f"finally:\n    open({str(flag)!r}, 'w').write('finally')\n"
    )
    async with connect(
        proxy.url("/execute/stream"),
        additional_headers={"Authorization": f"Bearer {await token_of(client)}"},
    ) as ws:
        await ws.send(json.dumps({"type": "execute", "code": code, "resumable": True}))
        assert "execution" == json.loads(await ws.recv())["type"]
        assert "up\n" == json.loads(await ws.recv())["data"]
        proxy.cut()
    async with asyncio.timeout(30):
        await until(flag.exists, within=25)
    assert 0 == len(server.executions)


async def test_reconnects_exhausted_end_as_a_close(
    client: Client, proxy: CuttingProxy
) -> None:
    """The link stays down: max_reconnects attempts, then StreamClosedError (1006)."""
    stream = sources.websocket(
        proxy.url(),
        "import time\nprint('up', flush=True)\ntime.sleep(60)",
        token=await token_of(client),
        reconnect=True,
        max_reconnects=3,
        reconnect_backoff=0.01,
    )

    async def consume() -> None:
        async with asyncio.timeout(30):
            async for event in stream:
                if event.type == "stdout":
                    proxy.block()
                    proxy.cut()

    with pytest.raises(StreamClosedError) as info:
        await consume()
    assert 1006 == info.value.code
    assert 4 == proxy.connections
