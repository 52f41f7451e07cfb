"""Tests for :mod:`eventkit.sources.hopx`, against scripted local servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

import eventkit
from eventkit import sinks
from eventkit.driver import takes
from eventkit.exceptions import StreamClosedError
from eventkit.protocol.hopx import execute_message
from eventkit.sources import hopx as hopx_source
from eventkit.sources.hopx import websocket
from eventkit.stats import source_stats
from tests.polling import until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from websockets.asyncio.server import ServerConnection
    from websockets.datastructures import Headers
    from websockets.http11 import Request, Response

    from eventkit.events import Event
    from eventkit.streams import EventStream

TS = "2025-11-20T10:30:00.123456789Z"


def stdout(data: str) -> str:
    """Return a HOPX stdout message."""
    return json.dumps({"type": "stdout", "data": data, "timestamp": TS})


RESULT = '{"type": "result", "exit_code": 0, "execution_time": 0.5}'
COMPLETE = '{"type": "complete", "success": true}'


@dataclass(frozen=True)
class Sleep:
    """Server action: pause."""

    seconds: float


@dataclass(frozen=True)
class Close:
    """Server action: close with this code and reason."""

    code: int
    reason: str = ""


@dataclass(frozen=True)
class Abort:
    """Server action: drop the TCP connection without a close frame."""


@dataclass(frozen=True)
class Gate:
    """Server action: wait until the test opens the gate."""

    opened: asyncio.Event


@dataclass(frozen=True)
class Fragments:
    """Server action: send one text message in these fragments."""

    parts: list[str]


Action = str | bytes | Sleep | Close | Abort | Gate | Fragments


@dataclass
class Server:
    """A scripted HOPX agent and what it saw."""

    url: str = ""
    received: list[str | bytes] = field(default_factory=list)
    headers: list[Headers] = field(default_factory=list)
    #: The close code the client sent, per connection (1006: none).
    close_codes: list[int | None] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_ended(self) -> None:
        """Wait until a connection has ended on the server's side."""
        async with asyncio.timeout(5):
            await self.ended.wait()


class Serve(Protocol):
    """The ``serve_script`` fixture: start a server playing ``script``."""

    async def __call__(
        self, script: Sequence[Action], *, receive: bool = True, **options: Any
    ) -> Server:
        """Start it; ``receive=False`` skips waiting for the execute message."""
        ...


@pytest.fixture
async def serve_script() -> AsyncIterator[Serve]:
    """Start servers on 127.0.0.1 that play a script to each connection."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            script: Sequence[Action], *, receive: bool = True, **options: Any
        ) -> Server:
            seen = Server()

            async def handler(ws: ServerConnection) -> None:
                seen.headers.append(ws.request.headers)  # type: ignore[union-attr]
                with contextlib.suppress(ConnectionClosed):
                    if receive:
                        seen.received.append(await ws.recv())
                    await play(ws, script)
                await ws.wait_closed()
                seen.close_codes.append(ws.close_code)
                seen.ended.set()

            server = await stack.enter_async_context(
                serve(handler, "127.0.0.1", 0, **options)
            )
            port = server.sockets[0].getsockname()[1]
            seen.url = f"ws://127.0.0.1:{port}"
            return seen

        yield start


async def play(ws: ServerConnection, script: Sequence[Action]) -> None:
    """Perform the script's actions on one connection."""
    for action in script:
        if isinstance(action, str | bytes):
            await ws.send(action)
        elif isinstance(action, Sleep):
            await asyncio.sleep(action.seconds)
        elif isinstance(action, Fragments):
            await ws.send(iter(action.parts))
        elif isinstance(action, Close):
            await ws.close(action.code, action.reason)
        elif isinstance(action, Gate):
            # Bounded, so that a failed test cannot leave the handler waiting.
            async with asyncio.timeout(5):
                await action.opened.wait()
        else:
            ws.transport.abort()
            return


async def read(stream: EventStream) -> list[Event]:
    """Return every event of ``stream``."""
    async with asyncio.timeout(5), stream.stream() as streamer:
        events = [event async for event in streamer]
    return events


async def read_until_closed(
    stream: EventStream,
) -> tuple[list[Event], StreamClosedError]:
    """Return the events of ``stream`` before it raised StreamClosedError, and it."""
    seen: list[Event] = []

    async def consume() -> None:
        async with asyncio.timeout(5), stream.stream() as streamer:
            async for event in streamer:
                seen.append(event)

    with pytest.raises(StreamClosedError) as info:
        await consume()
    return seen, info.value


def types(events: list[Event]) -> list[str]:
    """Return the types of ``events``."""
    return [event.type for event in events]


async def test_normal_run(serve_script: Serve) -> None:
    """A full run: execute sent as the SDK does, events decoded, closed with 1000."""
    server = await serve_script(
        [stdout("a\n"), stdout("b\n"), RESULT, COMPLETE, stdout("late")]
    )
    stream = websocket(server.url, "print(1)", token="jwt-1", timeout=5, run="r")
    events = await read(stream)
    assert types(events) == ["started", "stdout", "stdout", "result", "completed"]
    assert [e.sequence for e in events] == [0, 1, 2, 3, 4]
    assert {e.run for e in events} == {"r"}
    assert [e.data for e in events[1:3]] == ["a\n", "b\n"]
    assert events[3].attrs == {"exit_code": 0, "execution_time": 0.5}
    assert events[4].attrs == {"success": True}
    assert events[1].timestamp == 1763634600.123457  # .123456789, rounded
    (message,) = server.received
    assert execute_message("print(1)", timeout=5) == message
    assert "env" not in json.loads(message)
    assert server.headers[0]["Authorization"] == "Bearer jwt-1"
    await server.wait_ended()
    assert server.close_codes == [1000]


async def test_env_workdir_language_sent(serve_script: Serve) -> None:
    """Options go into the execute message; no token means no Authorization."""
    server = await serve_script([COMPLETE])
    stream = websocket(
        server.url, "echo $A", language="bash", env={"A": "1"}, workdir="/w"
    )
    await read(stream)
    expected = execute_message("echo $A", language="bash", env={"A": "1"}, workdir="/w")
    assert [expected] == server.received
    assert "Authorization" not in server.headers[0]


async def test_started_comes_before_any_message(serve_script: Serve) -> None:
    """``started`` is yielded once execute is sent, before the agent answers."""
    gate = asyncio.Event()
    server = await serve_script([Gate(gate), stdout("x"), COMPLETE])
    async with asyncio.timeout(5), websocket(server.url, "1").stream() as streamer:
        first = await anext(streamer)
        assert first.type == "started"
        gate.set()
        rest = [event async for event in streamer]
    assert types(rest) == ["stdout", "completed"]


@pytest.mark.parametrize("code", [1000, 1011])
async def test_close_before_complete_raises(serve_script: Serve, code: int) -> None:
    """A close without ``complete``, normal or not, raises with its code."""
    server = await serve_script([stdout("x"), Close(code, "bye")])
    seen, error = await read_until_closed(websocket(server.url, "1"))
    assert types(seen) == ["started", "stdout"]
    assert (error.code, error.reason) == (code, "bye")
    assert f"code {code}" in str(error)
    assert isinstance(error.__cause__, ConnectionClosed)


@pytest.mark.parametrize("code", [1000, 1011])
async def test_close_before_complete_as_events(serve_script: Serve, code: int) -> None:
    """With on_close="event" the run ends in an error and a failed completed."""
    server = await serve_script([stdout("x"), Close(code, "bye")])
    events = await read(websocket(server.url, "1", on_close="event"))
    assert types(events) == ["started", "stdout", "error", "completed"]
    error, completed = events[2:]
    assert error.attrs == {
        "code": "closed_before_complete",
        "close_code": code,
        "reason": "bye",
    }
    assert completed.attrs == {"success": False}
    assert [e.sequence for e in events] == [0, 1, 2, 3]


@pytest.mark.parametrize("on_close", ["raise", "event"])
async def test_close_right_after_handshake(serve_script: Serve, on_close: str) -> None:
    """A server that closes at once, before or after execute arrives, ends the run."""
    server = await serve_script([Close(1011, "busy")], receive=False)
    stream = websocket(server.url, "1", on_close=on_close)  # type: ignore[arg-type]
    if on_close == "raise":
        _, error = await read_until_closed(stream)
        assert (error.code, error.reason) == (1011, "busy")
    else:
        events = await read(stream)
        assert types(events)[-2:] == ["error", "completed"]
        assert events[-2].attrs["close_code"] == 1011


async def test_connection_lost_is_1006(serve_script: Serve) -> None:
    """A connection dropped without a close frame raises with code 1006."""
    server = await serve_script([stdout("x"), Abort()])
    seen, error = await read_until_closed(websocket(server.url, "1"))
    assert types(seen) == ["started", "stdout"]
    assert error.code == 1006


async def test_message_over_max_size_raises_1009(serve_script: Serve) -> None:
    """A message over max_size ends the run with 1009, naming the limit."""
    server = await serve_script([stdout("x"), stdout("y" * 2000), COMPLETE])
    seen, error = await read_until_closed(websocket(server.url, "1", max_size=1024))
    assert types(seen) == ["started", "stdout"]
    assert error.code == 1009
    assert "max_size=1024" in str(error)
    await server.wait_ended()
    assert server.close_codes == [1009]


async def test_message_over_max_size_as_events(serve_script: Serve) -> None:
    """With on_close="event" an oversized message ends the run with 1009 events."""
    server = await serve_script([stdout("y" * 2000), COMPLETE])
    stream = websocket(server.url, "1", max_size=1024, on_close="event")
    events = await read(stream)
    assert types(events) == ["started", "error", "completed"]
    assert events[1].attrs["close_code"] == 1009
    assert "max_size=1024" in events[1].data


async def test_invalid_frames_become_errors(serve_script: Serve) -> None:
    """Garbage makes an invalid_frame error; empty messages are skipped; it goes on."""
    server = await serve_script(["not json", "", "  ", "[1]", stdout("ok"), COMPLETE])
    events = await read(websocket(server.url, "1"))
    assert types(events) == ["started", "error", "error", "stdout", "completed"]
    assert [(e.data, e.attrs) for e in events[1:3]] == [
        ("not json", {"code": "invalid_frame"}),
        ("[1]", {"code": "invalid_frame"}),
    ]
    assert events[3].data == "ok"


async def test_binary_frames(serve_script: Serve) -> None:
    """Binary messages decode as UTF-8 JSON, invalid UTF-8 as an error."""
    server = await serve_script(
        [stdout("é\n").encode(), b"\xff\xfe", RESULT.encode(), COMPLETE.encode()]
    )
    events = await read(websocket(server.url, "1"))
    assert types(events) == ["started", "stdout", "error", "result", "completed"]
    assert events[1].data == "é\n"
    assert events[2].attrs == {"code": "invalid_frame"}


async def test_slow_server_in_order(serve_script: Serve) -> None:
    """Messages 0.05 s apart arrive in order, each as it comes."""
    script: list[Action] = []
    for index in range(5):
        script += [Sleep(0.05), stdout(str(index))]
    server = await serve_script([*script, COMPLETE])
    arrivals: list[tuple[float, str]] = []
    async with asyncio.timeout(5), websocket(server.url, "1").stream() as streamer:
        async for event in streamer:
            if event.type == "stdout":
                arrivals.append((time.monotonic(), event.data))
    assert [data for _, data in arrivals] == ["0", "1", "2", "3", "4"]
    # Yielded as received, not gathered: about 0.2 s from first to last.
    assert arrivals[-1][0] - arrivals[0][0] >= 0.15


async def test_compression_setting(serve_script: Serve) -> None:
    """Deflate is offered by default, like the SDK; compression=None offers none."""
    server = await serve_script([COMPLETE])
    await read(websocket(server.url, "1"))
    await read(websocket(server.url, "1", compression=None))
    offered = [h.get("Sec-WebSocket-Extensions") for h in server.headers]
    assert offered[0] is not None
    assert "permessage-deflate" in offered[0]
    assert offered[1] is None


async def test_reiterating_runs_again(serve_script: Serve) -> None:
    """Each iteration is a new connection and a new run with a fresh id."""
    server = await serve_script([stdout("x"), COMPLETE])
    stream = websocket(server.url, "1")
    first, second = await read(stream), await read(stream)
    assert len(server.received) == 2
    assert types(first) == types(second) == ["started", "stdout", "completed"]
    assert first[0].run != second[0].run


async def test_consumer_break_closes_connection(serve_script: Serve) -> None:
    """Stopping early closes the connection with 1000, which the server sees."""
    server = await serve_script([stdout("1"), stdout("2"), stdout("3")])
    async with asyncio.timeout(5), websocket(server.url, "1").stream() as streamer:
        async for event in streamer:
            if event.type == "stdout":
                break
    await server.wait_ended()
    assert server.close_codes == [1000]


async def test_cancel_closes_connection(serve_script: Serve) -> None:
    """Cancelling a consumer waiting for a message closes the connection."""
    server = await serve_script([stdout("1")])
    got_output = asyncio.Event()

    async def consume() -> None:
        async with websocket(server.url, "1").stream() as streamer:
            async for event in streamer:
                if event.type == "stdout":
                    got_output.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        await got_output.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await server.wait_ended()
    assert server.close_codes == [1000]


async def test_runs_through_eventkit_run(serve_script: Serve) -> None:
    """The source works with eventkit.run and a pipe like any other."""
    server = await serve_script([stdout("a"), RESULT, COMPLETE])
    sink = sinks.collect()
    async with asyncio.timeout(5):
        await eventkit.run(
            websocket(server.url, "1"), eventkit.pipe.only("stdout"), sink=sink
        )
    assert [e.data for e in sink.events] == ["a"]


@pytest.mark.parametrize("status", [HTTPStatus.UNAUTHORIZED, HTTPStatus.NOT_FOUND])
async def test_handshake_refused(serve_script: Serve, status: HTTPStatus) -> None:
    """An HTTP answer other than 101 raises websockets' InvalidStatus."""

    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(status, "no\n")

    server = await serve_script([], process_request=refuse)
    with pytest.raises(InvalidStatus) as info:
        await read(websocket(server.url, "1", token="bad"))
    assert info.value.response.status_code == status


async def test_connection_refused() -> None:
    """Nothing listening: OSError before any event."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError, match="onnect"):
        await read(websocket(f"ws://127.0.0.1:{port}", "1"))


async def test_silent_server_times_out() -> None:
    """A server that accepts but never answers the handshake: TimeoutError."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # hold it open, say nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await read(websocket(f"ws://127.0.0.1:{port}", "1", open_timeout=0.2))
        assert time.monotonic() - start < 1.0
        for writer in writers:
            writer.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"on_close": "ignore"}, "on_close"),
        ({"compression": "zstd"}, "compression"),
        ({"timeout": 0}, "timeout"),
        ({"max_size": 0}, "max_size"),
        ({"max_size": -1}, "max_size"),
        ({"open_timeout": 0.0}, "open_timeout"),
        ({"open_timeout": float("nan")}, "open_timeout"),
        ({"url": "ftp://127.0.0.1/"}, "scheme"),
        ({"read_size": 0}, "read_size"),
        ({"ssl": ssl.create_default_context()}, "ssl"),
    ],
)
def test_invalid_arguments(options: dict[str, Any], message: str) -> None:
    """Nonsense arguments raise ValueError at call time, before any I/O."""
    url = options.pop("url", "ws://127.0.0.1:1")
    with pytest.raises(ValueError, match=message):
        websocket(url, "1", **options)


#: Frames websockets queues before it stops reading (its max_queue).
QUEUED = 16
#: A 129-byte output message, and its frame's size.
MESSAGE = stdout("x" * 50)
FRAME = len(MESSAGE) + 2


@pytest.mark.parametrize(
    ("scheme", "read_size", "least", "most"),
    # More than websockets' queue, at most that and one read (and the frame
    # the read before cut); with 256 KiB reads more than that, up to a full
    # batch. TLS hands over too what it decrypted while websockets was
    # paused, up to its read buffer's high-water mark: one read more.
    [
        ("ws", 4096, QUEUED + 1, QUEUED + 4096 // FRAME + 1),
        ("ws", 256 * 1024, QUEUED + 4096 // FRAME + 2, 512),
        ("wss", 4096, QUEUED + 1, QUEUED + 2 * 4096 // FRAME + 1),
        ("wss", 256 * 1024, QUEUED + 2 * 4096 // FRAME + 2, 512),
    ],
)
async def test_read_size_bounds_what_a_waiting_stream_holds(
    serve_script: Serve,
    request: pytest.FixtureRequest,
    scheme: str,
    read_size: int,
    least: int,
    most: int,
) -> None:
    """A stream its consumer has not read holds about one read of parsed messages.

    websockets reads until it holds more than 16 messages, then stops; what
    it holds is what the next batch takes at once: at most 16 and one read
    (31 of these 129-byte frames for 4 KiB reads), or with asyncio's own
    256 KiB, whatever had come, usually a full batch (512). ``wss://`` too.
    """
    options: dict[str, Any] = {}
    server_options: dict[str, Any] = {}
    if scheme == "wss":
        server_options["ssl"], options["ssl"] = request.getfixturevalue("tls")
    server = await serve_script([MESSAGE] * 2000 + [COMPLETE], **server_options)
    url = server.url.replace("ws://", f"{scheme}://")
    stream = websocket(url, "1", compression=None, read_size=read_size, **options)
    async with contextlib.aclosing(stream.batches()) as batches:
        assert ["started"] == types(await anext(batches))
        await asyncio.sleep(0.3)  # the server sends everything meanwhile
        held = len(await anext(batches))
        sizes = [len(batch) async for batch in batches]
    assert least <= held <= most
    assert 2001 == held + sum(sizes)  # 2,000 outputs and completed


async def test_a_take_decodes_only_when_called(serve_script: Serve) -> None:
    """A take is handed over as a message arrives, and decodes what came by its call.

    What lets a merge leave a stream waiting its turn with its messages as
    websockets received them, never decoded meanwhile.
    """
    stats = source_stats("websocket")
    server = await serve_script([MESSAGE] * 2000 + [COMPLETE])
    stream = websocket(server.url, "1", compression=None)
    async with contextlib.aclosing(takes(stream)) as offered:
        assert ["started"] == types((await anext(offered))())
        take = await anext(offered)
        decoded = stats.frames
        await asyncio.sleep(0.3)  # the server sends everything meanwhile
        assert decoded == stats.frames
        held = take()
        assert decoded + len(held) == stats.frames
        rest = [len(take()) async for take in offered]
    # What websockets held by the call: more than it queues, at most one
    # 48 KiB read more.
    assert QUEUED < len(held) <= QUEUED + 48 * 1024 // FRAME + 1
    assert 2001 == len(held) + sum(rest)


async def test_a_stream_waiting_in_a_merge_holds_nothing_decoded(
    serve_script: Serve,
) -> None:
    """Streams merged decode a message only as the merge hands its event over."""
    stats = source_stats("websocket")
    servers = [await serve_script([MESSAGE] * 1000 + [COMPLETE]) for _ in range(3)]
    streams = [websocket(server.url, "1", compression=None) for server in servers]
    before = stats.frames
    handed = 0
    async with contextlib.aclosing(eventkit.merge(*streams).batches()) as merged:
        async for batch in merged:
            # Every message but the started event's.
            handed += sum(event.type != "started" for event in batch)
            await asyncio.sleep(0.05)  # a slow consumer: the servers run ahead
            assert before + handed == stats.frames
    assert 3003 == handed  # 3 x (1,000 outputs and completed)


@pytest.fixture(scope="module")
def tls(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Return a server's TLS context (a certificate of its own) and a client's."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (Debian package openssl)")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


async def test_a_tls_agent_with_a_certificate_of_its_own(
    serve_script: Serve, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """``ssl`` trusts the agent's certificate; without it the handshake fails first."""
    server_tls, client_tls = tls
    server = await serve_script([stdout("a"), RESULT, COMPLETE], ssl=server_tls)
    url = server.url.replace("ws://", "wss://")
    events = await read(websocket(url, "1", ssl=client_tls))
    assert ["started", "stdout", "result", "completed"] == types(events)
    with pytest.raises(ssl.SSLCertVerificationError):
        await read(websocket(url, "1"))


async def test_messages_at_hand_come_in_one_batch(serve_script: Serve) -> None:
    """Messages already received are decoded together: fewer, bigger batches.

    It relies on websockets keeping received frames in
    ``connection.recv_messages.frames``: this fails if a version moves them.
    """
    server = await serve_script([stdout(str(i)) for i in range(50)] + [COMPLETE])
    stream = websocket(server.url, "1", compression=None)
    async with contextlib.aclosing(stream.batches()) as batches:
        sizes = [len(batch) async for batch in batches]
    assert 52 == sum(sizes)  # started, 50 outputs, completed
    assert len(sizes) < 20


async def test_messages_at_hand_are_taken_whole_and_in_order(
    serve_script: Serve,
) -> None:
    """Received messages are taken at once, up to one in fragments, which recv() reads.

    It relies on websockets keeping received frames in
    ``connection.recv_messages.frames``: this fails if a version moves them.
    """
    fragmented = Fragments([stdout("b")[:10], stdout("b")[10:]])
    server = await serve_script([stdout("a"), fragmented, stdout("c"), COMPLETE])
    async with connect(server.url, compression=None) as ws:
        take = hopx_source._ready_messages(ws)
        assert take is not hopx_source._nothing_ready
        await ws.send("{}")
        frames = ws.recv_messages.frames.queue
        await until(lambda: bool(frames) and frames[-1].data == COMPLETE.encode())
        assert [stdout("a").encode()] == take(10)
        assert [] == take(10)  # b comes in fragments: recv() reads it
        assert stdout("b").encode() == await ws.recv(False)
        assert [stdout("c").encode()] == take(1)
        assert [COMPLETE.encode()] == take(10)
        assert 0 == len(ws.recv_messages.frames)


async def test_a_message_in_fragments_is_read_in_its_place(
    serve_script: Serve,
) -> None:
    """The source reads a message in fragments between whole ones, in order."""
    parts = [stdout("b")[:10], stdout("b")[10:]]
    script = [stdout("a"), Fragments(parts), stdout("c"), COMPLETE]
    server = await serve_script(script)
    events = await read(websocket(server.url, "1", compression=None))
    assert ["a", "b", "c"] == [e.data for e in events if e.type == "stdout"]


# Reconnecting -------------------------------------------------------------


async def test_reconnect_asks_for_a_resumable_execution(serve_script: Serve) -> None:
    """reconnect=True adds "resumable": true to the execute message."""
    server = await serve_script([RESULT, COMPLETE])
    await read(websocket(server.url, "1", reconnect=True))
    assert json.loads(server.received[0])["resumable"] is True


async def test_reconnect_without_the_extension_ends_as_before(
    serve_script: Serve,
) -> None:
    """An agent that names no execution: a lost connection is not resumed."""
    server = await serve_script([stdout("x"), Abort()])
    seen, error = await read_until_closed(websocket(server.url, "1", reconnect=True))
    assert ["started", "stdout"] == types(seen)
    assert 1006 == error.code
    assert 1 == len(server.headers)  # connected once


@pytest.mark.parametrize("code", [1000, 1008, 1003])
async def test_reconnect_only_after_a_lost_connection(
    serve_script: Serve, code: int
) -> None:
    """A close that is the server's decision (1000, 1008, ...) is not resumed."""
    execution = '{"type": "execution", "execution_id": "e1"}'
    server = await serve_script([execution, Close(code, "no")])
    _, error = await read_until_closed(websocket(server.url, "1", reconnect=True))
    assert (code, "no") == (error.code, error.reason)
    assert 1 == len(server.headers)


async def test_reconnect_gives_up_after_max_reconnects(serve_script: Serve) -> None:
    """Every resume lost too: max_reconnects attempts, then the first cut's error."""
    execution = '{"type": "execution", "execution_id": "e1"}'
    server = await serve_script([execution, Abort()])
    stream = websocket(
        server.url, "1", reconnect=True, max_reconnects=3, reconnect_backoff=0.01
    )
    seen, error = await read_until_closed(stream)
    assert ["started"] == types(seen)
    assert 1006 == error.code
    assert 4 == len(server.headers)  # the run, then three attempts
    resumes = [json.loads(message) for message in server.received[1:]]
    assert [{"type": "resume", "execution_id": "e1", "after": -1}] * 3 == resumes


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_reconnects": 0}, "max_reconnects must be at least 1"),
        ({"reconnect_backoff": -1.0}, "reconnect_backoff must be 0 or more"),
    ],
)
def test_invalid_reconnect_settings(options: dict[str, Any], message: str) -> None:
    """Reconnect settings are checked at once."""
    with pytest.raises(ValueError, match=message):
        websocket("ws://127.0.0.1:1", "1", reconnect=True, **options)
