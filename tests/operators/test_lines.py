"""Tests for :class:`eventkit.operators.lines.Lines`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings, strategies as st

from eventkit.events import data_size
from eventkit.operators.lines import Lines
from tests.factories import ev

if TYPE_CHECKING:
    from eventkit import Event


def feed(lines: Lines, events: list[Event], size: int = 1) -> list[Event]:
    """Feed ``events`` in batches of ``size``, then flush."""
    out: list[Event] = []
    for start in range(0, len(events), size):
        out += lines.feed(events[start : start + size])
    return out + lines.flush()


def chunk(data: str, sequence: int, count: int, last: int, **fields: str) -> Event:
    """A chunk as Lines makes it."""
    return ev(
        fields.get("type", "stdout"),
        data,
        sequence,
        count=count,
        first_sequence=sequence,
        last_sequence=last,
    )


def test_partial_lines_wait_for_their_newline() -> None:
    """A line split across events comes out whole, once."""
    lines = Lines()
    assert [] == lines.feed([ev("stdout", "hel")])
    assert [] == lines.feed([ev("stdout", "lo wor", 1)])
    out = lines.feed([ev("stdout", "ld\nne", 2)])
    assert [chunk("hello world\n", 0, 3, 2)] == out
    assert [chunk("ne", 2, 1, 2)] == lines.flush()


def test_several_lines_in_one_event_stay_one_chunk() -> None:
    """Whole lines already whole pass as one chunk."""
    assert [chunk("a\nb\n", 0, 1, 0)] == Lines().feed([ev("stdout", "a\nb\n")])


def test_lifecycle_event_flushes_the_run_first() -> None:
    """An unfinished line leaves before the run's next lifecycle event."""
    lines = Lines()
    out = feed(lines, [ev("stdout", "prompt> "), ev("result", "", 1)])
    assert [chunk("prompt> ", 0, 1, 0), ev("result", "", 1)] == out
    assert 1 == lines.cut_lines


def test_long_lines_are_cut_at_max_line_bytes() -> None:
    """An unfinished line leaves in pieces of max_line_bytes, between characters."""
    lines = Lines(max_line_bytes=5)
    assert [chunk("abcde", 0, 1, 0)] == lines.feed([ev("stdout", "abcdefgh")])
    # "fgh" waits; with "€€" it is 9 bytes: "fgh" leaves (a € would not fit),
    # then one "€" of the 6 bytes left, and the last waits.
    out = lines.feed([ev("stdout", "€€", 1)])
    assert [chunk("fgh", 0, 2, 1), chunk("€", 1, 1, 1)] == out
    assert [chunk("€", 1, 1, 1)] == lines.flush()
    assert 4 == lines.cut_lines  # three at the limit, one at the end


def test_max_age_lets_a_prompt_show() -> None:
    """An unfinished line that waited max_age leaves on tick."""
    now = [0.0]
    lines = Lines(max_age=0.5, clock=lambda: now[0])
    assert [] == lines.feed([ev("stdout", "Name? ")])
    assert 0.5 == lines.deadline()
    assert [] == lines.tick(0.4)
    assert [chunk("Name? ", 0, 1, 0)] == lines.tick(0.5)
    assert lines.deadline() is None


def test_collapse_cr_keeps_the_last_state_of_a_redrawn_line() -> None:
    """tqdm-style redraws become one line; CRLF endings stay."""
    events = [
        ev("stderr", "\r 10%"),
        ev("stderr", "\r 20%\r 30%", 1),
        ev("stderr", "\r100%\n", 2),
        ev("stdout", "dos\r\n", 3),
    ]
    out = feed(Lines(collapse_cr=True), events)
    assert ["100%\n", "dos\r\n"] == [e.data.strip(" ") for e in out]


def test_empty_events_join_or_are_dropped() -> None:
    """An empty event with no line to join is dropped and counted."""
    lines = Lines()
    assert [] == lines.feed([ev("stdout", "")])
    assert 1 == lines.empty_dropped


@pytest.mark.parametrize(
    "options",
    [{"max_line_bytes": 3}, {"max_age": -1.0}, {"types": ()}],
    ids=["max_line_bytes", "max_age", "types"],
)
def test_invalid_arguments(options: dict[str, object]) -> None:
    """Nonsense arguments are refused at once."""
    with pytest.raises(ValueError):  # noqa: PT011 - messages differ
        Lines(**options)  # type: ignore[arg-type]


# The laws

texts = st.text(alphabet="ab€\n", max_size=8)


@st.composite
def streams(draw: st.DrawFn) -> list[Event]:
    """Output of 1-2 runs and types, each run ending with completed."""
    events: list[Event] = []
    for run in ("a", "b")[: draw(st.integers(1, 2))]:
        kinds = draw(st.lists(st.sampled_from(["stdout", "stderr"]), max_size=10))
        events += [ev(k, draw(texts), i, run=run) for i, k in enumerate(kinds)]
        events.append(ev("completed", "", len(kinds), run=run))
    return events


@settings(max_examples=200, deadline=None)
@given(streams(), st.integers(4, 12), st.integers(1, 4))
def test_concatenation_is_kept_and_chunks_end_lines(
    events: list[Event], limit: int, size: int
) -> None:
    """Per run and type the text is the same; chunks end in a newline.

    Every chunk but a run's last of a type ends in a newline, unless it was
    cut at max_line_bytes.
    """
    out = feed(Lines(max_line_bytes=limit), events, size)
    for run in {e.run for e in events}:
        for kind in ("stdout", "stderr"):
            given_text = "".join(
                e.data for e in events if e.run == run and e.type == kind
            )
            chunks = [e for e in out if e.run == run and e.type == kind]
            assert given_text == "".join(e.data for e in chunks)
            for piece in chunks[:-1]:
                # Cut at the limit: within a character of it.
                assert piece.data.endswith("\n") or data_size(piece.data) > limit - 4
            for piece in chunks:
                assert data_size(piece.data) > 0
    assert [e for e in events if e.type == "completed"] == [
        e for e in out if e.type == "completed"
    ]
