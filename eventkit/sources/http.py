"""The NDJSON-over-HTTP source, and reading any NDJSON response body (aiohttp).

:func:`ndjson` reads one request's body in any dialect of
:mod:`eventkit.protocol.dialects`. The helpers it shares with the AI Computer
client (:mod:`eventkit.sources.aicomputer_api`) are here too: the status
check (:func:`raise_for_status`) and the reading of an accepted body through
a decoder (:func:`read_events`). Each iteration of a returned stream makes
its requests anew, in one :class:`aiohttp.ClientSession` of its own, closed
when the iteration ends however it ends (exhausted, failed, or closed early
by the consumer).

Failure behaviour:

* Invalid arguments raise :exc:`ValueError` when the source is made.
* Connection failures before the response (refused, DNS, connect timeout)
  raise aiohttp's own :exc:`aiohttp.ClientError` (or :exc:`TimeoutError`)
  from the iteration, before any event.
* A non-2xx answer raises :exc:`~eventkit.exceptions.HTTPError` with the
  status and the start of the body, before any event.
* A body that ends before the run's terminal event (``completed``,
  ``end_of_execution``), a connection lost or timed out mid-body, and a line
  longer than ``max_line``, are one case, "closed before complete": with
  ``on_close="raise"`` (the default) the iteration raises
  :exc:`~eventkit.exceptions.StreamClosedError` (code None; the cause is the
  aiohttp or :exc:`~eventkit.exceptions.LineTooLongError` error if any);
  with ``on_close="event"`` it yields an ``error`` event with
  ``attrs["code"] == "closed_before_complete"`` and the reason in
  ``attrs["reason"]`` (its ``data`` is what the exception would have said),
  then ``completed`` with ``attrs["success"] is False``, and ends. The
  official clients end quietly instead, hiding that the outcome is unknown.
  A partial last line lost with the connection is not decoded; the reason
  says how many bytes it had.
* Lines that cannot be decoded become ``error`` events with
  ``attrs["code"] == "invalid_line"``; reading goes on.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final

import aiohttp

from eventkit.exceptions import HTTPError, LineTooLongError, OnClose, StreamClosedError
from eventkit.protocol.dialects import DIALECTS, decoder_for
from eventkit.protocol.lines import MAX_LINE
from eventkit.stats import source_stats
from eventkit.streams import EventStream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from eventkit.events import Event
    from eventkit.protocol.dialects import Dialect
    from eventkit.protocol.lines import LineDecoder

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_ERRORS",
    "check_on_close",
    "describe_error",
    "ndjson",
    "raise_for_status",
    "read_events",
    "read_head",
]

_ON_CLOSE: Final = ("raise", "event")
#: Seconds to set up a connection.
CONNECT_TIMEOUT: Final = 30.0
#: Bytes of an error answer's body kept in :attr:`HTTPError.body`.
_ERROR_BODY: Final = 1024
#: What a failure reading the body may raise: aiohttp's errors (payload not
#: complete, connection reset, read timeout) and a total timeout.
READ_ERRORS: Final = (aiohttp.ClientError, TimeoutError)


def check_on_close(on_close: str) -> None:
    """Refuse an ``on_close`` other than ``"raise"`` and ``"event"``.

    Raises:
        ValueError: If it is neither.
    """
    if on_close not in _ON_CLOSE:
        raise ValueError(f"on_close must be one of {_ON_CLOSE}, not {on_close!r}")


def describe_error(exc: BaseException) -> str:
    """Return ``"<ExceptionType>: <message>"``, or the type alone without one."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def read_head(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Return the body's first ``limit`` bytes (all of it if shorter)."""
    parts: list[bytes] = []
    size = 0
    while size < limit:
        part = await response.content.read(limit - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


async def raise_for_status(response: aiohttp.ClientResponse) -> None:
    """Raise for an answer outside 2xx, with the start of its body.

    Raises:
        HTTPError: If the status is not 2xx; its ``body`` is the first KiB
            of the answer, or empty if reading it failed.
    """
    if 200 <= response.status < 300:
        return
    try:
        body = await read_head(response, _ERROR_BODY)
    except READ_ERRORS:
        body = b""  # the status is the news; a body lost on the way is not
    raise HTTPError(
        response.method,
        str(response.url),
        response.status,
        body.decode(errors="replace"),
    )


async def read_events(
    response: aiohttp.ClientResponse,
    decoder: LineDecoder,
    *,
    first: Callable[[], list[Event]],
    on_close: str,
) -> AsyncIterator[Event]:
    """Yield the events of an accepted response's NDJSON body, read by ``decoder``.

    ``first()`` gives the events to yield before the body (the decoder's
    ``start``). Reading stops at the end of the body or when the decoder is
    done; see the module docstring for the failures. The body counts as one
    open connection of :func:`~eventkit.stats.source_stats` ``("ndjson")``
    while this runs, each line as a frame, each invalid line as an invalid
    frame.
    """
    stats = source_stats("ndjson")
    stats.connections += 1
    stats.open_connections += 1
    try:
        for event in first():
            yield event
        failure: Exception | None = None
        reason = ""
        chunks = response.content.iter_any()
        while not decoder.done:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                chunk = b""
            except READ_ERRORS as exc:
                failure, reason = exc, describe_error(exc)
                if decoder.pending:
                    reason += f" ({decoder.pending} bytes of an unfinished line lost)"
                break
            lines = decoder.lines
            try:
                # Lines after the terminal event still go to the decoder,
                # which counts them as ignored.
                events = decoder.receive(chunk) if chunk else decoder.close()
            except LineTooLongError as exc:
                failure, reason = exc, str(exc)
                break
            # Per chunk, not per line: blank lines and lines after the
            # terminal event count too, as received.
            stats.frames += decoder.lines - lines
            for event in events:
                yield event
            if not chunk:
                break
        if decoder.finished:
            return
        stats.closed_before_complete += 1
        reason = reason or "body ended before completed"
        if on_close == "raise":
            raise StreamClosedError(None, reason) from failure
        for event in decoder.abort(reason):
            yield event
    finally:
        stats.open_connections -= 1
        stats.invalid_frames += decoder.invalid_lines


class _NdjsonSource:
    __slots__ = (
        "_dialect",
        "_headers",
        "_json",
        "_max_line",
        "_method",
        "_on_close",
        "_run",
        "_timeout",
        "_url",
    )

    def __init__(
        self,
        url: str,
        *,
        json: Any,
        headers: Mapping[str, str] | None,
        dialect: str,
        run: str | None,
        timeout: float | None,
        method: str,
        max_line: int,
        on_close: str,
    ) -> None:
        self._url = url
        self._json = json
        self._headers = dict(headers) if headers else None
        self._dialect = dialect
        self._run = run
        self._timeout = timeout
        self._method = method
        self._max_line = max_line
        self._on_close = on_close

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        decoder = decoder_for(self._dialect, self._run, max_line=self._max_line)
        timeout = aiohttp.ClientTimeout(
            total=self._timeout, sock_connect=CONNECT_TIMEOUT
        )
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                self._method, self._url, json=self._json, headers=self._headers
            ) as response,
        ):
            await raise_for_status(response)
            events = read_events(
                response, decoder, first=decoder.start, on_close=self._on_close
            )
            async with contextlib.aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    yield event


def ndjson(
    url: str,
    *,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    dialect: Dialect = "aicomputer",
    run: str | None = None,
    timeout: float | None = None,
    method: str = "POST",
    max_line: int = MAX_LINE,
    on_close: OnClose = "raise",
) -> EventStream:
    """Return a stream of the events of an NDJSON HTTP response body.

    Each iteration sends the request again: ``POST`` with ``json`` as the
    body, or ``GET``. Once the server answers 2xx, a synthetic ``started``
    event comes first (for the ``aicomputer`` and ``e2b`` dialects, whose
    wire has none; an ``eventkit`` body carries its own), then the events of
    the body's lines as they arrive. Reading stops at the run's terminal event
    (the connection is then closed, whatever the server sends after it) or,
    for the ``eventkit`` dialect, at the end of the body.

    Example::

        async with eventkit.sources.ndjson(
            "http://127.0.0.1:49999/execute", json={"code": "print(1)"},
            dialect="e2b",
        ).stream() as events:
            async for event in events:
                print(event.type, event.data)

    Args:
        url: The endpoint.
        json: The request body, sent as JSON; None sends none.
        headers: Extra request headers (e.g. ``Authorization``).
        dialect: ``"aicomputer"``, ``"e2b"`` or ``"eventkit"``; see
            :mod:`eventkit.protocol.dialects`.
        run: The run id of the events made; a fresh one per iteration when
            None. The ``eventkit`` dialect keeps its events' own.
        timeout: Seconds for the whole request, body included; None for no
            limit. Connecting is limited to 30 s either way.
        method: ``"POST"`` or ``"GET"`` (only without ``json``).
        max_line: The longest line accepted, in bytes.
        on_close: What a body ending before the run's terminal event does:
            ``"raise"`` :exc:`~eventkit.exceptions.StreamClosedError`, or
            ``"event"``: yield an ``error`` and a failed ``completed`` event.

    Returns:
        The stream; nothing is sent before it is iterated.

    Raises:
        ValueError: If an argument is invalid (checked here, not when
            iterating).
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}: expected one of {DIALECTS}")
    check_on_close(on_close)
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive or None, not {timeout}")
    if max_line <= 0:
        raise ValueError(f"max_line must be positive, not {max_line}")
    verb = method.upper()
    if verb not in ("GET", "POST"):
        raise ValueError(f"method must be 'GET' or 'POST', not {method!r}")
    if verb == "GET" and json is not None:
        raise ValueError("method GET cannot carry a json body")
    source = _NdjsonSource(
        url,
        json=json,
        headers=headers,
        dialect=dialect,
        run=run,
        timeout=timeout,
        method=verb,
        max_line=max_line,
        on_close=on_close,
    )
    return EventStream(source, ())
