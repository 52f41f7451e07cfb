"""The dashboard's web side: the page, the JSON API and the live stream, on aiohttp.

Routes (documented for users in ``docs/dashboard.md``):

- ``GET /`` and its assets: the page, served from this package (no network
  fetch, so it works offline);
- ``GET /api/runs``: the table (``?state=failed,expired`` filters);
- ``GET /api/runs/{run}``: a run's row and the held events of its log;
- ``GET /api/runs/{run}/events.jsonl``: those events as eventkit JSON Lines;
- ``GET /api/metrics``: throughput and the process's self-metrics;
- ``GET /api/stream``: Server-Sent Events of run updates, and with
  ``?run=ID`` of that run's events.

**Never in the way.** The pipeline only feeds the
:class:`~eventkit.dashboard.board.Board`;
a publisher task (:meth:`DashboardApp.publish_forever`) reads what changed
every ``refresh`` seconds and offers each browser its messages without
waiting. A browser's queue is bounded (:data:`MAX_QUEUED_MESSAGES`,
:data:`MAX_QUEUED_BYTES`): a message that does not fit is dropped and
counted, and once the browser has caught up it gets a ``resync`` message
and reloads from the API. A stalled browser slows nothing but itself.

Failure behaviour: a request without the token (when one is set) gets a JSON
401, an unknown run a JSON 404, a ``Host`` that is not a loopback name (when
serving on loopback: a web page reaching the port through DNS rebinding) a
JSON 403. A browser that goes away ends its stream; nothing here raises into
the pipeline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import importlib.resources
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import msgspec
from aiohttp import web

from eventkit._hosts import is_loopback
from eventkit.dashboard import selfmetrics
from eventkit.dashboard.board import STATES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from eventkit.dashboard.board import Board, RunRecord
    from eventkit.events import Event

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

__all__ = [
    "MAX_EVENTS_PER_MESSAGE",
    "MAX_QUEUED_BYTES",
    "MAX_QUEUED_MESSAGES",
    "Client",
    "DashboardApp",
]

#: Messages waiting for one browser, at most.
MAX_QUEUED_MESSAGES: Final = 64
#: Bytes waiting for one browser, at most.
MAX_QUEUED_BYTES: Final = 4 << 20
#: Events of a run sent in one message, at most: a run printing faster than
#: a page can draw shows its latest events, the rest counted as skipped.
MAX_EVENTS_PER_MESSAGE: Final = 2_000
#: Seconds between keep-alive comments on an idle stream.
_KEEPALIVE: Final = 15.0
#: The page and its assets: file name, content type.
_ASSETS: Final = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
#: No script or style from anywhere but here, no framing: output shown on the
#: page is text, never markup, and this says so twice.
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    # The token may be in the page's address: never send it elsewhere.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _encode_other(value: Any) -> Any:
    # attrs are the sources' business: a value JSON cannot hold is shown as text.
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


_encoder: Final = msgspec.json.Encoder(enc_hook=_encode_other)


def encode(document: Any) -> bytes:
    """Return ``document`` as JSON; values JSON cannot hold become their ``repr``."""
    return _encoder.encode(document)


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=encode(document),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status)


class Client:
    """One browser's live stream: a bounded queue of messages to send it.

    Args:
        run: The run whose events it follows, if any.
        next_index: The log index of the first event of ``run`` it wants.

    Attributes:
        missed: Messages dropped because its queue was full.
        resync: Whether it must reload from the API once it caught up.
    """

    __slots__ = (
        "_queue",
        "_queued_bytes",
        "_wakeup",
        "missed",
        "next_index",
        "resync",
        "run",
    )

    def __init__(self, run: str | None, next_index: int = 0) -> None:
        self.run = run
        self.next_index = next_index
        self.missed = 0
        self.resync = False
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()

    @property
    def queued(self) -> int:
        """Messages waiting."""
        return len(self._queue)

    def offer(self, message: bytes) -> bool:
        """Queue ``message`` if it fits; else drop it, count it and ask for a resync."""
        if (
            len(self._queue) >= MAX_QUEUED_MESSAGES
            or self._queued_bytes + len(message) > MAX_QUEUED_BYTES
        ):
            self.missed += 1
            self.resync = True
            return False
        self._queue.append(message)
        self._queued_bytes += len(message)
        self._wakeup.set()
        return True

    def close(self) -> None:
        """End the stream: the sender stops once the queue is sent."""
        self._queue.append(b"")
        self._wakeup.set()

    async def next_message(self, wait: float) -> bytes | None:
        """Wait for the next message; None if ``wait`` seconds passed first.

        An empty message means the stream is over.
        """
        if not self._queue:
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)
            if not self._queue:
                return None
        message = self._queue.popleft()
        self._queued_bytes -= len(message)
        return message


def sse(event: str, document: Any) -> bytes:
    """Return one Server-Sent Events message of type ``event`` carrying JSON."""
    return b"event: " + event.encode() + b"\ndata: " + encode(document) + b"\n\n"


class DashboardApp:
    """The dashboard's aiohttp application over a :class:`Board`.

    Args:
        board: What the page shows.
        chains: The watched chains, for the self-metrics.
        clock: Board time (the wall clock).
        token: The token every API request must carry, or None.
        loopback_only: Refuse requests whose ``Host`` is not a loopback name.
        refresh: Seconds between two publications to the browsers.
    """

    def __init__(
        self,
        board: Board,
        chains: selfmetrics.Chains,
        clock: Callable[[], float],
        *,
        token: str | None = None,
        loopback_only: bool = True,
        refresh: float = 0.2,
    ) -> None:
        self.board = board
        self.chains = chains
        self.clock = clock
        self.token = token
        self.loopback_only = loopback_only
        self.refresh = refresh
        #: The browsers streaming now.
        self.clients: set[Client] = set()
        #: Messages dropped for full queues, every browser together.
        self.missed = 0
        self._assets = {
            name: (
                importlib.resources.files(__package__).joinpath("static", name)
            ).read_bytes()
            for name in _ASSETS
        }
        self._last_metrics = 0.0

    # The application ---------------------------------------------------------------

    def application(self) -> web.Application:
        """Return a new aiohttp application serving the page and the API."""
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._page)
        for name in _ASSETS:
            if name != "index.html":
                app.router.add_get(f"/{name}", self._asset)
        app.router.add_get("/api/runs", self._runs)
        app.router.add_get("/api/runs/{run:.*}/events.jsonl", self._events_jsonl)
        app.router.add_get("/api/runs/{run:.*}", self._run)
        app.router.add_get("/api/metrics", self._metrics)
        app.router.add_get("/api/stream", self._stream)
        return app

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        host = request.url.host or ""
        if self.loopback_only and not is_loopback(host):
            return _error(
                403, "FORBIDDEN", f"host {host!r} is not served here; use 127.0.0.1"
            )
        if request.path.startswith("/api/") and not self._authorized(request):
            return _error(
                401,
                "UNAUTHORIZED",
                "this dashboard needs its token: ?token=... or "
                "Authorization: Bearer ...",
            )
        return await handler(request)

    def _authorized(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        given = request.query.get("token")
        if given is None:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            given = value.strip() if scheme.lower() == "bearer" else None
        return given is not None and hmac.compare_digest(
            given.encode(), self.token.encode()
        )

    async def _page(self, request: web.Request) -> web.Response:
        return self._asset_response("index.html")

    async def _asset(self, request: web.Request) -> web.Response:
        return self._asset_response(request.path.lstrip("/"))

    def _asset_response(self, name: str) -> web.Response:
        response = web.Response(body=self._assets[name], headers=_PAGE_HEADERS)
        response.content_type, _, charset = _ASSETS[name].partition("; charset=")
        if charset:
            response.charset = charset
        return response

    async def _runs(self, request: web.Request) -> web.Response:
        wanted = request.query.get("state")
        states: list[str] | None = None
        if wanted:
            states = [state for state in wanted.split(",") if state]
            unknown = sorted(set(states) - set(STATES))
            if unknown:
                return _error(
                    400,
                    "INVALID",
                    f"unknown state(s) {', '.join(unknown)}; "
                    f"known: {', '.join(STATES)}",
                )
        board = self.board
        return _json(
            {
                "version": board.version,
                "now": self.clock(),
                "counts": board.counts(),
                "keep_runs": board.keep_runs,
                "tail_bytes": board.tail_bytes,
                "ended": board.ended,
                "runs": board.rows(self.clock(), states),
            }
        )

    def _record(self, request: web.Request) -> RunRecord | None:
        return self.board.get(request.match_info["run"])

    @staticmethod
    def _unknown(request: web.Request) -> web.Response:
        return _error(
            404,
            "NOT_FOUND",
            f"no run {request.match_info['run']!r} on this dashboard "
            "(never seen, or let go)",
        )

    async def _run(self, request: web.Request) -> web.Response:
        record = self._record(request)
        if record is None:
            return self._unknown(request)
        return _json(
            {
                "version": self.board.version,
                "run": record.row(self.clock()),
                "from": record.first_held,
                "next": record.logged,
                "dropped_events": record.dropped_events,
                "dropped_bytes": record.dropped_bytes,
                "events": list(record.log),
            }
        )

    async def _events_jsonl(self, request: web.Request) -> web.StreamResponse:
        record = self._record(request)
        if record is None:
            return self._unknown(request)
        held = list(record.log)
        lines = [encode(event) + b"\n" for event in held]
        if record.dropped_events:
            # The head went: say so in the file itself, as an event replay keeps.
            first = held[0] if held else None
            lines.insert(
                0,
                encode(
                    {
                        "type": "truncated",
                        "data": f"{record.dropped_events} earlier event(s) not held",
                        "timestamp": record.first_timestamp
                        if first is None
                        else first.timestamp,
                        "sequence": 0 if first is None else first.sequence,
                        "run": record.run,
                        "attrs": {
                            "where": "head",
                            "omitted_events": record.dropped_events,
                            "omitted_bytes": record.dropped_bytes,
                        },
                    }
                )
                + b"\n",
            )
        filename = "".join(c if c.isalnum() or c in "-_." else "_" for c in record.run)
        disposition = f'attachment; filename="{filename or "run"}.jsonl"'
        return web.Response(
            body=b"".join(lines),
            content_type="application/jsonl",
            headers={
                "Content-Disposition": disposition,
                "X-Eventkit-Dropped-Events": str(record.dropped_events),
                "X-Eventkit-Dropped-Bytes": str(record.dropped_bytes),
                "Cache-Control": "no-store",
            },
        )

    def metrics(self) -> dict[str, Any]:
        """Return what ``GET /api/metrics`` answers."""
        now = self.clock()
        first, counts = self.board.throughput(now)
        return {
            "now": now,
            "throughput": {"start": first, "counts": counts},
            "events": self.board.total_events,
            "stages": self.chains.stages(),
            "sources": selfmetrics.sources(),
            "server": selfmetrics.server(),
            "dashboard": {"clients": len(self.clients), "missed": self.missed},
        }

    async def _metrics(self, request: web.Request) -> web.Response:
        return _json(self.metrics())

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        run = request.query.get("run")
        record = None if run is None else self.board.get(run)
        client = Client(run, 0 if record is None else record.logged)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        self.clients.add(client)
        try:
            # Registered first, then told to load: nothing falls in between.
            await response.write(
                b"retry: 1000\n"
                + sse(
                    "hello",
                    {
                        "version": self.board.version,
                        "run": run,
                        "next": client.next_index,
                    },
                )
            )
            while True:
                message = await client.next_message(_KEEPALIVE)
                if message is None:
                    await response.write(b": keep-alive\n\n")
                    continue
                if not message:
                    break
                await response.write(message)
        except (ConnectionError, asyncio.CancelledError):
            # The browser went away, or the server is stopping: nothing to tell.
            pass
        finally:
            self.clients.discard(client)
        return response

    def close_streams(self) -> None:
        """End every browser's stream (the server is stopping)."""
        for client in list(self.clients):
            client.close()

    # Publishing --------------------------------------------------------------------

    async def publish_forever(self) -> None:
        """Publish what changed every ``refresh`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.refresh)
            self.publish()

    def publish(self) -> None:
        """Offer every browser what changed since the last call; never waits."""
        board = self.board
        now = self.clock()
        changes = board.take_changes()
        clients = list(self.clients)
        if not clients:
            return
        for client in clients:
            if client.resync:
                self._resync(client)
        if changes.runs or changes.removed:
            message = sse(
                "runs",
                {
                    "version": changes.version,
                    "now": now,
                    "counts": board.counts(),
                    "ended": board.ended,
                    "runs": [record.row(now) for record in changes.runs],
                    "removed": changes.removed,
                },
            )
            self._offer_all(clients, message)
        for client in clients:
            self._publish_events(client)
        if now - self._last_metrics >= 1.0 or now < self._last_metrics:
            self._last_metrics = now
            self._offer_all(clients, sse("metrics", self.metrics()))

    def _offer_all(self, clients: Iterable[Client], message: bytes) -> None:
        for client in clients:
            if client.resync:
                continue
            if not client.offer(message):
                self.missed += 1

    def _resync(self, client: Client) -> None:
        """Tell a browser that caught up after missing messages to reload."""
        if client.queued:
            return  # still catching up: not a byte more until it has
        client.resync = False
        record = None if client.run is None else self.board.get(client.run)
        if record is not None:
            client.next_index = record.logged
        client.offer(sse("resync", {"missed": client.missed}))

    def _publish_events(self, client: Client) -> None:
        if client.run is None or client.resync:
            return
        record = self.board.get(client.run)
        if record is None or record.logged <= client.next_index:
            return
        start = max(client.next_index, record.first_held)
        if record.logged - start > MAX_EVENTS_PER_MESSAGE:
            start = record.logged - MAX_EVENTS_PER_MESSAGE
        events: list[Event] = list(record.held(start))
        message = sse(
            "events",
            {
                "run": record.run,
                "from": start,
                "skipped": start - client.next_index,
                "events": events,
            },
        )
        if client.offer(message):
            client.next_index = record.logged
        else:
            self.missed += 1
