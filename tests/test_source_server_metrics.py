"""The sources' and the local server's self-metrics, counted by real streams.

The counters are process-wide, so each test reads them before and after and
checks the difference. The scripted servers and helpers are those of the
source and server tests, imported.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from websockets.exceptions import InvalidStatus

from eventkit.exceptions import HTTPError, StreamClosedError
from eventkit.metrics import collector_for, source_stats
from eventkit.server import LocalSandboxServer
from eventkit.sources import aicomputer, local, ndjson, websocket
from tests.polling import until
from tests.server.conftest import KEY, Client
from tests.sources.test_hopx import (
    COMPLETE,
    RESULT,
    Close,
    Gate,
    read,
    read_until_closed,
    serve_script,
    stdout,
)
from tests.sources.test_http import BODY, base, service

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventkit.events import Event
    from eventkit.streams import EventStream
    from tests.sources.test_hopx import Serve
    from tests.sources.test_http import Service

# Fixtures of the source tests, used here by name.
__all__ = ["base", "serve_script", "service"]

FIELDS = (
    "connections",
    "open_connections",
    "frames",
    "invalid_frames",
    "closed_before_complete",
)


class Delta:
    """The change of one kind's source counters since it was made."""

    def __init__(self, kind: str) -> None:
        self.stats = source_stats(kind)
        self.before = self.now()

    def now(self) -> dict[str, int]:
        """Return the counters as they are."""
        return {name: getattr(self.stats, name) for name in FIELDS}

    def __call__(self) -> dict[str, int]:
        """Return each counter's change."""
        now = self.now()
        return {name: now[name] - self.before[name] for name in FIELDS}


def changes(
    connections: int = 1, frames: int = 0, invalid: int = 0, closed: int = 0
) -> dict[str, int]:
    """Return the expected changes; open connections always end where they were."""
    return {
        "connections": connections,
        "open_connections": 0,
        "frames": frames,
        "invalid_frames": invalid,
        "closed_before_complete": closed,
    }


async def read_all(stream: EventStream) -> list[Event]:
    """Return every event of ``stream``, within 5 s."""
    async with asyncio.timeout(5), stream.stream() as streamer:
        events = [event async for event in streamer]
    return events


# WebSocket --------------------------------------------------------------------


async def test_websocket_counts_a_run(serve_script: Serve) -> None:
    """One connection, open while it streams, one frame per message, live."""
    gate = asyncio.Event()
    server = await serve_script([stdout("a\n"), Gate(gate), RESULT, COMPLETE])
    delta = Delta("websocket")
    async with asyncio.timeout(5), websocket(server.url, "1").stream() as streamer:
        async for event in streamer:
            if event.type == "stdout":
                now = delta()
                assert (1, 1, 1) == (
                    now["connections"],
                    now["open_connections"],
                    now["frames"],
                )
                gate.set()
    assert changes(frames=3) == delta()


async def test_websocket_counts_invalid_frames(serve_script: Serve) -> None:
    """Undecodable messages are invalid frames; an empty one is a frame only."""
    server = await serve_script(["not json", "[1]", "", stdout("a"), COMPLETE])
    delta = Delta("websocket")
    events = await read(websocket(server.url, "1"))
    assert 2 == sum(event.get("code") == "invalid_frame" for event in events)
    assert changes(frames=5, invalid=2) == delta()


@pytest.mark.parametrize("on_close", ["raise", "event"])
async def test_websocket_counts_close_before_complete(
    serve_script: Serve, on_close: str
) -> None:
    """A close before ``complete`` counts once, raised or turned into events."""
    server = await serve_script([stdout("a"), Close(1011, "boom")])
    delta = Delta("websocket")
    if on_close == "raise":
        await read_until_closed(websocket(server.url, "1"))
    else:
        events = await read(websocket(server.url, "1", on_close="event"))
        assert "closed_before_complete" == events[-2].get("code")
    assert changes(frames=1, closed=1) == delta()


async def test_websocket_consumer_break_closes_once(serve_script: Serve) -> None:
    """A consumer stopping early closes the connection: not a close before complete."""
    server = await serve_script([stdout("1"), stdout("2"), COMPLETE])
    delta = Delta("websocket")
    async with asyncio.timeout(5), websocket(server.url, "1").stream() as streamer:
        async for event in streamer:
            if event.type == "stdout":
                break
    counted = delta()
    # Messages already received are decoded together: one, two or all three.
    assert 1 <= counted["frames"] <= 3
    assert changes(frames=counted["frames"]) == counted


# NDJSON -----------------------------------------------------------------------


async def test_ndjson_counts_a_run(service: Service, base: str) -> None:
    """One response read, one frame per line."""
    delta = Delta("ndjson")
    events = await read_all(ndjson(f"{base}/stream"))
    assert "completed" == events[-1].type
    assert changes(frames=4) == delta()


async def test_ndjson_counts_invalid_and_blank_lines(
    service: Service, base: str
) -> None:
    """An undecodable line is an invalid frame; a blank one a frame only."""
    service.chunks = [BODY[0], b"{not json}\n\n", BODY[3]]
    delta = Delta("ndjson")
    events = await read_all(ndjson(f"{base}/stream"))
    assert ["started", "stdout", "error", "completed"] == [e.type for e in events]
    assert changes(frames=4, invalid=1) == delta()


async def test_ndjson_counts_close_before_complete(service: Service, base: str) -> None:
    """A body ending before ``completed`` counts, raised or turned into events."""
    service.chunks = BODY[:2]
    delta = Delta("ndjson")
    with pytest.raises(StreamClosedError):
        await read_all(ndjson(f"{base}/stream"))
    events = await read_all(ndjson(f"{base}/stream", on_close="event"))
    assert "closed_before_complete" == events[-2].get("code")
    assert changes(connections=2, frames=4, closed=2) == delta()


async def test_aicomputer_counts_its_execute_stream(
    service: Service, base: str
) -> None:
    """Of AI Computer's calls only the execute stream is a connection."""
    delta = Delta("ndjson")
    events = await read_all(aicomputer(base, "1"))
    assert "completed" == events[-1].type
    assert 5 == len(service.calls)  # token, create, status, execute, delete
    assert changes(frames=4) == delta()


async def test_ndjson_error_status_opens_no_stream(service: Service, base: str) -> None:
    """A non-2xx answer raises before any stream: nothing counted."""
    service.execute_error = (500, "no")
    delta = Delta("ndjson")
    with pytest.raises(HTTPError):
        await read_all(aicomputer(base, "1", token="t"))
    assert changes(connections=0) == delta()


# Local ------------------------------------------------------------------------


async def test_local_counts_a_process_and_its_output_events() -> None:
    """A process is a connection, open until reaped; each output event a frame."""
    delta = Delta("local")
    code = "import sys\nprint('out', flush=True)\nprint('err', file=sys.stderr)"
    events: list[Event] = []
    async with asyncio.timeout(5), local(code).stream() as streamer:
        async for event in streamer:
            events.append(event)
            if event.type == "started":
                assert (1, 1) == (delta()["connections"], delta()["open_connections"])
    outputs = sum(event.type in ("stdout", "stderr") for event in events)
    assert outputs >= 2
    assert changes(frames=outputs) == delta()


async def test_local_timeout_is_a_limit_not_a_close() -> None:
    """A timeout kill is a resource limit: the run's outcome is known."""
    delta = Delta("local")
    code = "import time\nprint('x', flush=True)\ntime.sleep(30)"
    events = await read_all(local(code, timeout=0.3))
    assert "timeout" == events[-3].get("limit")
    # "x" and its newline are two writes: one event, or two on a busy machine;
    # then the KeyboardInterrupt the timeout's SIGINT raised, on stderr.
    outputs = sum(event.type in ("stdout", "stderr") for event in events)
    assert "x\n" == "".join(event.data for event in events if event.type == "stdout")
    assert changes(frames=outputs) == delta()


async def test_local_without_a_process_counts_nothing() -> None:
    """An unknown language spawns nothing: no connection."""
    delta = Delta("local")
    events = await read_all(local("1", language="cobol"))
    assert "language_unavailable" == events[1].get("code")
    assert changes(connections=0) == delta()


async def test_local_consumer_break_closes_once() -> None:
    """Stopping early kills and reaps the process; it is no longer open."""
    delta = Delta("local")
    code = "import time\nprint('x', flush=True)\ntime.sleep(30)"
    async with asyncio.timeout(5), local(code).stream() as streamer:
        async for event in streamer:
            if event.type == "stdout":
                break
    assert changes(frames=1) == delta()


# Scraped ----------------------------------------------------------------------


async def test_source_samples_are_scraped(serve_script: Serve) -> None:
    """A registry with self-metrics exposes the sources' counters by kind."""
    registry = CollectorRegistry()
    collector_for(registry, self_metrics=True)
    server = await serve_script([stdout("a"), "not json", Close(1000)])
    stats = source_stats("websocket")
    await read_until_closed(websocket(server.url, "1"))

    def sample(name: str) -> float | None:
        return registry.get_sample_value(
            f"eventkit_source_{name}", {"source": "websocket"}
        )

    assert [
        stats.connections,
        stats.open_connections,
        stats.frames,
        stats.invalid_frames,
        stats.closed_before_complete,
    ] == [
        sample("connections_total"),
        sample("open_connections"),
        sample("frames_total"),
        sample("invalid_frames_total"),
        sample("closed_before_complete_total"),
    ]
    assert (sample("frames_total") or 0) >= 2
    assert (sample("invalid_frames_total") or 0) >= 1


# The local server -------------------------------------------------------------

#: The refusal reasons the server counts.
REASONS = ("busy", "unauthorized", "invalid", "sandbox_limit", "forbidden")
#: Prints, then waits to be killed (the server kills it when the client leaves).
HOLD = "import time\nprint('go', flush=True)\ntime.sleep(30)"


class Scrape:
    """The server samples of one registry, and their changes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        collector_for(self.registry, self_metrics=True)
        self.before = self.counters()

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Return a sample of ``eventkit_server_<name>`` (0 when absent)."""
        value = self.registry.get_sample_value(f"eventkit_server_{name}", labels)
        return 0.0 if value is None else value

    def counters(self) -> dict[str, float]:
        """Return the executions and refusals counters."""
        counters = {"executions": self.value("executions_total")}
        for reason in REASONS:
            counters[reason] = self.value("refusals_total", {"reason": reason})
        return counters

    def changes(self) -> dict[str, float]:
        """Return the counters' changes."""
        now = self.counters()
        return {name: now[name] - self.before[name] for name in now}

    def gauges(self) -> tuple[float, float]:
        """Return running and queued executions."""
        return self.value("running_executions"), self.value("queued_executions")


@pytest.fixture
async def full_client() -> AsyncIterator[Client]:
    """A client of a server with one slot, no queue, and programs of 64 bytes."""
    server = LocalSandboxServer(max_concurrent=1, max_queue=0, max_code_bytes=64)
    async with server, aiohttp.ClientSession() as session:
        yield Client(server, session)


def expected(executions: int = 0, **refusals: int) -> dict[str, float]:
    """Return the expected counter changes: ``executions`` and refusals by reason."""
    return {
        "executions": executions,
        **{reason: refusals.get(reason, 0) for reason in REASONS},
    }


async def test_server_counts_executions_and_busy_refusals(
    full_client: Client,
) -> None:
    """A run holds the only slot: running 1, the next runs are refused as busy."""
    client = full_client
    scrape = Scrape()
    idle = scrape.gauges()
    token = (await client.create_hopx())["auth_token"]
    sandbox_id = await client.create_aicomputer()
    async with asyncio.timeout(5):
        async with client.agent(token) as ws:
            await ws.send(json.dumps({"type": "execute", "code": HOLD}))
            assert "go\n" == json.loads(await ws.recv())["data"]
            assert (idle[0] + 1, idle[1]) == scrape.gauges()
            frames = await client.run_hopx(token, "print(1)")
            assert "TOO_MANY_REQUESTS" == frames[0]["code"]
            async with client.session.post(
                f"{client.url}/api/v1/sandbox/{sandbox_id}/execute/stream",
                json={"code": "print(1)"},
                headers={"Authorization": f"Bearer {KEY}"},
            ) as response:
                assert 429 == response.status
        # The client left: its run is stopped and gives its slot back.
        await until(lambda: not client.server.admission.running)
        assert idle == scrape.gauges()
        frames = await client.run_hopx(token, "print(2)")
        assert "2\n" == client.output(frames)
    assert expected(executions=2, busy=2) == scrape.changes()


async def test_server_counts_unauthorized(full_client: Client) -> None:
    """A bad sandbox token (WebSocket) and a missing bearer (HTTP) are 401s."""
    client = full_client
    scrape = Scrape()
    with pytest.raises(InvalidStatus):
        async with client.agent("bad-token"):
            pass
    async with client.session.post(f"{client.url}/api/v1/sandbox/create") as response:
        assert 401 == response.status
    assert expected(unauthorized=2) == scrape.changes()


async def test_server_counts_invalid_requests(full_client: Client) -> None:
    """Bad execute messages (1008, 1009) and bodies (400, 413) are invalid."""
    client = full_client
    scrape = Scrape()
    token = (await client.create_hopx())["auth_token"]
    sandbox_id = await client.create_aicomputer()
    for message in ["not json", json.dumps({"type": "execute", "code": 1})]:
        async with client.agent(token) as ws:
            await ws.send(message)
            await ws.wait_closed()
            assert 1008 == ws.close_code
    # Over the largest message: 6 * max_code_bytes + 64 KiB.
    async with client.agent(token) as ws:
        await ws.send("x" * (70 << 10))
        await ws.wait_closed()
        assert 1009 == ws.close_code
    url = f"{client.url}/api/v1/sandbox/{sandbox_id}/execute/stream"
    auth = {"Authorization": f"Bearer {KEY}"}
    for body, status in [({"code": "x" * 65}, 400), ({"code": "x" * (70 << 10)}, 413)]:
        async with client.session.post(url, json=body, headers=auth) as response:
            assert status == response.status
    assert expected(invalid=5) == scrape.changes()


async def test_server_counts_other_refusals() -> None:
    """Too many sandboxes and a foreign Host are refusals; a 404 is not."""
    scrape = Scrape()
    server = LocalSandboxServer(max_sandboxes=1)
    async with asyncio.timeout(5), server, aiohttp.ClientSession() as session:
        client = Client(server, session)
        await client.create_hopx()
        sandboxes = f"{server.url}/v1/sandboxes"
        key = {"X-API-Key": KEY}
        async with session.post(sandboxes, headers=key) as response:
            assert 429 == response.status
        foreign = {**key, "Host": "example.com"}
        async with session.get(f"{sandboxes}/x", headers=foreign) as response:
            assert 403 == response.status
        async with session.get(f"{sandboxes}/x", headers=key) as response:
            assert 404 == response.status
    assert expected(sandbox_limit=1, forbidden=1) == scrape.changes()


async def test_server_queued_gauge_and_untrack() -> None:
    """A run waiting for the slot is queued; a closed server is no longer read."""
    scrape = Scrape()
    idle = scrape.gauges()
    server = LocalSandboxServer(max_concurrent=1, max_queue=1)
    async with (
        asyncio.timeout(5),
        server,
        aiohttp.ClientSession() as session,
    ):
        client = Client(server, session)
        token = (await client.create_hopx())["auth_token"]
        async with client.agent(token) as ws, client.agent(token) as queued:
            await ws.send(json.dumps({"type": "execute", "code": HOLD}))
            await ws.recv()
            await queued.send(json.dumps({"type": "execute", "code": "print(1)"}))
            await until(lambda: server.admission.waiting > 0)
            assert (idle[0] + 1, idle[1] + 1) == scrape.gauges()
        admission = server.admission
    # Closed: its admission is no longer read, whatever it holds.
    with admission.admit():
        assert idle == scrape.gauges()
