"""Tests for :mod:`eventkit.sources.http` against scripted local servers.

The scripted service here (:class:`Service`, fixtures ``service`` and
``base``) also answers AI Computer's calls: the tests of
:mod:`eventkit.sources.aicomputer_api` use it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from eventkit.events import Event
from eventkit.exceptions import HTTPError, LineTooLongError, StreamClosedError
from eventkit.protocol import jsonl
from eventkit.sources.http import ndjson

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from eventkit.streams import EventStream

#: The example body of protocols.md section 3.2.
BODY = [
    b'{"type": "stdout", "data": "Processing step 1\\n"}\n',
    b'{"type": "stderr", "data": "warning ...\\n"}\n',
    b'{"type": "error", "data": "NameError: name \'x\' is not defined"}\n',
    b'{"type": "completed", "data": ""}\n',
]


class Call(NamedTuple):
    """One request the scripted server received."""

    method: str
    path: str
    authorization: str | None
    body: Any


class Service:
    """A scripted AI Computer service, plus a plain ``/stream`` NDJSON endpoint.

    Tests change the attributes to script the answers (a status and a JSON
    value, or bytes sent as they are); :attr:`calls` records every request.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.token: tuple[int, Any] = (200, {"access_token": "dev-token"})
        self.create: tuple[int, Any] = (200, {"sandbox_id": "sbx-1"})
        #: Status answers in turn; the last one repeats.
        self.statuses: list[tuple[int, Any]] = [(200, {"status": "ready"})]
        self.execute_error: tuple[int, str] | None = None
        self.delete_status = 200
        self.chunks: list[bytes] = list(BODY)
        #: Set when the test is over: every held response may end.
        self.release = asyncio.Event()
        #: Set by a test to let a held response go on.
        self.gate = asyncio.Event()
        #: Set once a held response has stopped at the gate.
        self.holding = asyncio.Event()
        self.script: Callable[[web.StreamResponse], Awaitable[None]] = self.write_all

    def app(self) -> web.Application:
        """Return the aiohttp application serving the script."""
        app = web.Application()
        app.router.add_post("/dev/token", self.on_token)
        app.router.add_post("/api/v1/sandbox/create", self.on_create)
        app.router.add_get("/api/v1/sandbox/{id}/status", self.on_status)
        app.router.add_post("/api/v1/sandbox/{id}/execute/stream", self.on_execute)
        app.router.add_delete("/api/v1/sandbox/{id}", self.on_delete)
        app.router.add_route("*", "/stream", self.on_stream)
        return app

    async def record(self, request: web.Request) -> None:
        """Remember ``request``."""
        raw = await request.read()
        body = msgspec.json.decode(raw) if raw else None
        self.calls.append(
            Call(
                request.method, request.path, request.headers.get("Authorization"), body
            )
        )

    def paths(self) -> list[str]:
        """Return ``METHOD path`` of every call, in order."""
        return [f"{call.method} {call.path}" for call in self.calls]

    @staticmethod
    def answer(status: int, answer: Any) -> web.StreamResponse:
        """Return ``answer`` as JSON, or as is if bytes."""
        if isinstance(answer, bytes):
            return web.Response(status=status, body=answer)
        return web.json_response(answer, status=status)

    async def on_token(self, request: web.Request) -> web.StreamResponse:
        """Answer ``POST /dev/token``."""
        await self.record(request)
        return self.answer(*self.token)

    async def on_create(self, request: web.Request) -> web.StreamResponse:
        """Answer ``POST /api/v1/sandbox/create``."""
        await self.record(request)
        return self.answer(*self.create)

    async def on_status(self, request: web.Request) -> web.StreamResponse:
        """Answer ``GET .../status`` with the next scripted status."""
        await self.record(request)
        status, answer = (
            self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        )
        return self.answer(status, answer)

    async def on_delete(self, request: web.Request) -> web.StreamResponse:
        """Answer ``DELETE /api/v1/sandbox/{id}``."""
        await self.record(request)
        return web.json_response({}, status=self.delete_status)

    async def on_execute(self, request: web.Request) -> web.StreamResponse:
        """Answer ``POST .../execute/stream`` with the scripted body."""
        await self.record(request)
        if self.execute_error is not None:
            status, text = self.execute_error
            return web.Response(status=status, text=text)
        return await self.stream(request)

    async def on_stream(self, request: web.Request) -> web.StreamResponse:
        """Answer ``/stream`` with the scripted body."""
        await self.record(request)
        return await self.stream(request)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Send the scripted body, chunked."""
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        # The client may leave early; that is its right.
        with contextlib.suppress(ConnectionError):
            await self.script(response)
            await response.write_eof()
        return response

    async def write_all(self, response: web.StreamResponse) -> None:
        """Write :attr:`chunks`, one write each."""
        for chunk in self.chunks:
            await response.write(chunk)

    async def hold(self) -> None:
        """Stop until the test opens the gate (or is over)."""
        self.holding.set()
        gate = asyncio.ensure_future(self.gate.wait())
        over = asyncio.ensure_future(self.release.wait())
        await asyncio.wait([gate, over], return_when=asyncio.FIRST_COMPLETED)
        gate.cancel()
        over.cancel()


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    """Return the scripted service, not yet serving."""
    service = Service()
    yield service
    service.release.set()


@pytest.fixture
async def base(service: Service) -> AsyncIterator[str]:
    """Serve ``service`` on 127.0.0.1; return its base URL."""
    async with TestServer(service.app(), host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")
        service.release.set()


async def read(stream: EventStream) -> list[Event]:
    """Return every event of ``stream``."""
    events: list[Event] = []
    await read_into(stream, events)
    return events


async def read_into(stream: EventStream, events: list[Event]) -> None:
    """Append every event of ``stream`` to ``events`` as it comes."""
    async with stream.stream() as streamer:
        async for event in streamer:
            events.append(event)


def kinds(events: list[Event]) -> list[tuple[str, str]]:
    """Return each event's type and data."""
    return [(event.type, event.data) for event in events]


#: The events of :data:`BODY`, with the synthetic ``started``.
EXPECTED = [
    ("started", ""),
    ("stdout", "Processing step 1\n"),
    ("stderr", "warning ...\n"),
    ("error", "NameError: name 'x' is not defined"),
    ("completed", ""),
]


# ndjson(): bodies


async def test_ndjson_documented_body(service: Service, base: str) -> None:
    """ndjson() posts the JSON body and decodes AI Computer lines by default."""
    stream = ndjson(f"{base}/stream", json={"code": "1"}, headers={"X-Key": "k"})
    events = await read(stream)
    assert kinds(events) == EXPECTED
    assert service.calls == [Call("POST", "/stream", None, {"code": "1"})]


async def test_ndjson_sends_headers(service: Service, base: str) -> None:
    """Extra headers go with the request."""
    await read(ndjson(f"{base}/stream", headers={"Authorization": "Bearer h"}))
    assert service.calls[0].authorization == "Bearer h"


async def test_ndjson_get(service: Service, base: str) -> None:
    """``method="GET"`` sends a GET without a body."""
    await read(ndjson(f"{base}/stream", method="get"))
    assert service.calls == [Call("GET", "/stream", None, None)]


async def test_ndjson_is_reiterable(service: Service, base: str) -> None:
    """Each iteration sends the request again; runs differ unless given."""
    stream = ndjson(f"{base}/stream")
    first, second = await read(stream), await read(stream)
    assert len(service.calls) == 2
    assert first[0].run != second[0].run
    fixed = ndjson(f"{base}/stream", run="r")
    assert {e.run for e in await read(fixed)} == {"r"}


async def test_ndjson_break_closes_the_connection(service: Service, base: str) -> None:
    """Leaving the iteration early closes the connection: the server sees it go."""
    gone = asyncio.Event()

    async def script(response: web.StreamResponse) -> None:
        await response.write(BODY[0])
        try:
            for _ in range(200):
                await asyncio.sleep(0.01)
                await response.write(b"\n")  # blank lines, skipped by the client
        # The test server cancels a handler whose client has gone; a write
        # after the client went fails.
        except (ConnectionError, asyncio.CancelledError):
            gone.set()
            raise

    service.script = script
    async with ndjson(f"{base}/stream").stream() as streamer:
        async for event in streamer:
            if event.type == "stdout":
                break
    await asyncio.wait_for(gone.wait(), 2)


async def test_ndjson_status_error(service: Service, base: str) -> None:
    """A non-2xx answer raises HTTPError before any event."""
    with pytest.raises(HTTPError) as info:
        await read(ndjson(f"{base}/nowhere"))
    assert info.value.status == 404
    assert info.value.url.endswith("/nowhere")


async def test_ndjson_large_line(service: Service, base: str) -> None:
    """A 300 KiB single line arrives whole."""
    text = "0123456789abcdef" * (300 * 1024 // 16)
    line = msgspec.json.encode({"type": "stdout", "data": text}) + b"\n"
    service.chunks = [line[i : i + 10_000] for i in range(0, len(line), 10_000)]
    service.chunks.append(BODY[-1])
    events = await read(ndjson(f"{base}/stream"))
    assert [e.type for e in events] == ["started", "stdout", "completed"]
    assert events[1].data == text


async def test_ndjson_split_mid_line_and_mid_character(
    service: Service, base: str
) -> None:
    """A line cut mid-line and mid-UTF-8 character arrives whole."""

    async def script(response: web.StreamResponse) -> None:
        line = '{"type": "stdout", "data": "café €"}\n'.encode()
        cut = line.index("€".encode()) + 1
        await response.write(b'{"type": "stdout", "data": "first"}\n' + line[:cut])
        await service.hold()  # until the client has taken the first chunk
        await response.write(line[cut:] + b"plain \xc3")
        await response.write(b"\xa9t\r\n" + BODY[-1])

    service.script = script
    events = []
    async with ndjson(f"{base}/stream").stream() as streamer:
        async for event in streamer:
            events.append(event)
            if event.data == "first":
                service.gate.set()
    assert kinds(events) == [
        ("started", ""),
        ("stdout", "first"),
        ("stdout", "café €"),
        ("stdout", "plain ét"),
        ("completed", ""),
    ]


async def test_ndjson_line_too_long(service: Service, base: str) -> None:
    """A line over ``max_line`` ends the stream as closed before complete."""
    service.chunks = [b"x" * 2000 + b"\n", *BODY]
    with pytest.raises(StreamClosedError, match="longer than 1000") as info:
        await read(ndjson(f"{base}/stream", max_line=1000))
    assert isinstance(info.value.__cause__, LineTooLongError)
    events = await read(ndjson(f"{base}/stream", max_line=1000, on_close="event"))
    assert [e.type for e in events] == ["started", "error", "completed"]


async def test_ndjson_timeout_mid_body(service: Service, base: str) -> None:
    """A total timeout reached mid-body ends the stream as closed before complete."""

    async def script(response: web.StreamResponse) -> None:
        await response.write(BODY[0])
        await service.hold()

    service.script = script
    with pytest.raises(StreamClosedError, match="Timeout"):
        await read(ndjson(f"{base}/stream", timeout=0.2))


async def test_ndjson_e2b(service: Service, base: str) -> None:
    """The E2B dialect: nanosecond timestamps, results, end_of_execution."""
    service.chunks = [
        b'{"type":"stdout","text":"hi\\n","timestamp":1700000000250000000}\n',
        b'{"type":"result","text":"2","is_main_result":true}\n',
        b'{"type":"end_of_execution"}\n',
    ]
    events = await read(ndjson(f"{base}/stream", json={"code": "1+1"}, dialect="e2b"))
    assert kinds(events) == [
        ("started", ""),
        ("stdout", "hi\n"),
        ("result", "2"),
        ("completed", ""),
    ]
    assert events[1].timestamp == 1700000000.25
    assert events[2]["is_main_result"] is True
    assert events[3]["success"] is True


async def test_ndjson_eventkit(service: Service, base: str) -> None:
    """The eventkit dialect keeps the events as sent, with no synthetic started."""
    sent = [
        Event(type="started", timestamp=1.0, sequence=0, run="a"),
        Event(type="stdout", data="x", timestamp=2.0, sequence=1, run="a"),
        Event(type="completed", timestamp=3.0, sequence=2, run="a"),
    ]
    service.chunks = [b"".join(jsonl.encode(event) for event in sent)]
    events = await read(ndjson(f"{base}/stream", dialect="eventkit", method="GET"))
    assert events == sent


async def test_ndjson_eventkit_unfinished(service: Service, base: str) -> None:
    """An eventkit body ending with a run open is closed before complete."""
    service.chunks = [jsonl.encode(Event(type="started", sequence=0, run="a"))]
    with pytest.raises(StreamClosedError):
        await read(ndjson(f"{base}/stream", dialect="eventkit"))
    events = await read(ndjson(f"{base}/stream", dialect="eventkit", on_close="event"))
    assert [(e.type, e.sequence, e.run) for e in events] == [
        ("started", 0, "a"),
        ("error", 1, "a"),
        ("completed", 2, "a"),
    ]


# ndjson(): a server that drops the connection


@contextlib.asynccontextmanager
async def raw_server(reply: bytes) -> AsyncIterator[str]:
    """Serve ``reply`` as raw bytes to each request, then close; yield the URL."""

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        for field in head.split(b"\r\n"):
            name, _, value = field.partition(b":")
            if name.strip().lower() == b"content-length":
                await reader.readexactly(int(value))
        writer.write(reply)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/stream"


def chunked(*parts: bytes) -> bytes:
    """Return ``parts`` in HTTP chunked encoding, without the final chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts)


DROPPED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n" + chunked(BODY[0] + b'{"type": "stdout", "da')
)


async def test_connection_dropped_mid_body() -> None:
    """A connection lost mid-body raises StreamClosedError naming the error."""
    async with raw_server(DROPPED) as url:
        seen: list[Event] = []
        with pytest.raises(StreamClosedError, match="ClientPayloadError") as info:
            await read_into(ndjson(url), seen)
    assert kinds(seen) == EXPECTED[:2]
    assert isinstance(info.value.__cause__, aiohttp.ClientPayloadError)
    assert "unfinished line lost" in info.value.reason


async def test_connection_dropped_mid_body_as_events() -> None:
    """With ``on_close="event"`` a lost connection ends the run with its reason."""
    async with raw_server(DROPPED) as url:
        events = await read(ndjson(url, on_close="event"))
    assert [e.type for e in events] == ["started", "stdout", "error", "completed"]
    assert "ClientPayloadError" in events[2].data
    assert events[2]["code"] == "closed_before_complete"


async def test_body_ending_without_newline() -> None:
    """A close-delimited body's last line counts even without a newline."""
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"".join(BODY).rstrip()
    async with raw_server(reply) as url:
        assert kinds(await read(ndjson(url))) == EXPECTED


async def test_error_body_lost() -> None:
    """An error answer whose body is cut short still raises HTTPError."""
    reply = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 100\r\n\r\nshort"
    async with raw_server(reply) as url:
        with pytest.raises(HTTPError) as info:
            await read(ndjson(url))
    assert (info.value.status, info.value.body) == (502, "")


async def test_connection_refused() -> None:
    """A refused connection raises aiohttp's error before any event."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(aiohttp.ClientConnectionError):
        await read(ndjson(f"http://127.0.0.1:{port}/stream"))


# Arguments


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dialect": "hopx"},
        {"on_close": "ignore"},
        {"timeout": 0},
        {"timeout": -1.0},
        {"max_line": 0},
        {"method": "PUT"},
        {"method": "GET", "json": {"a": 1}},
    ],
)
def test_ndjson_arguments(kwargs: dict[str, Any]) -> None:
    """Invalid arguments raise ValueError when the source is made."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ndjson("http://127.0.0.1:1/", **kwargs)
