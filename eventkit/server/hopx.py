"""The HOPX front end: the public API subset and the agent's execution stream.

Public API (``X-API-Key``, see :mod:`eventkit.server.auth`):

- ``POST /v1/sandboxes``: a new sandbox, with ``public_host`` (this server),
  ``auth_token`` and ``token_expires_at``;
- ``GET /v1/sandboxes/{id}``: the same, without the token;
- ``POST /v1/sandboxes/{id}/token/refresh``: a new token (the old one stops
  working);
- ``DELETE /v1/sandboxes/{id}``: stops its runs, removes its directory.

Agent (``Authorization: Bearer <auth_token>`` of one sandbox, which is where
the code runs):

- ``GET /health``: ``{"status": "healthy"}``;
- WebSocket ``/execute/stream``: one ``execute`` message in, then the frames
  of :class:`eventkit.protocol.hopx.HopxEncoder` out, ending with
  ``complete``.

Failure behaviour on the WebSocket:

- No token, an unknown or expired one: HTTP 401 on the upgrade, before any
  WebSocket exists; nothing runs.
- No message within ``first_message_timeout``, a message that is not JSON
  (binary noise included), not an object, of another ``type``, or with an
  invalid field: an ``error`` frame (code ``INVALID_REQUEST``) then close
  1008. A message over the size limit: close 1009 (aiohttp's).
- All slots busy and the queue full: an ``error`` frame (code
  ``TOO_MANY_REQUESTS``) then close 1013 ("try again later"); nothing ran.
- A finished run: after ``complete`` the server waits up to
  ``close_timeout`` for the client's close (answered with 1000), then closes
  with 1000 itself.
- The client closes or disconnects mid-run (or while queued): the run is
  cancelled, its process group killed and reaped, and the server goes on.
- The sandbox is deleted or the server shuts down mid-run: the run is
  cancelled the same way and the connection closed with 1001.
- Anything else failing mid-run: an ``error`` frame (``INTERNAL_ERROR``)
  and close 1011, logged with structlog (``execution_failed``, with the
  sandbox id and the exception).

Each connection's run and reader are tasks of one task group in its
handler: neither outlives the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, Final

import msgspec
import structlog
from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web

from eventkit.protocol.hopx import HopxEncoder, hopx_error, iso_timestamp
from eventkit.server.auth import api_key_of, bearer_of
from eventkit.server.errors import count_refusal, json_error, unauthorized
from eventkit.server.limits import TooManyRequestsError
from eventkit.server.requests import RequestError, parse_hopx_execute, read_json
from eventkit.server.sandboxes import HOPX, SandboxGoneError, SandboxLimitError

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from eventkit.server.limits import Ticket
    from eventkit.server.requests import ExecuteRequest
    from eventkit.server.sandboxes import Sandbox
    from eventkit.server.state import State

__all__ = ["add_routes"]

_log: Final = structlog.get_logger("eventkit.server.hopx")
_ENDED: Final = frozenset(
    {WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR}
)


def add_routes(app: web.Application, state: State) -> None:
    """Add the HOPX public API and agent routes to ``app``."""
    front = _Hopx(state)
    app.router.add_post("/v1/sandboxes", front.create)
    app.router.add_get("/v1/sandboxes/{id}", front.info)
    app.router.add_post("/v1/sandboxes/{id}/token/refresh", front.refresh)
    app.router.add_delete("/v1/sandboxes/{id}", front.delete)
    app.router.add_get("/health", front.health)
    app.router.add_get("/execute/stream", front.execute_stream)


def _reason(text: str) -> bytes:
    """Return ``text`` as a close reason: at most 123 UTF-8 bytes."""
    return text.encode()[:123].decode(errors="ignore").encode()


class _Hopx:
    __slots__ = ("_state",)

    def __init__(self, state: State) -> None:
        self._state = state

    # Public API ---------------------------------------------------------------

    def _describe(
        self, request: web.Request, sandbox: Sandbox, *, token: bool
    ) -> dict[str, Any]:
        public_host = self._state.public_host(request)
        info: dict[str, Any] = {
            "id": sandbox.id,
            "status": "running",
            "public_host": public_host,
            "direct_url": public_host,
            "template_name": sandbox.template,
            "created_at": iso_timestamp(sandbox.created_at),
        }
        if token:
            info["auth_token"] = sandbox.token
            info["token_expires_at"] = iso_timestamp(sandbox.token_expires_at)
        return info

    def _owned(self, request: web.Request) -> Sandbox | web.Response:
        """Return the sandbox named in the path, or the error answer."""
        key = api_key_of(request)
        if not self._state.auth.accepts(key):
            return unauthorized("a valid X-API-Key header is required")
        assert key is not None
        sandbox_id = request.match_info["id"]
        sandbox = self._state.sandboxes.get(HOPX, sandbox_id, key)
        if sandbox is None:
            return json_error(404, "NOT_FOUND", f"sandbox {sandbox_id!r} not found")
        return sandbox

    async def create(self, request: web.Request) -> web.Response:
        key = api_key_of(request)
        if not self._state.auth.accepts(key):
            return unauthorized("a valid X-API-Key header is required")
        assert key is not None
        body = await read_json(request, optional=True)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        template = body.get("template_name", body.get("template_id"))
        if template is not None and not isinstance(template, str | int):
            raise RequestError("template_name must be a string")
        try:
            sandbox = self._state.sandboxes.create(
                HOPX, key, None if template is None else str(template)
            )
        except SandboxLimitError as exc:
            return json_error(429, "TOO_MANY_SANDBOXES", str(exc))
        return web.json_response(self._describe(request, sandbox, token=True))

    async def info(self, request: web.Request) -> web.Response:
        sandbox = self._owned(request)
        if isinstance(sandbox, web.Response):
            return sandbox
        return web.json_response(self._describe(request, sandbox, token=False))

    async def refresh(self, request: web.Request) -> web.Response:
        sandbox = self._owned(request)
        if isinstance(sandbox, web.Response):
            return sandbox
        self._state.sandboxes.refresh_token(sandbox)
        return web.json_response(
            {
                "auth_token": sandbox.token,
                "token_expires_at": iso_timestamp(sandbox.token_expires_at),
            }
        )

    async def delete(self, request: web.Request) -> web.Response:
        sandbox = self._owned(request)
        if isinstance(sandbox, web.Response):
            return sandbox
        await self._state.sandboxes.delete(sandbox)
        return web.json_response({"id": sandbox.id, "status": "deleted"})

    # Agent ------------------------------------------------------------------

    def _agent(self, request: web.Request) -> Sandbox | None:
        return self._state.sandboxes.by_token(bearer_of(request))

    async def health(self, request: web.Request) -> web.Response:
        if self._agent(request) is None:
            return unauthorized("a valid sandbox token is required")
        return web.json_response({"status": "healthy"})

    async def execute_stream(self, request: web.Request) -> web.StreamResponse:
        sandbox = self._agent(request)
        if sandbox is None:
            return unauthorized(
                "a valid sandbox token is required (Authorization: Bearer "
                "<auth_token from POST /v1/sandboxes>)"
            )
        state = self._state
        ws = web.WebSocketResponse(
            max_msg_size=state.limits.max_message_bytes, timeout=state.close_timeout
        )
        if not ws.can_prepare(request).ok:
            return json_error(400, "INVALID_REQUEST", "a WebSocket upgrade is expected")
        await ws.prepare(request)
        state.websockets.add(ws)
        try:
            await self._converse(ws, sandbox)
        finally:
            state.websockets.discard(ws)
            # Whatever went wrong, the connection does not outlive the handler.
            if not ws.closed:
                await ws.close(code=WSCloseCode.INTERNAL_ERROR)
        return ws

    async def _converse(self, ws: web.WebSocketResponse, sandbox: Sandbox) -> None:
        state = self._state
        try:
            message = await ws.receive(timeout=state.first_message_timeout)
        except TimeoutError:
            await _refuse(
                ws,
                "INVALID_REQUEST",
                f"no execute message within {state.first_message_timeout:g} s",
                WSCloseCode.POLICY_VIOLATION,
            )
            return
        if message.type in _ENDED:
            if _too_big(message.data):
                # aiohttp closed with 1009: a refusal, as HTTP's 413 is.
                count_refusal("REQUEST_TOO_LARGE")
            return
        try:
            request = _parse(message.type, message.data, state)
            sandbox.directory(request.workdir)  # refuse an escape before queueing
        except RequestError as exc:
            await _refuse(ws, "INVALID_REQUEST", str(exc), WSCloseCode.POLICY_VIOLATION)
            return
        try:
            ticket = state.admission.admit()
        except TooManyRequestsError as exc:
            await _refuse(
                ws, "TOO_MANY_REQUESTS", str(exc), WSCloseCode.TRY_AGAIN_LATER
            )
            return
        with ticket:
            await self._run_until_closed(ws, sandbox, request, ticket)

    async def _run_until_closed(
        self,
        ws: web.WebSocketResponse,
        sandbox: Sandbox,
        request: ExecuteRequest,
        ticket: Ticket,
    ) -> None:
        """Run while reading the socket: a close from the client stops the run.

        The run and the reader are tasks of a task group: neither outlives
        this call, however it ends (this handler cancelled included).
        """
        async with asyncio.TaskGroup() as tasks:
            run = tasks.create_task(
                _outcome(sandbox.guard(self._run(ws, sandbox, request, ticket)))
            )
            reader = tasks.create_task(_outcome(_until_closed(ws)))
            await asyncio.wait({run, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                # The client left: stop the run, which kills and reaps its
                # process, before anything else.
                run.cancel()
                await asyncio.wait({run})
            elif not run.cancelled() and run.result() is None and not ws.closed:
                # ``complete`` is out: let the client close first, as it does
                # once it has read it.
                await asyncio.wait({reader}, timeout=self._state.close_timeout)
            # Reading only watched for the end; a read that failed ended it too.
            reader.cancel()
        await self._finish(ws, sandbox, run)

    async def _finish(
        self,
        ws: web.WebSocketResponse,
        sandbox: Sandbox,
        run: asyncio.Task[Exception | None],
    ) -> None:
        """Close the connection as the run's outcome asks."""
        if run.cancelled() or ws.closed:
            return
        error = run.result()
        if error is None:
            await ws.close(code=WSCloseCode.OK)
        elif isinstance(error, SandboxGoneError):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=_reason(str(error)))
        elif isinstance(error, ConnectionError):
            pass  # the client went away mid-send
        else:
            _log.error("execution_failed", sandbox=sandbox.id, exc_info=error)
            await _refuse(
                ws, "INTERNAL_ERROR", "internal error", WSCloseCode.INTERNAL_ERROR
            )

    async def _run(
        self,
        ws: web.WebSocketResponse,
        sandbox: Sandbox,
        request: ExecuteRequest,
        ticket: Ticket,
    ) -> None:
        encode = HopxEncoder().encode
        send = ws.send_str
        async with sandbox.execute(
            request, ticket, max_output_bytes=self._state.limits.max_output_bytes
        ) as events:
            async for event in events:
                for frame in encode(event):
                    await send(frame.decode())


def _parse(kind: WSMsgType, data: Any, state: State) -> ExecuteRequest:
    """Return the run a first message asks for.

    Raises:
        RequestError: If it is not a valid ``execute`` message.
    """
    if kind is not WSMsgType.TEXT and kind is not WSMsgType.BINARY:
        raise RequestError(f"expected an execute message, got a {kind.name} frame")
    try:
        message = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        raise RequestError("the message is not valid JSON") from None
    return parse_hopx_execute(message, state.limits)


async def _outcome(run: Coroutine[Any, Any, None]) -> Exception | None:
    """Await ``run``; return the exception it raised, or None.

    In a task group, a task that raises cancels the others and makes the
    group raise; here a failure is an outcome, which the handler answers.
    """
    try:
        await run
    except Exception as exc:
        return exc
    return None


def _too_big(error: Any) -> bool:
    """Tell whether an ``ERROR`` message's data is aiohttp's "message too big"."""
    return (
        isinstance(error, WebSocketError) and error.code == WSCloseCode.MESSAGE_TOO_BIG
    )


async def _until_closed(ws: web.WebSocketResponse) -> None:
    """Read until the connection ends; the protocol has no further messages."""
    while True:
        message = await ws.receive()
        if message.type in _ENDED:
            return


async def _refuse(
    ws: web.WebSocketResponse, code: str, message: str, close: int
) -> None:
    """Send an ``error`` frame, then close with ``close``; count refusals."""
    count_refusal(code)
    with contextlib.suppress(ConnectionError):
        await ws.send_str(hopx_error(message, code, time.time()).decode())
    await ws.close(code=close, message=_reason(message))
