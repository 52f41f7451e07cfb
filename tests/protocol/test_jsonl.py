"""Tests for :mod:`eventkit.protocol.jsonl`: one line, and a stream of them."""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import example, given, strategies as st

import eventkit
from eventkit.events import Event
from eventkit.protocol import jsonl
from eventkit.protocol.jsonl import DecodeError, EventkitDecoder
from eventkit.protocol.lines import INVALID_LINE
from eventkit.protocol.run import CLOSED_BEFORE_COMPLETE
from tests.strategies import events

#: The local clock of every decoder made here.
NOW = 1700000000.5


def clock() -> float:
    """Return the fixed local time."""
    return NOW


@given(events)
@example(Event(type="stdout", data="a\nb\r\nc\u2028d\x00", timestamp=1.0))
@example(Event(type="x", timestamp=1.7976931348623157e308, sequence=2**70))
@example(Event(type="x", timestamp=5e-324, attrs={"nested": {"a": [1, [2.5]]}}))
def test_round_trip(event: Event) -> None:
    """Decoding an encoded event gives it back, and re-encoding the same bytes."""
    line = jsonl.encode(event)
    decoded = jsonl.decode(line)
    assert event == decoded
    assert line == jsonl.encode(decoded)


@given(events)
def test_one_line_per_event(event: Event) -> None:
    """An encoded event is one line ending in exactly one newline."""
    line = jsonl.encode(event)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b"\r" not in line


@pytest.mark.parametrize(
    "timestamp",
    [
        0.0,
        -0.0,
        5e-324,
        2.2250738585072014e-308,
        1e-7,
        0.1,
        1700000000.123456,
        1.7976931348623157e308,
        -1e300,
    ],
)
def test_timestamps_round_trip_exactly(timestamp: float) -> None:
    """Timestamps come back bit for bit, tiny, huge and negative zero alike."""
    decoded = jsonl.decode(jsonl.encode(Event(type="x", timestamp=timestamp)))
    assert repr(timestamp) == repr(decoded.timestamp)


def test_encode_writes_every_field() -> None:
    """Every field is on the line, defaults included."""
    line = jsonl.encode(Event(type="started", timestamp=1.5))
    expected = (
        b'{"type":"started","data":"","timestamp":1.5,"sequence":0,'
        b'"run":"","attrs":{}}\n'
    )
    assert expected == line


def test_encode_read_only_attrs() -> None:
    """Attrs given as a read-only mapping are written as a JSON object."""
    event = Event(type="x", timestamp=1.0, attrs=MappingProxyType({"a": [1, 2]}))
    assert jsonl.decode(jsonl.encode(event)).attrs == {"a": [1, 2]}


def test_tuples_come_back_as_lists() -> None:
    """A tuple in attrs is written as a JSON array and read back as a list."""
    event = Event(type="x", timestamp=1.0, attrs={"pair": (1, 2)})
    assert jsonl.decode(jsonl.encode(event)).attrs == {"pair": [1, 2]}


@pytest.mark.parametrize(
    "attrs",
    [{"o": object()}, {"nested": [1, {"deep": object()}]}],
)
def test_encode_refuses_non_json_attrs(attrs: dict[str, Any]) -> None:
    """An attr value that is not a JSON value raises TypeError naming its type."""
    with pytest.raises(TypeError, match="object"):
        jsonl.encode(Event(type="x", attrs=attrs))


def test_decode_accepts_str_and_bytes() -> None:
    """A line decodes from bytes or text, with or without its newline."""
    expected = Event(type="stdout", data="é", timestamp=1.0)
    lines: list[bytes | str] = [
        '{"type":"stdout","data":"é","timestamp":1.0}',
        '{"type":"stdout","data":"é","timestamp":1.0}\n',
        '{"type":"stdout","data":"é","timestamp":1.0}'.encode(),
        b'{"type":"stdout","data":"\\u00e9","timestamp":1}\n',
    ]
    for line in lines:
        assert expected == jsonl.decode(line)


def test_decode_fills_defaults() -> None:
    """Missing optional fields get their defaults; the timestamp is now."""
    before = time.time()
    event = jsonl.decode(b'{"type": "started"}')
    after = time.time()
    assert event.type == "started"
    assert (event.data, event.sequence, event.run, event.attrs) == ("", 0, "", {})
    assert before <= event.timestamp <= after


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "malformed"),
        (b'{"type": "stdout"', "truncated"),
        (b'{"type": "stdout"} extra', "trailing"),
        (b'["stdout", "data"]', "got `array`"),
        (b'"stdout"', "got `str`"),
        (b"{}", "missing required field `type`"),
        (b'{"data": "x"}', "missing required field `type`"),
        (b'{"type": 1}', "$.type"),
        (b'{"type": "x", "data": null}', "$.data"),
        (b'{"type": "x", "timestamp": "now"}', "$.timestamp"),
        (b'{"type": "x", "sequence": 1.5}', "$.sequence"),
        (b'{"type": "x", "sequence": true}', "$.sequence"),
        (b'{"type": "x", "run": 7}', "$.run"),
        (b'{"type": "x", "attrs": [1]}', "$.attrs"),
        (b'{"type": "x", "attrs": {"a": NaN}}', "malformed"),
        (b"\xff\xfe{", "malformed"),
        (b"", "truncated"),
    ],
)
def test_decode_errors(line: bytes, reason: str) -> None:
    """Invalid lines raise DecodeError with the line number, reason and text."""
    with pytest.raises(DecodeError) as info:
        jsonl.decode(line, lineno=12)
    error = info.value
    assert error.line == 12
    assert str(error).startswith("line 12: ")
    assert reason in str(error)
    assert line.decode(errors="replace") == error.text


def test_decode_error_without_line_number() -> None:
    """Without a line number the message names none and ``line`` is 0."""
    with pytest.raises(DecodeError) as info:
        jsonl.decode("[]")
    assert info.value.line == 0
    assert not str(info.value).startswith("line")


def test_decode_error_text_is_cut() -> None:
    """The offending text kept on the error is at most 200 characters."""
    line = '{"type": ' + "x" * 1000 + "\n"
    with pytest.raises(DecodeError) as info:
        jsonl.decode(line, lineno=1)
    assert line[:200] == info.value.text


def test_decode_error_is_a_value_error() -> None:
    """DecodeError is a ValueError, exported at the top level."""
    assert issubclass(DecodeError, ValueError)
    assert eventkit.DecodeError is DecodeError


def decodes_or_refuses(line: bytes | str) -> None:
    """Assert that ``line`` decodes to an Event or raises DecodeError, nothing else."""
    # Anything but DecodeError propagates and fails the test.
    try:
        outcome: Event | DecodeError = jsonl.decode(line, lineno=7)
    except DecodeError as exc:
        outcome = exc
    if isinstance(outcome, DecodeError):
        assert outcome.line == 7
        assert len(outcome.text) <= 200


@given(st.binary())
def test_garbage_bytes_raise_only_decode_error(line: bytes) -> None:
    """Arbitrary bytes never raise anything but DecodeError."""
    decodes_or_refuses(line)


@given(st.text(alphabet='{}[]":,.-+0123456789eEtrufalsnypdimqx\\ \t\n'))
def test_json_like_garbage_raises_only_decode_error(line: str) -> None:
    """Text made of JSON's own characters never raises anything but DecodeError."""
    decodes_or_refuses(line)
    decodes_or_refuses(line.encode())


@given(event=events, data=st.data())
def test_damaged_lines_raise_only_decode_error(
    event: Event, data: st.DataObject
) -> None:
    """A valid line cut short or with a character replaced raises only DecodeError."""
    text = jsonl.encode(event).decode()
    cut = data.draw(st.integers(0, len(text)), label="cut")
    decodes_or_refuses(text[:cut].encode())
    at = data.draw(st.integers(0, len(text) - 1), label="at")
    char = data.draw(st.characters(codec="utf-8"), label="char")
    decodes_or_refuses((text[:at] + char + text[at + 1 :]).encode())


@pytest.mark.parametrize(
    "line",
    [
        b'{"type": "stdout", "data": "caf\xe9"}',
        b'{"type": "stdout", "attrs": {"\xff": 1}}',
    ],
    ids=["latin-1-data", "bad-attr-key"],
)
def test_invalid_utf8_in_a_string_raises_decode_error(line: bytes) -> None:
    """A line with invalid UTF-8 inside a string raises DecodeError."""
    with pytest.raises(DecodeError):
        jsonl.decode(line, lineno=1)


def test_deeply_nested_garbage_raises_decode_error() -> None:
    """A line of deeply nested arrays raises DecodeError, not RecursionError."""
    line = b'{"type": "x", "attrs": {"a": ' + b"[" * 100_000
    with pytest.raises(DecodeError):
        jsonl.decode(line, lineno=1)


def test_text_with_lone_surrogate_raises_decode_error() -> None:
    """A text line with a lone surrogate raises DecodeError."""
    with pytest.raises(DecodeError):
        jsonl.decode('{"type": "\ud800"}', lineno=1)


# EventkitDecoder: a stream of lines


EVENTS = [
    Event(type="started", timestamp=10.0, sequence=0, run="a"),
    Event(type="stdout", data="hi\n", timestamp=10.5, sequence=1, run="a"),
    Event(type="started", timestamp=11.0, sequence=0, run="b"),
    Event(type="completed", timestamp=12.0, sequence=2, run="a", attrs={"x": 1}),
]


def test_eventkit_keeps_events_as_they_are() -> None:
    """Events come back with their own run, sequence and timestamp."""
    decoder = EventkitDecoder("own", clock=clock)
    assert decoder.start() == []
    assert decoder.receive(b"".join(jsonl.encode(e) for e in EVENTS)) == EVENTS
    assert not decoder.done


def test_eventkit_finished_when_every_run_completed() -> None:
    """The body may end cleanly once every run seen has completed."""
    decoder = EventkitDecoder(clock=clock)
    states = [decoder.finished]
    decoder.receive(b"".join(jsonl.encode(e) for e in EVENTS))
    states.append(decoder.finished)  # run b is still open
    decoder.receive(jsonl.encode(Event(type="completed", sequence=1, run="b")))
    states.append(decoder.finished)
    assert states == [False, False, True]
    assert not decoder.done
    assert decoder.abort("gone") == []


def test_eventkit_abort_closes_each_open_run() -> None:
    """``abort()`` numbers an error and a failed completed after each open run."""
    decoder = EventkitDecoder("own", clock=clock)
    lines = [jsonl.encode(e) for e in EVENTS[:3]]
    decoder.receive(lines[1] + lines[0] + lines[2])
    events = decoder.abort("gone")
    assert [(e.run, e.type, e.sequence, e.data) for e in events] == [
        ("a", "error", 2, "stream closed before the run completed: gone"),
        ("a", "completed", 3, ""),
        ("b", "error", 1, "stream closed before the run completed: gone"),
        ("b", "completed", 2, ""),
    ]
    assert all(e.timestamp == NOW for e in events)
    assert [events[0]["code"], events[1]["success"]] == [CLOSED_BEFORE_COMPLETE, False]
    assert decoder.finished


def test_eventkit_abort_of_an_empty_body() -> None:
    """A body without any event ends the decoder's own run."""
    decoder = EventkitDecoder("own", clock=clock)
    events = decoder.abort("gone")
    assert [(e.run, e.type, e.sequence) for e in events] == [
        ("own", "error", 0),
        ("own", "completed", 1),
    ]
    assert decoder.abort("gone") == []


def test_eventkit_invalid_line() -> None:
    """An invalid line is an error in the decoder's own run; decoding goes on."""
    decoder = EventkitDecoder("own", clock=clock)
    events = decoder.receive(
        b'not json\n\n{"data": "no type"}\n' + jsonl.encode(EVENTS[0])
    )
    assert [(e.run, e.sequence) for e in events] == [("own", 0), ("own", 1), ("a", 0)]
    assert [e.type for e in events] == ["error", "error", "started"]
    assert [e["code"] for e in events[:2]] == [INVALID_LINE, INVALID_LINE]
    assert events[0].data == "not json"
    assert (decoder.lines, decoder.invalid_lines, decoder.ignored) == (4, 2, 0)
