"""The server's wire encoders, fed events synchronously."""

from __future__ import annotations

import json

from eventkit.events import Event
from eventkit.protocol.hopx import HopxDecoder, parse_timestamp
from eventkit.protocol.ndjson import AiComputerDecoder
from eventkit.server._wire import (
    MAX_FRAME_BYTES,
    NDJSON_CHUNK_CHARS,
    AiComputerEncoder,
    HopxEncoder,
    iso_timestamp,
)

T = 1_763_634_600.123456


def ev(type: str, data: str = "", **attrs: object) -> Event:
    """An event as the local executor makes it."""
    return Event(type=type, data=data, timestamp=T, attrs=attrs)


def test_iso_timestamp_round_trips() -> None:
    """Timestamps are RFC 3339 with Z and read back to the microsecond."""
    text = iso_timestamp(T)
    assert text.endswith("Z")
    assert "2025-11-20T10:30:00.123456Z" == text
    assert abs(T - (parse_timestamp(text) or 0)) < 1e-6


def test_hopx_lifecycle_frames() -> None:
    """A whole run: no started frame, numbered output, result, complete."""
    encoder = HopxEncoder()
    frames = [
        json.loads(frame)
        for event in (
            ev("started", pid=1),
            ev("stdout", "a\n"),
            ev("stderr", "b\n"),
            ev("result", exit_code=0, execution_time=0.5),
            ev("completed", success=True),
        )
        for frame in encoder.encode(event)
    ]
    stamp = iso_timestamp(T)
    assert [
        {"type": "stdout", "data": "a\n", "timestamp": stamp, "sequence": 0},
        {"type": "stderr", "data": "b\n", "timestamp": stamp, "sequence": 1},
        {"type": "result", "exit_code": 0, "execution_time": 0.5, "timestamp": stamp},
        {"type": "complete", "success": True},
    ] == frames


def test_hopx_frames_stay_under_one_mebibyte() -> None:
    """Output whose JSON form is six times its size is split under 1 MiB."""
    data = "\x01" * (1 << 20)  # each character is "\\u0001" in JSON
    frames = HopxEncoder().encode(ev("stdout", data))
    assert len(frames) > 1
    assert all(len(frame) < MAX_FRAME_BYTES for frame in frames)
    decoded = [json.loads(frame) for frame in frames]
    assert data == "".join(f["data"] for f in decoded)
    assert list(range(len(frames))) == [f["sequence"] for f in decoded]


def test_hopx_limits_and_errors_become_error_frames() -> None:
    """Limits and executor errors map onto HOPX error codes."""
    encoder = HopxEncoder()
    codes = [
        json.loads(encoder.encode(event)[0])["code"]
        for event in (
            ev("resource_limit", "timed out", limit="timeout"),
            ev("resource_limit", "too much", limit="output"),
            ev("resource_limit", "too big", limit="memory"),
            ev("error", "no such language", code="language_unavailable"),
            ev("error", "fork failed", code="spawn_failed"),
        )
    ]
    assert [
        "EXECUTION_TIMEOUT",
        "OUTPUT_LIMIT",
        "MEMORY_LIMIT",
        "LANGUAGE_UNAVAILABLE",
        "EXECUTION_FAILED",
    ] == codes


def test_hopx_frames_decode_with_eventkit() -> None:
    """eventkit's own HOPX decoder reads what the encoder writes."""
    encoder, decoder = HopxEncoder(), HopxDecoder()
    events = [
        decoded
        for event in (
            ev("stdout", "x"),
            ev("result", exit_code=3, execution_time=0.1),
            ev("completed", success=False),
        )
        for frame in encoder.encode(event)
        for decoded in decoder.receive(frame)
    ]
    assert ["stdout", "result", "completed"] == [e.type for e in events]
    assert T == events[0].timestamp
    assert 0 == events[0].attrs["server_sequence"]
    assert decoder.finished


def test_aicomputer_lines_hold_only_type_and_data() -> None:
    """Every line is a JSON object with string type and data; output is split."""
    encoder = AiComputerEncoder()
    body = encoder.encode(ev("started")) + encoder.encode(
        ev("stdout", "y" * (NDJSON_CHUNK_CHARS + 1))
    )
    body += encoder.encode(ev("result", exit_code=0)) + encoder.encode(
        ev("completed", success=True)
    )
    lines = [json.loads(line) for line in body.splitlines()]
    assert all({"type", "data"} == set(line) for line in lines)
    assert all(isinstance(line["data"], str) for line in lines)
    assert ["stdout", "stdout", "completed"] == [line["type"] for line in lines]


def test_aicomputer_error_comes_last_before_completed() -> None:
    """A limit's message is held back to be the last event before completed."""
    encoder = AiComputerEncoder()
    body = b"".join(
        encoder.encode(event)
        for event in (
            ev("stdout", "partial"),
            ev("resource_limit", "timed out after 1s", limit="timeout"),
            ev("result", exit_code=-9, execution_time=1.0),
            ev("completed", success=False),
        )
    )
    assert [
        {"type": "stdout", "data": "partial"},
        {"type": "error", "data": "timed out after 1s"},
        {"type": "completed", "data": ""},
    ] == [json.loads(line) for line in body.splitlines()]


def test_aicomputer_nonzero_exit_is_an_error() -> None:
    """A failing program ends with an error naming its exit code."""
    encoder = AiComputerEncoder(output=True)
    body = b"".join(
        encoder.encode(event)
        for event in (
            ev("stderr", "Traceback\n"),
            ev("result", exit_code=1, execution_time=0.1),
            ev("completed", success=False),
        )
    )
    decoder = AiComputerDecoder()
    types = [e.type for line in body.splitlines() for e in decoder.decode_line(line)]
    assert ["stderr", "error", "completed"] == types
    assert "process exited with code 1" == encoder.error
    assert ["Traceback\n"] == encoder.text
    assert 1 == encoder.exit_code
