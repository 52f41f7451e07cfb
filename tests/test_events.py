"""Tests for :mod:`eventkit.events`."""

from __future__ import annotations

import time

import msgspec
import pytest
from hypothesis import given, strategies as st

from eventkit.events import NO_ATTRS, Event, EventType, data_size, is_terminal


def test_keyword_construction() -> None:
    """Every field is set by keyword and read back as given."""
    event = Event(
        type="stdout",
        data="hello\n",
        timestamp=1700000000.5,
        sequence=3,
        run="run-1",
        attrs={"exit_code": 0},
    )
    assert event.type == "stdout"
    assert event.data == "hello\n"
    assert event.timestamp == 1700000000.5
    assert event.sequence == 3
    assert event.run == "run-1"
    assert event.attrs == {"exit_code": 0}


def test_positional_construction_is_refused() -> None:
    """Fields are keyword-only."""
    with pytest.raises(TypeError):
        Event("stdout")  # type: ignore[call-arg]


def test_type_is_required() -> None:
    """An event without a type cannot be made."""
    with pytest.raises(TypeError):
        Event()  # type: ignore[call-arg]


def test_defaults() -> None:
    """Only the type is needed: empty data, sequence 0, no run, no attrs."""
    event = Event(type="started")
    assert event.data == ""
    assert event.sequence == 0
    assert event.run == ""
    assert dict(event.attrs) == {}


def test_default_timestamp_is_now() -> None:
    """The timestamp defaults to the current Unix time."""
    before = time.time()
    event = Event(type="started")
    after = time.time()
    assert before <= event.timestamp <= after


def test_default_attrs_are_shared_and_read_only() -> None:
    """Events made without attrs share one empty mapping nobody can change."""
    first, second = Event(type="a"), Event(type="b")
    assert first.attrs is NO_ATTRS
    assert second.attrs is NO_ATTRS
    with pytest.raises(TypeError):
        first.attrs["key"] = "value"  # type: ignore[index]
    assert len(NO_ATTRS) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "stderr"),
        ("data", "x"),
        ("timestamp", 1.0),
        ("sequence", 1),
        ("run", "other"),
        ("attrs", {}),
    ],
)
def test_fields_cannot_be_assigned(field: str, value: object) -> None:
    """Assigning any field raises AttributeError and changes nothing."""
    event = Event(type="stdout", data="d", timestamp=5.0, sequence=0, run="r")
    with pytest.raises(AttributeError):
        setattr(event, field, value)
    assert Event(type="stdout", data="d", timestamp=5.0, sequence=0, run="r") == event


def test_new_attributes_cannot_be_added() -> None:
    """Events are slotted: no attribute outside the fields can be set."""
    event = Event(type="stdout")
    with pytest.raises(AttributeError):
        event.extra = 1  # type: ignore[attr-defined]


def test_replace_makes_a_new_event() -> None:
    """``msgspec.structs.replace`` returns a changed copy, the original intact."""
    event = Event(type="stdout", data="a", timestamp=1.0)
    changed = msgspec.structs.replace(event, data="b")
    assert Event(type="stdout", data="b", timestamp=1.0) == changed
    assert event.data == "a"


def test_getitem_reads_fields() -> None:
    """``event[name]`` returns the field of that name."""
    event = Event(type="result", data="out", timestamp=2.0, sequence=4, run="r")
    assert event["type"] == "result"
    assert event["data"] == "out"
    assert event["timestamp"] == 2.0
    assert event["sequence"] == 4
    assert event["run"] == "r"


def test_getitem_falls_back_to_attrs() -> None:
    """Keys that are not fields are looked up in attrs."""
    event = Event(type="result", attrs={"exit_code": 0, "success": True})
    assert event["exit_code"] == 0
    assert event["success"] is True


def test_fields_win_over_attrs() -> None:
    """A field shadows an attr of the same name."""
    event = Event(type="result", attrs={"type": "shadow"})
    assert event["type"] == "result"
    assert event.get("type") == "result"


def test_getitem_missing_raises_key_error() -> None:
    """A key that is neither a field nor an attr raises KeyError naming it."""
    event = Event(type="result", attrs={"exit_code": 0})
    with pytest.raises(KeyError, match="missing"):
        event["missing"]


def test_get_with_default() -> None:
    """``get`` returns the default (None unless given) for missing keys."""
    event = Event(type="result", attrs={"exit_code": 1})
    assert event.get("exit_code") == 1
    assert event.get("missing") is None
    assert event.get("missing", "fallback") == "fallback"
    assert event.get("exit_code", "fallback") == 1


def test_get_returns_falsy_values() -> None:
    """Attrs holding None, 0 or False are returned, not the default."""
    event = Event(type="result", attrs={"none": None, "zero": 0, "no": False})
    assert event.get("none", "default") is None
    assert event.get("zero", "default") == 0
    assert event.get("no", "default") is False
    assert event["none"] is None


def test_contains() -> None:
    """``in`` is true for fields and attrs, false for anything else."""
    event = Event(type="result", attrs={"exit_code": 0})
    assert "type" in event
    assert "attrs" in event
    assert "exit_code" in event
    assert "missing" not in event


def test_equality() -> None:
    """Events with equal fields are equal; any differing field makes them differ."""
    fields = {
        "type": "stdout",
        "data": "x",
        "timestamp": 1.0,
        "sequence": 2,
        "run": "r",
        "attrs": {"a": 1},
    }
    event = Event(**fields)  # type: ignore[arg-type]
    assert Event(**fields) == event  # type: ignore[arg-type]
    for field, other in [
        ("type", "stderr"),
        ("data", "y"),
        ("timestamp", 1.5),
        ("sequence", 3),
        ("run", "s"),
        ("attrs", {"a": 2}),
    ]:
        assert Event(**{**fields, field: other}) != event  # type: ignore[arg-type]


def test_empty_attrs_equal_default_attrs() -> None:
    """An explicit empty attrs dict equals the default empty attrs."""
    assert Event(type="x", timestamp=1.0) == Event(type="x", timestamp=1.0, attrs={})


def test_event_type_compares_equal_to_strings() -> None:
    """EventType members are the strings of the vocabulary."""
    stdout: str = "stdout"
    assert stdout == EventType.STDOUT
    assert str(EventType.STDOUT) == "stdout"
    assert {"stdout": 1}[EventType.STDOUT] == 1
    assert EventType("resource_limit") is EventType.RESOURCE_LIMIT
    assert Event(type=EventType.STDOUT).type == "stdout"


def test_event_type_members() -> None:
    """The vocabulary: seven lifecycle and output types, then operator types."""
    expected = [
        "started",
        "stdout",
        "stderr",
        "result",
        "error",
        "resource_limit",
        "completed",
        "progress",
        "gap",
    ]
    assert expected == [member.value for member in EventType]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("", 0),
        ("hello", 5),
        ("line\n", 5),
        ("é", 2),
        ("€", 3),
        ("😀", 4),
        ("aé€😀\n", 11),
    ],
)
def test_data_size(data: str, expected: int) -> None:
    """``data_size`` and ``Event.size`` count UTF-8 bytes, not characters."""
    assert expected == data_size(data)
    assert expected == Event(type="stdout", data=data).size


@given(st.text(st.characters(codec="utf-8")))
def test_data_size_is_utf8_length(data: str) -> None:
    """``data_size`` agrees with encoding the text as UTF-8."""
    assert len(data.encode()) == data_size(data)


def test_is_terminal() -> None:
    """Only ``completed`` ends a run."""
    assert is_terminal(Event(type="completed"))
    assert is_terminal(Event(type=EventType.COMPLETED))
    for kind in [*(t for t in EventType if t != "completed"), "complete", "custom"]:
        assert not is_terminal(Event(type=kind)), kind
