"""What the handlers of one server share: :class:`State`.

Plain data, made by :class:`~eventkit.server.app.LocalSandboxServer` when it
starts; nothing here raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from eventkit.server.auth import Auth
    from eventkit.server.limits import Admission, Limits
    from eventkit.server.sandboxes import Registry

__all__ = ["State"]


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
