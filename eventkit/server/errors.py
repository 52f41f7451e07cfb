"""The server's error answers: JSON bodies, and the counting of refusals.

Failure behaviour: every error answer is JSON, ``{"error": {"code",
"message"}, "message"}`` (the shape the HOPX SDK reads; the AI Computer
client shows the body text as is), including aiohttp's own (404, 405, 413)
and a :exc:`~eventkit.server.requests.RequestError` escaping a handler (400),
both turned into JSON by :func:`error_middleware`. Any other exception
escaping a handler becomes aiohttp's 500, logged by aiohttp; the server goes
on.

Every refusal is counted in :func:`~eventkit.stats.server_stats` where its
answer is made (:func:`json_error` here, the ``error`` frame of the HOPX
WebSocket), by :func:`count_refusal`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

from eventkit.server.requests import RequestError
from eventkit.stats import server_stats

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

__all__ = [
    "REFUSALS",
    "count_refusal",
    "error_middleware",
    "json_error",
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


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
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
