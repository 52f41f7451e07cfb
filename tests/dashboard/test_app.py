"""The dashboard's HTTP side, over real connections: every endpoint, auth, bounds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

import eventkit
from eventkit import pipe, sinks, sources
from eventkit.dashboard.app import (
    MAX_QUEUED_MESSAGES,
    Client,
    DashboardApp,
    sse,
)
from eventkit.dashboard.board import EVENT_OVERHEAD, Board
from eventkit.dashboard.selfmetrics import Chains
from eventkit.protocol import jsonl
from tests.factories import ev, out

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventkit.dashboard import Dashboard

TOKEN = "s3cret/token"
ENDPOINTS = (
    "api/runs",
    "api/runs/a",
    "api/runs/a/events.jsonl",
    "api/metrics",
    "api/stream",
)


def finished(run: str, exit_code: int = 0) -> list[Any]:
    """A whole run of four events."""
    return [
        ev("started", run=run),
        out(1, run=run),
        ev("result", "", 2, run=run, exit_code=exit_code),
        ev("completed", "", 3, run=run, success=exit_code == 0),
    ]


@contextlib.asynccontextmanager
async def served(**options: Any) -> AsyncIterator[tuple[Dashboard, str]]:
    """A started dashboard and its base address (without the token)."""
    dashboard = sinks.dashboard(**options)
    await dashboard.start()
    try:
        assert dashboard.url is not None
        yield dashboard, dashboard.url.split("?")[0]
    finally:
        await dashboard.stop()


async def get(url: str, **options: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
    """GET ``url``; return the status, the body (JSON if it is) and the response."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, **options) as response,
    ):
        body: Any = await response.read()
        if response.content_type == "application/json":
            body = json.loads(body)
        return response.status, body, response


async def test_the_page_and_its_assets_are_served() -> None:
    """GET / is the page; its script and style come from the same server."""
    async with served() as (_, base):
        status, page, response = await get(base)
        assert 200 == status
        assert b'<script src="app.js"' in page
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert "no-referrer" == response.headers["Referrer-Policy"]
        for asset, kind in (
            ("app.js", "text/javascript"),
            ("style.css", "text/css"),
            ("favicon.svg", "image/svg+xml"),
        ):
            status, body, response = await get(base + asset)
            assert (200, kind) == (status, response.content_type)
            assert body
        status, _, _ = await get(base + "../eventkit/dashboard/app.py")
        assert 404 == status


async def test_runs_lists_every_table_field() -> None:
    """GET /api/runs: rows with every table field, counts, bounds."""
    async with served(keep_runs=7) as (dashboard, base):
        await dashboard.send_batch(
            [*finished("a"), *finished("b", 4), ev("started", run="c")]
        )
        status, body, _ = await get(base + "api/runs")
        assert 200 == status
        assert {
            "running": 1,
            "succeeded": 1,
            "failed": 1,
            "expired": 0,
            "truncated": 0,
        } == body["counts"]
        assert (7, 262_144) == (body["keep_runs"], body["tail_bytes"])
        rows = {row["run"]: row for row in body["runs"]}
        assert ["a", "b", "c"] == list(rows)
        for field in (
            "run",
            "source",
            "state",
            "percent",
            "eta",
            "events",
            "bytes",
            "rate",
            "duration",
            "exit_code",
            "limits",
        ):
            assert field in rows["a"]
        assert ("failed", 4) == (rows["b"]["state"], rows["b"]["exit_code"])


async def test_runs_filter_by_state() -> None:
    """?state= keeps those states; an unknown state is a 400 naming the known ones."""
    async with served() as (dashboard, base):
        await dashboard.send_batch([*finished("a"), *finished("b", 4)])
        _, body, _ = await get(base + "api/runs?state=failed,expired")
        assert ["b"] == [row["run"] for row in body["runs"]]
        status, body, _ = await get(base + "api/runs?state=lost")
        assert 400 == status
        assert "running" in body["error"]["message"]


async def test_run_gives_its_summary_and_tail() -> None:
    """GET /api/runs/{run}: the row, the held events and their indices."""
    async with served() as (dashboard, base):
        await dashboard.send_batch(finished("a/b c"))
        status, body, _ = await get(base + "api/runs/a%2Fb%20c")
        assert 200 == status
        assert ("a/b c", "succeeded") == (body["run"]["run"], body["run"]["state"])
        assert (0, 4, 0) == (body["from"], body["next"], body["dropped_events"])
        assert ["started", "stdout", "result", "completed"] == [
            event["type"] for event in body["events"]
        ]


async def test_an_unknown_run_is_a_404() -> None:
    """An unknown run is a JSON 404, for the run and its events."""
    async with served() as (_, base):
        for path in ("api/runs/nope", "api/runs/nope/events.jsonl"):
            status, body, _ = await get(base + path)
            assert 404 == status
            assert "NOT_FOUND" == body["error"]["code"]


async def test_events_jsonl_is_a_replayable_recording() -> None:
    """events.jsonl decodes line by line into the run's events."""
    async with served() as (dashboard, base):
        events = finished("a")
        await dashboard.send_batch(events)
        status, body, response = await get(base + "api/runs/a/events.jsonl")
        assert (200, "application/jsonl") == (status, response.content_type)
        assert 'filename="a.jsonl"' in response.headers["Content-Disposition"]
        assert "0" == response.headers["X-Eventkit-Dropped-Events"]
        assert events == [jsonl.decode(line) for line in body.splitlines()]


async def test_events_jsonl_says_when_the_head_was_dropped() -> None:
    """Past tail_bytes, the file starts with a truncated event counting the rest."""
    async with served(tail_bytes=2 * (4 + EVENT_OVERHEAD)) as (dashboard, base):
        await dashboard.send_batch(
            [ev("stdout", f"{n:03d}\n", n, run="a") for n in range(5)]
        )
        _, body, response = await get(base + "api/runs/a/events.jsonl")
        first, *rest = [jsonl.decode(line) for line in body.splitlines()]
        assert ("truncated", "head", 3, 12) == (
            first.type,
            first["where"],
            first["omitted_events"],
            first["omitted_bytes"],
        )
        assert ["003\n", "004\n"] == [event.data for event in rest]
        assert "3" == response.headers["X-Eventkit-Dropped-Events"]


async def test_metrics_give_throughput_stages_and_sources() -> None:
    """GET /api/metrics: events a second, each watched stage, the sources."""
    async with served() as (dashboard, base):
        await eventkit.run(
            sources.iterate(finished("a")),
            pipe.only("stdout"),
            dashboard.watch(),
            sink=dashboard,
        )
        _, body, _ = await get(base + "api/metrics")
        assert 300 == len(body["throughput"]["counts"])
        assert 1 == body["events"]
        assert [("0:only", 4, 1, 3)] == [
            (s["stage"], s["received"], s["sent"], s["dropped"]) for s in body["stages"]
        ]
        assert {"clients": 0, "missed": 0} == body["dashboard"]
        assert isinstance(body["sources"], list)


async def test_odd_attrs_are_shown_as_text() -> None:
    """An attr JSON cannot hold is sent as its repr, never an error."""
    async with served() as (dashboard, base):
        await dashboard.send_batch([ev("started", run="a", when=object, tags={1})])
        status, body, _ = await get(base + "api/runs/a")
        assert 200 == status
        assert "<class 'object'>" == body["events"][0]["attrs"]["when"]


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_without_the_token_the_api_is_refused(path: str) -> None:
    """With a token set, every endpoint is a 401 without it or with a wrong one."""
    async with served(token=TOKEN) as (dashboard, base):
        await dashboard.send_batch(finished("a"))
        for options in (
            {},
            {"params": {"token": "wrong"}},
            {"headers": {"Authorization": "Basic x"}},
        ):
            status, body, _ = await get(base + path, **options)
            assert 401 == status
            assert "UNAUTHORIZED" == body["error"]["code"]


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_with_the_token_the_api_answers(path: str) -> None:
    """The token in ?token= or a bearer header opens every endpoint."""
    async with served(token=TOKEN) as (dashboard, base):
        await dashboard.send_batch(finished("a"))
        for options in (
            {"params": {"token": TOKEN}},
            {"headers": {"Authorization": f"Bearer {TOKEN}"}},
        ):
            async with (
                aiohttp.ClientSession() as session,
                session.get(base + path, **options) as response,
            ):
                assert 200 == response.status


async def test_without_a_token_set_the_api_is_open() -> None:
    """With no token set, no endpoint asks for one."""
    async with served() as (dashboard, base):
        await dashboard.send_batch(finished("a"))
        for path in ENDPOINTS:
            async with (
                aiohttp.ClientSession() as session,
                session.get(base + path) as response,
            ):
                assert 200 == response.status


async def test_the_page_is_served_without_the_token() -> None:
    """The page holds no data: it loads, then asks the API with the token."""
    async with served(token=TOKEN) as (dashboard, base):
        assert f"{base}?token=s3cret%2Ftoken" == dashboard.url
        status, _, _ = await get(base)
        assert 200 == status


async def test_a_foreign_host_is_refused_on_loopback() -> None:
    """On loopback, a Host that is not a loopback name gets a 403 (DNS rebinding)."""
    async with served() as (_, base):
        status, body, _ = await get(base + "api/runs", headers={"Host": "evil.example"})
        assert 403 == status
        assert "FORBIDDEN" == body["error"]["code"]
        status, _, _ = await get(base + "api/runs", headers={"Host": "localhost:1"})
        assert 200 == status


async def test_bounds_hold_with_2000_runs() -> None:
    """2,000 runs: every running one, keep_runs finished ones, tail_bytes each."""
    tail = 4 * (20 + EVENT_OVERHEAD)
    async with served(keep_runs=500, tail_bytes=tail) as (dashboard, base):
        for batch in range(20):
            events = []
            for n in range(100):
                run = f"run-{batch * 100 + n:04d}"
                events += [ev("started", run=run)]
                events += [
                    ev("stdout", f"{k:019d}\n", k, run=run) for k in range(1, 10)
                ]
                if (batch * 100 + n) % 10:
                    events += [ev("completed", "", 10, run=run, success=True)]
            await dashboard.send_batch(events)
        _, body, _ = await get(base + "api/runs")
        assert {"running": 200, "succeeded": 500} == {
            state: n for state, n in body["counts"].items() if n
        }
        assert 700 == len(body["runs"])
        assert "run-1999" in [row["run"] for row in body["runs"]]
        assert "run-0000" in [row["run"] for row in body["runs"]]  # running: kept
        assert "run-0001" not in [row["run"] for row in body["runs"]]
        for row in body["runs"]:
            assert row["held_events"] * EVENT_OVERHEAD <= tail
        _, detail, _ = await get(base + "api/runs/run-1999")
        held = sum(len(e["data"]) + EVENT_OVERHEAD for e in detail["events"])
        assert held <= tail
        assert (11, 7) == (detail["next"], detail["from"])
        status, _, _ = await get(base + "api/runs/run-0001")
        assert 404 == status


# The live stream -----------------------------------------------------------------


async def messages(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """Yield the (event, data) of each Server-Sent Events message."""
    kind, data = "message", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and data:
            yield kind, json.loads(data)
            kind, data = "message", ""


async def test_the_stream_says_hello_then_sends_run_updates() -> None:
    """GET /api/stream: hello first, then runs messages as runs change."""
    async with (
        served() as (dashboard, base),
        aiohttp.ClientSession() as session,
        session.get(base + "api/stream") as response,
    ):
        assert "text/event-stream" == response.content_type
        stream = messages(response)
        kind, hello = await anext(stream)
        assert ("hello", None) == (kind, hello["run"])
        await dashboard.send_batch(finished("a", 5))
        body: Any = None
        async for kind, body in stream:  # noqa: B007 - the last one is read below
            if kind == "runs":
                break
        assert [("a", "failed", 5)] == [
            (row["run"], row["state"], row["exit_code"]) for row in body["runs"]
        ]
        assert 1 == body["counts"]["failed"]


async def test_the_stream_of_a_run_sends_its_events_in_order() -> None:
    """?run=ID: that run's events, numbered from where hello said, none twice."""
    async with served() as (dashboard, base), aiohttp.ClientSession() as session:
        await dashboard.send_batch([ev("started", run="a"), out(1, run="a")])
        async with session.get(base + "api/stream", params={"run": "a"}) as response:
            stream = messages(response)
            _, hello = await anext(stream)
            assert ("a", 2) == (hello["run"], hello["next"])
            sent = [out(n, run="a") for n in range(2, 40)]
            for event in sent:
                await dashboard.send_batch([event, out(n := event.sequence, run="b")])
                await asyncio.sleep(0)
            received: list[Any] = []
            index = 2
            async for kind, body in stream:
                if kind != "events":
                    continue
                assert (index, 0) == (body["from"], body["skipped"])
                received += body["events"]
                index += len(body["events"])
                if len(received) == len(sent):
                    break
            assert [e.data for e in sent] == [e["data"] for e in received]
            assert n == 39


async def test_a_slow_browser_misses_messages_then_resynchronises() -> None:
    """A full queue drops messages (counted); once drained, resync is sent."""
    board = Board()
    app = DashboardApp(board, Chains(), lambda: 1000.0)
    client = Client("a")
    app.clients.add(client)
    for n in range(MAX_QUEUED_MESSAGES + 10):
        board.feed([out(n, run="a")], 1000.0)
        app.publish()
    assert MAX_QUEUED_MESSAGES == client.queued
    assert client.resync
    assert client.missed > 0
    assert app.missed == client.missed
    while client.queued:
        await client.next_message(0)
    board.feed([out(999, run="a")], 1000.0)
    app.publish()
    message = await client.next_message(0)
    assert message is not None
    assert message.startswith(b"event: resync\n")
    assert board.get("a").logged == client.next_index  # type: ignore[union-attr]
    app.publish()
    assert not client.resync


def test_sse_messages_are_one_json_line() -> None:
    """A message is an event line and one data line of JSON."""
    assert b'event: runs\ndata: {"a":"x\\ny"}\n\n' == sse("runs", {"a": "x\ny"})


async def test_a_stalled_browser_never_slows_the_pipeline() -> None:
    """A browser that never reads: the run still ends, what it missed is counted."""
    async with served() as (dashboard, base):
        host, port = base.removeprefix("http://").rstrip("/").rsplit(":", 1)
        stalled = socket.create_connection((host, int(port)))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"GET /api/stream?run=big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            while not dashboard.app.clients:  # noqa: ASYNC110 - another task's set
                await asyncio.sleep(0.01)
            line = "x" * 1000 + "\n"
            for n in range(2000):
                await dashboard.send_batch([ev("stdout", line, n, run="big")])
                if n % 50 == 0:
                    dashboard.app.publish()
            assert dashboard.app.missed > 0
            (client,) = dashboard.app.clients
            assert client.resync
        finally:
            stalled.close()
