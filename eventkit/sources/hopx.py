"""A source running code on a HOPX agent over its ``/execute/stream`` WebSocket.

Each iteration of the stream opens a connection, sends one ``execute``
message, yields ``started``, then one event per message the agent sends, and
ends after ``completed`` by closing the connection with code 1000. The wire
format and how it maps onto events are in :mod:`eventkit.protocol.hopx`.

Failure behaviour:

- **Handshake.** A refused connection raises :exc:`OSError`
  (:exc:`ConnectionRefusedError`), a TLS certificate that is not trusted
  :exc:`ssl.SSLCertVerificationError` (pass ``ssl`` to trust an agent's own),
  an HTTP answer other than 101 (401 for a
  bad token, 404 for a wrong path) raises
  :exc:`websockets.exceptions.InvalidStatus` (its ``response.status_code``
  tells which), any other failed upgrade another
  :exc:`websockets.exceptions.InvalidHandshake`, and no answer within
  ``open_timeout`` seconds raises :exc:`TimeoutError`. They are websockets'
  own exceptions, unwrapped, so that callers can tell them apart; each comes
  before any event.
- **Close before ``complete``.** Whatever the close code (1000 and 1011
  alike) and also when the connection is lost without a close frame (1006),
  the run's outcome is unknown. ``on_close="raise"`` (the default) raises
  :exc:`~eventkit.exceptions.StreamClosedError` with the code and reason;
  ``on_close="event"`` yields an ``error`` event (``code``
  ``"closed_before_complete"``, ``close_code``, ``reason``) and then
  ``completed`` with ``success`` False, and ends normally. The official SDK
  ends quietly instead, which hides the failure.
- **A message over** ``max_size``. websockets closes the connection with
  1009 ("message too big"); that is a close before ``complete`` as above,
  with code 1009 and a reason naming the limit.
- **Invalid messages** (not JSON, not an object, invalid UTF-8) become
  ``error`` events with ``code`` ``"invalid_frame"`` and the stream goes on;
  empty ones are skipped.
- **Silence.** There is no read timeout: a server that keeps the connection
  open and answers pings but sends nothing keeps the stream waiting (the run
  may be long). websockets' keepalive (a ping every 20 s, 20 s to answer)
  ends a dead connection, as a close with 1011. Put a deadline on the whole
  run with ``aiostream.pipe.timeout`` or :func:`asyncio.timeout` if needed.
- **Reconnecting.** Without ``reconnect``, nothing reconnects: a new
  connection would need a new ``execute`` message, which would run the code
  a second time. With ``reconnect=True`` the source asks for a resumable
  execution (an eventkit extension, see :mod:`eventkit.protocol.hopx`): on a
  connection lost mid-run (close 1001, 1006, 1011, 1012, 1014, or none) it
  connects again (at once, then after ``reconnect_backoff`` seconds,
  doubling) and resumes after the last frame it received, so the code runs
  once and every event comes once, in order. Frames the server no longer
  holds become one ``gap`` event whose range is exactly the events lost.
  ``max_reconnects`` attempts in a row without a new frame received, or a server
  without the extension (a HOPX agent), end the run as a close before
  ``complete`` (above), with the first cut's code. Iterating the stream
  again starts a new run, on purpose.
- **Early stop.** When the consumer stops iterating (``break``, an error, a
  cancellation), the connection is closed with 1000, the only "cancel" a
  HOPX agent understands.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from typing import TYPE_CHECKING, Any, Final

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.frames import BINARY, TEXT

from eventkit.exceptions import OnClose, StreamClosedError
from eventkit.protocol.hopx import (
    Buffer,
    HopxDecoder,
    agent_url,
    execute_message,
    resume_message,
)
from eventkit.stats import source_stats
from eventkit.streams import EventStream, at_hand, one_by_one

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping
    from ssl import SSLContext

    from websockets.asyncio.client import ClientConnection
    from websockets.frames import Frame

    from eventkit.events import Event
    from eventkit.stats import SourceStats

__all__ = ["websocket"]

#: The most messages decoded into one batch.
_BATCH_FRAMES: Final = 512
#: Close codes with a name of their own in the errors.
_MESSAGE_TOO_BIG: Final = 1009
_ABNORMAL_CLOSURE: Final = 1006
#: Close codes of a connection lost rather than ended: going away, abnormal
#: closure, internal error, service restart, bad gateway. A resumable
#: execution is resumed after them.
_LOST: Final = frozenset({1001, 1006, 1011, 1012, 1014})
#: The longest wait between two reconnection attempts, in seconds.
_MAX_BACKOFF: Final = 10.0


class _WebSocketSource:
    """Re-iterable: each ``__aiter__`` is a new connection and a new run."""

    __slots__ = (
        "_compression",
        "_headers",
        "_max_size",
        "_message",
        "_on_close",
        "_open_timeout",
        "_ping",
        "_read_size",
        "_reconnect",
        "_run",
        "_ssl",
        "_url",
    )

    def __init__(
        self,
        url: str,
        message: str,
        *,
        headers: dict[str, str] | None,
        run: str | None,
        max_size: int,
        open_timeout: float,
        ping: tuple[float | None, float | None],
        compression: str | None,
        on_close: OnClose,
        reconnect: tuple[int, float] | None,
        read_size: int,
        ssl: SSLContext | None,
    ) -> None:
        self._url = url
        self._message = message
        self._headers = headers
        self._run = run
        self._max_size = max_size
        self._open_timeout = open_timeout
        self._ping = ping
        self._compression = compression
        self._on_close = on_close
        # (max_reconnects, reconnect_backoff), or None for no reconnecting.
        self._reconnect = reconnect
        self._read_size = read_size
        self._ssl = ssl

    def __aiter__(self) -> AsyncIterator[Event]:
        return one_by_one(self.batches())

    async def batches(self) -> AsyncIterator[list[Event]]:
        """Run the code once; yield the events of every message at hand, in order."""
        async with contextlib.aclosing(self.takes()) as takes:  # type: ignore[type-var]
            async for take in takes:
                batch = take()
                if batch:
                    yield batch

    async def takes(self) -> AsyncIterator[Callable[[], list[Event]]]:
        """Run the code once; yield a take each time a message is at hand.

        A take decodes, when called, every message received by then (up to
        512): a consumer that waits before it calls holds the messages as
        websockets received them, never decoded. Each take is called once,
        before the next is asked for.
        """
        stats = source_stats("websocket")
        decoder = HopxDecoder(self._run, resumable=self._reconnect is not None)
        receive_all = decoder.receive_all
        ending: list[Event] = []
        ws = await self._connect()
        stats.connections += 1
        stats.open_connections += 1
        # Not ``async with ws``, which closes with 1011 ("internal error")
        # whenever the block ends by an exception, a consumer's break
        # (GeneratorExit) and a cancellation included. Stopping early is a
        # normal close (1000), as with the SDK, and the only cancel a HOPX
        # agent understands.
        try:
            try:
                await ws.send(self._message)
            except ConnectionClosed as exc:
                ending = self._ending(decoder, exc, stats)
            else:
                yield at_hand(decoder.start())
                # Reconnections in a row without progress (a new frame)
                # between, and the last frame received at the last cut.
                attempts = 0
                mark = decoder.server_sequence
                while True:
                    # decode=False hands text messages over as UTF-8 bytes,
                    # which msgspec reads directly: no str is made.
                    recv = ws.recv
                    take_ready = _ready_messages(ws)
                    closed: ConnectionClosed | None = None
                    try:
                        first = await recv(False)
                    except ConnectionClosed as exc:
                        closed = exc
                    else:
                        yield functools.partial(
                            _decode_at_hand, first, take_ready, receive_all, stats
                        )
                        if decoder.server_sequence != mark:
                            attempts, mark = 0, decoder.server_sequence
                        if decoder.finished:
                            return
                    if closed is not None:
                        resumed = await self._resume(decoder, closed, attempts)
                        if resumed is None:
                            ending = self._ending(decoder, closed, stats)
                            break
                        attempts += 1
                        stats.reconnects += 1
                        # The lost connection is closed in the background
                        # of nothing: it is gone; the new one is ours.
                        await ws.close()
                        ws = resumed
        finally:
            try:
                await ws.close()
            finally:
                # Once, however the stream ends: the close may be cancelled.
                stats.open_connections -= 1
                stats.invalid_frames += decoder.invalid_frames
        # Yielded once the connection is closed, not while it lingers.
        if ending:
            yield at_hand(ending)

    async def _connect(self) -> ClientConnection:
        # websockets refuses ssl=None for wss://: the default applies.
        tls: dict[str, Any] = {} if self._ssl is None else {"ssl": self._ssl}
        ws = await connect(
            self._url,
            additional_headers=self._headers,
            compression=self._compression,
            max_size=self._max_size,
            open_timeout=self._open_timeout,
            ping_interval=self._ping[0],
            ping_timeout=self._ping[1],
            **tls,
        )
        # asyncio's transports read up to 256 KiB at a time, and websockets
        # parses a whole read at once.
        _bound_reads(ws.transport, self._read_size)
        return ws

    async def _resume(
        self, decoder: HopxDecoder, closed: ConnectionClosed, attempts: int
    ) -> ClientConnection | None:
        """Connect again and resume the execution after its last frame received.

        Returns the new connection, the resume message sent on it; None when
        the run cannot be resumed: not asked for, not offered by the server,
        a close that was no loss (1000, 1008, 1009...), or every attempt
        failed.
        """
        if (
            self._reconnect is None
            or decoder.execution_id is None
            or _close_of(closed, self._max_size)[0] not in _LOST
        ):
            return None
        most, backoff = self._reconnect
        message = resume_message(decoder.execution_id, decoder.server_sequence)
        while attempts < most:
            if attempts:
                # At once the first time: a cut is usually a moment's.
                await asyncio.sleep(min(backoff * 2 ** (attempts - 1), _MAX_BACKOFF))
            attempts += 1
            try:
                ws = await self._connect()
            except (OSError, TimeoutError, InvalidHandshake):
                continue
            try:
                await ws.send(message)
            except ConnectionClosed:
                continue
            return ws
        return None

    def _ending(
        self, decoder: HopxDecoder, closed: ConnectionClosed, stats: SourceStats
    ) -> list[Event]:
        """Raise, or return the events that end a run closed before ``complete``."""
        stats.closed_before_complete += 1
        code, reason = _close_of(closed, self._max_size)
        if self._on_close == "raise":
            raise StreamClosedError(code, reason) from closed
        return decoder.abort(reason, code)


def _bound_reads(transport: Any, size: int) -> None:
    """Have asyncio's ``transport`` hand websockets at most about ``size`` bytes a read.

    A plain socket transport reads up to its ``max_size``. A TLS transport
    reads the socket into its protocol's buffer (``_ssl_buffer``, 256 KiB,
    whatever ``max_size`` says once allocated), keeps reading it while
    websockets is paused up to its read buffer's high-water mark (256 KiB),
    then hands over all it decrypted at once: its ``max_size``, its buffer
    and the mark are all set to ``size``. Where these attributes are
    missing (another event loop, such as uvloop, or another Python), the
    transport keeps its own sizes (``tests/sources/test_hopx.py`` fails
    first).
    """
    if hasattr(transport, "max_size"):
        transport.max_size = size
        return
    tls: Any = getattr(transport, "_ssl_protocol", None)
    if not isinstance(getattr(tls, "_ssl_buffer", None), bytearray):
        return
    tls.max_size = size
    tls._ssl_buffer = bytearray(size)
    tls._ssl_buffer_view = memoryview(tls._ssl_buffer)
    transport.set_read_buffer_limits(high=size)


def _ready_messages(
    ws: ClientConnection,
) -> Callable[[int], list[Buffer]]:
    """Return what takes up to N messages ``ws`` holds received, without waiting.

    ``recv()`` costs about a microsecond a message, as much as decoding it:
    the messages already received are taken from websockets' message
    assembler at once instead, flow control included: the UTF-8 bytes of
    each text message, in the bytearray websockets read them into, where
    ``recv(decode=False)`` would copy them to bytes one by one. Only whole
    messages are taken: one in fragments stops the taking, and ``recv()``
    reassembles it. Should a version of websockets keep its frames
    elsewhere, nothing is taken: every message is then ``recv()``'s
    (``tests/sources/test_hopx.py`` fails first).
    """
    assembler = getattr(ws, "recv_messages", None)
    queue = getattr(getattr(assembler, "frames", None), "queue", None)
    resume = getattr(assembler, "maybe_resume", None)
    if not isinstance(queue, collections.deque) or not callable(resume):
        return _nothing_ready
    frames: collections.deque[Frame] = queue

    def take(most: int) -> list[Buffer]:
        taken: list[Buffer] = []
        keep = taken.append
        popleft = frames.popleft
        for _ in range(min(most, len(frames))):
            frame = popleft()
            opcode = frame.opcode
            # Compared by identity: an Enum's hash is a Python call.
            if not frame.fin or (opcode is not TEXT and opcode is not BINARY):
                # A message in fragments: recv() puts it together.
                frames.appendleft(frame)
                break
            keep(frame.data)
        if taken:
            resume()
        return taken

    return take


def _decode_at_hand(
    first: Buffer,
    take_ready: Callable[[int], list[Buffer]],
    receive_all: Callable[[list[Buffer]], list[Event]],
    stats: SourceStats,
) -> list[Event]:
    """Decode ``first`` and every message received since, without waiting.

    Decoded together: one trip through the pipeline.
    """
    received = take_ready(_BATCH_FRAMES - 1)
    received.insert(0, first)
    stats.frames += len(received)
    return receive_all(received)


def _nothing_ready(most: int) -> list[Buffer]:
    return []


def _close_of(closed: ConnectionClosed, max_size: int) -> tuple[int, str]:
    """Return the close code and reason that ended a connection early."""
    # The side that closed first decides: the server's code when it closed,
    # ours when we did (1009 for an oversized message, 1011 for a keepalive
    # timeout, 1002 for a protocol error).
    frame = closed.rcvd
    if frame is None or (closed.sent is not None and not closed.rcvd_then_sent):
        frame = closed.sent
    if frame is None:
        return _ABNORMAL_CLOSURE, "connection lost without a close frame"
    code, reason = int(frame.code), frame.reason
    if code == _MESSAGE_TOO_BIG:
        detail = f" ({reason})" if reason else ""
        reason = f"a message exceeded max_size={max_size} bytes{detail}"
    return code, reason


def websocket(
    url: str,
    code: str,
    *,
    language: str = "python",
    timeout: int = 60,
    env: Mapping[str, str] | None = None,
    workdir: str | None = None,
    token: str | None = None,
    run: str | None = None,
    max_size: int = 16 * 2**20,
    open_timeout: float = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    compression: str | None = "deflate",
    on_close: OnClose = "raise",
    reconnect: bool = False,
    max_reconnects: int = 5,
    reconnect_backoff: float = 0.2,
    read_size: int = 48 * 1024,
    ssl: SSLContext | None = None,
) -> EventStream:
    """Return a stream of the events of running ``code`` on a HOPX agent.

    Each iteration connects to ``url``, sends the ``execute`` message,
    yields ``started`` right after sending it, then the events the agent's
    messages make (see :class:`~eventkit.protocol.hopx.HopxDecoder`), and
    ends after ``completed``. Iterating again runs the code again, on a new
    connection. The module docstring lists what happens on failures.

    Example::

        stream = eventkit.sources.websocket(
            sandbox.public_host, "print('hi')", token=jwt, compression=None
        )
        await eventkit.run(stream, eventkit.pipe.only("stdout"), sink=sink)

    Args:
        url: The agent: ``https://host[:port]`` (its ``public_host``; the
            path is dropped, as the SDK does), ``wss://host[:port]``, or the
            full ``wss://host[:port]/execute/stream``.
        code: The program to run.
        language: ``python``, ``javascript``, ``bash``, ``go``, ...
        timeout: Seconds the agent lets the program run (sent to the agent;
            the client enforces nothing).
        env: Environment variables for the program.
        workdir: Its working directory; the agent's default when None.
        token: The sandbox's JWT, sent as ``Authorization: Bearer <token>``.
        run: The run id of the events; a fresh one per iteration when None.
        max_size: Largest message accepted, in bytes; a larger one ends the
            run with close code 1009. The SDK keeps websockets' 1 MiB.
        open_timeout: Seconds allowed for the TCP connection and handshake.
        ping_interval: Seconds between keepalive pings; None for none.
        ping_timeout: Seconds a ping may go unanswered before the
            connection counts as lost (closed with 1011); None for no limit.
            The answer is read only as fast as the consumer takes the
            stream: a consumer that falls this far behind a busy stream
            loses it, so raise it (or turn pings off) for consumers that
            may lag that long.
        compression: ``"deflate"`` offers permessage-deflate, like the SDK,
            and works with any server; None turns it off, which the agent
            must accept. Uncompressed streams are ~2.8x faster per message
            on loopback (69k against 190k messages/s measured), and
            compression pays only on slow links.
        on_close: What a close before ``complete`` does: ``"raise"``
            :exc:`~eventkit.exceptions.StreamClosedError`, or ``"event"``:
            end the run with an ``error`` and a failed ``completed`` event.
        reconnect: Ask for a resumable execution and resume it after a lost
            connection (see the module docstring); the server must be an
            ``eventkit serve`` for it to take effect, other agents run the
            code as usual and a cut ends the run as without it.
        max_reconnects: Reconnection attempts in a row (without a new
            frame received between them) before giving up.
        reconnect_backoff: Seconds before the second attempt; doubled for
            each further one, up to 10 s. The first is at once.
        read_size: Most bytes read from the connection at a time.
            websockets parses a whole read into frames at once and holds
            them until they are read, so this bounds what a stream holds
            in memory while its consumer is busy elsewhere, as when
            following many streams: asyncio's own 256 KiB held a whole
            stream at 1,000 streams in ``make bench fanin``, 130-200 KiB a
            stream above bare websockets clients; with 48 KiB, less than
            bare clients, and a single busy stream is as fast (the TCP
            window is not touched). Applies on asyncio's event loops, to
            ``ws://`` and ``wss://``; other loops (uvloop) keep their own
            read sizes.
        ssl: The TLS context of a ``wss://`` (or ``https://``) agent, to
            trust a certificate of its own; None for the system's trusted
            certificates.

    Returns:
        A re-iterable stream; nothing connects until it is iterated.

    Raises:
        ValueError: At once, for a URL scheme other than ws, wss, http or
            https, an unknown ``on_close`` or ``compression``, or a
            ``timeout``, ``max_size`` or ``open_timeout`` that is not
            positive, ``max_reconnects`` below 1, a negative
            ``reconnect_backoff``, a ``read_size`` that is not positive,
            or ``ssl`` with a ``ws://`` or ``http://`` URL.
    """
    if on_close not in ("raise", "event"):
        raise ValueError(f"on_close must be 'raise' or 'event', not {on_close!r}")
    if compression not in ("deflate", None):
        raise ValueError(f"compression must be 'deflate' or None, not {compression!r}")
    _check_positive("timeout", timeout)
    _check_positive("max_size", max_size)
    _check_positive("open_timeout", open_timeout)
    for name, value in (
        ("ping_interval", ping_interval),
        ("ping_timeout", ping_timeout),
    ):
        if value is not None:
            _check_positive(name, value)
    if max_reconnects < 1:
        raise ValueError(f"max_reconnects must be at least 1, not {max_reconnects!r}")
    if not reconnect_backoff >= 0:
        raise ValueError(
            f"reconnect_backoff must be 0 or more, not {reconnect_backoff!r}"
        )
    _check_positive("read_size", read_size)
    address = agent_url(url)
    if ssl is not None and not address.startswith("wss://"):
        raise ValueError(f"ssl applies to wss:// and https:// URLs, not {url!r}")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    source = _WebSocketSource(
        address,
        execute_message(
            code,
            language=language,
            timeout=timeout,
            env=env,
            workdir=workdir,
            resumable=reconnect,
        ),
        headers=headers,
        run=run,
        max_size=max_size,
        open_timeout=open_timeout,
        ping=(ping_interval, ping_timeout),
        compression=compression,
        on_close=on_close,
        reconnect=(max_reconnects, reconnect_backoff) if reconnect else None,
        read_size=read_size,
        ssl=ssl,
    )
    return EventStream(source, ())


def _check_positive(name: str, value: Any) -> None:
    # Also refuses NaN, which compares false with everything.
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {value!r}")
