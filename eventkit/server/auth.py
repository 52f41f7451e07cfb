"""Who may call the server: API keys, development tokens, request headers.

Two kinds of credentials guard two kinds of endpoints:

- **Public API** (HOPX ``/v1/...`` with ``X-API-Key``, AI Computer
  ``/api/v1/...`` with ``Authorization: Bearer``): without a configured API
  key, any non-empty credential is accepted (a local development server, as
  the SDKs need *some* key); with API key ``K``, only ``K`` itself or a
  development token the server issued from ``/dev/token`` and that has not
  expired.
- **HOPX agent** (``/health``, ``/execute/stream``): always the per-sandbox
  token issued with the sandbox (see :mod:`eventkit.server.sandboxes`).

Failure behaviour: every check returns a verdict, never raises; the front
ends answer 401 with a JSON message and run nothing. Keys are compared in
constant time. Issued development tokens are kept only when an API key is
configured (without one any token is accepted anyway), at most
:data:`MAX_DEV_TOKENS` of them; the oldest go first.
"""

from __future__ import annotations

import collections
import hmac
import secrets
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp import web

__all__ = ["MAX_DEV_TOKENS", "Auth", "api_key_of", "bearer_of", "new_token"]

#: Development tokens remembered at once (with an API key configured).
MAX_DEV_TOKENS: Final = 10_000


def new_token() -> str:
    """Return a fresh random token: 256 bits, in hex.

    Hex, not URL-safe base64, whose ``-`` may start a token: a command line
    then reads ``--token -x...`` as two options.
    """
    return secrets.token_hex(32)


def bearer_of(request: web.BaseRequest) -> str | None:
    """Return the token of an ``Authorization: Bearer`` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def api_key_of(request: web.BaseRequest) -> str | None:
    """Return the ``X-API-Key`` header, or None when missing or blank."""
    key = request.headers.get("X-API-Key", "").strip()
    return key or None


class Auth:
    """Checks public-API credentials and issues development tokens.

    Args:
        api_key: The one key accepted (with the tokens issued); None accepts
            any non-empty credential.
        token_ttl: Seconds a development token stays valid.
        clock: Unix time, for expiry.

    Raises:
        ValueError: If ``api_key`` is empty or ``token_ttl`` not positive.
    """

    __slots__ = ("_api_key", "_clock", "_tokens", "token_ttl")

    def __init__(
        self,
        api_key: str | None,
        *,
        token_ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if api_key is not None and not api_key.strip():
            raise ValueError("--api-key must not be empty")
        if not token_ttl > 0:
            raise ValueError(f"token_ttl must be positive, not {token_ttl!r}")
        self._api_key = api_key
        self.token_ttl = token_ttl
        self._clock = clock
        #: token -> expiry (Unix time), in issue order. Ordered: the oldest
        #: is found at once, where a dict walks past every entry deleted
        #: from its front.
        self._tokens: collections.OrderedDict[str, float] = collections.OrderedDict()

    @property
    def open(self) -> bool:
        """Whether any non-empty credential is accepted (no API key set)."""
        return self._api_key is None

    def is_key(self, credential: str | None) -> bool:
        """Tell whether ``credential`` is the API key (True for any without one)."""
        if not credential:
            return False
        if self._api_key is None:
            return True
        return hmac.compare_digest(credential.encode(), self._api_key.encode())

    def accepts(self, credential: str | None) -> bool:
        """Tell whether ``credential`` may use the public API."""
        if not credential:
            return False
        if self.is_key(credential):
            return True
        expiry = self._tokens.get(credential)
        if expiry is None:
            return False
        if expiry <= self._clock():
            del self._tokens[credential]
            return False
        return True

    def issue(self) -> tuple[str, float]:
        """Return a new development token and its expiry (Unix time)."""
        now = self._clock()
        token, expiry = new_token(), now + self.token_ttl
        if self._api_key is not None:
            tokens = self._tokens
            # Insertion order is expiry order: drop the expired from the front,
            # then the oldest if still full.
            while tokens:
                oldest = next(iter(tokens))
                if tokens[oldest] > now and len(tokens) < MAX_DEV_TOKENS:
                    break
                del tokens[oldest]
            tokens[token] = expiry
        return token, expiry
