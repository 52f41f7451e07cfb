"""Tests for :class:`eventkit.operators.cap.CapOutput`."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings, strategies as st

from eventkit.events import data_size
from eventkit.operators.cap import CapOutput
from tests.factories import ev

if TYPE_CHECKING:
    from eventkit import Event

LIFECYCLE = ("result", "error", "resource_limit", "completed")


def feed(cap: CapOutput, events: list[Event], size: int = 1) -> list[Event]:
    """Feed ``events`` in batches of ``size``, then flush."""
    out: list[Event] = []
    for start in range(0, len(events), size):
        out += cap.feed(events[start : start + size])
    return out + cap.flush()


def test_small_output_passes_untouched() -> None:
    """Under the head, output passes at once, and nothing is truncated."""
    cap = CapOutput(10, 10)
    events = [ev("stdout", "abc"), ev("stdout", "def", 1), ev("completed", "", 2)]
    assert events[:1] == cap.feed(events[:1])
    assert events == feed(CapOutput(10, 10), events)


def test_head_then_truncated_then_tail_before_the_lifecycle_event() -> None:
    """The first head bytes pass; then one truncated event, the tail, the event."""
    cap = CapOutput(4, 3)
    events = [ev("stdout", "abcdef"), ev("stdout", "ghij", 1), ev("result", "", 2)]
    assert [ev("stdout", "abcd")] == cap.feed(events[:1])
    assert [] == cap.feed(events[1:2])
    assert [
        ev("truncated", "", 0, stream="stdout", omitted_bytes=3, omitted_events=2),
        ev("stdout", "hij", 1),
        ev("result", "", 2),
    ] == cap.feed(events[2:])


def test_streams_are_capped_on_their_own() -> None:
    """A flood on stdout never hides stderr's tail."""
    events = [
        ev("stdout", "x" * 100),
        ev("stderr", "Traceback: boom\n", 1),
        ev("stdout", "y" * 100, 2),
        ev("completed", "", 3),
    ]
    out = feed(CapOutput(10, 10), events)
    assert "Traceback: boom\n" == "".join(e.data for e in out if e.type == "stderr")
    assert [e.attrs["stream"] for e in out if e.type == "truncated"] == ["stdout"]
    assert "completed" == out[-1].type


def test_utf8_is_never_cut_in_a_character() -> None:
    """Cuts fall between characters; a character that does not fit is left out."""
    out = feed(CapOutput(5, 5), [ev("stdout", "ééé"), ev("stdout", "€€€", 1)])
    texts = [e.data for e in out if e.type == "stdout"]
    assert ["éé", "€"] == texts  # 4 bytes of head, 3 of tail
    (truncated,) = [e for e in out if e.type == "truncated"]
    assert 6 + 9 - 4 - 3 == truncated.attrs["omitted_bytes"]


def test_terminal_event_forgets_the_run() -> None:
    """After completed the run's state is gone: the same run starts afresh."""
    cap = CapOutput(2, 2)
    feed(cap, [ev("stdout", "abcdef"), ev("completed", "", 1)])
    assert [ev("stdout", "ab", 2)] == cap.feed([ev("stdout", "ab", 2)])


def test_counts_for_the_self_metrics() -> None:
    """Truncations, bytes left out and bytes held are counted."""
    cap = CapOutput(1, 1)
    cap.feed([ev("stdout", "abcd")])
    assert (0, 2, 1) == (cap.truncations, cap.omitted_bytes, cap.held_bytes)
    cap.flush()
    internals = cap.internals()
    assert 1 == internals.counters["cap_truncations_total", ()]
    assert 2 == internals.counters["cap_omitted_bytes_total", ()]
    assert 0 == internals.gauges["cap_held_bytes", ()]


@pytest.mark.parametrize(
    "args", [(-1, 1), (1, -1)], ids=["negative head", "negative tail"]
)
def test_invalid_arguments(args: tuple[int, int]) -> None:
    """Negative limits are refused."""
    with pytest.raises(ValueError, match="0 or more"):
        CapOutput(*args)


# The law

texts = st.text(alphabet="ab€\n", max_size=8)


@st.composite
def runs(draw: st.DrawFn) -> list[Event]:
    """Events of 1-2 runs: output, lifecycle events, interleaved."""
    events: list[Event] = []
    for run in ("a", "b")[: draw(st.integers(1, 2))]:
        kinds = draw(
            st.lists(st.sampled_from(["stdout", "stdout", "stderr", *LIFECYCLE])),
        )
        events += [
            ev(kind, draw(texts) if kind in ("stdout", "stderr") else "", i, run=run)
            for i, kind in enumerate(kinds)
        ]
    order = draw(st.permutations(range(len(events))))
    # Keep each run's order: interleave the runs only.
    by_run = {e.run: [x for x in events if x.run == e.run] for e in events}
    cursors = {run: iter(run_events) for run, run_events in by_run.items()}
    return [next(cursors[events[i].run]) for i in order]


def segments(events: list[Event], run: str) -> list[tuple[list[Event], str]]:
    """Cut a run's events at its lifecycle events: (events, the one ending them)."""
    parts: list[tuple[list[Event], str]] = [([], "")]
    for event in events:
        if event.run != run:
            continue
        if event.type in LIFECYCLE:
            parts[-1] = (parts[-1][0], event.type)
            parts.append(([], ""))
        else:
            parts[-1][0].append(event)
    return parts


@settings(max_examples=200, deadline=None)
@given(runs(), st.integers(0, 12), st.integers(0, 12), st.integers(1, 5))
def test_head_truncated_tail_per_run_and_type(
    events: list[Event], head: int, tail: int, size: int
) -> None:
    """Output is the first head bytes, a truncated event, the last tail bytes.

    Per run and type, and per stretch between lifecycle events once the
    head is spent; no output moves past a lifecycle event; the lifecycle
    events come out as they went in.
    """
    out = feed(CapOutput(head, tail), events, size)
    for run in {e.run for e in events}:
        assert [e for e in events if e.run == run and e.type in LIFECYCLE] == [
            e for e in out if e.run == run and e.type in LIFECYCLE
        ]
        ins, outs = segments(events, run), segments(out, run)
        assert len(ins) == len(outs)
        for kind in ("stdout", "stderr"):
            spent = 0
            for (given_part, ending), (got_part, _) in zip(ins, outs, strict=True):
                text = "".join(e.data for e in given_part if e.type == kind)
                got = "".join(e.data for e in got_part if e.type == kind)
                marks = [
                    e
                    for e in got_part
                    if e.type == "truncated" and e.attrs["stream"] == kind
                ]
                room = max(head - spent, 0)
                first = _head(text, room)
                rest = text[len(first) :]
                # Once output is held, the head is spent for good.
                spent = head if rest else spent + data_size(first)
                last = _tail(rest, tail)
                if data_size(rest) > data_size(last):
                    (mark,) = marks
                    assert first + last == got
                    omitted = data_size(rest) - data_size(last)
                    assert omitted == mark.attrs["omitted_bytes"]
                else:
                    assert [] == marks
                    assert text == got
                if ending == "completed":
                    spent = 0  # the run is over: a new one starts afresh


def _head(text: str, size: int) -> str:
    """The longest head of ``text`` within ``size`` UTF-8 bytes."""
    for end in range(len(text), -1, -1):
        if data_size(text[:end]) <= size:
            return text[:end]
    return ""  # pragma: no cover - end 0 always fits


def _tail(text: str, size: int) -> str:
    """The longest tail of ``text`` within ``size`` UTF-8 bytes."""
    for start in range(len(text) + 1):
        if data_size(text[start:]) <= size:
            return text[start:]
    return ""  # pragma: no cover - the empty tail always fits


def test_batches_do_not_matter() -> None:
    """The same output whatever the batching (a spot check; see test_batching)."""
    events = [ev("stdout", c, i) for i, c in enumerate("abcdefghij")]
    events.append(ev("completed", "", 10))
    outs = [feed(CapOutput(3, 3), events, size) for size in (1, 3, 11)]
    for one, other in itertools.pairwise(outs):
        assert one == other
