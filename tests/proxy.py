"""A TCP proxy on 127.0.0.1 that tests can cut, as a network does.

:class:`CuttingProxy` forwards every connection to a target address, byte for
byte, and :meth:`CuttingProxy.cut` drops every connection open at once (both
sides reset, no close frame, no FIN): the client sees a WebSocket lost with
1006, the server a connection reset. Connections made after a cut are
forwarded as before, unless :meth:`CuttingProxy.block` made the proxy reset
every new connection (a link still down) until :meth:`CuttingProxy.unblock`.
``cut_after(n)`` arms a cut for when ``n`` more bytes went from the server to
the client, to cut in the middle of a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["CuttingProxy"]


class CuttingProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; cuts on demand.

    Attributes:
        port: Where it listens, once entered.
        connections: Connections accepted so far.
        cuts: Cuts made so far.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._armed: int | None = None
        self._blocked = False
        self.port = 0
        self.connections = 0
        self.cuts = 0
        self.cut_done = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, path: str = "") -> str:
        """Return ``ws://127.0.0.1:PORT`` with ``path``."""
        return f"ws://127.0.0.1:{self.port}{path}"

    def cut(self) -> None:
        """Reset every open connection, both sides, at once."""
        self.cuts += 1
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()
        self.cut_done.set()

    def block(self) -> None:
        """Reset every new connection at once, until :meth:`unblock`."""
        self._blocked = True

    def unblock(self) -> None:
        """Forward new connections again."""
        self._blocked = False

    def cut_after(self, count: int) -> None:
        """Cut once ``count`` more bytes went from the server to the client."""
        self.cut_done.clear()
        self._armed = count

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        if self._blocked:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            _reset(writer)
            return
        self._writers |= {writer, up_writer}
        pumps = {
            asyncio.create_task(self._pump(reader, up_writer, downstream=False)),
            asyncio.create_task(self._pump(up_reader, writer, downstream=True)),
        }
        self._tasks |= pumps
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks -= pumps
            for side in (writer, up_writer):
                if side in self._writers:
                    self._writers.discard(side)
                    side.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        downstream: bool,
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if downstream and self._armed is not None:
                    if len(data) >= self._armed:
                        # Forward up to the cut, then cut: mid-burst.
                        writer.write(data[: self._armed])
                        self._armed = None
                        self.cut()
                        return
                    self._armed -= len(data)
                writer.write(data)
                await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped link does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    writer.transport.abort()
