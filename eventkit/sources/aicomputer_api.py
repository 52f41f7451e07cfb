"""The AI Computer REST client as a source: one sandbox per run (aiohttp).

:func:`aicomputer` makes the whole series of AI Computer calls (token,
create, status, execute/stream, delete) that ``ai-computer-client`` 0.3.4
makes, and reads the execute stream's NDJSON body with
:class:`~eventkit.protocol.aicomputer.AiComputerDecoder` (through
:func:`eventkit.sources.http.read_events`). Each iteration of the returned
stream makes its calls anew, in one :class:`aiohttp.ClientSession` of its
own, closed when the iteration ends however it ends.

Failure behaviour: as :mod:`eventkit.sources.http` for the connection, the
status of each call (:exc:`~eventkit.exceptions.HTTPError`) and the body of
the execute stream (closed before complete, invalid lines). Besides,
:func:`aicomputer` raises :exc:`~eventkit.exceptions.SandboxError` when the
service's answers make no sense or the sandbox never gets ready, and always
tries to delete the sandbox it created; a failure to delete is ignored and
never hides the error that ended the iteration.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import aiohttp
import msgspec

from eventkit.exceptions import HTTPError, OnClose, SandboxError
from eventkit.protocol.aicomputer import AiComputerDecoder
from eventkit.sources.http import (
    CONNECT_TIMEOUT,
    READ_ERRORS,
    check_on_close,
    describe_error,
    raise_for_status,
    read_events,
    read_head,
)
from eventkit.streams import EventStream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from eventkit.events import Event

__all__ = ["aicomputer"]

#: Seconds between two status polls of a sandbox that is not ready yet.
_POLL_INTERVAL: Final = 1.0
#: Status polls before giving up (ai-computer-client's ``wait_for_ready``).
_POLL_TRIES: Final = 10
#: Seconds for each of AI Computer's short calls: token, create, status, delete.
_CALL_TIMEOUT: Final = 30.0
#: Seconds the execute stream may last beyond the run's own timeout (the
#: margin ai-computer-client 0.1-0.3.2 gave).
_STREAM_GRACE: Final = 30.0
#: Largest JSON answer read from AI Computer's short calls.
_ANSWER_LIMIT: Final = 1 << 20


def _call_timeout() -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=_CALL_TIMEOUT, sock_connect=CONNECT_TIMEOUT)


async def _answer(
    response: aiohttp.ClientResponse, sandbox_id: str | None = None
) -> dict[str, Any]:
    """Return a 2xx response's JSON object body, or raise."""
    await raise_for_status(response)
    body = await read_head(response, _ANSWER_LIMIT + 1)
    what = f"{response.method} {response.url}"
    if len(body) > _ANSWER_LIMIT:
        raise SandboxError(
            f"{what}: answer over {_ANSWER_LIMIT} bytes", sandbox_id=sandbox_id
        )
    try:
        answer = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeError, RecursionError) as exc:
        raise SandboxError(
            f"{what}: answer is not JSON: {describe_error(exc)}", sandbox_id=sandbox_id
        ) from exc
    if not isinstance(answer, dict):
        raise SandboxError(
            f"{what}: answer is not a JSON object", sandbox_id=sandbox_id
        )
    return answer


async def _token(session: aiohttp.ClientSession, base: str) -> str:
    return await _field(session, f"{base}/dev/token", "access_token", None)


async def _create(
    session: aiohttp.ClientSession, base: str, auth: Mapping[str, str]
) -> str:
    return await _field(session, f"{base}/api/v1/sandbox/create", "sandbox_id", auth)


async def _field(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    auth: Mapping[str, str] | None,
) -> str:
    """POST ``url``; return the non-empty string ``key`` of its JSON answer."""
    async with session.post(url, headers=auth, timeout=_call_timeout()) as response:
        answer = await _answer(response)
    value = answer.get(key)
    if not isinstance(value, str) or not value:
        raise SandboxError(f"POST {url}: no {key} in the answer")
    return value


async def _wait_ready(
    session: aiohttp.ClientSession,
    base: str,
    sandbox_id: str,
    auth: Mapping[str, str],
) -> None:
    """Poll the sandbox's status until it is ready, as ``wait_for_ready`` does.

    A non-2xx answer, an unreadable one or a connection failure counts as
    "not ready yet", like in ai-computer-client 0.3.4.
    """
    url = f"{base}/api/v1/sandbox/{quote(sandbox_id, safe='')}/status"
    last = "no answer"
    status: str | None = None
    for attempt in range(_POLL_TRIES):
        if attempt:
            await asyncio.sleep(_POLL_INTERVAL)
        try:
            async with session.get(
                url, headers=auth, timeout=_call_timeout()
            ) as response:
                answer = await _answer(response, sandbox_id)
        except (HTTPError, SandboxError, *READ_ERRORS) as exc:
            last = describe_error(exc)
            continue
        reported = answer.get("status")
        status = reported.lower() if isinstance(reported, str) else None
        if status in ("ready", "running"):
            return
        if status == "error":
            error = answer.get("error", "Unknown error initializing sandbox")
            raise SandboxError(
                f"sandbox {sandbox_id} failed: {error}",
                sandbox_id=sandbox_id,
                status=reported,
            )
        last = f"status {reported!r}"
    raise SandboxError(
        f"sandbox {sandbox_id} not ready after {_POLL_TRIES} tries ({last})",
        sandbox_id=sandbox_id,
        status=status,
    )


async def _delete(
    session: aiohttp.ClientSession,
    base: str,
    sandbox_id: str,
    auth: Mapping[str, str],
) -> None:
    """Delete the sandbox, best effort: any failure is ignored."""
    url = f"{base}/api/v1/sandbox/{quote(sandbox_id, safe='')}"
    # Exception, not BaseException: a cancellation still goes through.
    with contextlib.suppress(Exception):
        async with session.delete(url, headers=auth, timeout=_call_timeout()):
            pass


class _AiComputerSource:
    __slots__ = ("_base", "_code", "_env", "_on_close", "_run", "_timeout", "_token")

    def __init__(
        self,
        base_url: str,
        code: str,
        *,
        token: str | None,
        timeout: int,
        env: Mapping[str, str] | None,
        run: str | None,
        on_close: str,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._code = code
        self._token = token
        self._timeout = timeout
        self._env = dict(env) if env else None
        self._run = run
        self._on_close = on_close

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        base = self._base
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            token = self._token
            if token is None:
                token = await _token(session, base)
            auth = {"Authorization": f"Bearer {token}"}
            sandbox_id = await _create(session, base, auth)
            try:
                await _wait_ready(session, base, sandbox_id, auth)
                body: dict[str, Any] = {"code": self._code, "timeout": self._timeout}
                if self._env:
                    body["environment"] = self._env
                url = (
                    f"{base}/api/v1/sandbox/{quote(sandbox_id, safe='')}/execute/stream"
                )
                stream_timeout = aiohttp.ClientTimeout(
                    total=self._timeout + _STREAM_GRACE, sock_connect=CONNECT_TIMEOUT
                )
                decoder = AiComputerDecoder(self._run)
                started_attrs = {"sandbox_id": sandbox_id}
                async with session.post(
                    url, json=body, headers=auth, timeout=stream_timeout
                ) as response:
                    await raise_for_status(response)
                    events = read_events(
                        response,
                        decoder,
                        first=lambda: decoder.start(started_attrs),
                        on_close=self._on_close,
                    )
                    async with contextlib.aclosing(events):  # type: ignore[type-var]
                        async for event in events:
                            yield event
            finally:
                await _delete(session, base, sandbox_id, auth)


def aicomputer(
    base_url: str,
    code: str,
    *,
    token: str | None = None,
    timeout: int = 30,
    env: Mapping[str, str] | None = None,
    run: str | None = None,
    on_close: OnClose = "raise",
) -> EventStream:
    """Return a stream of the events of running ``code`` in an AI Computer sandbox.

    Each iteration makes the calls of ``ai-computer-client`` 0.3.4, in one
    :class:`aiohttp.ClientSession`:

    1. ``POST /dev/token`` when ``token`` is None, for a development token;
    2. ``POST /api/v1/sandbox/create`` for a sandbox id;
    3. ``GET /api/v1/sandbox/{id}/status`` until the status is ``ready`` or
       ``running`` (any case): at most 10 tries, 1 s apart; ``error`` fails
       at once;
    4. ``POST /api/v1/sandbox/{id}/execute/stream`` with ``{"code",
       "timeout"}`` (and ``"environment"`` when ``env`` is given), whose
       NDJSON body is decoded by
       :class:`~eventkit.protocol.aicomputer.AiComputerDecoder`;
    5. ``DELETE /api/v1/sandbox/{id}`` when the iteration ends, however it
       ends (best effort: a failure here is ignored).

    Calls 2-5 carry ``Authorization: Bearer <token>``. The first event is a
    synthetic ``started`` (made when the execute call is accepted) with
    ``attrs["sandbox_id"]``. The execute call may take ``timeout`` + 30 s in
    all; each other call 30 s.

    Args:
        base_url: The service, e.g. ``"http://api.aicomputer.dev"``.
        code: The Python code to run.
        token: A bearer token; None asks ``/dev/token`` for one.
        timeout: The run's time limit in seconds, sent to the server.
        env: Environment variables for the run.
        run: The run id of the events; a fresh one per iteration when None.
        on_close: What a body ending before ``completed`` does: ``"raise"``
            :exc:`~eventkit.exceptions.StreamClosedError`, or ``"event"``:
            yield an ``error`` and a failed ``completed`` event.

    Returns:
        The stream; nothing is sent before it is iterated.

    Raises:
        ValueError: If an argument is invalid (checked here, not when
            iterating).
    """
    check_on_close(on_close)
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout}")
    source = _AiComputerSource(
        base_url,
        code,
        token=token,
        timeout=timeout,
        env=env,
        run=run,
        on_close=on_close,
    )
    return EventStream(source, ())
