"""The AI Computer front end: what ``ai-computer-client`` calls, over HTTP.

- ``POST /dev/token``: ``{"access_token"}``. Without an API key anyone gets
  one (any token is accepted then anyway); with one, only a caller
  presenting the key (``Authorization: Bearer`` or ``X-API-Key``).
- ``POST /api/v1/sandbox/create``: ``{"sandbox_id", "status": "ready"}``.
- ``GET /api/v1/sandbox/{id}/status``: ``{"status": "ready"}``.
- ``POST /api/v1/sandbox/{id}/execute/stream``: ``{"code", "timeout",
  "environment"?}`` in, an NDJSON body out
  (:class:`eventkit.protocol.aicomputer.AiComputerEncoder`), always ending with
  a ``completed`` line once the run ends, which carries eventkit's
  extension: ``exit_code`` and ``success`` (the official client ignores
  them; eventkit's source reads them).
- ``POST /api/v1/sandbox/{id}/execute``: the same run, answered at the end
  as ``{"output", "sandbox_id", "exit_code", "success", "error",
  "truncated"}``; the output is kept up to ``max_output_bytes`` (or
  :data:`~eventkit.server.limits.DEFAULT_MAX_OUTPUT_BYTES` without one),
  counted in UTF-8 bytes before it is kept, and written as UTF-8 JSON a
  piece at a time (:mod:`eventkit.server.replies`).
- ``DELETE /api/v1/sandbox/{id}``: stops its runs, removes its directory.

Every ``/api/v1`` call needs ``Authorization: Bearer <token>``
(:mod:`eventkit.server.auth`); a sandbox answers only to the token that
created it (404 for any other).

Failure behaviour:

- Bad or missing credentials: 401 with a JSON message; nothing runs.
- An invalid body (types, code size, timeout range): 400 with a JSON
  message; nothing runs.
- All slots busy and the queue full: 429 with a JSON message; nothing runs.
  An admitted request gets its 200 at once and waits for a slot with the
  body open.
- A run stopped by a limit, an executor error or a non-zero exit: one
  ``error`` line (its message) just before ``completed``.
- A sandbox whose ``/workspace`` is no longer a directory (the code made it
  a file, a FIFO, a link): ``execute`` answers 400 ``INVALID_WORKDIR``, the
  stream (already answered 200) an ``error`` line naming it, then
  ``completed``; the sandbox stays usable.
- The client disconnects mid-run (or while queued): the handler is
  cancelled, the process group killed and reaped. A client that stops
  reading: once a write waits ``send_timeout`` seconds, the connection is
  dropped and the run killed the same way.
- The sandbox deleted or the server shutting down mid-run: an ``error``
  line and ``completed``, and the body ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

from eventkit.protocol.aicomputer import AiComputerEncoder
from eventkit.server.auth import api_key_of, bearer_of
from eventkit.server.errors import json_error, unauthorized
from eventkit.server.limits import TooManyRequestsError
from eventkit.server.replies import Output, send_json, send_within
from eventkit.server.requests import parse_aicomputer_execute, read_json
from eventkit.server.sandboxes import (
    AICOMPUTER,
    SandboxGoneError,
    SandboxLimitError,
    SandboxPausedError,
    WorkdirError,
)

if TYPE_CHECKING:
    from eventkit.server.limits import Ticket
    from eventkit.server.requests import ExecuteRequest
    from eventkit.server.sandboxes import Sandbox
    from eventkit.server.state import State

__all__ = ["add_routes"]

_NDJSON: Final = "application/x-ndjson"
_BASE: Final = "/api/v1/sandbox"


def add_routes(app: web.Application, state: State) -> None:
    """Add the AI Computer routes to ``app``."""
    front = _AiComputer(state)
    app.router.add_post("/dev/token", front.token)
    app.router.add_post(f"{_BASE}/create", front.create)
    app.router.add_get(f"{_BASE}/{{id}}/status", front.status)
    app.router.add_post(f"{_BASE}/{{id}}/execute/stream", front.execute_stream)
    app.router.add_post(f"{_BASE}/{{id}}/execute", front.execute)
    app.router.add_delete(f"{_BASE}/{{id}}", front.delete)


class _AiComputer:
    __slots__ = ("_state",)

    def __init__(self, state: State) -> None:
        self._state = state

    def _owner(self, request: web.Request) -> str | None:
        token = bearer_of(request)
        return token if self._state.auth.accepts(token) else None

    def _owned(self, request: web.Request) -> Sandbox | web.Response:
        owner = self._owner(request)
        if owner is None:
            return unauthorized("a valid bearer token is required")
        sandbox_id = request.match_info["id"]
        sandbox = self._state.sandboxes.get(AICOMPUTER, sandbox_id, owner)
        if sandbox is None:
            return json_error(404, "NOT_FOUND", f"sandbox {sandbox_id!r} not found")
        return sandbox

    async def token(self, request: web.Request) -> web.Response:
        auth = self._state.auth
        if not auth.open and not auth.is_key(bearer_of(request) or api_key_of(request)):
            return unauthorized(
                "this server has an API key: present it (Authorization: Bearer) "
                "to get a token"
            )
        token, _ = auth.issue()
        return web.json_response(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": int(auth.token_ttl),
            }
        )

    async def create(self, request: web.Request) -> web.Response:
        owner = self._owner(request)
        if owner is None:
            return unauthorized("a valid bearer token is required")
        try:
            sandbox = self._state.sandboxes.create(AICOMPUTER, owner)
        except SandboxLimitError as exc:
            return json_error(429, "TOO_MANY_SANDBOXES", str(exc))
        return web.json_response({"sandbox_id": sandbox.id, "status": "ready"})

    async def status(self, request: web.Request) -> web.Response:
        sandbox = self._owned(request)
        if isinstance(sandbox, web.Response):
            return sandbox
        return web.json_response({"sandbox_id": sandbox.id, "status": "ready"})

    async def delete(self, request: web.Request) -> web.Response:
        sandbox = self._owned(request)
        if isinstance(sandbox, web.Response):
            return sandbox
        await self._state.sandboxes.delete(sandbox)
        return web.json_response({"success": True, "sandbox_id": sandbox.id})

    async def _admit(
        self, request: web.Request
    ) -> tuple[Sandbox, ExecuteRequest, Ticket] | web.Response:
        """Check everything before a run: credentials, body, room."""
        sandbox = self._owned(request)
        if isinstance(sandbox, web.Response):
            return sandbox
        body = await read_json(request, body_timeout=self._state.body_timeout)
        run = parse_aicomputer_execute(body, self._state.limits)
        try:
            ticket = self._state.admission.admit()
        except TooManyRequestsError as exc:
            return json_error(429, "TOO_MANY_REQUESTS", str(exc))
        return sandbox, run, ticket

    async def execute_stream(self, request: web.Request) -> web.StreamResponse:
        admitted = await self._admit(request)
        if isinstance(admitted, web.Response):
            return admitted
        sandbox, run, ticket = admitted
        timeout = self._state.send_timeout
        with ticket:
            response = web.StreamResponse(headers={"Content-Type": _NDJSON})
            encoder = AiComputerEncoder()

            async def write(data: bytes) -> None:
                await send_within(response.write(data), request, timeout)

            async def stream() -> None:
                async with sandbox.execute(
                    run, ticket, max_output_bytes=self._state.limits.max_output_bytes
                ) as events:
                    async for event in events:
                        lines = encoder.encode(event)
                        if lines:
                            await write(b"".join(lines))

            try:
                await send_within(response.prepare(request), request, timeout)
                try:
                    await sandbox.guard(stream())
                except (SandboxGoneError, WorkdirError, SandboxPausedError) as exc:
                    await write(_ended(encoder, exc))
                await send_within(response.write_eof(), request, timeout)
            except ConnectionError:
                pass  # the client went away, or read nothing: its run is stopped
        return response

    async def execute(self, request: web.Request) -> web.StreamResponse:
        admitted = await self._admit(request)
        if isinstance(admitted, web.Response):
            return admitted
        sandbox, run, ticket = admitted
        cap = self._state.limits.collected_output_bytes
        output = Output(cap, ("output",))
        encoder = AiComputerEncoder()
        with ticket:

            async def collect() -> None:
                async with sandbox.execute(run, ticket, max_output_bytes=cap) as events:
                    async for event in events:
                        if event.type == "stdout" or event.type == "stderr":
                            output.add("output", event.data)
                        else:
                            encoder.encode(event)  # the outcome: exit code, error

            try:
                await sandbox.guard(collect())
            except WorkdirError as exc:
                return json_error(400, exc.code, str(exc))
            except SandboxPausedError as exc:
                return json_error(409, "SANDBOX_PAUSED", str(exc))
            except SandboxGoneError as exc:
                encoder.error = str(exc)
        fields = {
            "sandbox_id": sandbox.id,
            "exit_code": encoder.exit_code,
            "success": encoder.error is None and encoder.exit_code == 0,
            "error": encoder.error,
            "truncated": output.truncated,
        }
        return await send_json(
            request, fields, output, send_timeout=self._state.send_timeout
        )


def _ended(encoder: AiComputerEncoder, exc: Exception) -> bytes:
    """Return the last lines of a run that could not go on: ``error``, ``completed``."""
    encoder.error = f"{exc.code}: {exc}" if isinstance(exc, WorkdirError) else str(exc)
    return b"".join(encoder.end())
