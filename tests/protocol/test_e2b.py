"""Tests for :mod:`eventkit.protocol.e2b`."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, strategies as st

from eventkit.events import Event
from eventkit.protocol.e2b import E2bDecoder
from eventkit.protocol.lines import INVALID_LINE

#: The local clock of every decoder made here.
NOW = 1700000000.5


def clock() -> float:
    """Return the fixed local time."""
    return NOW


def e2b(run: str = "r") -> E2bDecoder:
    """Return an E2B decoder on the fixed clock."""
    return E2bDecoder(run, clock=clock)


def receive_lines(decoder: E2bDecoder, lines: list[bytes]) -> list[Event]:
    """Return the events of ``lines``, each received with its newline, in order."""
    return [event for line in lines for event in decoder.receive(line + b"\n")]


# protocols.md section 4


def test_e2b_documented_lines() -> None:
    """The line shapes of protocols.md section 4 decode exactly."""
    decoder = e2b()
    lines = [
        b'{"type":"stdout","text":"hello\\n","timestamp":1700000000123456789}',
        b'{"type":"stderr","text":"warn\\n","timestamp":1700000001000000000}',
        b'{"type":"result","text":"42","html":"<b>42</b>","png":"iVBO","is_main_result":true}',
        b'{"type":"number_of_executions","execution_count":3}',
        b'{"type":"end_of_execution"}',
    ]
    events = [*decoder.start(), *receive_lines(decoder, lines)]
    assert [
        Event(type="started", timestamp=NOW, sequence=0, run="r"),
        Event(
            type="stdout",
            data="hello\n",
            timestamp=1700000000123456789 / 1e9,
            sequence=1,
            run="r",
        ),
        Event(
            type="stderr", data="warn\n", timestamp=1700000001.0, sequence=2, run="r"
        ),
        Event(
            type="result",
            data="42",
            timestamp=NOW,
            sequence=3,
            run="r",
            attrs={
                "text": "42",
                "html": "<b>42</b>",
                "png": "iVBO",
                "is_main_result": True,
            },
        ),
        Event(
            type="number_of_executions",
            timestamp=NOW,
            sequence=4,
            run="r",
            attrs={"execution_count": 3},
        ),
        Event(
            type="completed",
            timestamp=NOW,
            sequence=5,
            run="r",
            attrs={"success": True},
        ),
    ] == events
    assert decoder.finished


def test_e2b_error_line() -> None:
    """An E2B error gives ``name: value`` as data, its keys in attrs, and fails."""
    decoder = e2b()
    line = b'{"type":"error","name":"NameError","value":"x","traceback":"Tb..."}'
    (error,) = decoder.receive(line + b"\n")
    assert error.data == "NameError: x"
    assert dict(error.attrs) == {
        "name": "NameError",
        "value": "x",
        "traceback": "Tb...",
    }
    (completed,) = decoder.receive(b'{"type":"end_of_execution"}\n')
    assert completed["success"] is False
    assert decoder.errors == 1


def test_e2b_error_without_name() -> None:
    """An error without a name has its value alone as data."""
    (error,) = e2b().receive(b'{"type":"error","value":"bad"}\n')
    assert error.data == "bad"


@given(st.integers(min_value=0, max_value=2**63))
def test_e2b_nanoseconds(ns: int) -> None:
    """An integer nanosecond timestamp becomes float seconds, correctly rounded."""
    line = msgspec.json.encode({"type": "stdout", "text": "x", "timestamp": ns})
    (event,) = e2b().receive(line + b"\n")
    assert ns / 1_000_000_000 == event.timestamp


@pytest.mark.parametrize("stamp", ["", ',"timestamp":null', ',"timestamp":true'])
def test_e2b_missing_timestamp_is_local(stamp: str) -> None:
    """An output line without a usable timestamp gets the local time."""
    (event,) = e2b().receive(f'{{"type":"stdout","text":"x"{stamp}}}\n'.encode())
    assert event.timestamp == NOW


def test_e2b_unknown_type_passes() -> None:
    """A type eventkit does not know passes with its keys in attrs."""
    (event,) = e2b().receive(b'{"type":"display","text":"t","n":1}\n')
    assert (event.type, event.data) == ("display", "t")
    assert dict(event.attrs) == {"text": "t", "n": 1}


@pytest.mark.parametrize(
    "line",
    [b"plain text", b"[1]", b'"s"', b"{}", b'{"type":1}', b"{bad", b"\xff"],
)
def test_e2b_invalid_lines(line: bytes) -> None:
    """A line that is not an object with a string type is an invalid_line error."""
    decoder = e2b()
    (event,) = decoder.receive(line + b"\n")
    assert (event.type, event["code"]) == ("error", INVALID_LINE)
    assert decoder.errors == 0


def test_e2b_abort_and_ignored_lines() -> None:
    """After end_of_execution lines are counted; before it, abort() fails the run."""
    early = e2b()
    assert [e.type for e in early.abort("gone")] == ["error", "completed"]
    decoder = e2b()
    receive_lines(decoder, [b'{"type":"end_of_execution"}', b"", b'{"type":"stdout"}'])
    assert decoder.ignored == 1
    assert decoder.done
    assert decoder.abort("gone") == []
