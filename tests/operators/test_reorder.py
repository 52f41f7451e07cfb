"""Tests for :mod:`eventkit.operators.reorder`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings, strategies as st

from eventkit.events import Event
from eventkit.operators._base import Operator
from eventkit.operators.reorder import Reorder
from tests.factories import out

if TYPE_CHECKING:
    from collections.abc import Iterable


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def feed_all(reorder: Reorder, events: Iterable[Event]) -> list[Event]:
    """Feed ``events`` one by one and collect everything emitted."""
    emitted: list[Event] = []
    for event in events:
        emitted.extend(reorder.feed([event]))
    return emitted


def gap(run: str, first: int, last: int, timestamp: float) -> Event:
    """Make the gap event Reorder emits for the hole ``first..last``."""
    return Event(
        type="gap",
        run=run,
        sequence=first,
        timestamp=timestamp,
        attrs={"first_missing": first, "last_missing": last},
    )


def test_is_an_operator() -> None:
    """Reorder implements the Operator protocol."""
    assert isinstance(Reorder(), Operator)


def test_in_order_passthrough_returns_same_objects() -> None:
    """In-order events come out at once, as the very same objects."""
    reorder = Reorder()
    events = [out(i) for i in range(5)]
    for event in events:
        emitted = reorder.feed([event])
        assert len(emitted) == 1
        assert event is emitted[0]
    assert reorder.held == 0
    assert reorder.deadline() is None
    assert list(reorder.flush()) == []


def test_simple_swap() -> None:
    """An event ahead of its turn waits for the one before it."""
    reorder = Reorder(max_delay=None)
    e0, e1, e2 = out(0), out(1), out(2)
    assert (e0,) == tuple(reorder.feed([e0]))
    assert tuple(reorder.feed([e2])) == ()
    assert reorder.held == 1
    assert [e1, e2] == list(reorder.feed([e1]))
    assert reorder.held == 0
    assert reorder.gaps == 0


def test_gap_by_window_overflow() -> None:
    """A full window gives up the first hole with an exact gap event."""
    reorder = Reorder(window=2, max_delay=None)
    assert feed_all(reorder, [out(3), out(4)]) == []
    assert reorder.held == 2
    emitted = list(reorder.feed([out(6)]))
    assert [gap("r", 0, 2, 1003.0), out(3), out(4)] == emitted
    assert reorder.held == 1
    assert reorder.gaps == 1
    assert reorder.missing == 3
    assert [out(5), out(6)] == list(reorder.feed([out(5)]))


def test_window_overflow_with_event_inside_hole() -> None:
    """An event inside the hole ends the hole's first part only."""
    reorder = Reorder(window=2, max_delay=None)
    assert feed_all(reorder, [out(5), out(6)]) == []
    emitted = list(reorder.feed([out(2)]))
    assert [gap("r", 0, 1, 1002.0), out(2)] == emitted
    assert reorder.held == 2
    assert [out(3), out(4), out(5), out(6)] == feed_all(reorder, [out(3), out(4)])


def test_window_of_one() -> None:
    """With window=1, a second held event forces a give-up."""
    reorder = Reorder(window=1, max_delay=None)
    assert list(reorder.feed([out(2)])) == []
    assert [gap("r", 0, 1, 1002.0), out(2)] == list(reorder.feed([out(4)]))
    assert [gap("r", 3, 3, 1004.0), out(4)] == list(reorder.feed([out(6)]))
    assert reorder.gaps == 2
    assert reorder.missing == 3


def test_gap_by_max_delay() -> None:
    """tick gives up a hole once its oldest held event has waited max_delay."""
    clock = FakeClock(10.0)
    reorder = Reorder(max_delay=2.0, clock=clock)
    assert reorder.deadline() is None
    assert [out(0)] == list(reorder.feed([out(0)]))
    assert reorder.deadline() is None
    assert list(reorder.feed([out(2)])) == []
    assert reorder.deadline() == 12.0
    clock.now = 11.0
    assert list(reorder.feed([out(4)])) == []
    assert reorder.deadline() == 12.0
    assert list(reorder.tick(11.9)) == []
    assert [gap("r", 1, 1, 1002.0), out(2)] == list(reorder.tick(12.0))
    assert reorder.deadline() == 13.0
    assert [gap("r", 3, 3, 1004.0), out(4)] == list(reorder.tick(13.5))
    assert reorder.deadline() is None
    assert reorder.held == 0
    assert [out(5)] == list(reorder.feed([out(5)]))


def test_tick_gives_up_until_oldest_is_released() -> None:
    """A late-arriving low event is released along with an older high one."""
    clock = FakeClock(0.0)
    reorder = Reorder(max_delay=1.0, clock=clock)
    reorder.feed([out(5)])
    clock.now = 0.5
    reorder.feed([out(2)])
    emitted = list(reorder.tick(1.0))
    assert [gap("r", 0, 1, 1002.0), out(2), gap("r", 3, 4, 1005.0), out(5)] == emitted
    assert reorder.deadline() is None


def test_tick_with_filled_hole_does_nothing() -> None:
    """Once the hole fills, the stale deadline entry is skipped."""
    clock = FakeClock(0.0)
    reorder = Reorder(max_delay=1.0, clock=clock)
    reorder.feed([out(1)])
    assert reorder.deadline() == 1.0
    assert [out(0), out(1)] == list(reorder.feed([out(0)]))
    assert reorder.deadline() is None
    assert list(reorder.tick(5.0)) == []
    reorder.feed([out(3)])
    clock.now = 3.0
    assert list(reorder.feed([out(5)])) == []
    assert reorder.deadline() == 1.0
    assert [gap("r", 2, 2, 1003.0), out(3)] == list(reorder.tick(3.0))
    assert reorder.deadline() == 4.0


def test_max_delay_zero() -> None:
    """max_delay=0 makes a held event due at once."""
    clock = FakeClock(7.0)
    reorder = Reorder(max_delay=0, clock=clock)
    reorder.feed([out(1)])
    assert reorder.deadline() == 7.0
    assert [gap("r", 0, 0, 1001.0), out(1)] == list(reorder.tick(7.0))


def test_max_delay_none_never_sets_deadline() -> None:
    """Without max_delay, held events wait for the window or flush."""
    reorder = Reorder(max_delay=None, clock=lambda: pytest.fail("clock read"))
    reorder.feed([out(3)])
    assert reorder.deadline() is None
    assert list(reorder.tick(math.inf)) == []
    assert reorder.held == 1


def test_flush_with_holes() -> None:
    """flush releases everything held, with gap events for the holes."""
    reorder = Reorder(max_delay=None)
    assert [out(0)] == feed_all(reorder, [out(0), out(2), out(3), out(6)])
    emitted = list(reorder.flush())
    expected = [gap("r", 1, 1, 1002.0), out(2), out(3), gap("r", 4, 5, 1006.0), out(6)]
    assert expected == emitted
    assert reorder.held == 0
    assert reorder.gaps == 2
    assert reorder.missing == 3
    assert list(reorder.flush()) == []


def test_flush_follows_first_appearance_of_runs() -> None:
    """flush handles runs in the order they first appeared."""
    reorder = Reorder(max_delay=None)
    feed_all(reorder, [out(1, run="b"), out(1, run="a"), out(2, run="b")])
    emitted = list(reorder.flush())
    expected = [
        gap("b", 0, 0, 1001.0),
        out(1, run="b"),
        out(2, run="b"),
        gap("a", 0, 0, 1001.0),
        out(1, run="a"),
    ]
    assert expected == emitted


def test_start_none_learns_first_sequence() -> None:
    """With start=None, each run starts at its first event's sequence."""
    reorder = Reorder(start=None, max_delay=None)
    assert [out(7)] == list(reorder.feed([out(7)]))
    assert [out(3, run="b")] == list(reorder.feed([out(3, run="b")]))
    assert list(reorder.feed([out(9)])) == []
    assert [out(8), out(9)] == list(reorder.feed([out(8)]))
    assert [out(4, run="b")] == list(reorder.feed([out(4, run="b")]))
    assert reorder.gaps == 0


def test_start_five_holds_until_five() -> None:
    """With start=5, later events wait for sequence 5; earlier ones are dropped."""
    reorder = Reorder(start=5, max_delay=None)
    assert list(reorder.feed([out(6)])) == []
    assert list(reorder.feed([out(2)])) == []
    assert reorder.duplicates == 1
    assert [out(5), out(6)] == list(reorder.feed([out(5)]))
    assert [out(7)] == list(reorder.feed([out(7)]))


def test_duplicates_held_and_emitted() -> None:
    """Repeats of held or emitted sequences are dropped and counted."""
    reorder = Reorder(max_delay=None)
    feed_all(reorder, [out(0), out(1), out(3)])
    assert list(reorder.feed([out(3)])) == []
    assert list(reorder.feed([out(1)])) == []
    assert list(reorder.feed([out(0)])) == []
    assert reorder.duplicates == 3
    assert reorder.late == 0
    assert reorder.held == 1
    assert [out(2), out(3)] == list(reorder.feed([out(2)]))


def test_late_events_counted() -> None:
    """An event in a given-up hole is late; a repeat of an emitted one is not."""
    reorder = Reorder(window=1, max_delay=None)
    feed_all(reorder, [out(0), out(3), out(4)])
    assert reorder.gaps == 1
    assert list(reorder.feed([out(1)])) == []
    assert list(reorder.feed([out(2)])) == []
    assert list(reorder.feed([out(3)])) == []
    assert reorder.late == 2
    assert reorder.duplicates == 1


def test_late_record_is_bounded() -> None:
    """Holes older than the last 64 of a run count as duplicates."""
    reorder = Reorder(window=1, max_delay=None)
    # Every other sequence is missing: 70 holes of one sequence each.
    feed_all(reorder, [out(2 * i + 1) for i in range(71)])
    assert reorder.gaps == 70
    reorder.feed([out(0)])
    assert (reorder.late, reorder.duplicates) == (0, 1)
    reorder.feed([out(138)])
    assert (reorder.late, reorder.duplicates) == (1, 1)


def test_interleaved_runs_are_independent() -> None:
    """Each run has its own expected sequence, window and holes."""
    reorder = Reorder(window=1, max_delay=None)
    assert [out(0, run="a")] == list(reorder.feed([out(0, run="a")]))
    assert list(reorder.feed([out(1, run="b")])) == []
    assert list(reorder.feed([out(2, run="a")])) == []
    assert reorder.held == 2
    assert [out(0, run="b"), out(1, run="b")] == list(reorder.feed([out(0, run="b")]))
    assert [out(1, run="a"), out(2, run="a")] == list(reorder.feed([out(1, run="a")]))
    assert [out(2, run="b")] == list(reorder.feed([out(2, run="b")]))
    assert reorder.gaps == 0


def test_completed_run_cleanup_and_late_event_dropped() -> None:
    """A completed run's state goes; stragglers for it are counted, not rerun."""
    reorder = Reorder(max_delay=None)
    done = out(2, "completed")
    assert [out(0)] == feed_all(reorder, [out(0), done])
    assert [out(1), done] == list(reorder.feed([out(1)]))
    assert reorder.held == 0
    assert list(reorder.feed([out(1)])) == []
    assert list(reorder.feed([out(0)])) == []
    assert reorder.duplicates == 2
    assert list(reorder.flush()) == []


def test_completed_on_fast_path_then_late_event() -> None:
    """An in-order completed event ends the run; a late event for it is late."""
    reorder = Reorder(window=1, max_delay=None)
    assert [out(0)] == feed_all(reorder, [out(0), out(2)])
    assert [gap("r", 1, 1, 1002.0), out(2), out(3)] == list(reorder.feed([out(3)]))
    done = out(4, "completed")
    assert [done] == list(reorder.feed([done]))
    assert list(reorder.feed([out(1)])) == []
    assert list(reorder.feed([done])) == []
    assert (reorder.late, reorder.duplicates) == (1, 1)
    assert list(reorder.flush()) == []


def test_late_event_after_completion_counted_as_late() -> None:
    """A finished run keeps its given-up holes for late counting."""
    reorder = Reorder(window=1, max_delay=None)
    done = out(3, "completed")
    assert [out(0)] == list(reorder.feed([out(0)]))
    assert list(reorder.feed([out(2)])) == []
    assert [gap("r", 1, 1, 1002.0), out(2), done] == list(reorder.feed([done]))
    assert list(reorder.feed([out(1)])) == []
    assert reorder.late == 1


def test_events_after_completed_continue_the_run() -> None:
    """An event past a finished run's end is ordered, not taken for a new run."""
    reorder = Reorder(max_delay=None)
    done = out(1, "completed")
    feed_all(reorder, [out(0), done])
    assert list(reorder.feed([out(3)])) == []
    assert [out(2), out(3)] == list(reorder.feed([out(2)]))
    assert list(reorder.feed([out(0)])) == []
    assert reorder.duplicates == 1


def test_finished_runs_memory_is_bounded() -> None:
    """Only the last 4096 finished runs are remembered."""
    reorder = Reorder(max_delay=None)
    for i in range(4097):
        reorder.feed([out(0, "completed", run=f"run{i}")])
    # run0 was forgotten, so its straggler starts a new run; run1 was not.
    straggler = out(0, run="run0")
    assert [straggler] == list(reorder.feed([straggler]))
    assert list(reorder.feed([out(0, run="run1")])) == []
    assert reorder.duplicates == 1


def test_emit_gaps_false() -> None:
    """Without gap events, holes are still given up and counted."""
    reorder = Reorder(window=1, max_delay=None, emit_gaps=False)
    feed_all(reorder, [out(2)])
    assert [out(2)] == list(reorder.feed([out(5)]))
    assert [out(5)] == list(reorder.flush())
    assert reorder.gaps == 2
    assert reorder.missing == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window must be a positive number of events, got 0"),
        ({"window": -1}, "window must be a positive number of events, got -1"),
        ({"max_delay": -0.1}, "max_delay must be zero or more seconds.*got -0.1"),
        ({"max_delay": math.nan}, "max_delay .* got nan"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, float], message: str) -> None:
    """Bad window or max_delay values raise ValueError naming them."""
    with pytest.raises(ValueError, match=message):
        Reorder(**kwargs)  # type: ignore[arg-type]


def test_unknown_types_are_ordered() -> None:
    """Types outside the vocabulary are ordered by sequence like any other."""
    reorder = Reorder(max_delay=None)
    odd = out(1, "custom.thing")
    assert list(reorder.feed([odd])) == []
    assert [out(0), odd] == list(reorder.feed([out(0)]))


def test_stale_arrivals_are_compacted() -> None:
    """Released events do not pile up behind a long-held one without ticks."""
    clock = FakeClock()
    reorder = Reorder(max_delay=1.0, clock=clock)
    reorder.feed([out(1, run="stuck")])
    for i in range(0, 2000, 2):
        reorder.feed([out(i + 1, run="busy")])
        reorder.feed([out(i, run="busy")])
    assert reorder.held == 1
    assert reorder.deadline() == 1.0
    assert len(reorder._arrivals) < 100


@settings(deadline=None)
@given(data=st.data(), n=st.integers(min_value=0, max_value=60))
def test_bounded_displacement_restores_order(data: st.DataObject, n: int) -> None:
    """A permutation displaced less than the window comes out sorted, whole."""
    order = data.draw(st.permutations(range(n)))
    displacement = max(
        (abs(position - seq) for position, seq in enumerate(order)), default=0
    )
    window = displacement + 1 + data.draw(st.integers(min_value=0, max_value=3))
    reorder = Reorder(window=window, max_delay=None)
    events = [out(seq) for seq in order]
    emitted = feed_all(reorder, events)
    emitted.extend(reorder.flush())
    assert sorted(events, key=lambda event: event.sequence) == emitted
    assert reorder.gaps == 0
    assert (reorder.duplicates, reorder.late) == (0, 0)


event_specs = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.integers(min_value=0, max_value=30),
        st.sampled_from(["stdout", "stdout", "stdout", "completed", "x-custom"]),
        st.floats(min_value=0.0, max_value=1.0),
    ),
    max_size=80,
)


@settings(deadline=None)
@given(
    specs=event_specs,
    window=st.integers(min_value=1, max_value=6),
    max_delay=st.none() | st.sampled_from([0.0, 0.5, 2.0]),
)
def test_every_event_accounted_for(
    specs: list[tuple[str, int, str, float]], window: int, max_delay: float | None
) -> None:
    """Output is gapless per run and every input is emitted once or counted."""
    clock = FakeClock()
    reorder = Reorder(window=window, max_delay=max_delay, clock=clock)
    inputs = [
        Event(type=type, timestamp=float(i), sequence=seq, run=run)
        for i, (run, seq, type, _) in enumerate(specs)
    ]
    emitted: list[Event] = []
    for event, (_, _, _, step) in zip(inputs, specs, strict=True):
        emitted.extend(reorder.feed([event]))
        # Memory stays within the window, per run.
        assert all(len(state.held) <= window for state in reorder._runs.values())
        clock.now += step
        due = reorder.deadline()
        if due is not None and due <= clock.now:
            emitted.extend(reorder.tick(clock.now))
            later = reorder.deadline()
            assert later is None or later > clock.now
    emitted.extend(reorder.flush())
    assert reorder.held == 0

    # Each input is emitted at most once (by identity); the rest are counted.
    emitted_ids = [id(event) for event in emitted if event.type != "gap"]
    assert len(emitted_ids) == len(set(emitted_ids))
    input_ids = {id(event) for event in inputs}
    assert set(emitted_ids) <= input_ids
    dropped = len(inputs) - len(emitted_ids)
    assert dropped == reorder.duplicates + reorder.late

    # Per run, real and gap events tile 0..n in order, without overlap, so
    # every sequence not emitted is inside exactly one gap.
    gaps = [event for event in emitted if event.type == "gap"]
    assert len(gaps) == reorder.gaps
    assert reorder.missing == sum(
        g.attrs["last_missing"] - g.attrs["first_missing"] + 1 for g in gaps
    )
    for run in {event.run for event in inputs}:
        next_sequence = 0
        for event in emitted:
            if event.run != run:
                continue
            assert next_sequence == event.sequence
            if event.type == "gap":
                assert next_sequence == event.attrs["first_missing"]
                assert event.attrs["first_missing"] <= event.attrs["last_missing"]
                next_sequence = event.attrs["last_missing"] + 1
            else:
                next_sequence += 1
        # Every input sequence was emitted or given up, never skipped over.
        assert all(e.sequence < next_sequence for e in inputs if e.run == run)


# Gaps coming in


def test_an_incoming_gap_covers_its_range() -> None:
    """A gap event for 1..3 stands for those sequences: 4 follows at once."""
    reorder = Reorder(max_delay=5.0)
    incoming = gap("r", 1, 3, 1000.5)
    assert [out(0), incoming, out(4)] == feed_all(reorder, [out(0), incoming, out(4)])
    assert (0, 0, None) == (reorder.gaps, reorder.held, reorder.deadline())


def test_an_incoming_gap_releases_what_waited_behind_it() -> None:
    """Events after the range, held, go as soon as the gap comes."""
    reorder = Reorder(max_delay=5.0)
    assert [out(0)] == feed_all(reorder, [out(0), out(5), out(4)])
    incoming = gap("r", 1, 3, 1000.5)
    assert [incoming, out(4), out(5)] == feed_all(reorder, [incoming])
    assert 0 == reorder.gaps


def test_stragglers_of_an_incoming_gap_are_late() -> None:
    """An event of the covered range arriving afterwards is late, and dropped."""
    reorder = Reorder()
    feed_all(reorder, [out(0), gap("r", 1, 2, 1000.5), out(3)])
    assert [] == feed_all(reorder, [out(2)])
    assert (1, 0) == (reorder.late, reorder.duplicates)


def test_held_events_within_an_incoming_gap_go() -> None:
    """An event held inside the range a late gap covers is dropped, not stuck."""
    reorder = Reorder()
    assert [out(0)] == feed_all(reorder, [out(0), out(2), out(5)])
    incoming = gap("r", 1, 3, 1000.5)
    assert [incoming] == feed_all(reorder, [incoming])
    assert (1, 1) == (reorder.duplicates, reorder.held)
    assert [out(4), out(5)] == feed_all(reorder, [out(4)])


def test_a_malformed_gap_is_an_ordinary_event() -> None:
    """A gap whose attrs do not name its range covers its own sequence only."""
    reorder = Reorder(max_delay=None)
    odd = Event(type="gap", run="r", sequence=1, attrs={"first_missing": "1"})
    assert [out(0), odd] == feed_all(reorder, [out(0), odd, out(3)])
    assert 1 == reorder.held
