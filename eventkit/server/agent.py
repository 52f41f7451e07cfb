"""The HOPX agent's HTTP API: what a sandbox's SDK calls besides the stream.

A sandbox's agent is at its ``public_host``
(``<server>/agent/<id>.local.vms.hopx.dev``, see
:meth:`~eventkit.server.state.State.agent_url`), which the SDK's agent
client puts before every path below, and at the server's root too (its
WebSocket client keeps only the host); every call but ``/health`` carries
``Authorization: Bearer <the sandbox's token>``.

======================================= ==========================================
call                                    SDK method
======================================= ==========================================
``GET /health``                         the SDK's readiness wait (no token needed)
``POST /execute``                       ``run_code``: stdout, stderr, exit code, time
``POST /execute/background``            ``run_code_background``
``GET /execute/processes``, ``/processes`` ``list_processes`` (sync, async)
``POST /execute/kill/{id}``,            ``kill_process`` (sync, async)
``POST /processes/{id}/kill``
``POST /commands/run``                  ``commands.run``
``POST /commands/background``           ``commands.run(..., background=True)``
``GET``/``PUT``/``PATCH /env``          ``env.get_all``/``set_all``/``update``
``GET /files/read``, ``/files/download`` ``files.read``, ``read_bytes``, ``download``
``POST /files/write``, ``/files/upload`` ``files.write``, ``write_bytes``, ``upload``
``GET /files/list``, ``/files/exists``  ``files.list``, ``exists``
``POST /files/mkdir``                   ``files.mkdir`` (with parents)
``DELETE /files/remove``                ``files.remove`` (directories whole)
``GET /info``, ``/metrics/snapshot``    ``get_agent_info``, ``get_metrics_snapshot``
======================================= ==========================================

Runs go through the same admission and limits as the stream's. A
non-streaming answer holds the run's output, so it keeps at most the
output cap (``max_output_bytes``, or
:data:`~eventkit.server.limits.DEFAULT_MAX_OUTPUT_BYTES` without one),
measured in UTF-8 bytes before it is kept, and answers in UTF-8 JSON written
a piece at a time (:mod:`eventkit.server.replies`); ``truncated`` tells a
cut. ``/files/download`` answers the file in base64, which the SDK's
``read_bytes`` decodes (raw bytes that happen to read as base64 would be
decoded by it wrongly). A sandbox's own variables (``/env``) go to every
run, under each run's ``env``.

Calls that cannot mean anything on a local sandbox (desktop automation) or
that this server does not offer (the terminal, file watching, webhooks,
caches, Jupyter sessions) get a JSON 501 naming the call.

Failure behaviour: every error answer is JSON in the agent's shape
(:func:`~eventkit.server.errors.agent_error`), which the SDK maps to its
exceptions: no token or a wrong one 401 (the SDK refreshes its token and
tries again); another sandbox's path 404; an invalid body 400
``INVALID_REQUEST``; a path leading out of the sandbox 403
``PATH_OUTSIDE_SANDBOX`` (and the other codes of
:exc:`~eventkit.server.fs.PathError`); a working directory that cannot be
used 400 ``INVALID_WORKDIR``; a paused sandbox 409 ``SANDBOX_PAUSED``; no
room for a run 429; the sandbox deleted mid-run 410 ``SANDBOX_GONE``; an
unknown process 404 ``PROCESS_NOT_FOUND``. A run's own failure (a non-zero
exit, a limit) is an answer, not an error: ``success`` false, with
``error`` and ``error_code`` for a limit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import os
import time
from typing import TYPE_CHECKING, Any, Final

from aiohttp import BodyPartReader, web

from eventkit.protocol.hopx import error_code, iso_timestamp
from eventkit.server import fs
from eventkit.server.auth import bearer_of
from eventkit.server.errors import agent_error
from eventkit.server.limits import TooManyRequestsError
from eventkit.server.replies import Output, send_json, send_within
from eventkit.server.requests import (
    DEFAULT_WORKDIR,
    BodyTimeoutError,
    RequestError,
    parse_command,
    parse_env,
    parse_hopx_run,
    read_json,
)
from eventkit.server.sandboxes import (
    MAX_ENV_VARS,
    SandboxGoneError,
    SandboxPausedError,
    WorkdirError,
)
from eventkit.server.state import AGENT_DOMAIN
from eventkit.stats import server_stats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from eventkit.server.limits import Ticket
    from eventkit.server.processes import Process
    from eventkit.server.requests import ExecuteRequest
    from eventkit.server.sandboxes import Sandbox
    from eventkit.server.state import State

    AgentHandler = Callable[[Any, web.Request, Sandbox], Awaitable[web.StreamResponse]]

__all__ = ["AGENT_PREFIX", "add_routes", "not_implemented_routes"]

#: Where each sandbox's agent lives: its ``public_host`` path.
AGENT_PREFIX: Final = "/agent/{agent_host}"
#: Bytes of a file sent at a time.
_FILE_CHUNK: Final = 1 << 20
#: File transfers (each holding its file in memory) done at once.
FILE_TRANSFERS: Final = 4
_VERSION: Final = "eventkit-local"

#: Paths answered 501, by prefix, with what they are for.
_NOT_HERE: Final = (
    ("/desktop", "desktop automation (sandbox.desktop)"),
    ("/terminal", "the interactive terminal (sandbox.terminal)"),
    ("/files/watch", "file watching (files.watch)"),
    ("/execute/async", "runs with a webhook callback (run_code_async)"),
    ("/execute/rich", "rich output capture"),
    ("/cache", "the agent's cache (sandbox.cache)"),
    ("/jupyter", "Jupyter sessions (get_jupyter_sessions)"),
    ("/system", "system information"),
)


def add_routes(
    app: web.Application,
    state: State,
    execute_stream: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> None:
    """Add the agent routes, at the root and under :data:`AGENT_PREFIX`.

    Args:
        app: The application.
        state: The server's state.
        execute_stream: The WebSocket ``/execute/stream`` handler (in
            :mod:`eventkit.server.hopx`), added under the prefix too.
    """
    agent = _Agent(state)
    for prefix in ("", AGENT_PREFIX):
        router = app.router
        router.add_get(f"{prefix}/health", agent.health)
        if prefix:
            router.add_get(f"{prefix}/execute/stream", execute_stream)
        router.add_post(f"{prefix}/execute", agent.execute)
        router.add_post(f"{prefix}/execute/background", agent.execute_background)
        router.add_get(f"{prefix}/execute/processes", agent.processes)
        router.add_get(f"{prefix}/processes", agent.processes)
        router.add_post(f"{prefix}/execute/kill/{{process_id}}", agent.kill)
        router.add_post(f"{prefix}/processes/{{process_id}}/kill", agent.kill)
        router.add_post(f"{prefix}/commands/run", agent.command)
        router.add_post(f"{prefix}/commands/background", agent.command_background)
        router.add_get(f"{prefix}/env", agent.env_get)
        router.add_put(f"{prefix}/env", agent.env_set)
        router.add_patch(f"{prefix}/env", agent.env_update)
        router.add_get(f"{prefix}/files/read", agent.file_read)
        router.add_get(f"{prefix}/files/download", agent.file_download)
        router.add_post(f"{prefix}/files/write", agent.file_write)
        router.add_post(f"{prefix}/files/upload", agent.file_upload)
        router.add_get(f"{prefix}/files/list", agent.file_list)
        router.add_get(f"{prefix}/files/exists", agent.file_exists)
        router.add_post(f"{prefix}/files/mkdir", agent.file_mkdir)
        router.add_delete(f"{prefix}/files/remove", agent.file_remove)
        router.add_get(f"{prefix}/info", agent.info)
        router.add_get(f"{prefix}/metrics/snapshot", agent.metrics)
        router.add_get(f"{prefix}/metrics", agent.metrics)
        for path, _ in _NOT_HERE:
            router.add_route("*", f"{prefix}{path}", not_implemented)
            router.add_route("*", f"{prefix}{path}/{{tail:.*}}", not_implemented)


def not_implemented_routes() -> tuple[tuple[str, str], ...]:
    """Return the agent paths answered 501, with what they are for."""
    return _NOT_HERE


async def not_implemented(request: web.Request) -> web.Response:
    """Answer 501, naming the call and why it is not here."""
    path = request.path
    if path.startswith("/agent/"):
        path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else path
    what = next(
        (name for prefix, name in _NOT_HERE if path.startswith(prefix)), "this call"
    )
    message = (
        f"{request.method} {path}: {what} is not available on a local eventkit sandbox"
    )
    return agent_error(
        501, "NOT_IMPLEMENTED", message, details={"call": f"{request.method} {path}"}
    )


def _agent(
    handler: AgentHandler,
) -> Callable[[Any, web.Request], Awaitable[web.StreamResponse]]:
    """Find the request's sandbox by its token; answer errors in the agent's shape."""

    @functools.wraps(handler)
    async def handle(self: _Agent, request: web.Request) -> web.StreamResponse:
        sandbox = self._state.sandboxes.by_token(bearer_of(request))
        if sandbox is None:
            return agent_error(
                401,
                "UNAUTHORIZED",
                "a valid sandbox token is required (Authorization: Bearer "
                "<auth_token from POST /v1/sandboxes>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        host = request.match_info.get("agent_host")
        if host is not None and host != f"{sandbox.id}.{AGENT_DOMAIN}":
            return agent_error(
                404, "NOT_FOUND", f"no sandbox agent at {host!r} for this token"
            )
        try:
            return await handler(self, request, sandbox)
        except RequestError as exc:
            return agent_error(400, "INVALID_REQUEST", str(exc))
        except fs.PathError as exc:
            return agent_error(
                exc.status, exc.code, str(exc), details={"path": exc.path}
            )
        except WorkdirError as exc:
            return agent_error(400, exc.code, str(exc), details={"reason": exc.reason})
        except SandboxPausedError as exc:
            return agent_error(409, "SANDBOX_PAUSED", str(exc))
        except TooManyRequestsError as exc:
            return agent_error(429, "TOO_MANY_REQUESTS", str(exc))
        except SandboxGoneError as exc:
            return agent_error(410, "SANDBOX_GONE", str(exc))

    return handle


class _Agent:
    __slots__ = ("_state",)

    def __init__(self, state: State) -> None:
        self._state = state

    async def _json(self, request: web.Request, *, max_bytes: int | None = None) -> Any:
        return await read_json(
            request, body_timeout=self._state.body_timeout, max_bytes=max_bytes
        )

    async def health(self, request: web.Request) -> web.Response:
        # Reveals nothing: any prober, load balancer or SDK may ask.
        return web.json_response({"status": "healthy"})

    # Runs -------------------------------------------------------------------

    async def _collected(
        self,
        request: web.Request,
        sandbox: Sandbox,
        run: ExecuteRequest,
        fields: dict[str, Any],
    ) -> web.StreamResponse:
        """Run ``run`` to its end; answer its output and outcome in one JSON."""
        state = self._state
        ticket = state.admission.admit()
        cap = state.limits.collected_output_bytes
        output = Output(cap, ("stdout", "stderr"))
        outcome: dict[str, Any] = {
            "success": False,
            "exit_code": None,
            "execution_time": None,
        }

        async def collect() -> None:
            async with sandbox.execute(run, ticket, max_output_bytes=cap) as events:
                async for event in events:
                    kind = event.type
                    if kind == "stdout" or kind == "stderr":
                        output.add(kind, event.data)
                    elif kind == "resource_limit" or kind == "error":
                        outcome.setdefault("error", event.data)
                        outcome.setdefault("error_code", error_code(event))
                    elif kind == "result":
                        outcome["exit_code"] = event.attrs.get("exit_code")
                        outcome["execution_time"] = event.attrs.get("execution_time")
                    elif kind == "completed":
                        outcome["success"] = bool(event.attrs.get("success"))

        with ticket:
            await sandbox.guard(collect())
        answer = {
            **fields,
            **outcome,
            "timestamp": iso_timestamp(time.time()),
            "truncated": output.truncated,
        }
        return await send_json(request, answer, output, send_timeout=state.send_timeout)

    @_agent
    async def execute(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        run = parse_hopx_run(await self._json(request), self._state.limits)
        return await self._collected(
            request, sandbox, run, {"language": run.language, "rich_outputs": []}
        )

    @_agent
    async def command(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        run, line = parse_command(await self._json(request), self._state.limits)
        return await self._collected(request, sandbox, run, {"command": line})

    def _background(
        self, sandbox: Sandbox, run: ExecuteRequest, name: str | None, line: str | None
    ) -> web.Response:
        """Start ``run`` in the background; answer with its process record."""
        state = self._state
        ticket = state.admission.admit()
        process = sandbox.processes.new(name, run.language, line)
        try:
            process.task = sandbox.spawn(
                _run_background(sandbox, run, ticket, process, state),
                "background",
            )
        except SandboxGoneError:
            ticket.release()
            raise
        info = process.describe()
        info["message"] = "started in the background"
        return web.json_response(info)

    @_agent
    async def execute_background(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        body = await self._json(request)
        run = parse_hopx_run(body, self._state.limits, default_timeout=300.0)
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise RequestError("name must be a string")
        return self._background(sandbox, run, name, None)

    @_agent
    async def command_background(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        body = await self._json(request)
        run, line = parse_command(body, self._state.limits)
        name = body.get("name")
        return self._background(
            sandbox, run, name if isinstance(name, str) else None, line
        )

    @_agent
    async def processes(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        listed = [process.describe() for process in sandbox.processes]
        return web.json_response(
            {
                "processes": listed,
                "count": len(listed),
                "timestamp": iso_timestamp(time.time()),
            }
        )

    @_agent
    async def kill(self, request: web.Request, sandbox: Sandbox) -> web.StreamResponse:
        process_id = request.match_info["process_id"]
        process = sandbox.processes.get(process_id)
        if process is None:
            return agent_error(
                404, "PROCESS_NOT_FOUND", f"no background process {process_id!r}"
            )
        task = process.task
        if task is not None and not task.done():
            if not task.cancelling():
                task.cancel()
            # Wait for it: its process killed and reaped, its record final.
            await asyncio.wait({task})
        return web.json_response(
            {
                "success": True,
                "process_id": process.process_id,
                "status": process.status,
                "message": f"process {process.process_id} {process.status}",
            }
        )

    # Environment ------------------------------------------------------------

    def _env_answer(self, sandbox: Sandbox) -> web.Response:
        return web.json_response(
            {
                "env_vars": dict(sandbox.env),
                "count": len(sandbox.env),
                "timestamp": iso_timestamp(time.time()),
            }
        )

    async def _env_body(self, request: web.Request) -> dict[str, str]:
        body = await self._json(request)
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        return parse_env(body.get("env_vars"))

    @_agent
    async def env_get(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        return self._env_answer(sandbox)

    @_agent
    async def env_set(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        sandbox.env = await self._env_body(request)
        return self._env_answer(sandbox)

    @_agent
    async def env_update(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        merged = {**sandbox.env, **await self._env_body(request)}
        if len(merged) > MAX_ENV_VARS:
            raise RequestError(
                f"env_vars would hold {len(merged)}, over {MAX_ENV_VARS}"
            )
        sandbox.env = merged
        return self._env_answer(sandbox)

    # Files ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transferring(self) -> AsyncIterator[None]:
        """Hold one of the few file transfers at once: each holds a file in memory."""
        transfers = self._state.transfers
        if transfers is None:
            yield
            return
        async with transfers:
            yield

    async def _read_file(self, sandbox: Sandbox, path: str) -> bytes:
        """Read a file of the sandbox, up to the file cap, in a thread."""
        return await asyncio.to_thread(
            fs.read_file,
            sandbox.root,
            path,
            max_bytes=self._state.limits.max_file_bytes,
        )

    @_agent
    async def file_read(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        path = _path_param(request)
        async with self._transferring():
            data = await self._read_file(sandbox, path)
            size = len(data)
            # Room for every byte that is not UTF-8 to become U+FFFD (3 bytes).
            output = Output(3 * size, ("content",))
            output.add("content", data.decode(errors="replace"))
            del data
            return await send_json(
                request,
                {"path": path, "size": size},
                output,
                send_timeout=self._state.send_timeout,
            )

    @_agent
    async def file_download(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        path = _path_param(request)
        async with self._transferring():
            data = await self._read_file(sandbox, path)
            return await self._send_base64(request, path, data)

    async def _send_base64(
        self, request: web.Request, path: str, data: bytes
    ) -> web.StreamResponse:
        name = os.path.basename(path.rstrip("/")) or "file"
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/plain; charset=ascii",
                "Content-Disposition": f'attachment; filename="{_quote(name)}.b64"',
                "X-Content-Encoding": "base64",
            }
        )
        timeout = self._state.send_timeout
        await send_within(response.prepare(request), request, timeout)
        # Whole base64 quanta per chunk: the concatenation is the file's base64.
        step = _FILE_CHUNK - _FILE_CHUNK % 3
        for start in range(0, len(data), step):
            chunk = base64.b64encode(data[start : start + step])
            await send_within(response.write(chunk), request, timeout)
        await send_within(response.write_eof(), request, timeout)
        return response

    @_agent
    async def file_write(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        async with self._transferring():
            return await self._write(request, sandbox)

    async def _write(self, request: web.Request, sandbox: Sandbox) -> web.Response:
        limits = self._state.limits
        body = await self._json(request, max_bytes=limits.max_file_body_bytes)
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        path = body.get("path")
        content = body.get("content")
        if not isinstance(path, str):
            raise RequestError("path must be a string")
        if not isinstance(content, str):
            raise RequestError("content must be a string")
        mode = _mode(body.get("mode", "0644"))
        if body.get("encoding") == "base64":
            try:
                data = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError):
                raise RequestError("content is not valid base64") from None
        else:
            data = content.encode()
        del body, content
        if len(data) > limits.max_file_bytes:
            raise fs.PathError(
                "FILE_TOO_LARGE",
                413,
                path,
                f"{path}: larger than the limit of {limits.max_file_bytes} bytes",
            )
        size = await asyncio.to_thread(
            functools.partial(fs.write_file, sandbox.root, path, data, mode=mode)
        )
        return _file_answer(path, size, "written")

    @_agent
    async def file_upload(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        limits = self._state.limits
        async with self._transferring():
            try:
                async with asyncio.timeout(self._state.body_timeout):
                    path, data = await _read_upload(request, limits.max_file_bytes)
            except TimeoutError:
                raise BodyTimeoutError(
                    f"the upload did not arrive within {self._state.body_timeout:g} s"
                ) from None
            size = await asyncio.to_thread(fs.write_file, sandbox.root, path, data)
        return _file_answer(path, size, "uploaded")

    @_agent
    async def file_list(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        path = request.query.get("path") or DEFAULT_WORKDIR
        files = await asyncio.to_thread(fs.list_dir, sandbox.root, path)
        return web.json_response({"files": files, "path": path, "count": len(files)})

    @_agent
    async def file_exists(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        path = _path_param(request)
        found = await asyncio.to_thread(fs.exists, sandbox.root, path)
        return web.json_response({"exists": found, "path": path})

    @_agent
    async def file_mkdir(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        body = await self._json(request)
        path = body.get("path") if isinstance(body, dict) else None
        if not isinstance(path, str):
            raise RequestError("path must be a string")
        await asyncio.to_thread(fs.make_dirs, sandbox.root, path)
        return _file_answer(path, None, "created")

    @_agent
    async def file_remove(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        path = _path_param(request)
        await asyncio.to_thread(fs.remove, sandbox.root, path)
        return _file_answer(path, None, "removed")

    # About ------------------------------------------------------------------

    @_agent
    async def info(self, request: web.Request, sandbox: Sandbox) -> web.StreamResponse:
        state = self._state
        uname = os.uname()
        return web.json_response(
            {
                "vm_id": sandbox.id,
                "agent": "eventkit",
                "agent_version": _VERSION,
                "os": uname.sysname.lower(),
                "arch": uname.machine,
                "start_time": iso_timestamp(state.started_at),
                "uptime": time.time() - state.started_at,
                "features": {
                    "code_execution": True,
                    "file_operations": True,
                    "websocket_streaming": True,
                    "background_jobs": True,
                    "terminal_access": False,
                    "rich_output": False,
                    "languages": ["python", "bash", "sh", "javascript"],
                },
            }
        )

    @_agent
    async def metrics(
        self, request: web.Request, sandbox: Sandbox
    ) -> web.StreamResponse:
        state = self._state
        return web.json_response(
            {
                "uptime_seconds": time.time() - state.started_at,
                "active_executions": state.admission.running,
                "total_executions": server_stats().executions,
            }
        )


async def _run_background(
    sandbox: Sandbox,
    run: ExecuteRequest,
    ticket: Ticket,
    process: Process,
    state: State,
) -> None:
    """Run ``run`` to its end, its output dropped; keep ``process`` up to date."""
    with ticket:
        try:
            async with sandbox.execute(
                run, ticket, max_output_bytes=state.limits.max_output_bytes
            ) as events:
                async for event in events:
                    kind = event.type
                    if kind == "started":
                        process.status = "running"
                        process.start_time = event.timestamp
                        pid = event.attrs.get("pid")
                        process.pid = pid if isinstance(pid, int) else None
                    elif kind == "resource_limit" or kind == "error":
                        if process.error is None:
                            process.error = event.data
                    elif kind == "result":
                        exit_code = event.attrs.get("exit_code")
                        process.exit_code = (
                            exit_code if isinstance(exit_code, int) else None
                        )
                    elif kind == "completed":
                        success = bool(event.attrs.get("success"))
                        process.status = "completed" if success else "failed"
        except asyncio.CancelledError:
            process.status = "killed"
            raise
        except (WorkdirError, SandboxPausedError) as exc:
            process.status = "failed"
            process.error = str(exc)
        finally:
            process.end_time = time.time()
            process.task = None
            if not process.done:
                process.status = "failed"


def _path_param(request: web.Request) -> str:
    path = request.query.get("path")
    if not path:
        raise RequestError("the path query parameter is required")
    return path


def _mode(value: object) -> int:
    """Return a file mode from ``"0644"``, ``"644"`` or 420."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o7777:
        return value
    if isinstance(value, str):
        try:
            mode = int(value, 8)
        except ValueError:
            pass
        else:
            if 0 <= mode <= 0o7777:
                return mode
    raise RequestError(f"mode must be octal permissions such as '0644', not {value!r}")


def _quote(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100]


def _file_answer(path: str, size: int | None, done: str) -> web.Response:
    answer: dict[str, Any] = {
        "success": True,
        "path": path,
        "message": f"{path} {done}",
        "timestamp": iso_timestamp(time.time()),
    }
    if size is not None:
        answer["size"] = size
    return web.json_response(answer)


async def _read_upload(request: web.Request, max_bytes: int) -> tuple[str, bytes]:
    """Read a multipart upload: its ``path`` field and its ``file``, capped."""
    if not request.content_type.startswith("multipart/"):
        raise RequestError("an upload is multipart/form-data with path and file")
    reader = await request.multipart()
    path: str | None = None
    data: bytes | None = None
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue  # a nested multipart: not an upload's
        name = part.name
        if name == "path":
            path = (await part.read(decode=True)).decode(errors="replace")
        elif name == "file":
            chunks = bytearray()
            while chunk := await part.read_chunk(_FILE_CHUNK):
                chunks += chunk
                if len(chunks) > max_bytes:
                    raise fs.PathError(
                        "FILE_TOO_LARGE",
                        413,
                        path or "upload",
                        f"the upload is larger than the limit of {max_bytes} bytes",
                    )
            data = bytes(chunks)
    if path is None or data is None:
        raise RequestError("an upload needs a path field and a file")
    return path, data
