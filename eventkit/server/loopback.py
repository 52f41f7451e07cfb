"""Which hosts a server answers for: loopback names, and the Host check.

:func:`is_loopback` tells the addresses and names that reach this machine
only; :func:`host_middleware` refuses requests whose ``Host`` header cannot
be read (``::1`` without brackets, say) and, on a server listening on
loopback, those whose ``Host`` is not a loopback name, so that a web page
cannot reach the server through DNS rebinding (a name of the attacker's
that resolves to ``127.0.0.1``).

Failure behaviour: a refused request gets a JSON 403 (code ``FORBIDDEN``,
counted as a refusal); nothing here raises.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from eventkit.server.errors import json_error

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventkit.server.errors import Handler

__all__ = ["host_middleware", "host_of", "is_loopback"]

#: A host name or IPv4 address, as a Host header may carry it.
_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,253}")


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` (a name or an address) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str | None:
    """Return the name or address a ``Host`` header names, or None if unreadable.

    ``name``, ``name:port``, ``1.2.3.4:port``, ``[::1]`` and ``[::1]:port``
    are read; an IPv6 address without brackets (``::1``) is not: its colons
    and a port's cannot be told apart.
    """
    header = header.strip()
    if header.startswith("["):
        end = header.find("]")
        rest = header[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        address = header[1:end]
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return None
        return address
    host, colon, port = header.partition(":")
    if colon and not port.isdigit():
        return None  # a second colon, or no port after it
    return host if _NAME.fullmatch(host) else None


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
