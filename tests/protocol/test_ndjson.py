"""Tests for :mod:`eventkit.protocol.ndjson`."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from hypothesis import example, given, strategies as st

from eventkit.events import Event
from eventkit.exceptions import StreamClosedError
from eventkit.protocol import jsonl
from eventkit.protocol.ndjson import (
    CLOSED_BEFORE_COMPLETE,
    INVALID_LINE,
    MAX_LINE,
    AiComputerDecoder,
    E2bDecoder,
    EventkitDecoder,
    LineSplitter,
    LineTooLongError,
    decoder_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventkit.protocol.ndjson import LineDecoder

#: The local clock of every decoder made here.
NOW = 1700000000.5


def clock() -> float:
    """Return the fixed local time."""
    return NOW


def aicomputer(run: str = "r") -> AiComputerDecoder:
    """Return an AI Computer decoder on the fixed clock."""
    return AiComputerDecoder(run, clock=clock)


def e2b(run: str = "r") -> E2bDecoder:
    """Return an E2B decoder on the fixed clock."""
    return E2bDecoder(run, clock=clock)


def decode_all(decoder: LineDecoder, lines: list[bytes]) -> list[Event]:
    """Return the events of ``lines``, in order."""
    return [event for line in lines for event in decoder.decode_line(line)]


def reference_lines(data: bytes) -> list[bytes]:
    """Split ``data`` into lines the obvious way, all at once."""
    *lines, tail = data.split(b"\n")
    if tail:
        lines.append(tail)
    return [line.removesuffix(b"\r") for line in lines]


def split_lines(chunks: list[bytes], max_line: int = MAX_LINE) -> list[bytes]:
    """Return the lines a splitter gives for ``chunks``, then end of input."""
    splitter = LineSplitter(max_line)
    lines = [line for chunk in chunks for line in splitter.receive(chunk)]
    return lines + splitter.close()


# LineSplitter


@given(st.binary(), st.lists(st.integers(min_value=0), max_size=12))
@example(b"a\r\nb\n\nc", [2, 3])
@example("é€\n😀".encode(), [1, 5, 6])
def test_any_split_gives_the_same_lines(data: bytes, cuts: list[int]) -> None:
    """However a byte stream is cut into chunks, the same lines come out."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    chunks = [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]
    assert reference_lines(data) == split_lines(chunks)


@given(st.lists(st.binary(max_size=8).filter(lambda b: b"\n" not in b), max_size=8))
def test_byte_by_byte(lines: list[bytes]) -> None:
    """Feeding one byte at a time gives every newline-terminated line."""
    data = b"".join(line + b"\n" for line in lines)
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert [line.removesuffix(b"\r") for line in lines] == split_lines(chunks)


def test_crlf() -> None:
    """CRLF endings give the same lines as LF; a lone CR inside stays."""
    assert split_lines([b"a\r\nb\rc\r\n\r\n"]) == [b"a", b"b\rc", b""]


def test_no_trailing_newline() -> None:
    """The last line comes out of ``close()`` when no newline ends the input."""
    splitter = LineSplitter()
    assert splitter.receive(b"one\ntw") == [b"one"]
    assert splitter.pending == 2
    assert splitter.receive(b"o") + splitter.close() == [b"two"]
    assert splitter.close() == []
    assert splitter.receive(b"three\r") + splitter.close() == [b"three"]


def test_close_without_tail() -> None:
    """``close()`` gives nothing when the input ended with a newline or was empty."""
    splitter = LineSplitter()
    assert splitter.receive(b"") == []
    assert splitter.close() == []
    assert splitter.receive(b"x\n") == [b"x"]
    assert splitter.close() == []


def test_max_line_is_inclusive() -> None:
    """A line of exactly ``max_line`` bytes passes, CRLF or not."""
    assert split_lines([b"x" * 8 + b"\n", b"y" * 8 + b"\r\n", b"z" * 8]) == [
        b"x" * 8,
        b"y" * 8,
        b"z" * 8,
    ]


@pytest.mark.parametrize(
    "chunks",
    [
        [b"x" * 9 + b"\n"],
        [b"ok\n" + b"x" * 9 + b"\nok\n"],
        [b"x" * 5, b"x" * 4 + b"\n"],
        [b"x" * 9 + b"\r\n"],
    ],
)
def test_line_too_long(chunks: list[bytes]) -> None:
    """A complete line over ``max_line`` bytes raises LineTooLongError."""
    with pytest.raises(LineTooLongError) as info:
        split_lines(chunks, max_line=8)
    assert info.value.limit == 8
    assert info.value.size > 8
    assert isinstance(info.value, ValueError)


def test_long_tail_raises_before_its_newline() -> None:
    """An unterminated line is refused once over the limit: memory stays bounded."""
    splitter = LineSplitter(max_line=8)
    assert splitter.receive(b"x" * 9) == []  # might still be 8 bytes and a CR
    with pytest.raises(LineTooLongError):
        splitter.receive(b"x")
    assert splitter.pending == 0


def test_long_tail_in_a_chunk_with_lines() -> None:
    """A chunk ending in an overlong unterminated line raises too."""
    with pytest.raises(LineTooLongError):
        LineSplitter(max_line=4).receive(b"ok\n" + b"x" * 6)


def test_long_last_line_raises_on_close() -> None:
    """A final line without newline that is one byte too long raises on close."""
    splitter = LineSplitter(max_line=4)
    assert splitter.receive(b"xxxxx") == []
    with pytest.raises(LineTooLongError):
        splitter.close()


@pytest.mark.parametrize("max_line", [0, -1])
def test_max_line_must_be_positive(max_line: int) -> None:
    """A non-positive ``max_line`` is refused."""
    with pytest.raises(ValueError, match="max_line"):
        LineSplitter(max_line)


# AiComputerDecoder: protocols.md section 3.2


def test_aicomputer_documented_lines() -> None:
    """The example lines of protocols.md section 3.2 decode exactly."""
    decoder = aicomputer()
    body = (
        b'{"type": "stdout", "data": "Processing step 1\\n"}\n'
        b'{"type": "stderr", "data": "warning ...\\n"}\n'
        b'{"type": "error", "data": "NameError: name \'x\' is not defined"}\n'
        b'{"type": "completed", "data": ""}\n'
    )
    events = [*decoder.begin(), *decode_all(decoder, split_lines([body]))]
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
        aicomputer().decode_line(line)
    )


@pytest.mark.parametrize("line", [b"", b"   ", b"\t\r", b"\x0b\x0c"])
def test_aicomputer_blank_lines_are_skipped(line: bytes) -> None:
    """Blank lines give no event and take no sequence."""
    decoder = aicomputer()
    assert decoder.decode_line(line) == []
    assert decoder.count == 0


def test_aicomputer_missing_type_is_info() -> None:
    """An object without ``type`` is an ``info`` event; without ``data``, data is ""."""
    events = decode_all(aicomputer(), [b'{"data": "note"}', b"  {}  "])
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
    (event,) = aicomputer().decode_line(line)
    assert text == event.data


def test_aicomputer_keeps_other_keys() -> None:
    """Other keys go to attrs (sequence as server_sequence); timestamps stay local."""
    line = (
        b'{"type": "stdout", "data": "x", "timestamp": 12.5, "sequence": 7, "k": [1]}'
    )
    (event,) = aicomputer().decode_line(line)
    assert dict(event.attrs) == {"timestamp": 12.5, "server_sequence": 7, "k": [1]}
    assert event.timestamp == NOW
    assert event.sequence == 0


def test_aicomputer_invalid_json_reports_and_goes_on() -> None:
    """A line that looks like JSON but is not gives an invalid_line error, then more."""
    decoder = aicomputer()
    events = decode_all(decoder, [b' {"type": "stdout", "data": } ', b"after"])
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
    (event,) = aicomputer().decode_line(line)
    assert (event.type, event["code"]) == ("error", INVALID_LINE)
    jsonl.encode(event)  # and the error itself can be written out


def test_aicomputer_error_does_not_end_the_run() -> None:
    """An ``error`` event leaves the run going, as in 0.3.4."""
    decoder = aicomputer()
    decode_all(decoder, [b'{"type": "error", "data": "boom"}'])
    assert not decoder.finished
    assert [(e.type, e.data) for e in decoder.decode_line(b"more")] == [
        ("stdout", "more")
    ]


def test_aicomputer_lines_after_completed_are_ignored() -> None:
    """After ``completed`` lines give nothing and non-blank ones are counted."""
    decoder = aicomputer()
    decode_all(decoder, [b'{"type": "completed", "data": ""}'])
    after = [b'{"type": "stdout", "data": "late"}', b"text", b"", b"{bad}"]
    assert decode_all(decoder, after) == []
    assert decoder.ignored == 3
    assert decoder.end() == []


def test_aicomputer_end_without_completed() -> None:
    """``end()`` gives closed_before_complete, then a failed ``completed``."""
    decoder = aicomputer()
    decode_all(decoder, [b"partial output"])
    error, completed = decoder.end("connection lost")
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
    assert decoder.end() == []


def test_aicomputer_end_default_reason() -> None:
    """Without a reason, the error says the body ended before completed."""
    error, _ = aicomputer().end()
    assert error.data.endswith(": body ended before completed")


def test_started_carries_attrs() -> None:
    """``started()`` numbers a synthetic started event, with the attrs given."""
    decoder = aicomputer("run-1")
    event = decoder.started({"sandbox_id": "sbx"})
    assert Event(
        type="started", timestamp=NOW, run="run-1", attrs={"sandbox_id": "sbx"}
    ) == (event)
    assert decoder.run == "run-1"


def test_fresh_run_ids() -> None:
    """Without a run id every decoder makes its own."""
    assert AiComputerDecoder().run != AiComputerDecoder().run


# E2bDecoder: protocols.md section 4


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
    events = [*decoder.begin(), *decode_all(decoder, lines)]
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
    (error,) = decoder.decode_line(line)
    assert error.data == "NameError: x"
    assert dict(error.attrs) == {
        "name": "NameError",
        "value": "x",
        "traceback": "Tb...",
    }
    (completed,) = decoder.decode_line(b'{"type":"end_of_execution"}')
    assert completed["success"] is False
    assert decoder.errors == 1


def test_e2b_error_without_name() -> None:
    """An error without a name has its value alone as data."""
    (error,) = e2b().decode_line(b'{"type":"error","value":"bad"}')
    assert error.data == "bad"


@given(st.integers(min_value=0, max_value=2**63))
def test_e2b_nanoseconds(ns: int) -> None:
    """An integer nanosecond timestamp becomes float seconds, correctly rounded."""
    line = msgspec.json.encode({"type": "stdout", "text": "x", "timestamp": ns})
    (event,) = e2b().decode_line(line)
    assert ns / 1_000_000_000 == event.timestamp


@pytest.mark.parametrize("stamp", ["", ',"timestamp":null', ',"timestamp":true'])
def test_e2b_missing_timestamp_is_local(stamp: str) -> None:
    """An output line without a usable timestamp gets the local time."""
    (event,) = e2b().decode_line(f'{{"type":"stdout","text":"x"{stamp}}}'.encode())
    assert event.timestamp == NOW


def test_e2b_unknown_type_passes() -> None:
    """A type eventkit does not know passes with its keys in attrs."""
    (event,) = e2b().decode_line(b'{"type":"display","text":"t","n":1}')
    assert (event.type, event.data) == ("display", "t")
    assert dict(event.attrs) == {"text": "t", "n": 1}


@pytest.mark.parametrize(
    "line",
    [b"plain text", b"[1]", b'"s"', b"{}", b'{"type":1}', b"{bad", b"\xff"],
)
def test_e2b_invalid_lines(line: bytes) -> None:
    """A line that is not an object with a string type is an invalid_line error."""
    decoder = e2b()
    (event,) = decoder.decode_line(line)
    assert (event.type, event["code"]) == ("error", INVALID_LINE)
    assert decoder.errors == 0


def test_e2b_end_and_ignored_lines() -> None:
    """After end_of_execution lines are counted; before it, end() fails the run."""
    early = e2b()
    assert [e.type for e in early.end()] == ["error", "completed"]
    decoder = e2b()
    decode_all(decoder, [b'{"type":"end_of_execution"}', b"", b'{"type":"stdout"}'])
    assert decoder.ignored == 1
    assert decoder.end() == []


# EventkitDecoder


EVENTS = [
    Event(type="started", timestamp=10.0, sequence=0, run="a"),
    Event(type="stdout", data="hi\n", timestamp=10.5, sequence=1, run="a"),
    Event(type="started", timestamp=11.0, sequence=0, run="b"),
    Event(type="completed", timestamp=12.0, sequence=2, run="a", attrs={"x": 1}),
]


def test_eventkit_keeps_events_as_they_are() -> None:
    """Events come back with their own run, sequence and timestamp."""
    decoder = EventkitDecoder("own", clock=clock)
    assert decoder.begin() == []
    assert decode_all(decoder, [jsonl.encode(e) for e in EVENTS]) == EVENTS
    assert not decoder.done


def test_eventkit_finished_when_every_run_completed() -> None:
    """The body may end cleanly once every run seen has completed."""
    decoder = EventkitDecoder(clock=clock)
    states = [decoder.finished]
    decode_all(decoder, [jsonl.encode(e) for e in EVENTS])
    states.append(decoder.finished)  # run b is still open
    decode_all(decoder, [jsonl.encode(Event(type="completed", sequence=1, run="b"))])
    states.append(decoder.finished)
    assert states == [False, False, True]
    assert decoder.end() == []


def test_eventkit_end_closes_each_open_run() -> None:
    """``end()`` numbers an error and a failed completed after each open run's last."""
    decoder = EventkitDecoder("own", clock=clock)
    lines = [jsonl.encode(e) for e in EVENTS[:3]]
    decode_all(decoder, [lines[1], lines[0], lines[2]])
    events = decoder.end("gone")
    assert [(e.run, e.type, e.sequence, e.data) for e in events] == [
        ("a", "error", 2, "stream closed before the run completed: gone"),
        ("a", "completed", 3, ""),
        ("b", "error", 1, "stream closed before the run completed: gone"),
        ("b", "completed", 2, ""),
    ]
    assert all(e.timestamp == NOW for e in events)
    assert [events[0]["code"], events[1]["success"]] == [CLOSED_BEFORE_COMPLETE, False]
    assert decoder.finished


def test_eventkit_end_of_an_empty_body() -> None:
    """A body without any event ends the decoder's own run."""
    decoder = EventkitDecoder("own", clock=clock)
    events = decoder.end()
    assert [(e.run, e.type, e.sequence) for e in events] == [
        ("own", "error", 0),
        ("own", "completed", 1),
    ]
    assert decoder.end() == []


def test_eventkit_invalid_line() -> None:
    """An invalid line is an error in the decoder's own run; decoding goes on."""
    decoder = EventkitDecoder("own", clock=clock)
    events = decode_all(
        decoder, [b"not json", b"", b'{"data": "no type"}', jsonl.encode(EVENTS[0])]
    )
    assert [(e.run, e.sequence) for e in events] == [("own", 0), ("own", 1), ("a", 0)]
    assert [e.type for e in events] == ["error", "error", "started"]
    assert [e["code"] for e in events[:2]] == [INVALID_LINE, INVALID_LINE]
    assert events[0].data == "not json"


# decoder_for


@pytest.mark.parametrize(
    ("dialect", "kind"),
    [
        ("aicomputer", AiComputerDecoder),
        ("e2b", E2bDecoder),
        ("eventkit", EventkitDecoder),
    ],
)
def test_decoder_for(dialect: str, kind: type[Any]) -> None:
    """Each dialect name gives its decoder, with the run id given."""
    decoder = decoder_for(dialect, "r1")
    assert isinstance(decoder, kind)
    assert decoder.run == "r1"


def test_decoder_for_unknown_dialect() -> None:
    """An unknown dialect is refused."""
    with pytest.raises(ValueError, match="hopx"):
        decoder_for("hopx", None)


# Garbage never raises

DECODERS: list[Callable[[], LineDecoder]] = [
    aicomputer,
    e2b,
    lambda: EventkitDecoder("own", clock=clock),
]

json_like = st.builds(lambda text: b"{" + text.encode() + b"}", st.text())
garbage = st.binary() | json_like | st.text().map(str.encode)


@pytest.mark.parametrize("make", DECODERS, ids=["aicomputer", "e2b", "eventkit"])
@given(lines=st.lists(garbage, max_size=10))
@example(lines=[b"{\x00}", b'{"type":"stdout","data":"\\u0000"}', b"\xc3"])
def test_garbage_never_raises(
    make: Callable[[], LineDecoder], lines: list[bytes]
) -> None:
    """Any line gives at most one event, an error if it is not a valid one."""
    decoder = make()
    for line in lines:
        events = decoder.decode_line(line)
        assert len(events) <= 1
        for event in events:
            jsonl.encode(event)  # every event can be written out again
            if event.type == "error" and "code" in event.attrs:
                assert event["code"] == INVALID_LINE
    decoder.end()


@given(st.binary(), st.lists(st.integers(min_value=0), max_size=6))
def test_garbage_stream_through_splitter(data: bytes, cuts: list[int]) -> None:
    """A garbage body through a small splitter gives events or LineTooLongError only."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    chunks = [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]
    decoder = AiComputerDecoder(clock=clock)
    try:
        lines = split_lines(chunks, max_line=32)
    except LineTooLongError:
        return
    decode_all(decoder, lines)
