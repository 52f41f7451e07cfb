"""Tests for :mod:`eventkit.protocol.aicomputer`: the decoder, the encoder."""

from __future__ import annotations

import json

import pytest

from eventkit.events import Event
from eventkit.exceptions import StreamClosedError
from eventkit.protocol import jsonl
from eventkit.protocol.aicomputer import (
    CHUNK_CHARS,
    AiComputerDecoder,
    AiComputerEncoder,
)
from eventkit.protocol.lines import INVALID_LINE
from eventkit.protocol.run import CLOSED_BEFORE_COMPLETE
from tests.factories import ev

#: The local clock of every decoder made here.
NOW = 1700000000.5
#: The time of every event encoded here.
T = 1_763_634_600.123456


def clock() -> float:
    """Return the fixed local time."""
    return NOW


def aicomputer(run: str = "r") -> AiComputerDecoder:
    """Return an AI Computer decoder on the fixed clock."""
    return AiComputerDecoder(run, clock=clock)


def receive_lines(decoder: AiComputerDecoder, lines: list[bytes]) -> list[Event]:
    """Return the events of ``lines``, each received with its newline, in order."""
    return [event for line in lines for event in decoder.receive(line + b"\n")]


# Decoding: protocols.md section 3.2


def test_aicomputer_documented_lines() -> None:
    """The example lines of protocols.md section 3.2 decode exactly."""
    decoder = aicomputer()
    body = (
        b'{"type": "stdout", "data": "Processing step 1\\n"}\n'
        b'{"type": "stderr", "data": "warning ...\\n"}\n'
        b'{"type": "error", "data": "NameError: name \'x\' is not defined"}\n'
        b'{"type": "completed", "data": ""}\n'
    )
    events = [*decoder.start(), *decoder.receive(body)]
    assert [
        Event(type="started", timestamp=NOW, sequence=0, run="r"),
        Event(
            type="stdout",
            data="Processing step 1\n",
            timestamp=NOW,
            sequence=1,
            run="r",
        ),
        Event(type="stderr", data="warning ...\n", timestamp=NOW, sequence=2, run="r"),
        Event(
            type="error",
            data="NameError: name 'x' is not defined",
            timestamp=NOW,
            sequence=3,
            run="r",
        ),
        Event(type="completed", timestamp=NOW, sequence=4, run="r"),
    ] == events
    assert decoder.finished
    assert decoder.done


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"hello", "hello"),
        (b"  padded text \t\r", "padded text"),
        (b'{"type": "stdout"', '{"type": "stdout"'),
        (b'"type": "stdout"}', '"type": "stdout"}'),
        (b"[1, 2]", "[1, 2]"),
        ("é€ 😀".encode(), "é€ 😀"),
    ],
)
def test_aicomputer_other_lines_are_stdout(line: bytes, text: str) -> None:
    """A line not both starting with ``{`` and ending with ``}`` is stripped stdout."""
    assert [Event(type="stdout", data=text, timestamp=NOW, run="r")] == (
        aicomputer().receive(line + b"\n")
    )


@pytest.mark.parametrize("line", [b"", b"   ", b"\t\r", b"\x0b\x0c"])
def test_aicomputer_blank_lines_are_skipped(line: bytes) -> None:
    """Blank lines give no event and take no sequence."""
    decoder = aicomputer()
    assert decoder.receive(line + b"\n") == []
    assert decoder.lines == 1
    (event,) = decoder.receive(b"next\n")
    assert event.sequence == 0


def test_aicomputer_missing_type_is_info() -> None:
    """An object without ``type`` is an ``info`` event; without ``data``, data is ""."""
    events = receive_lines(aicomputer(), [b'{"data": "note"}', b"  {}  "])
    assert [(e.type, e.data) for e in events] == [("info", "note"), ("info", "")]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("5", "5"),
        ("null", "None"),
        ("true", "True"),
        ("1.5", "1.5"),
        ('{"a": [1]}', "{'a': [1]}"),
        ("[]", "[]"),
    ],
)
def test_aicomputer_non_string_data(value: str, text: str) -> None:
    """A ``data`` that is not a string is converted with ``str()``."""
    line = b'{"type": "stdout", "data": ' + value.encode() + b"}"
    (event,) = aicomputer().receive(line + b"\n")
    assert text == event.data


def test_aicomputer_keeps_other_keys() -> None:
    """Other keys go to attrs (sequence as server_sequence); timestamps stay local."""
    line = (
        b'{"type": "stdout", "data": "x", "timestamp": 12.5, "sequence": 7, "k": [1]}'
    )
    (event,) = aicomputer().receive(line + b"\n")
    assert dict(event.attrs) == {"timestamp": 12.5, "server_sequence": 7, "k": [1]}
    assert event.timestamp == NOW
    assert event.sequence == 0


def test_aicomputer_invalid_json_reports_and_goes_on() -> None:
    """A line that looks like JSON but is not gives an invalid_line error, then more."""
    decoder = aicomputer()
    events = receive_lines(decoder, [b' {"type": "stdout", "data": } ', b"after"])
    error, after = events
    assert error.type == "error"
    assert error.data == '{"type": "stdout", "data": }'
    assert error["code"] == INVALID_LINE
    assert error["reason"]
    assert (after.type, after.data, after.sequence) == ("stdout", "after", 1)
    assert not decoder.finished


@pytest.mark.parametrize(
    "line",
    [
        b'{"type": "stdout", "data": NaN}',
        b'{"type": "stdout", "data": "\\ud800"}',
        b'{"type": "stdout", "data": 1e400}',
        b'{"type": 5, "data": "x"}',
        b'{"type": null}',
        b'{"type": "stdout", "data": "\xff"}',
        b"plain \xff text",
        b"{" + b"[" * 100_000 + b"}",
        b"{" + b'"a":[' * 20_000 + b"]" * 20_000 + b"}",
    ],
)
def test_aicomputer_unusable_lines_are_invalid(line: bytes) -> None:
    """Non-strict JSON, a non-string type and bad UTF-8 give invalid_line errors."""
    (event,) = aicomputer().receive(line + b"\n")
    assert (event.type, event["code"]) == ("error", INVALID_LINE)
    jsonl.encode(event)  # and the error itself can be written out


def test_aicomputer_error_does_not_end_the_run() -> None:
    """An ``error`` event leaves the run going, as in 0.3.4."""
    decoder = aicomputer()
    receive_lines(decoder, [b'{"type": "error", "data": "boom"}'])
    assert not decoder.finished
    assert [(e.type, e.data) for e in decoder.receive(b"more\n")] == [
        ("stdout", "more")
    ]


def test_aicomputer_lines_after_completed_are_ignored() -> None:
    """After ``completed`` lines give nothing and non-blank ones are counted."""
    decoder = aicomputer()
    receive_lines(decoder, [b'{"type": "completed", "data": ""}'])
    after = [b'{"type": "stdout", "data": "late"}', b"text", b"", b"{bad}"]
    assert receive_lines(decoder, after) == []
    assert decoder.ignored == 3
    assert decoder.done
    assert decoder.abort("gone") == []


def test_aicomputer_abort_without_completed() -> None:
    """``abort()`` gives closed_before_complete, then a failed ``completed``."""
    decoder = aicomputer()
    receive_lines(decoder, [b"partial output"])
    error, completed = decoder.abort("connection lost")
    assert (error.type, error.sequence) == ("error", 1)
    assert error.data == "stream closed before the run completed: connection lost"
    assert error.data == str(StreamClosedError(None, "connection lost"))
    assert (error["reason"], error["close_code"]) == ("connection lost", None)
    assert error["code"] == CLOSED_BEFORE_COMPLETE
    assert (
        completed.type,
        completed.sequence,
        completed["success"],
    ) == ("completed", 2, False)
    assert decoder.finished
    assert decoder.abort("again") == []


def test_aicomputer_abort_without_reason() -> None:
    """Without a reason or a code, the error says only that the stream closed."""
    error, _ = aicomputer().abort("")
    assert error.data == "stream closed before the run completed"
    assert error.attrs == {
        "code": CLOSED_BEFORE_COMPLETE,
        "close_code": None,
        "reason": "",
    }


def test_aicomputer_abort_with_a_code() -> None:
    """A close code given is named in the error, as HOPX names it."""
    error, _ = aicomputer().abort("bye", 1011)
    assert error.data == str(StreamClosedError(1011, "bye"))
    assert error["close_code"] == 1011


def test_started_carries_attrs() -> None:
    """``start()`` numbers a synthetic started event, with the attrs given."""
    decoder = aicomputer("run-1")
    (event,) = decoder.start({"sandbox_id": "sbx"})
    assert Event(
        type="started", timestamp=NOW, run="run-1", attrs={"sandbox_id": "sbx"}
    ) == (event)
    assert decoder.run == "run-1"


def test_fresh_run_ids() -> None:
    """Without a run id every decoder makes its own."""
    assert AiComputerDecoder().run != AiComputerDecoder().run


# Encoding


def test_aicomputer_lines_hold_only_type_and_data() -> None:
    """Every line has string type and data; completed adds the outcome."""
    encoder = AiComputerEncoder()
    body = [
        line
        for event in (
            ev("started", timestamp=T),
            ev("stdout", "y" * (CHUNK_CHARS + 1), timestamp=T),
            ev("result", timestamp=T, exit_code=0),
            ev("completed", timestamp=T, success=True),
        )
        for line in encoder.encode(event)
    ]
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in body)
    lines = [json.loads(line) for line in body]
    assert all({"type", "data"} == set(line) for line in lines[:-1])
    assert all(isinstance(line["data"], str) for line in lines)
    assert ["stdout", "stdout", "completed"] == [line["type"] for line in lines]
    assert {"type": "completed", "data": "", "exit_code": 0, "success": True} == (
        lines[-1]
    )


def test_aicomputer_error_comes_last_before_completed() -> None:
    """A limit's message is held back to be the last event before completed."""
    encoder = AiComputerEncoder()
    body = b"".join(
        line
        for event in (
            ev("stdout", "partial", timestamp=T),
            ev("resource_limit", "timed out after 1s", timestamp=T, limit="timeout"),
            ev("result", timestamp=T, exit_code=-9, execution_time=1.0),
            ev("completed", timestamp=T, success=False),
        )
        for line in encoder.encode(event)
    )
    assert [
        {"type": "stdout", "data": "partial"},
        {"type": "error", "data": "timed out after 1s"},
        {"type": "completed", "data": "", "exit_code": -9, "success": False},
    ] == [json.loads(line) for line in body.splitlines()]


def test_aicomputer_nonzero_exit_is_an_error() -> None:
    """A failing program ends with an error naming its exit code."""
    encoder = AiComputerEncoder(output=True)
    body = b"".join(
        line
        for event in (
            ev("stderr", "Traceback\n", timestamp=T),
            ev("result", timestamp=T, exit_code=1, execution_time=0.1),
            ev("completed", timestamp=T, success=False),
        )
        for line in encoder.encode(event)
    )
    decoder = AiComputerDecoder()
    types = [e.type for e in decoder.receive(body)]
    assert ["stderr", "error", "result", "completed"] == types
    assert "process exited with code 1" == encoder.error
    assert ["Traceback\n"] == encoder.text
    assert 1 == encoder.exit_code


def test_aicomputer_completed_extension_gives_the_outcome() -> None:
    """eventkit's exit_code and success on completed: a result, then success."""
    decoder = aicomputer()
    line = b'{"type": "completed", "data": "", "exit_code": 3, "success": false}'
    result, completed = receive_lines(decoder, [line])
    assert ("result", 0, {"exit_code": 3}) == (
        result.type,
        result.sequence,
        dict(result.attrs),
    )
    assert ("completed", 1, {"success": False}) == (
        completed.type,
        completed.sequence,
        dict(completed.attrs),
    )
    assert decoder.done


@pytest.mark.parametrize(
    "line",
    [
        b'{"type": "completed", "data": ""}',
        b'{"type": "completed", "data": "", "exit_code": "0", "success": "yes"}',
        b'{"type": "completed", "data": "", "exit_code": true, "success": 1}',
    ],
)
def test_aicomputer_completed_without_a_usable_outcome(line: bytes) -> None:
    """Without the extension (or with values of the wrong type): completed alone."""
    (completed,) = receive_lines(aicomputer(), [line])
    assert ("completed", {}) == (completed.type, dict(completed.attrs))


def test_aicomputer_encoder_to_decoder_keeps_the_exit_code() -> None:
    """What eventkit's server writes, its source reads back: code and success."""
    encoder = AiComputerEncoder()
    body = b"".join(
        line
        for event in (
            ev("result", timestamp=T, exit_code=0, execution_time=0.1),
            ev("completed", timestamp=T, success=True),
        )
        for line in encoder.encode(event)
    )
    events = AiComputerDecoder().receive(body)
    assert [("result", 0), ("completed", True)] == [
        (e.type, e.attrs.get("exit_code", e.attrs.get("success"))) for e in events
    ]
