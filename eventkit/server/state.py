"""What the handlers of one server share: :class:`State`.

Plain data, made by :class:`~eventkit.server.app.LocalSandboxServer` when it
starts; nothing here raises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import asyncio

    from aiohttp import web

    from eventkit.server.auth import Auth
    from eventkit.server.limits import Admission, Limits
    from eventkit.server.resume import Executions
    from eventkit.server.sandboxes import Registry, Sandbox

__all__ = ["AGENT_DOMAIN", "State"]

#: The made-up domain ending every sandbox's agent path, so that the HOPX
#: SDK's ``get_preview_url`` (which wants ``....vms.hopx.dev``) can parse
#: ``public_host``. Nothing resolves it: the path is what matters.
AGENT_DOMAIN: Final = "local.vms.hopx.dev"


@dataclass(slots=True, eq=False)
class State:
    """Everything the handlers share; one per server.

    Attributes:
        limits: The configured limits.
        auth: Public-API credentials.
        sandboxes: The sandboxes.
        admission: Slots and queue for runs.
        executions: The resumable executions and their frames.
        url: The server's own URL (``http://127.0.0.1:PORT``), once started.
        wildcard: Whether it listens on every address, so that a sandbox's
            ``public_host`` must follow the address the client used.
        first_message_timeout: Seconds a WebSocket may stay silent before its
            ``execute`` message.
        close_timeout: Seconds to wait for the client's close after
            ``complete``, and for its answer to ours.
        send_timeout: Seconds a send may wait for a client to read before
            its connection is dropped and its run killed.
        body_timeout: Seconds a request's body may take to arrive.
        started_at: Unix time the server started.
        transfers: Bounds the file transfers (reads, writes) done at once,
            each of which holds a file in memory.
        websockets: The open agent WebSockets, closed at shutdown.
    """

    limits: Limits
    auth: Auth
    sandboxes: Registry
    admission: Admission
    executions: Executions
    url: str = ""
    wildcard: bool = False
    first_message_timeout: float = 10.0
    close_timeout: float = 2.0
    send_timeout: float = 30.0
    body_timeout: float = 30.0
    started_at: float = field(default_factory=time.time)
    transfers: asyncio.Semaphore | None = None
    websockets: set[web.WebSocketResponse] = field(default_factory=set)

    def public_host(self, request: web.BaseRequest) -> str:
        """Return the server's URL as the client should use it: where it reached us."""
        if self.wildcard:
            return f"{request.scheme}://{request.host}"
        return self.url

    def agent_url(self, request: web.BaseRequest, sandbox: Sandbox) -> str:
        """Return ``sandbox``'s agent URL, its ``public_host``.

        ``<server>/agent/<id>.local.vms.hopx.dev``: the agent's HTTP calls
        go under that path (WebSocket clients drop the path, and the agent
        answers at the root too, by the token).
        """
        return f"{self.public_host(request)}/agent/{sandbox.id}.{AGENT_DOMAIN}"
