"""What a server on this machine only accepts: loopback names, and the Host check.

:func:`is_loopback` tells the addresses and names that reach this machine
only; :func:`host_middleware` refuses requests whose ``Host`` is not one, so
that a web page cannot reach a server listening on loopback through DNS
rebinding (a name of the attacker's that resolves to ``127.0.0.1``).

Failure behaviour: a refused request gets a JSON 403 (code ``FORBIDDEN``,
counted as a refusal); nothing here raises.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from aiohttp import web

from eventkit.server.errors import json_error

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventkit.server.errors import Handler

__all__ = ["host_middleware", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` (a name or an address) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_middleware(allowed: Callable[[str], bool]) -> Any:
    """Return a middleware refusing requests whose ``Host`` is not ``allowed``."""

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.url.host or ""
        if not allowed(host):
            return json_error(
                403, "FORBIDDEN", f"host {host!r} is not served here; use 127.0.0.1"
            )
        return await handler(request)

    return check_host
