"""The server's error answers: JSON bodies, and the counting of refusals.

Failure behaviour: every error answer is JSON. The public APIs answer
``{"error": {"code", "message"}, "message"}`` (:func:`json_error`, the
shape the HOPX SDK's public client reads; the AI Computer client shows the
body text as is); the HOPX agent answers ``{"error": message, "code",
"message", "details"}`` (:func:`agent_error`, the shape its agent client
reads). :func:`error_middleware` turns into the first shape aiohttp's own
errors (404, 405, 413), a :exc:`~eventkit.server.requests.RequestError`
escaping a handler (400), a request body not received in time (408, the
connection closed, counted as ``body_timeout``), and any other exception
(500 ``INTERNAL_ERROR``, logged with structlog as ``request_failed``, never
a traceback to the client); the server goes on.

Every refusal is counted in :func:`~eventkit.stats.server_stats` where its
answer is made (:func:`json_error` here, the ``error`` frame of the HOPX
WebSocket), by :func:`count_refusal`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import structlog
from aiohttp import web

from eventkit.server.requests import BodyTimeoutError, RequestError
from eventkit.stats import server_stats

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

__all__ = [
    "REFUSALS",
    "agent_error",
    "count_refusal",
    "error_middleware",
    "json_error",
    "unauthorized",
]

_log: Final = structlog.get_logger("eventkit.server")

#: Error codes for aiohttp's own HTTP errors.
_STATUS_CODES: Final = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "REQUEST_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
}

#: Error codes that refuse a request -> the ``reason`` it is counted under in
#: ``eventkit_server_refusals_total``. Others (404, 405, 409, 500, an error
#: during a run) are not refusals.
REFUSALS: Final = {
    "TOO_MANY_REQUESTS": "busy",
    "UNAUTHORIZED": "unauthorized",
    "INVALID_REQUEST": "invalid",
    "REQUEST_TOO_LARGE": "invalid",
    "TOO_MANY_SANDBOXES": "sandbox_limit",
    "FORBIDDEN": "forbidden",
    "INVALID_WORKDIR": "invalid",
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


def agent_error(
    status: int,
    code: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Return an error answer in the HOPX agent's shape; count it if a refusal.

    Its agent client reads ``error`` (or ``message``) and ``code``, and maps
    the codes it knows (``FILE_NOT_FOUND``, ``EXECUTION_FAILED``...) to its
    own exceptions, the others to ``AgentError``.
    """
    count_refusal(code)
    body = {
        "error": message,
        "code": code,
        "message": message,
        "details": details or {},
    }
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
    except BodyTimeoutError as exc:
        server_stats().abort("body_timeout")
        response = json_error(408, "REQUEST_TIMEOUT", str(exc))
        response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        code = _STATUS_CODES.get(exc.status, "HTTP_ERROR")
        return json_error(
            exc.status, code, exc.reason if exc.text is None else exc.text
        )
    except ConnectionError:
        raise  # the client is gone: nobody to answer
    except Exception as exc:
        _log.error(
            "request_failed", method=request.method, path=request.path, exc_info=exc
        )
        return json_error(500, "INTERNAL_ERROR", "internal error")
