"""Which hosts a server answers for: loopback names, and the Host check.

:func:`is_loopback` and :func:`host_of` (from :mod:`eventkit._hosts`, shared
with the dashboard) tell the names that reach this machine only and read a
``Host`` header; :func:`host_middleware` refuses requests whose ``Host`` header cannot
be read (``::1`` without brackets, say) and, on a server listening on
loopback, those whose ``Host`` is not a loopback name, so that a web page
cannot reach the server through DNS rebinding (a name of the attacker's
that resolves to ``127.0.0.1``).

Failure behaviour: a refused request gets a JSON 403 (code ``FORBIDDEN``,
counted as a refusal); nothing here raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from eventkit._hosts import host_of, is_loopback
from eventkit.server.errors import json_error

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventkit.server.errors import Handler

__all__ = ["host_middleware", "host_of", "is_loopback"]


def host_middleware(allowed: Callable[[str], bool] | None) -> Any:
    """Return a middleware refusing an unreadable ``Host``, or one not ``allowed``.

    Args:
        allowed: Which hosts are served; None serves any readable one. A
            request without a ``Host`` (HTTP/1.0) is served: browsers,
            which DNS rebinding needs, always send one.
    """

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Host")
        if header is not None:
            host = host_of(header)
            if host is None or (allowed is not None and not allowed(host)):
                shown = header if len(header) <= 80 else header[:77] + "..."
                return json_error(
                    403,
                    "FORBIDDEN",
                    f"host {shown!r} is not served here; use 127.0.0.1",
                )
        return await handler(request)

    return check_host
