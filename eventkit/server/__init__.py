"""A local sandbox that the official HOPX and AI Computer SDKs use unchanged.

:class:`LocalSandboxServer` (an async context manager) and :func:`serve`
(what ``eventkit serve`` runs) put the HOPX public API and agent WebSocket
and the AI Computer HTTP API on one port, and run the code they are sent
with :func:`eventkit.sources.local`. See :mod:`eventkit.server.app` for the
failure behaviour, and the front-end modules :mod:`eventkit.server.hopx` and
:mod:`eventkit.server.aicomputer` for each protocol.
"""

from eventkit.server.app import LocalSandboxServer, serve
from eventkit.server.limits import Limits

__all__ = ["Limits", "LocalSandboxServer", "serve"]
