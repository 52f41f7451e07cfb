"""Host names and addresses: which reach this machine only, and reading ``Host``.

What every eventkit server checks before it answers (the local sandbox in
:mod:`eventkit.server.loopback`, the dashboard in :mod:`eventkit.dashboard`),
so that a web page cannot reach a loopback server through DNS rebinding.
Nothing here raises.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

__all__ = ["host_of", "is_loopback"]

#: A host name or IPv4 address, as a Host header may carry it.
_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,253}")


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` (a name or an address) reaches this machine only."""
    if host.lower() in ("localhost", "localhost."):
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
