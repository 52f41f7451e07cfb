"""Sending to clients that may stop reading, and answers too big to hold twice.

:func:`send_within` bounds every send the server awaits: a client that
stops reading makes a write wait for room in its socket, and a wait longer
than the server's ``send_timeout`` drops the connection (counted as
``send_timeout`` in :func:`eventkit.stats.server_stats`) and raises
:exc:`SendTimeoutError`, which ends the run as a disconnect does: its
process killed, its slot freed.

:class:`Output` keeps what a non-streaming ``execute`` answers with, capped
*before* it is kept: at most ``cap`` UTF-8 bytes in all, as bytes (never a
list of small strings). :func:`send_json` then writes the answer as UTF-8
JSON a piece at a time, so the text is never held twice, nor escaped to
ASCII (six bytes a character).

Failure behaviour: :func:`send_within` raises :exc:`SendTimeoutError` (a
:exc:`ConnectionError`) on a timeout and lets a client's own disconnect
(:exc:`ConnectionError`) through; nothing else here raises.
"""

from __future__ import annotations

import asyncio
import codecs
from typing import TYPE_CHECKING, Any, Final

import msgspec
from aiohttp import web

from eventkit.exceptions import EventkitError
from eventkit.stats import server_stats

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterator

__all__ = ["Output", "SendTimeoutError", "send_json", "send_within"]

#: Bytes of kept output turned into JSON at a time.
_SLICE: Final = 1 << 20
_encode: Final = msgspec.json.encode


class SendTimeoutError(EventkitError, ConnectionError):
    """A send waited longer than the server's ``send_timeout``: the client is gone."""


async def send_within(
    send: Awaitable[Any], request: web.BaseRequest, seconds: float
) -> None:
    """Await ``send``; past ``seconds`` drop ``request``'s connection.

    Raises:
        SendTimeoutError: If the send did not complete in time; the
            connection is aborted (no close handshake: the client reads
            nothing anyway).
        ConnectionError: If the client went away.
    """
    try:
        async with asyncio.timeout(seconds):
            await send
    except TimeoutError:
        server_stats().abort("send_timeout")
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise SendTimeoutError(
            f"the client read nothing for {seconds:g} s; connection dropped"
        ) from None


class Output:
    """Output kept for one answer: at most ``cap`` UTF-8 bytes over all streams.

    Args:
        cap: The most bytes kept, all streams together.
        streams: The names output is kept under (``"stdout"``, ``"stderr"``;
            or one ``"output"`` for both).

    Attributes:
        truncated: Whether anything was dropped at the cap.
    """

    __slots__ = ("_buffers", "_room", "truncated")

    def __init__(self, cap: int, streams: tuple[str, ...]) -> None:
        self._room = cap
        self._buffers = {name: bytearray() for name in streams}
        self.truncated = False

    @property
    def streams(self) -> tuple[str, ...]:
        """The names output is kept under."""
        return tuple(self._buffers)

    @property
    def size(self) -> int:
        """Bytes kept, all streams together."""
        return sum(len(buffer) for buffer in self._buffers.values())

    def add(self, stream: str, text: str) -> None:
        """Keep ``text`` under ``stream`` while there is room; cut at a character."""
        if not text:
            return
        data = text.encode()
        if len(data) > self._room:
            cut = self._room
            # Never half a character: back off over continuation bytes.
            while cut and data[cut] & 0xC0 == 0x80:
                cut -= 1
            data = data[:cut]
            self.truncated = True
        if data:
            self._buffers[stream] += data
            self._room -= len(data)

    def pieces(self, stream: str) -> Iterator[bytes]:
        """Yield ``stream``'s text as the inside of a JSON string, a slice at a time."""
        buffer = self._buffers[stream]
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        view = memoryview(buffer)
        try:
            for start in range(0, len(buffer), _SLICE):
                text = decoder.decode(view[start : start + _SLICE])
                if text:
                    yield _encode(text)[1:-1]
            text = decoder.decode(b"", final=True)
            if text:
                yield _encode(text)[1:-1]
        finally:
            view.release()

    def text(self, stream: str) -> str:
        """Return ``stream``'s text whole (for tests and small answers)."""
        return self._buffers[stream].decode(errors="replace")


def _json_pieces(fields: dict[str, Any], output: Output) -> Iterator[bytes]:
    """Yield ``fields`` and ``output``'s streams as one JSON object, in pieces."""
    yield _encode(fields)[:-1]  # without its closing brace
    for name in output.streams:
        yield b"," + _encode(name) + b':"'
        yield from output.pieces(name)
        yield b'"'
    yield b"}"


async def send_json(
    request: web.Request,
    fields: dict[str, Any],
    output: Output,
    *,
    send_timeout: float,
    status: int = 200,
) -> web.StreamResponse:
    """Answer ``request`` with ``fields`` plus ``output``'s streams, in pieces.

    ``fields`` must be a non-empty JSON object without the streams' names.

    Raises:
        SendTimeoutError: As :func:`send_within`.
        ConnectionError: If the client went away.
    """
    response = web.StreamResponse(
        status=status, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    await send_within(response.prepare(request), request, send_timeout)
    pending = bytearray()
    for piece in _json_pieces(fields, output):
        pending += piece
        if len(pending) >= _SLICE:
            await send_within(response.write(bytes(pending)), request, send_timeout)
            pending.clear()
    if pending:
        await send_within(response.write(bytes(pending)), request, send_timeout)
    await send_within(response.write_eof(), request, send_timeout)
    return response
