"""A local run's events, written in the HOPX and AI Computer wire dialects.

Sans-I/O: each encoder takes the events of one run, as
:func:`eventkit.sources.local` makes them, and returns the bytes to send, in
order. The front ends (:mod:`eventkit.server.hopx`,
:mod:`eventkit.server.aicomputer`) only move those bytes.

HOPX (one JSON object per WebSocket message):

=================== ===========================================================
event               frames
=================== ===========================================================
started             none (the wire has no such message)
stdout / stderr     ``{"type", "data", "timestamp", "sequence"}``, split so that
                    every frame stays under 1 MiB (the SDK's limit)
resource_limit      ``{"type": "error", "error", "code", "timestamp"}``, code
                    ``EXECUTION_TIMEOUT``, ``OUTPUT_LIMIT`` or ``MEMORY_LIMIT``
error               the same, code from the executor's (``EXECUTION_FAILED``
                    for a failed spawn, ``LANGUAGE_UNAVAILABLE``)
result              ``{"type", "exit_code", "execution_time", "timestamp"}``
completed           ``{"type": "complete", "success"}``
=================== ===========================================================

AI Computer (one JSON object per line) keeps to what every published client
reads (``protocols.md`` §3.3): only ``type`` and ``data``, string values, an
``error`` only as the last event before ``completed``, and always
``{"type": "completed", "data": ""}`` at the end. Output lines are split at
16 Ki characters, well under the 128 KiB line limit of older aiohttp clients.

Nothing here raises on any event a local run makes; events of other types
are dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec

if TYPE_CHECKING:
    from eventkit.events import Event

__all__ = [
    "HOPX_CHUNK_CHARS",
    "MAX_FRAME_BYTES",
    "NDJSON_CHUNK_CHARS",
    "AiComputerEncoder",
    "HopxEncoder",
    "hopx_error",
    "iso_timestamp",
]

#: The official HOPX client closes the connection on a larger message.
MAX_FRAME_BYTES: Final = 1 << 20
#: Characters of output per HOPX frame. JSON spells a character in at most
#: 6 bytes (``\u001f``), so a frame is at most 768 KiB plus its envelope.
HOPX_CHUNK_CHARS: Final = 128 * 1024
#: Characters of output per AI Computer line: at most 96 KiB once encoded.
NDJSON_CHUNK_CHARS: Final = 16 * 1024

_LIMIT_CODES: Final[dict[object, str]] = {
    "timeout": "EXECUTION_TIMEOUT",
    "output": "OUTPUT_LIMIT",
    "memory": "MEMORY_LIMIT",
}
_ERROR_CODES: Final[dict[object, str]] = {
    "language_unavailable": "LANGUAGE_UNAVAILABLE",
    "spawn_failed": "EXECUTION_FAILED",
}
_encode: Final = msgspec.json.encode
_COMPLETED: Final = b'{"type":"completed","data":""}\n'


def iso_timestamp(timestamp: float) -> str:
    """Return Unix time ``timestamp`` as RFC 3339 UTC with microseconds and ``Z``."""
    text = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")
    return text[:-6] + "Z"  # "+00:00" -> "Z", as a Go agent writes it


def _chunks(data: str, size: int) -> list[str]:
    if len(data) <= size:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


def hopx_error(message: str, code: str, timestamp: float) -> bytes:
    """Return a HOPX ``error`` frame."""
    return _encode(
        {
            "type": "error",
            "error": message,
            "code": code,
            "timestamp": iso_timestamp(timestamp),
        }
    )


class HopxEncoder:
    """Writes one run's events as HOPX ``/execute/stream`` frames.

    Attributes:
        sequence: Output frames written so far: the next frame's
            ``sequence``, numbered from 0 per run.
    """

    __slots__ = ("sequence",)

    def __init__(self) -> None:
        self.sequence = 0

    def encode(self, event: Event) -> list[bytes]:
        """Return the frames for ``event``, each one WebSocket text message."""
        kind = event.type
        if kind == "stdout" or kind == "stderr":
            timestamp = iso_timestamp(event.timestamp)
            frames = []
            for data in _chunks(event.data, HOPX_CHUNK_CHARS):
                frames.append(
                    _encode(
                        {
                            "type": kind,
                            "data": data,
                            "timestamp": timestamp,
                            "sequence": self.sequence,
                        }
                    )
                )
                self.sequence += 1
            return frames
        attrs = event.attrs
        if kind == "resource_limit":
            code = _LIMIT_CODES.get(attrs.get("limit"), "RESOURCE_LIMIT")
            return [hopx_error(event.data, code, event.timestamp)]
        if kind == "error":
            code = _ERROR_CODES.get(attrs.get("code"), "EXECUTION_FAILED")
            return [hopx_error(event.data, code, event.timestamp)]
        if kind == "result":
            result: dict[str, Any] = {
                "type": "result",
                "exit_code": attrs.get("exit_code"),
                "execution_time": attrs.get("execution_time"),
                "timestamp": iso_timestamp(event.timestamp),
            }
            return [_encode(result)]
        if kind == "completed":
            return [
                _encode({"type": "complete", "success": bool(attrs.get("success"))})
            ]
        return []


class AiComputerEncoder:
    """Writes one run's events as AI Computer ``execute/stream`` NDJSON lines.

    Failures (a limit, an executor error, a non-zero exit) become one
    ``error`` line held back until ``completed``, so that it is the last
    event before it, as clients older than 0.3.4 require (they stop at the
    first ``error``).

    Attributes:
        output: Whether to keep the output text in :attr:`text` too (for the
            non-streaming ``execute`` call).
        text: The output so far, when :attr:`output` is set.
        error: The failure to report, if any yet.
        exit_code: The run's exit code, once known.
    """

    __slots__ = ("error", "exit_code", "output", "text")

    def __init__(self, *, output: bool = False) -> None:
        self.output = output
        self.text: list[str] = []
        self.error: str | None = None
        self.exit_code: int | None = None

    def encode(self, event: Event) -> bytes:
        """Return the lines for ``event`` (``b""`` for none), ``\\n``-terminated."""
        kind = event.type
        if kind == "stdout" or kind == "stderr":
            if self.output:
                self.text.append(event.data)
            return b"".join(
                _encode({"type": kind, "data": data}) + b"\n"
                for data in _chunks(event.data, NDJSON_CHUNK_CHARS)
            )
        if kind == "resource_limit" or kind == "error":
            if self.error is None:
                self.error = event.data
        elif kind == "result":
            exit_code = event.attrs.get("exit_code")
            self.exit_code = exit_code if isinstance(exit_code, int) else None
            if self.error is None and exit_code != 0:
                self.error = _exit_message(exit_code)
        elif kind == "completed":
            return self.end()
        return b""

    def end(self) -> bytes:
        """Return the last lines: the ``error``, if any, then ``completed``."""
        if self.error is None:
            return _COMPLETED
        return _encode({"type": "error", "data": self.error}) + b"\n" + _COMPLETED


def _exit_message(exit_code: object) -> str:
    if isinstance(exit_code, int) and exit_code < 0:
        return f"process killed by signal {-exit_code}"
    return f"process exited with code {exit_code}"
