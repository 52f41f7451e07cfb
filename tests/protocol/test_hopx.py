"""Tests for :mod:`eventkit.protocol.hopx`: the decoder, the encoder, the helpers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given, strategies as st

from eventkit.events import Event
from eventkit.protocol.hopx import (
    MAX_FRAME_BYTES,
    MAX_INVALID_TEXT,
    HopxDecoder,
    HopxEncoder,
    agent_url,
    execute_message,
    iso_timestamp,
    parse_timestamp,
    resume_message,
)
from tests.factories import ev

#: The local clock of every decoder here: events without a wire time get it.
NOW = 42.0
#: The time of every event encoded here.
T = 1_763_634_600.123456


def decoder() -> HopxDecoder:
    """Return a decoder for run ``r`` on the fake clock, past ``started``."""
    decoding = HopxDecoder("r", clock=lambda: NOW)
    decoding.start()
    return decoding


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *rest: int
) -> float:
    """Return the Unix time of a UTC date and time (seconds, microseconds)."""
    second, micro = (*rest, 0, 0)[:2]
    moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    return moment.timestamp()


def invalid(text: str, sequence: int = 1) -> Event:
    """Return the error event an invalid frame makes."""
    return Event(
        type="error",
        data=text,
        timestamp=NOW,
        sequence=sequence,
        run="r",
        attrs={"code": "invalid_frame"},
    )


# The examples of protocols.md §2.5, verbatim.
EXAMPLES = [
    '{"type": "stdout", "data": "Step 1/5\\n", '
    '"timestamp": "2025-11-20T10:30:00.123456789Z"}',
    '{"type": "stderr", "data": "Progress: 20%\\n", '
    '"timestamp": "2025-11-20T10:30:00.124Z"}',
    '{"type": "result", "exit_code": 0, "execution_time": 1.23, '
    '"timestamp": "2025-11-20T10:30:01Z"}',
    '{"type": "error", "error": "Execution timed out", '
    '"code": "EXECUTION_TIMEOUT", "timestamp": "2025-11-20T10:31:00Z"}',
    '{"type": "complete", "success": true}',
]


def test_protocol_examples_decode_exactly() -> None:
    """The documented messages make exactly these events, in this order."""
    decoding = HopxDecoder("r", clock=lambda: NOW)
    events = decoding.start()
    for frame in EXAMPLES:
        events.extend(decoding.receive(frame))
    expected = [
        Event(type="started", timestamp=NOW, sequence=0, run="r"),
        Event(
            type="stdout",
            data="Step 1/5\n",
            # RFC3339Nano, .123456789: to the nearest microsecond.
            timestamp=utc(2025, 11, 20, 10, 30, 0, 123457),
            sequence=1,
            run="r",
        ),
        Event(
            type="stderr",
            data="Progress: 20%\n",
            timestamp=utc(2025, 11, 20, 10, 30, 0, 124000),
            sequence=2,
            run="r",
        ),
        Event(
            type="result",
            timestamp=utc(2025, 11, 20, 10, 30, 1),
            sequence=3,
            run="r",
            attrs={"exit_code": 0, "execution_time": 1.23},
        ),
        Event(
            type="error",
            data="Execution timed out",
            timestamp=utc(2025, 11, 20, 10, 31),
            sequence=4,
            run="r",
            attrs={"code": "EXECUTION_TIMEOUT"},
        ),
        Event(
            type="completed",
            timestamp=NOW,
            sequence=5,
            run="r",
            attrs={"success": True},
        ),
    ]
    assert expected == events
    assert decoding.finished
    assert (decoding.invalid_frames, decoding.ignored) == (0, 0)
    assert decoding.frames == len(EXAMPLES)


def test_example_timestamps_as_numbers() -> None:
    """The example times are the Unix times one computes by hand."""
    assert parse_timestamp("2025-11-20T10:30:00.123456789Z") == 1763634600.123456
    assert parse_timestamp("2025-11-20T10:30:00.124Z") == 1763634600.124
    assert parse_timestamp("2025-11-20T10:30:01Z") == 1763634601.0


def test_started_is_sequence_zero() -> None:
    """``started`` is the run's first event, on the local clock, without attrs."""
    decoding = HopxDecoder("run-7", clock=lambda: 5.0)
    expected = Event(type="started", timestamp=5.0, sequence=0, run="run-7")
    assert [expected] == decoding.start()
    assert not decoding.finished


def test_fresh_run_ids() -> None:
    """Without a run id each decoder gets a fresh one."""
    first, second = HopxDecoder(), HopxDecoder()
    assert first.run != second.run
    assert first.run == first.start()[0].run


# execute_message -------------------------------------------------------------


def test_execute_message_as_the_sdk_sends_it() -> None:
    """All options: the very text the SDK sends (protocols.md §2.4)."""
    expected = (
        '{"type": "execute", "code": "print(\'hi\')", "language": "python", '
        '"timeout": 5, "workdir": "/workspace", "env": {"A": "1"}}'
    )
    actual = execute_message(
        "print('hi')", timeout=5, workdir="/workspace", env={"A": "1"}
    )
    assert expected == actual


@pytest.mark.parametrize("env", [None, {}])
def test_execute_message_leaves_out_empty_env_and_workdir(
    env: dict[str, str] | None,
) -> None:
    """An empty or missing ``env`` and a None ``workdir`` are left out."""
    expected = '{"type": "execute", "code": "1", "language": "python", "timeout": 60}'
    assert expected == execute_message("1", env=env)


def test_execute_message_escapes_like_json_dumps() -> None:
    """Non-ASCII code is escaped as the SDK's ``json.dumps`` does."""
    message = execute_message("print('é\n')", language="bash", timeout=1)
    assert '"code": "print(\'\\u00e9\\n\')"' in message
    assert json.loads(message) == {
        "type": "execute",
        "code": "print('é\n')",
        "language": "bash",
        "timeout": 1,
    }


# agent_url -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://h:7777/execute/stream", "ws://h:7777/execute/stream"),
        ("wss://h/execute/stream", "wss://h/execute/stream"),
        ("ws://h:7777", "ws://h:7777/execute/stream"),
        ("wss://h/", "wss://h/execute/stream"),
        ("ws://127.0.0.1:1", "ws://127.0.0.1:1/execute/stream"),
        ("ws://[::1]:80", "ws://[::1]:80/execute/stream"),
        ("ws://h/proxy/stream?x=1", "ws://h/proxy/stream?x=1"),
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/execute/stream"),
        (
            "https://7777-sb.eu.vms.hopx.dev",
            "wss://7777-sb.eu.vms.hopx.dev/execute/stream",
        ),
        ("https://h:443/some/path?q=1#f", "wss://h:443/execute/stream"),
        ("HTTP://h/", "ws://h/execute/stream"),
    ],
)
def test_agent_url(url: str, expected: str) -> None:
    """ws URLs are kept (path added if none); http(s) maps to ws(s) at the root."""
    assert expected == agent_url(url)


@pytest.mark.parametrize(
    "url", ["ftp://h/", "h:7777", "//h/execute/stream", "", "http://", "ws://h:port"]
)
def test_agent_url_refuses(url: str) -> None:
    """Other schemes, a missing host and a bad port raise ValueError."""
    with pytest.raises(ValueError, match=r"scheme|host|port"):
        agent_url(url)


# Timestamps --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-11-20T10:30:00.123456789Z", utc(2025, 11, 20, 10, 30, 0, 123456)),
        ("2025-11-20T10:30:00.999999999Z", utc(2025, 11, 20, 10, 30, 0, 999999)),
        ("2025-11-20T10:30:00.1234567890123Z", utc(2025, 11, 20, 10, 30, 0, 123456)),
        ("2025-11-20T10:30:00.1Z", utc(2025, 11, 20, 10, 30, 0, 100000)),
        ("2025-11-20T10:30:00Z", utc(2025, 11, 20, 10, 30)),
        ("2025-11-20T11:30:00.5+01:00", utc(2025, 11, 20, 10, 30, 0, 500000)),
        ("2025-11-20T10:30:00+00:00", utc(2025, 11, 20, 10, 30)),
        ("2025-11-20 10:30:00Z", utc(2025, 11, 20, 10, 30)),
        # No offset: the agent's clock, UTC, not the local one.
        ("2025-11-20T10:30:00", utc(2025, 11, 20, 10, 30)),
        ("2025-11-20", utc(2025, 11, 20)),
    ],
)
def test_parse_timestamp(text: str, expected: float) -> None:
    """ISO 8601 with Z, offsets and up to 9+ fractional digits reads exactly."""
    assert expected == parse_timestamp(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "now",
        "Z",
        "2025-13-01T00:00:00Z",
        "2025-11-20T25:00:00Z",
        "2025-11-20T10:30:60Z",
        "2025-11-20T10:30:00.12a4Z",
        "2025-11-20T10:30:00.\u0661\u0662\u0663Z",
        "2025-11-20T10:30:00ZZ",
        "1763634600",
        "2025-11-20T10:30:00\ud800",
    ],
)
def test_parse_timestamp_refuses(text: str) -> None:
    """Strings that are not ISO 8601 give None, never an exception."""
    assert parse_timestamp(text) is None


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.just(UTC)
        | st.builds(
            timezone,
            st.integers(-23 * 60 + 1, 23 * 60 - 1).map(lambda m: timedelta(minutes=m)),
        ),
    ),
    st.text("0123456789", max_size=3),
)
def test_parse_timestamp_round_trip(moment: datetime, extra: str) -> None:
    """Any aware datetime written as ISO 8601, with extra digits, reads back."""
    text = moment.isoformat(timespec="microseconds") if extra else moment.isoformat()
    if extra:
        head, offset = text[:26], text[26:]
        text = head + extra + offset
    assert moment.timestamp() == parse_timestamp(text)


@pytest.mark.parametrize(
    "timestamp", ['"yesterday"', "1763634600", "1.5", "[]", '{"s": 1}', "true"]
)
def test_unreadable_timestamp_is_local_and_kept(timestamp: str) -> None:
    """An unreadable timestamp gives the local time; its value stays in attrs."""
    decoding = decoder()
    frame = f'{{"type": "stdout", "data": "x", "timestamp": {timestamp}}}'
    (event,) = decoding.receive(frame)
    assert event.timestamp == NOW
    assert {"timestamp": json.loads(timestamp)} == event.attrs
    assert event.data == "x"


@pytest.mark.parametrize(
    "frame",
    [
        '{"type": "stdout", "data": "x"}',
        '{"type": "stdout", "data": "x", "timestamp": null}',
        '{"type": "result", "exit_code": 1, "timestamp": null}',
    ],
)
def test_missing_timestamp_is_local(frame: str) -> None:
    """A missing or null timestamp gives the local receive time and no attr."""
    (event,) = decoder().receive(frame)
    assert event.timestamp == NOW
    assert "timestamp" not in event.attrs


# Frames ------------------------------------------------------------------------


def test_binary_frames() -> None:
    """Binary messages are UTF-8 JSON like text ones."""
    decoding = decoder()
    text = '{"type": "stdout", "data": "é😀\\n", "timestamp": "2025-11-20T10:30:01Z"}'
    (from_bytes,) = decoding.receive(text.encode())
    (from_text,) = decoding.receive(text)
    assert "é😀\n" == from_bytes.data == from_text.data
    assert from_text.timestamp == from_bytes.timestamp
    assert (from_bytes.sequence, from_text.sequence) == (1, 2)


def test_invalid_utf8_binary_frame() -> None:
    """A binary message that is not UTF-8 is an invalid frame, shown leniently."""
    decoding = decoder()
    events = decoding.receive(b'{"type": "stdout", "data": "\xff\xfe"}')
    assert [invalid('{"type": "stdout", "data": "\ufffd\ufffd"}')] == events
    assert decoding.invalid_frames == 1


@pytest.mark.parametrize("frame", ["", " ", "\n\t\r ", "\u3000", b"", b"  \n", b"\r\n"])
def test_empty_frames_are_skipped(frame: str | bytes) -> None:
    """Empty and whitespace-only messages make no event and count nothing."""
    decoding = decoder()
    assert decoding.receive(frame) == []
    assert decoding.invalid_frames == 0
    (event,) = decoding.receive('{"type": "stdout"}')
    assert event.sequence == 1


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        '{"type": "stdout"',
        '{"type": "stdout"} extra',
        "[1, 2]",
        '"stdout"',
        "null",
        "{}",
        '{"data": "x"}',
        '{"type": 1}',
        '{"type": null}',
        '{"type": "stdout", "data": 5}',
        '{"type": "stdout", "data": null}',
        '{"type": "stderr", "data": ["x"]}',
        '{"type": "error", "error": {"message": "x"}}',
        "[" * 100_000,
        '{"a": "\\ud800"}extra',
    ],
)
def test_invalid_frames(frame: str) -> None:
    """Non-JSON, non-objects, missing or odd types: an invalid_frame error each."""
    decoding = decoder()
    events = decoding.receive(frame)
    assert [invalid(frame[:MAX_INVALID_TEXT])] == events
    assert decoding.invalid_frames == 1
    assert not decoding.finished


def test_invalid_frames_do_not_stop_the_run() -> None:
    """After an invalid message the next ones decode as usual, numbered on."""
    decoding = decoder()
    decoding.receive("garbage")
    (event,) = decoding.receive('{"type": "stdout", "data": "ok"}')
    assert (event.type, event.data, event.sequence) == ("stdout", "ok", 2)


def test_close_makes_nothing_and_frames_count_every_message() -> None:
    """Messages are whole: close() has nothing left; every message is a frame."""
    decoding = decoder()
    for frame in ["", "garbage", '{"type": "stdout"}']:
        decoding.receive(frame)
    assert decoding.close() == []
    assert (decoding.frames, decoding.invalid_frames) == (3, 1)
    assert not decoding.done


def test_invalid_frame_text_is_cut_to_64_kib() -> None:
    """The text kept from an invalid message is at most 64 KiB, whole characters."""
    decoding = decoder()
    (event,) = decoding.receive("é" * MAX_INVALID_TEXT)
    assert event.data == "é" * (MAX_INVALID_TEXT // 2)
    (event,) = decoding.receive(b"x" + "€".encode() * MAX_INVALID_TEXT)
    assert len(event.data.encode()) <= MAX_INVALID_TEXT
    assert event.data == "x" + "€" * ((MAX_INVALID_TEXT - 1) // 3)


def test_invalid_frame_with_lone_surrogates() -> None:
    """Text no UTF-8 can carry is kept with the surrogates replaced."""
    (event,) = decoder().receive("\ud800 not json")
    assert event.data == "? not json"


def test_server_sequence_is_kept() -> None:
    """A ``sequence`` from the server goes to attrs as ``server_sequence``."""
    decoding = decoder()
    events = [
        *decoding.receive(
            '{"type": "stdout", "data": "a", "sequence": 7, '
            '"timestamp": "2025-11-20T10:30:01Z"}'
        ),
        *decoding.receive('{"type": "result", "exit_code": 0, "sequence": 8}'),
        *decoding.receive('{"type": "stdout", "data": "b", "sequence": "9"}'),
        *decoding.receive('{"type": "stdout", "data": "c", "sequence": null}'),
        *decoding.receive('{"type": "result", "sequence": null}'),
    ]
    assert [event.sequence for event in events] == [1, 2, 3, 4, 5]
    assert events[0].timestamp == utc(2025, 11, 20, 10, 30, 1)
    assert [event.attrs for event in events] == [
        {"server_sequence": 7},
        {"exit_code": 0, "server_sequence": 8},
        {"server_sequence": "9"},
        {},
        {},
    ]


def test_unknown_types_pass_through() -> None:
    """Unknown types keep their name; their other keys go to attrs."""
    decoding = decoder()
    events = [
        *decoding.receive('{"type": "resource_limit", "limit": "memory", "used": 5}'),
        *decoding.receive(
            '{"type": "display_data", "data": "<b>", "mime": "text/html"}'
        ),
        *decoding.receive('{"type": "keepalive"}'),
        *decoding.receive('{"type": "x", "data": {"png": "..."}}'),
    ]
    assert [(event.type, event.data, event.attrs) for event in events] == [
        ("resource_limit", "", {"limit": "memory", "used": 5}),
        ("display_data", "<b>", {"mime": "text/html"}),
        ("keepalive", "", {}),
        ("x", "", {"data": {"png": "..."}}),
    ]
    assert not decoding.finished


def test_a_completed_passed_through_ends_the_run() -> None:
    """eventkit's own ``completed`` type, if a server sends it, ends the run too."""
    decoding = decoder()
    (event,) = decoding.receive('{"type": "completed", "data": ""}')
    assert event.type == "completed"
    assert decoding.finished
    assert decoding.receive('{"type": "stdout"}') == []


def test_extra_keys_on_known_types_are_kept() -> None:
    """Keys the protocol does not name stay in attrs, whatever the type."""
    decoding = decoder()
    (stdout,) = decoding.receive('{"type": "stdout", "data": "a", "pid": 3}')
    (error,) = decoding.receive('{"type": "error", "error": "boom", "line": 2}')
    (completed,) = decoding.receive('{"type": "complete", "success": false, "x": 1}')
    assert stdout.attrs == {"pid": 3}
    assert (error.data, error.attrs) == ("boom", {"line": 2})
    assert completed.attrs == {"success": False, "x": 1}


@pytest.mark.parametrize(
    ("success", "expected"),
    [("true", True), ("false", False), ("null", False), ('"yes"', False), ("1", False)],
)
def test_complete_success_is_a_bool(success: str, expected: bool) -> None:
    """Only a JSON true is success."""
    (event,) = decoder().receive(f'{{"type": "complete", "success": {success}}}')
    assert ("completed", {"success": expected}) == (event.type, event.attrs)


def test_complete_without_success_failed() -> None:
    """A ``complete`` that does not say it succeeded counts as failed."""
    (event,) = decoder().receive('{"type": "complete"}')
    assert event.attrs == {"success": False}


def test_error_without_code() -> None:
    """An ``error`` message without text or code still makes an error event."""
    (event,) = decoder().receive('{"type": "error"}')
    assert (event.type, event.data, event.attrs) == ("error", "", {})


def test_frames_after_complete_are_ignored() -> None:
    """Nothing after ``complete`` makes an event; such messages are counted."""
    decoding = decoder()
    decoding.receive('{"type": "complete", "success": true}')
    assert decoding.finished
    assert decoding.receive('{"type": "stdout", "data": "late"}') == []
    assert decoding.receive("garbage") == []
    assert decoding.receive('{"type": "complete", "success": true}') == []
    assert decoding.ignored == 3
    assert decoding.frames == 4
    assert decoding.invalid_frames == 0
    assert decoding.done
    assert decoding.abort("", 1000) == []


def test_abort_before_complete() -> None:
    """A close before ``complete``: an error, then a failed ``completed``."""
    decoding = decoder()
    decoding.receive('{"type": "stdout", "data": "x"}')
    events = decoding.abort("internal error", 1011)
    assert [
        Event(
            type="error",
            data="stream closed with code 1011 before the run completed: "
            "internal error",
            timestamp=NOW,
            sequence=2,
            run="r",
            attrs={
                "code": "closed_before_complete",
                "close_code": 1011,
                "reason": "internal error",
            },
        ),
        Event(
            type="completed",
            timestamp=NOW,
            sequence=3,
            run="r",
            attrs={"success": False},
        ),
    ] == events
    assert decoding.finished
    assert decoding.abort("again", 1011) == []
    assert decoding.receive('{"type": "stdout"}') == []


def test_abort_without_code_or_reason() -> None:
    """Without a code or reason the message says only that it closed."""
    (error, _) = decoder().abort("")
    assert error.data == "stream closed before the run completed"
    assert (error.attrs) == {
        "code": "closed_before_complete",
        "close_code": None,
        "reason": "",
    }


# Properties --------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=8,
)


@given(st.text() | st.binary())
@example("\ud800")
@example(b"\xef\xbb\xbf{}")
@example('{"type": "stdout", "data": "\\ud800"}')
@example("{" * 10_000)
def test_garbage_never_raises(frame: str | bytes) -> None:
    """Any message makes at most one event; anything not an object, an error."""
    decoding = decoder()
    events = decoding.receive(frame)
    assert len(events) <= 1
    if events:
        (event,) = events
        assert event.sequence == 1
        if event.attrs.get("code") == "invalid_frame":
            assert decoding.invalid_frames == 1
            assert len(event.data.encode()) <= MAX_INVALID_TEXT
    else:
        assert decoding.invalid_frames == 0


@given(
    st.sampled_from(["stdout", "stderr", "result", "error", "complete", "other"])
    | st.text(),
    st.dictionaries(st.text(), json_values, max_size=5),
)
def test_objects_make_one_event_and_lose_no_key(
    kind: str, rest: dict[str, Any]
) -> None:
    """Every object with a string type makes one event keeping its other keys."""
    frame = {**rest, "type": kind}
    decoding = decoder()
    (event,) = decoding.receive(json.dumps(frame))
    if event.attrs.get("code") == "invalid_frame":
        # Only a wrong type for the payload field of a known type does this.
        field = {"stdout": "data", "stderr": "data", "error": "error"}[kind]
        assert not isinstance(frame[field], str)
        return
    named = {"type", "timestamp", "sequence", "data", "error", "success"}
    for key, value in frame.items():
        if key not in named:
            assert value == event.attrs[key]
    if frame.get("sequence") is not None:
        assert frame["sequence"] == event.attrs["server_sequence"]
    expected_type = "completed" if kind == "complete" else kind
    assert expected_type == event.type


# Encoding ----------------------------------------------------------------------


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
            ev("started", timestamp=T, pid=1),
            ev("stdout", "a\n", timestamp=T),
            ev("stderr", "b\n", timestamp=T),
            ev("result", timestamp=T, exit_code=0, execution_time=0.5),
            ev("completed", timestamp=T, success=True),
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
    frames = HopxEncoder().encode(ev("stdout", data, timestamp=T))
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
            ev("resource_limit", "timed out", timestamp=T, limit="timeout"),
            ev("resource_limit", "too much", timestamp=T, limit="output"),
            ev("resource_limit", "too big", timestamp=T, limit="memory"),
            ev("error", "no such language", timestamp=T, code="language_unavailable"),
            ev("error", "fork failed", timestamp=T, code="spawn_failed"),
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
    encoder, decoding = HopxEncoder(), HopxDecoder()
    events = [
        decoded
        for event in (
            ev("stdout", "x", timestamp=T),
            ev("result", timestamp=T, exit_code=3, execution_time=0.1),
            ev("completed", timestamp=T, success=False),
        )
        for frame in encoder.encode(event)
        for decoded in decoding.receive(frame)
    ]
    assert ["stdout", "result", "completed"] == [e.type for e in events]
    assert T == events[0].timestamp
    assert 0 == events[0].attrs["server_sequence"]
    assert decoding.finished


# Many messages at once

_MESSAGES = st.one_of(
    st.builds(
        lambda kind, data, stamp: json.dumps(
            {"type": kind, "data": data, "timestamp": stamp}
        ).encode(),
        st.sampled_from(["stdout", "stderr"]),
        st.text(max_size=8),
        st.sampled_from(["2025-11-20T10:30:00.123456789Z", "not a time", "2025-01-01"]),
    ),
    st.builds(
        lambda kind, data: json.dumps({"type": kind, "data": data}).encode(),
        st.sampled_from(["stdout", "stderr", "custom"]),
        st.text(max_size=8),
    ),
    st.sampled_from(
        [
            b'{"type": "stdout", "data": "x", "timestamp": "2025-11-20T10:30:00Z", '
            b'"sequence": 4}',
            b'{"type": "result", "exit_code": 0, "execution_time": 0.5}',
            b'{"type": "complete", "success": true}',
            b'{"type": "error", "error": "boom", "code": "EXECUTION_FAILED"}',
            b"not json",
            b"   ",
            b"",
            # Two values in one message: never two events when decoded together.
            b'{"type": "stdout", "data": "a", "timestamp": "2025-11-20T10:30:00Z"},'
            b'{"type": "stdout", "data": "b", "timestamp": "2025-11-20T10:30:00Z"}',
            b"[1, 2]",
            b'{"type": 3}',
            b"\xff\xfe",
        ]
    ),
)


@given(st.lists(_MESSAGES, max_size=12), st.integers(1, 5))
def test_receive_all_is_receive_of_each(messages: list[bytes], size: int) -> None:
    """Decoding messages together gives exactly what decoding each gives."""
    alone = HopxDecoder("r", clock=lambda: 5.0)
    together = HopxDecoder("r", clock=lambda: 5.0)
    expected = [event for message in messages for event in alone.receive(message)]
    got = []
    for start in range(0, len(messages), size):
        got += together.receive_all(messages[start : start + size])
    assert expected == got
    for counter in ("frames", "ignored", "invalid_frames", "finished"):
        assert getattr(alone, counter) == getattr(together, counter)


# Resumable executions ------------------------------------------------------


def resumable() -> HopxDecoder:
    """Return a decoder of a resumable execution for run ``r``, past ``started``."""
    decoding = HopxDecoder("r", clock=lambda: NOW, resumable=True)
    decoding.start()
    return decoding


def numbered(kind: str, sequence: int, **fields: Any) -> bytes:
    """Return a frame of a resumable execution."""
    return json.dumps({"type": kind, "sequence": sequence, **fields}).encode()


@pytest.mark.parametrize("batched", [False, True])
def test_resumable_frames_take_the_sequence_as_transport(batched: bool) -> None:
    """The execution frame names the run; sequences go to server_sequence, not attrs."""
    decoding = resumable()
    frames = [
        b'{"type": "execution", "execution_id": "x1"}',
        numbered("stdout", 0, data="a", timestamp="2025-01-01T00:00:00Z"),
        numbered("stderr", 1, data="b"),
        numbered("result", 2, exit_code=0),
        numbered("complete", 3, success=True),
    ]
    if batched:
        events = decoding.receive_all(frames)
    else:
        events = [e for frame in frames for e in decoding.receive(frame)]
    assert "x1" == decoding.execution_id
    assert 3 == decoding.server_sequence
    assert ["stdout", "stderr", "result", "completed"] == [e.type for e in events]
    assert [1, 2, 3, 4] == [e.sequence for e in events]
    assert all("server_sequence" not in e.attrs for e in events)
    assert decoding.finished


@pytest.mark.parametrize("batched", [False, True])
def test_resumable_frames_received_twice_are_dropped(batched: bool) -> None:
    """A frame sent again after a resume makes no second event."""
    decoding = resumable()
    frames = [numbered("stdout", n, data=str(n)) for n in (0, 1, 1, 0, 2)]
    if batched:
        events = decoding.receive_all(frames)
    else:
        events = [e for frame in frames for e in decoding.receive(frame)]
    assert ["0", "1", "2"] == [e.data for e in events]
    assert 2 == decoding.ignored


def test_resume_gap_becomes_one_gap_event_of_the_exact_range() -> None:
    """Frames 2..5 gone: one gap of four sequences, later events numbered after it."""
    decoding = resumable()
    decoding.receive_all(
        [numbered("stdout", 0, data="a"), numbered("stdout", 1, data="b")]
    )
    gap_frame = json.dumps(
        {"type": "error", "error": "gone", "code": "RESUME_GAP", "first_available": 6}
    )
    events = decoding.receive(gap_frame) + decoding.receive(
        numbered("stdout", 6, data="g")
    )
    gap, after = events
    assert ("gap", 3) == (gap.type, gap.sequence)
    assert {"first_missing": 3, "last_missing": 6} == dict(gap.attrs)
    assert ("g", 7) == (after.data, after.sequence)
    assert 6 == decoding.server_sequence


def test_resume_gap_with_nothing_lost_makes_no_event() -> None:
    """A RESUME_GAP naming the next frame anyway loses nothing."""
    decoding = resumable()
    decoding.receive(numbered("stdout", 0, data="a"))
    frame = json.dumps({"type": "error", "code": "RESUME_GAP", "first_available": 1})
    assert [] == decoding.receive(frame)


def test_resume_errors_are_plain_errors_without_resumable() -> None:
    """Without resumable, the extension's frames are ordinary messages."""
    decoding = decoder()
    events = decoding.receive(
        json.dumps({"type": "error", "code": "RESUME_GAP", "first_available": 3})
    ) + decoding.receive(b'{"type": "execution", "execution_id": "x"}')
    assert ["error", "execution"] == [e.type for e in events]
    assert decoding.execution_id is None


def test_resumable_encoder_numbers_every_frame() -> None:
    """With resumable, result, error and complete frames carry a sequence too."""
    encoder = HopxEncoder(resumable=True)
    frames = [
        json.loads(frame)
        for event in (
            ev("stdout", "x"),
            ev("error", "boom", code="spawn_failed"),
            ev("result", exit_code=1),
            ev("completed", success=False),
        )
        for frame in encoder.encode(event)
    ]
    assert [0, 1, 2, 3] == [frame["sequence"] for frame in frames]
    plain = [json.loads(f) for f in HopxEncoder().encode(ev("result", exit_code=1))]
    assert "sequence" not in plain[0]


def test_execute_and_resume_messages() -> None:
    """resumable=True adds the key last; a resume names the id and the frame."""
    assert json.loads(execute_message("x", resumable=True))["resumable"] is True
    assert "resumable" not in json.loads(execute_message("x"))
    assert {"type": "resume", "execution_id": "e", "after": -1} == json.loads(
        resume_message("e", -1)
    )
