"""The HOPX front end: the public API, and the agent's execution stream.

Public API (``X-API-Key``, see :mod:`eventkit.server.auth`); a sandbox is
reached only with the key (or token) that created it:

- ``POST /v1/sandboxes``: a new sandbox from ``template_name`` or
  ``template_id`` (:data:`TEMPLATES`; another is 404, the SDK's
  ``NotFoundError``), with ``timeout_seconds``, ``internet_access`` and
  ``env_vars``; answered with its description (below), ``auth_token`` and
  ``token_expires_at``;
- ``GET /v1/sandboxes``: the caller's sandboxes (``Sandbox.list``/``iter``:
  ``status``, ``limit``, ``cursor``; ``data``, ``has_more``,
  ``next_cursor``);
- ``GET /v1/sandboxes/{id}``: its description, every field ``get_info``
  reads: ``public_host`` (its agent, see
  :meth:`~eventkit.server.state.State.agent_url`), ``status``
  (``running`` or ``paused``), ``timeout_seconds``, ``expires_at`` (when it
  goes if nothing uses it), ``internet_access``, ``resources`` (this
  machine's CPUs, memory and disk);
- ``POST /v1/sandboxes/{id}/token/refresh``: a new token (the old one stops
  working);
- ``PUT /v1/sandboxes/{id}/timeout``: ``{"timeout_seconds"}`` from now;
- ``POST /v1/sandboxes/{id}/pause`` and ``/resume``: its processes stopped
  (SIGSTOP) and continued (SIGCONT); runs asked of it meanwhile are refused;
- ``DELETE /v1/sandboxes/{id}``: stops its runs, removes its directory;
- ``GET /v1/templates``, ``GET /v1/templates/{name}``: :data:`TEMPLATES`;
- template building and deleting: a JSON 501 naming the call.

Agent (``Authorization: Bearer <auth_token>`` of one sandbox): the HTTP
calls are in :mod:`eventkit.server.agent`; here is the WebSocket
``/execute/stream``: one ``execute`` message in, then the frames of
:class:`eventkit.protocol.hopx.HopxEncoder` out, ending with ``complete``.

Failure behaviour on the WebSocket:

- No token, an unknown or expired one: HTTP 401 on the upgrade, before any
  WebSocket exists; nothing runs.
- No message within ``first_message_timeout``, a message that is not JSON
  (binary noise included), not an object, of another ``type``, or with an
  invalid field: an ``error`` frame (code ``INVALID_REQUEST``) then close
  1008. A message over the size limit: close 1009 (aiohttp's).
- All slots busy and the queue full: an ``error`` frame (code
  ``TOO_MANY_REQUESTS``) then close 1013 ("try again later"); nothing ran.
- A working directory that cannot be used (it leads out of the sandbox, is
  a file, a FIFO, a link loop), checked once admitted: an ``error`` frame
  (code ``INVALID_WORKDIR``) then close 1008; the sandbox stays usable. A
  paused sandbox: ``SANDBOX_PAUSED``, close 1013.
- A finished run: after ``complete`` the server waits up to
  ``close_timeout`` for the client's close (answered with 1000), then closes
  with 1000 itself.
- The client closes or disconnects mid-run (or while queued): the run is
  cancelled, its process group killed and reaped, and the server goes on.
  A client that stops reading: once a send waits ``send_timeout`` seconds,
  the connection is dropped and the run killed the same way.
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
import os
import shutil
import time
from typing import TYPE_CHECKING, Any, Final

import msgspec
import structlog
from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web

from eventkit.protocol.hopx import (
    EXECUTION,
    RESUME_GAP,
    RESUME_UNAVAILABLE,
    HopxEncoder,
    hopx_error,
    iso_timestamp,
)
from eventkit.server import agent
from eventkit.server.auth import api_key_of, bearer_of
from eventkit.server.errors import count_refusal, json_error, unauthorized
from eventkit.server.limits import TooManyRequestsError, is_int
from eventkit.server.replies import SendTimeoutError, send_within
from eventkit.server.requests import (
    RequestError,
    ResumeRequest,
    parse_env,
    parse_hopx_stream,
    read_json,
)
from eventkit.server.sandboxes import (
    HOPX,
    SandboxGoneError,
    SandboxLimitError,
    SandboxPausedError,
    WorkdirError,
)
from eventkit.server.state import AGENT_DOMAIN

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from eventkit.server.limits import Ticket
    from eventkit.server.requests import ExecuteRequest
    from eventkit.server.resume import Execution, Reader
    from eventkit.server.sandboxes import Sandbox
    from eventkit.server.state import State

__all__ = ["TEMPLATES", "add_routes"]

_log: Final = structlog.get_logger("eventkit.server.hopx")
_ENDED: Final = frozenset(
    {WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR}
)
#: The longest ``timeout_seconds`` a sandbox may be given: 30 days.
MAX_SANDBOX_TIMEOUT: Final = 30 * 86_400
#: Sandboxes a list page holds at most (the SDK asks for 100).
_MAX_PAGE: Final = 100


def _template(
    template_id: str, name: str, display_name: str, description: str, language: str
) -> dict[str, Any]:
    return {
        "id": template_id,
        "name": name,
        "display_name": display_name,
        "description": description,
        "category": "development",
        "language": language,
        "features": ["code-execution", "file-operations", "background-jobs"],
        "tags": ["local"],
        "is_active": True,
        "is_public": True,
        "status": "active",
        "object": "template",
    }


#: The templates a sandbox may be created from. Every one is this machine
#: as it is (its interpreters, its tools); the names are the ones HOPX
#: users write.
TEMPLATES: Final = (
    _template(
        "1",
        "code-interpreter",
        "Code interpreter",
        "Python, bash and Node.js as installed on the server's machine",
        "python",
    ),
    _template("2", "base", "Base", "The server's machine, bash", "bash"),
    _template("3", "python", "Python", "The Python that runs eventkit", "python"),
    _template("4", "nodejs", "Node.js", "Node.js as installed", "javascript"),
)
_BY_NAME: Final = {t["name"]: t for t in TEMPLATES} | {t["id"]: t for t in TEMPLATES}


def add_routes(app: web.Application, state: State) -> None:
    """Add the HOPX public API and agent routes to ``app``."""
    front = _Hopx(state)
    app.router.add_post("/v1/sandboxes", front.create)
    app.router.add_get("/v1/sandboxes", front.list)
    app.router.add_get("/v1/sandboxes/{id}", front.info)
    app.router.add_post("/v1/sandboxes/{id}/token/refresh", front.refresh)
    app.router.add_put("/v1/sandboxes/{id}/timeout", front.set_timeout)
    app.router.add_post("/v1/sandboxes/{id}/pause", front.pause)
    app.router.add_post("/v1/sandboxes/{id}/resume", front.resume)
    app.router.add_delete("/v1/sandboxes/{id}", front.delete)
    app.router.add_get("/v1/templates", front.templates)
    app.router.add_route("*", "/v1/templates/build", _no_template_building)
    app.router.add_route("*", "/v1/templates/build/{tail:.*}", _no_template_building)
    app.router.add_route("*", "/v1/templates/files/{tail:.*}", _no_template_building)
    app.router.add_get("/v1/templates/{name}", front.template)
    app.router.add_delete("/v1/templates/{name}", _no_template_building)
    app.router.add_get("/execute/stream", front.execute_stream)
    agent.add_routes(app, state, front.execute_stream)


async def _no_template_building(request: web.Request) -> web.Response:
    call = f"{request.method} {request.path}"
    return json_error(
        501,
        "NOT_IMPLEMENTED",
        f"{call}: building and deleting templates is not available on a local "
        "eventkit sandbox (the templates are this machine)",
    )


def _reason(text: str) -> bytes:
    """Return ``text`` as a close reason: at most 123 UTF-8 bytes."""
    return text.encode()[:123].decode(errors="ignore").encode()


def _resources(base: str) -> dict[str, int]:
    """This machine's CPUs, memory and disk, as a sandbox's resources."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 0
    try:
        disk = shutil.disk_usage(base).total
    except OSError:
        disk = 0
    return {
        "vcpu": os.cpu_count() or 1,
        "memory_mb": memory >> 20,
        "disk_mb": disk >> 20,
    }


def _positive_int(value: object, name: str, maximum: int) -> int:
    if not is_int(value) or not 1 <= value <= maximum:  # type: ignore[operator]
        raise RequestError(
            f"{name} must be a whole number of seconds in [1, {maximum}]"
        )
    return value  # type: ignore[return-value]


class _Hopx:
    __slots__ = ("_resources", "_state")

    def __init__(self, state: State) -> None:
        self._state = state
        self._resources = _resources(state.sandboxes.base)

    # Public API ---------------------------------------------------------------

    def _describe(
        self, request: web.Request, sandbox: Sandbox, *, token: bool
    ) -> dict[str, Any]:
        sandboxes = self._state.sandboxes
        agent_url = self._state.agent_url(request, sandbox)
        template = _BY_NAME.get(sandbox.template or "code-interpreter")
        info: dict[str, Any] = {
            "id": sandbox.id,
            "status": "paused" if sandbox.paused else "running",
            "public_host": agent_url,
            "direct_url": agent_url,
            "template_name": sandbox.template,
            "template_id": None if template is None else template["id"],
            "organization_id": 0,
            "node_id": "local",
            "region": "local",
            "resources": self._resources,
            "internet_access": sandbox.internet_access,
            "live_mode": False,
            "timeout_seconds": sandbox.timeout_seconds,
            "expires_at": iso_timestamp(sandboxes.expires_at(sandbox)),
            "created_at": iso_timestamp(sandbox.created_at),
        }
        if token:
            info["auth_token"] = sandbox.token
            info["token_expires_at"] = iso_timestamp(sandbox.token_expires_at)
        return info

    def _key(self, request: web.Request) -> str | web.Response:
        key = api_key_of(request)
        if key is None or not self._state.auth.accepts(key):
            return unauthorized("a valid X-API-Key header is required")
        return key

    def _owned(self, request: web.Request) -> Sandbox | web.Response:
        """Return the sandbox named in the path, or the error answer."""
        key = self._key(request)
        if isinstance(key, web.Response):
            return key
        sandbox_id = request.match_info["id"]
        sandbox = self._state.sandboxes.get(HOPX, sandbox_id, key)
        if sandbox is None:
            return json_error(404, "NOT_FOUND", f"sandbox {sandbox_id!r} not found")
        return sandbox

    async def _body(self, request: web.Request) -> dict[str, Any]:
        body = await read_json(
            request, optional=True, body_timeout=self._state.body_timeout
        )
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        return body

    async def create(self, request: web.Request) -> web.Response:
        key = self._key(request)
        if isinstance(key, web.Response):
            return key
        body = await self._body(request)
        asked = body.get("template_name", body.get("template_id"))
        if asked is not None and not isinstance(asked, str | int):
            raise RequestError("template_name must be a string")
        template = None if asked is None else _BY_NAME.get(str(asked))
        if asked is not None and template is None:
            known = ", ".join(t["name"] for t in TEMPLATES)
            return json_error(
                404,
                "TEMPLATE_NOT_FOUND",
                f"template {asked!r} not found; known: {known}",
            )
        timeout = body.get("timeout_seconds")
        if timeout is not None:
            timeout = _positive_int(timeout, "timeout_seconds", MAX_SANDBOX_TIMEOUT)
        internet = body.get("internet_access")
        if internet is not None and not isinstance(internet, bool):
            raise RequestError("internet_access must be true or false")
        sandboxes = self._state.sandboxes
        if internet is False and not sandboxes.can_cut_network:
            raise RequestError(
                "internet_access=false needs a server that can keep runs off the "
                "network; this one cannot (start it with network isolation)"
            )
        env = parse_env(body.get("env_vars"))
        try:
            sandbox = sandboxes.create(
                HOPX, key, None if template is None else template["name"]
            )
        except SandboxLimitError as exc:
            return json_error(429, "TOO_MANY_SANDBOXES", str(exc))
        sandbox.env = env
        sandbox.internet_access = internet is not False
        sandboxes.set_timeout(sandbox, timeout)
        return web.json_response(self._describe(request, sandbox, token=True))

    async def list(self, request: web.Request) -> web.Response:
        key = self._key(request)
        if isinstance(key, web.Response):
            return key
        query = request.query
        try:
            limit = int(query.get("limit", _MAX_PAGE))
            start = int(query.get("cursor") or 0)
        except ValueError:
            raise RequestError("limit and cursor must be whole numbers") from None
        if not 1 <= limit <= _MAX_PAGE or start < 0:
            raise RequestError(f"limit must be in [1, {_MAX_PAGE}], cursor >= 0")
        status = query.get("status")
        sandboxes = [
            sandbox
            for sandbox in self._state.sandboxes.owned(HOPX, key)
            if status is None or status == ("paused" if sandbox.paused else "running")
        ]
        page = sandboxes[start : start + limit]
        more = start + limit < len(sandboxes)
        return web.json_response(
            {
                "object": "list",
                "data": [self._describe(request, s, token=False) for s in page],
                "has_more": more,
                "next_cursor": str(start + limit) if more else None,
            }
        )

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

    async def set_timeout(self, request: web.Request) -> web.Response:
        sandbox = self._owned(request)
        if isinstance(sandbox, web.Response):
            return sandbox
        seconds = _positive_int(
            (await self._body(request)).get("timeout_seconds"),
            "timeout_seconds",
            MAX_SANDBOX_TIMEOUT,
        )
        self._state.sandboxes.set_timeout(sandbox, seconds)
        return web.json_response(self._describe(request, sandbox, token=False))

    async def pause(self, request: web.Request) -> web.Response:
        sandbox = self._owned(request)
        if isinstance(sandbox, web.Response):
            return sandbox
        sandbox.pause()
        return web.json_response(self._describe(request, sandbox, token=False))

    async def resume(self, request: web.Request) -> web.Response:
        sandbox = self._owned(request)
        if isinstance(sandbox, web.Response):
            return sandbox
        sandbox.resume()
        return web.json_response(self._describe(request, sandbox, token=False))

    async def delete(self, request: web.Request) -> web.Response:
        sandbox = self._owned(request)
        if isinstance(sandbox, web.Response):
            return sandbox
        await self._state.sandboxes.delete(sandbox)
        return web.json_response({"id": sandbox.id, "status": "deleted"})

    async def templates(self, request: web.Request) -> web.Response:
        key = self._key(request)
        if isinstance(key, web.Response):
            return key
        return web.json_response({"object": "list", "data": list(TEMPLATES)})

    async def template(self, request: web.Request) -> web.Response:
        key = self._key(request)
        if isinstance(key, web.Response):
            return key
        name = request.match_info["name"]
        template = _BY_NAME.get(name)
        if template is None:
            return json_error(404, "TEMPLATE_NOT_FOUND", f"template {name!r} not found")
        return web.json_response(template)

    # Agent: the execution stream -----------------------------------------

    async def execute_stream(self, request: web.Request) -> web.StreamResponse:
        sandbox = self._state.sandboxes.by_token(bearer_of(request))
        if sandbox is None:
            return unauthorized(
                "a valid sandbox token is required (Authorization: Bearer "
                "<auth_token from POST /v1/sandboxes>)"
            )
        host = request.match_info.get("agent_host")
        if host is not None and host != f"{sandbox.id}.{AGENT_DOMAIN}":
            return json_error(404, "NOT_FOUND", f"no sandbox agent at {host!r}")
        state = self._state
        ws = web.WebSocketResponse(
            max_msg_size=state.limits.max_message_bytes, timeout=state.close_timeout
        )
        if not ws.can_prepare(request).ok:
            return json_error(400, "INVALID_REQUEST", "a WebSocket upgrade is expected")
        await ws.prepare(request)
        state.websockets.add(ws)
        socket = _Socket(ws, request, state.send_timeout)
        try:
            await self._converse(socket, sandbox)
        finally:
            state.websockets.discard(ws)
            # Whatever went wrong, the connection does not outlive the handler.
            if not ws.closed:
                with contextlib.suppress(ConnectionError):
                    await socket.close(WSCloseCode.INTERNAL_ERROR)
        return ws

    async def _converse(self, socket: _Socket, sandbox: Sandbox) -> None:
        state = self._state
        ws = socket.ws
        try:
            message = await ws.receive(timeout=state.first_message_timeout)
        except TimeoutError:
            await socket.refuse(
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
        except RequestError as exc:
            await socket.refuse(
                "INVALID_REQUEST", str(exc), WSCloseCode.POLICY_VIOLATION
            )
            return
        if isinstance(request, ResumeRequest):
            await self._resume(socket, sandbox, request)
            return
        try:
            ticket = state.admission.admit()
        except TooManyRequestsError as exc:
            await socket.refuse(
                "TOO_MANY_REQUESTS", str(exc), WSCloseCode.TRY_AGAIN_LATER
            )
            return
        if request.resumable:
            await self._execute_resumable(socket, sandbox, request, ticket)
            return
        with ticket:
            await self._run_until_closed(socket, sandbox, request, ticket)

    async def _run_until_closed(
        self,
        socket: _Socket,
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
                _outcome(sandbox.guard(self._run(socket, sandbox, request, ticket)))
            )
            reader = tasks.create_task(_outcome(_until_closed(socket.ws)))
            await asyncio.wait({run, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                # The client left: stop the run, which kills and reaps its
                # process, before anything else.
                run.cancel()
                await asyncio.wait({run})
            elif not run.cancelled() and run.result() is None and not socket.ws.closed:
                # ``complete`` is out: let the client close first, as it does
                # once it has read it.
                await asyncio.wait({reader}, timeout=self._state.close_timeout)
            # Reading only watched for the end; a read that failed ended it too.
            reader.cancel()
        await self._finish(socket, sandbox, run)

    async def _finish(
        self,
        socket: _Socket,
        sandbox: Sandbox,
        run: asyncio.Task[Exception | None],
    ) -> None:
        """Close the connection as the run's outcome asks."""
        if run.cancelled() or socket.ws.closed:
            return
        error = run.result()
        try:
            if error is None:
                await socket.close(WSCloseCode.OK)
            elif isinstance(error, SandboxGoneError):
                await socket.close(WSCloseCode.GOING_AWAY, str(error))
            elif isinstance(error, WorkdirError):
                await socket.refuse(
                    error.code, str(error), WSCloseCode.POLICY_VIOLATION
                )
            elif isinstance(error, SandboxPausedError):
                await socket.refuse(
                    "SANDBOX_PAUSED", str(error), WSCloseCode.TRY_AGAIN_LATER
                )
            elif isinstance(error, ConnectionError):
                pass  # the client went away mid-send, or stopped reading
            else:
                _log.error("execution_failed", sandbox=sandbox.id, exc_info=error)
                await socket.refuse(
                    "INTERNAL_ERROR", "internal error", WSCloseCode.INTERNAL_ERROR
                )
        except ConnectionError:
            pass  # gone, or dropped for not reading: nothing more to say

    async def _run(
        self,
        socket: _Socket,
        sandbox: Sandbox,
        request: ExecuteRequest,
        ticket: Ticket,
    ) -> None:
        encode = HopxEncoder().encode
        send = socket.send
        async with sandbox.execute(
            request, ticket, max_output_bytes=self._state.limits.max_output_bytes
        ) as events:
            async for event in events:
                for frame in encode(event):
                    await send(frame)

    # Resumable executions (eventkit.server.resume) ---------------------------

    async def _execute_resumable(
        self,
        socket: _Socket,
        sandbox: Sandbox,
        request: ExecuteRequest,
        ticket: Ticket,
    ) -> None:
        """Start the run as a task of the server; stream it from its first frame."""

        async def run(execution: Execution) -> None:
            with ticket:
                await self._produce(execution, sandbox, request, ticket)

        try:
            execution = self._state.executions.start(sandbox, run)
        except RuntimeError:
            ticket.release()
            await socket.close(WSCloseCode.GOING_AWAY, "server closing")
            return
        try:
            await socket.send(_execution_frame(execution.id))
        except ConnectionError:
            return  # the run waits for a resume, as after any lost connection
        await self._attach(socket, execution, -1)

    async def _resume(
        self, socket: _Socket, sandbox: Sandbox, request: ResumeRequest
    ) -> None:
        """Go on with an execution of this sandbox on this connection."""
        executions = self._state.executions
        execution = executions.get(request.execution_id, sandbox)
        if execution is None:
            await socket.refuse(
                RESUME_UNAVAILABLE,
                f"no execution {request.execution_id!r} to resume: unknown, "
                f"cancelled, or ended over {executions.window:g} s ago",
                WSCloseCode.POLICY_VIOLATION,
            )
            return
        await self._attach(socket, execution, request.after)

    async def _produce(
        self,
        execution: Execution,
        sandbox: Sandbox,
        request: ExecuteRequest,
        ticket: Ticket,
    ) -> None:
        """Run, writing every frame into the execution's ring; then end it."""
        encoder = HopxEncoder(resumable=True)
        encode = encoder.encode
        append = execution.append

        async def write() -> None:
            async with sandbox.execute(
                request, ticket, max_output_bytes=self._state.limits.max_output_bytes
            ) as events:
                async for event in events:
                    for frame in encode(event):
                        await append(frame)

        try:
            await sandbox.guard(write())
        except SandboxGoneError as exc:
            execution.end(WSCloseCode.GOING_AWAY, str(exc))
            return
        except WorkdirError as exc:
            code, close, why = exc.code, WSCloseCode.POLICY_VIOLATION, str(exc)
        except SandboxPausedError as exc:
            code, close, why = "SANDBOX_PAUSED", WSCloseCode.TRY_AGAIN_LATER, str(exc)
        except Exception as exc:
            _log.error("execution_failed", sandbox=sandbox.id, exc_info=exc)
            error = encoder.error("internal error", "INTERNAL_ERROR", time.time())
            await append(error)
            execution.end(WSCloseCode.INTERNAL_ERROR, "internal error")
            return
        else:
            execution.end(WSCloseCode.OK)
            return
        count_refusal(code)
        await append(encoder.error(why, code, time.time()))
        execution.end(close, why)

    async def _attach(self, socket: _Socket, execution: Execution, after: int) -> None:
        """Send the execution's frames after ``after`` until its end or the client's.

        The client closing cleanly (1000) before the end cancels the run; a
        lost connection (or a send timeout, which drops it) leaves the run
        going, for a resume.
        """
        reader = execution.attach(after)
        watcher: asyncio.Task[int | None] | None = None
        try:
            async with asyncio.TaskGroup() as tasks:
                sender = tasks.create_task(_outcome(_send_frames(socket, reader)))
                watcher = tasks.create_task(_client_close(socket.ws))
                await asyncio.wait(
                    {sender, watcher}, return_when=asyncio.FIRST_COMPLETED
                )
                if not sender.done():
                    sender.cancel()  # the client closed, or the connection is lost
                elif (
                    sender.result() is None
                    and not reader.displaced
                    and not socket.ws.closed
                ):
                    # Everything is out: let the client close first.
                    await asyncio.wait({watcher}, timeout=self._state.close_timeout)
                watcher.cancel()
        finally:
            # Also when the connection's end cancels this handler (aiohttp
            # does), which may come right after the client's close frame.
            execution.detach(reader)
            if (
                watcher is not None
                and watcher.done()
                and not watcher.cancelled()
                and watcher.result() == WSCloseCode.OK
                and not execution.ended
            ):
                execution.cancel()  # a clean close: the client wants no more
        if socket.ws.closed or socket.dropped:
            return
        with contextlib.suppress(ConnectionError):
            if reader.displaced:
                await socket.close(
                    WSCloseCode.POLICY_VIOLATION, "resumed on another connection"
                )
            elif not sender.cancelled() and sender.result() is None:
                await socket.close(execution.close_code, execution.close_reason)


async def _send_frames(socket: _Socket, reader: Reader) -> None:
    """Send a reader's frames, a ``RESUME_GAP`` error first if some are gone."""
    if reader.gap is not None:
        gap = {
            "type": "error",
            "error": f"frames before {reader.gap} are no longer held",
            "code": RESUME_GAP,
            "first_available": reader.gap,
            "timestamp": iso_timestamp(time.time()),
        }
        await socket.send(msgspec.json.encode(gap).decode())
    while (frame := await reader.next()) is not None:
        await socket.send(frame)
        reader.sent()


async def _client_close(ws: web.WebSocketResponse) -> int | None:
    """Read until the connection ends: the client's close code, None if lost."""
    while True:
        message = await ws.receive()
        if message.type is WSMsgType.CLOSE:
            return int(message.data)
        if message.type in _ENDED:
            return None


def _execution_frame(execution_id: str) -> str:
    return msgspec.json.encode(
        {"type": EXECUTION, "execution_id": execution_id}
    ).decode()


class _Socket:
    """An agent WebSocket whose every send is bounded by ``send_timeout``.

    Attributes:
        dropped: Whether a send timed out and the connection was dropped.
    """

    __slots__ = ("_request", "_timeout", "dropped", "ws")

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, timeout: float
    ) -> None:
        self.ws = ws
        self._request = request
        self._timeout = timeout
        self.dropped = False

    async def _within(self, send: Coroutine[Any, Any, Any]) -> None:
        if self.dropped:
            send.close()
            raise SendTimeoutError("the connection was dropped")
        try:
            await send_within(send, self._request, self._timeout)
        except SendTimeoutError:
            self.dropped = True
            raise

    async def send(self, text: str | bytes) -> None:
        """Send a text frame: ``str``, or UTF-8 ``bytes`` sent as they are.

        Raises:
            SendTimeoutError: If the client read nothing for ``send_timeout``;
                the connection is dropped.
            ConnectionError: If the client went away.
        """
        if isinstance(text, bytes):
            # Encoded already (the encoder's JSON): no decode and encode again.
            await self._within(self.ws.send_frame(text, WSMsgType.TEXT))
        else:
            await self._within(self.ws.send_str(text))

    async def close(self, code: int, reason: str = "") -> None:
        """Close with ``code``; nothing if the connection was dropped."""
        if not self.dropped:
            await self._within(self.ws.close(code=code, message=_reason(reason)))

    async def refuse(self, code: str, message: str, close: int) -> None:
        """Send an ``error`` frame, then close with ``close``; count refusals."""
        count_refusal(code)
        with contextlib.suppress(ConnectionError):
            await self.send(hopx_error(message, code, time.time()).decode())
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError):
                await self.close(close, message)


def _parse(kind: WSMsgType, data: Any, state: State) -> ExecuteRequest | ResumeRequest:
    """Return the run (or the resume) a first message asks for.

    Raises:
        RequestError: If it is not a valid ``execute`` or ``resume`` message.
    """
    if kind is not WSMsgType.TEXT and kind is not WSMsgType.BINARY:
        raise RequestError(f"expected an execute message, got a {kind.name} frame")
    try:
        message = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        raise RequestError("the message is not valid JSON") from None
    return parse_hopx_stream(message, state.limits)


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
