"""What the HOPX and AI Computer front ends share: state, JSON errors, guards.

Failure behaviour: every error answer is JSON, ``{"error": {"code",
"message"}, "message"}`` (the shape the HOPX SDK reads; the AI Computer
client shows the body text as is), including aiohttp's own (404, 405, 413).
Requests whose ``Host`` is not a loopback name get 403 when the server
listens on loopback, which stops a web page from reaching it through DNS
rebinding. An exception escaping a handler becomes a JSON 500 and is logged
by aiohttp; the server goes on.

Every refusal is counted in :func:`~eventkit.stats.server_stats` where its
answer is made (:func:`json_error` here, the ``error`` frame of the HOPX
WebSocket), by :func:`count_refusal`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import msgspec
from aiohttp import web

from eventkit.server.limits import RequestError
from eventkit.stats import server_stats

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventkit.server.auth import Auth
    from eventkit.server.limits import Admission, Limits
    from eventkit.server.sandboxes import Registry

    _Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

__all__ = [
    "REFUSALS",
    "State",
    "count_refusal",
    "error_middleware",
    "host_middleware",
    "is_loopback",
    "json_error",
    "read_json",
    "unauthorized",
]

#: Error codes for aiohttp's own HTTP errors.
_STATUS_CODES: Final = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "REQUEST_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
}

#: Error codes that refuse a request -> the ``reason`` it is counted under in
#: ``eventkit_server_refusals_total``. Others (404, 405, 500, an error during
#: a run) are not refusals.
REFUSALS: Final = {
    "TOO_MANY_REQUESTS": "busy",
    "UNAUTHORIZED": "unauthorized",
    "INVALID_REQUEST": "invalid",
    "REQUEST_TOO_LARGE": "invalid",
    "TOO_MANY_SANDBOXES": "sandbox_limit",
    "FORBIDDEN": "forbidden",
}


def count_refusal(code: str) -> None:
    """Count a refused request in the server's stats if ``code`` is a refusal.

    Args:
        code: The error code of the answer (``"TOO_MANY_REQUESTS"``, ...).
    """
    reason = REFUSALS.get(code)
    if reason is not None:
        server_stats().refuse(reason)


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` (a name or an address) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def json_error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """Return an error answer with a JSON body; count it if it is a refusal."""
    count_refusal(code)
    body = {"error": {"code": code, "message": message}, "message": message}
    return web.json_response(body, status=status, headers=headers)


def unauthorized(message: str) -> web.Response:
    """Return a 401 asking for a Bearer token."""
    return json_error(
        401, "UNAUTHORIZED", message, headers={"WWW-Authenticate": "Bearer"}
    )


async def read_json(request: web.Request, *, optional: bool = False) -> Any:
    """Return the request's JSON body (None when empty and ``optional``).

    Raises:
        RequestError: If the body is missing (unless ``optional``) or not JSON.
    """
    raw = await request.read()
    if not raw.strip():
        if optional:
            return None
        raise RequestError("a JSON request body is required")
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeError, RecursionError) as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}") from None


@dataclass(slots=True, eq=False)
class State:
    """Everything the handlers share; one per server.

    Attributes:
        limits: The configured limits.
        auth: Public-API credentials.
        sandboxes: The sandboxes.
        admission: Slots and queue for runs.
        url: The server's own URL (``http://127.0.0.1:PORT``), once started.
        wildcard: Whether it listens on every address, so that a sandbox's
            ``public_host`` must follow the address the client used.
        first_message_timeout: Seconds a WebSocket may stay silent before its
            ``execute`` message.
        close_timeout: Seconds to wait for the client's close after
            ``complete``, and for its answer to ours.
        websockets: The open agent WebSockets, closed at shutdown.
    """

    limits: Limits
    auth: Auth
    sandboxes: Registry
    admission: Admission
    url: str = ""
    wildcard: bool = False
    first_message_timeout: float = 10.0
    close_timeout: float = 2.0
    websockets: set[web.WebSocketResponse] = field(default_factory=set)

    def public_host(self, request: web.BaseRequest) -> str:
        """Return the agent URL a client should use: where it reached us."""
        if self.wildcard:
            return f"{request.scheme}://{request.host}"
        return self.url


@web.middleware
async def error_middleware(
    request: web.Request, handler: _Handler
) -> web.StreamResponse:
    """Answer every HTTP error (aiohttp's included) with a JSON body."""
    try:
        return await handler(request)
    except RequestError as exc:
        return json_error(400, "INVALID_REQUEST", str(exc))
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        code = _STATUS_CODES.get(exc.status, "HTTP_ERROR")
        return json_error(
            exc.status, code, exc.reason if exc.text is None else exc.text
        )


def host_middleware(allowed: Callable[[str], bool]) -> Any:
    """Return a middleware refusing requests whose ``Host`` is not ``allowed``."""

    @web.middleware
    async def check_host(request: web.Request, handler: _Handler) -> web.StreamResponse:
        host = request.url.host or ""
        if not allowed(host):
            return json_error(
                403, "FORBIDDEN", f"host {host!r} is not served here; use 127.0.0.1"
            )
        return await handler(request)

    return check_host
