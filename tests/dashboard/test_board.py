"""The dashboard's run model, fed by hand: no event loop, no server."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from eventkit.dashboard.board import EVENT_OVERHEAD, THROUGHPUT_SECONDS, Board
from eventkit.operators.progress import parse_progress
from tests.factories import ev, out


def lifecycle(run: str, *, exit_code: int = 0, limit: str | None = None) -> list:
    """A whole run: started, output, [resource_limit], result, completed."""
    events = [ev("started", run=run), out(1, run=run), out(2, "stderr", run=run)]
    if limit is not None:
        events.append(ev("resource_limit", "stopped", 3, run=run, limit=limit))
    events += [
        ev("result", "", 4, run=run, exit_code=exit_code, execution_time=1.5),
        ev("completed", "", 5, run=run, success=exit_code == 0 and limit is None),
    ]
    return events


def test_a_run_is_running_until_completed() -> None:
    """started and output make a running run; completed ends it."""
    board = Board()
    board.feed(lifecycle("a")[:3], 10.0)
    record = board.get("a")
    assert record is not None
    assert "running" == record.state
    board.feed(lifecycle("a")[3:], 11.0)
    assert "succeeded" == record.state
    assert 0 == record.exit_code
    assert 11.0 == record.ended_at


@pytest.mark.parametrize(
    ("exit_code", "limit", "state"),
    [
        (0, None, "succeeded"),
        (3, None, "failed"),
        (-9, "timeout", "expired"),
        (-9, "output", "truncated"),
        (-9, "memory", "failed"),
    ],
)
def test_states_by_outcome(exit_code: int, limit: str | None, state: str) -> None:
    """The state follows success, and the limit that stopped the run."""
    board = Board()
    board.feed(lifecycle("a", exit_code=exit_code, limit=limit), 1.0)
    row = board.rows(2.0)[0]
    assert state == row["state"]
    assert exit_code == row["exit_code"]
    assert ([] if limit is None else [limit]) == row["limits"]


def test_end_cuts_running_runs_short() -> None:
    """A run still running when the feed ends is truncated; finished ones stay."""
    board = Board()
    board.feed([*lifecycle("done"), ev("started", run="cut"), out(1, run="cut")], 1.0)
    board.end(2.0)
    assert {"succeeded": 1, "truncated": 1} == {
        state: n for state, n in board.counts().items() if n
    }
    assert board.ended


def test_counts_and_bytes() -> None:
    """Events, stdout and stderr bytes (UTF-8) are counted per run."""
    board = Board()
    board.feed(
        [ev("started"), ev("stdout", "héllo\n", 1), ev("stderr", "oops\n", 2)], 5.0
    )
    row = board.rows(5.0)[0]
    assert (3, 7, 5, 12) == (
        row["events"],
        row["stdout_bytes"],
        row["stderr_bytes"],
        row["bytes"],
    )


def test_durations_rate_and_source() -> None:
    """Running runs count board time; finished ones their execution time."""
    board = Board()
    board.feed([ev("started", run="a"), out(1, run="a")], 100.0, source="local")
    row = board.rows(104.0)[0]
    assert ("local", 4.0, 0.5) == (row["source"], row["duration"], row["rate"])
    board.feed(lifecycle("a")[3:], 105.0)
    assert 1.5 == board.rows(200.0)[0]["duration"]


def test_progress_is_read_from_the_output() -> None:
    """Output reporting progress gives percent, counts and an ETA."""
    board = Board()
    board.feed(
        [ev("started", timestamp=0.0), ev("stdout", "step 5/20\n", 1, timestamp=10.0)],
        1.0,
    )
    row = board.rows(1.0)[0]
    assert (25.0, 5, 20) == (row["percent"], row["current"], row["total"])
    assert 30.0 == row["eta"]


def test_progress_events_set_progress_from_either_feed() -> None:
    """A chain's progress events set the bar even on the log feed."""
    board = Board()
    board.feed([ev("started")], 1.0, log=False)
    board.feed(
        [ev("progress", percent=40.0, current=None, total=None, elapsed=4.0)],
        1.0,
        record=False,
    )
    row = board.rows(1.0)[0]
    assert (40.0, 6.0) == (row["percent"], row["eta"])
    assert 0 == row["held_events"]  # progress is a bar, never a line


def test_two_feeds_split_record_and_log() -> None:
    """The record feed makes the state; the log feed what is shown."""
    board = Board()
    source = lifecycle("a", exit_code=2)
    board.feed(source, 1.0, log=False)
    shown = [
        out(1, run="a"),
        ev("gap", "", 3, run="a", first_missing=3, last_missing=4),
    ]
    board.feed(shown, 1.0, record=False)
    row = board.rows(1.0)[0]
    assert ("failed", 2, 5) == (row["state"], row["exit_code"], row["events"])
    assert (2, 1, 2) == (row["held_events"], row["gaps"], row["missing"])
    record = board.get("a")
    assert record is not None
    assert shown == list(record.log)


def test_the_log_feed_ignores_unknown_runs() -> None:
    """Output of a run the record never saw (or let go) brings nothing back."""
    board = Board(keep_runs=0)
    board.feed(lifecycle("a"), 1.0, log=False)
    board.feed([out(1, run="a")], 1.0, record=False)
    assert [] == board.rows(1.0)


def test_finished_runs_are_bounded_running_ones_never() -> None:
    """At most keep_runs finished runs stay, oldest finished first out."""
    board = Board(keep_runs=2)
    board.feed([ev("started", run=f"live{n}") for n in range(5)], 1.0)
    for name in ("a", "b", "c"):
        board.feed(lifecycle(name), 2.0)
    names = [row["run"] for row in board.rows(3.0)]
    assert ["live0", "live1", "live2", "live3", "live4", "b", "c"] == names
    changes = board.take_changes()
    assert ["a"] == changes.removed
    assert "a" not in [record.run for record in changes.runs]


def test_a_log_holds_tail_bytes_dropping_the_oldest() -> None:
    """Past tail_bytes, the oldest events go and are counted."""
    board = Board(tail_bytes=3 * (10 + EVENT_OVERHEAD))
    board.feed([ev("stdout", f"{n:09d}\n", n) for n in range(10)], 1.0)
    record = board.get("r")
    assert record is not None
    assert ["000000007\n", "000000008\n", "000000009\n"] == [e.data for e in record.log]
    assert (7, 70, 10, 7) == (
        record.dropped_events,
        record.dropped_bytes,
        record.logged,
        record.first_held,
    )
    assert ["000000009\n"] == [e.data for e in record.held(9)]
    assert 3 == len(list(record.held(0)))


def test_the_newest_event_stays_even_when_larger_than_the_tail() -> None:
    """One event over tail_bytes is still held: the latest output shows."""
    board = Board(tail_bytes=EVENT_OVERHEAD)
    board.feed([ev("stdout", "x" * 1000, 0), ev("stdout", "y" * 1000, 1)], 1.0)
    record = board.get("r")
    assert record is not None
    assert ["y" * 1000] == [e.data for e in record.log]


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.text(max_size=40)), max_size=200),
    st.integers(min_value=EVENT_OVERHEAD, max_value=2000),
)
def test_a_log_is_the_suffix_of_what_came_within_its_bound(
    chunks: list[tuple[str, str]], tail: int
) -> None:
    """Each run's log is the last events it got, within tail_bytes (one at least)."""
    board = Board(tail_bytes=tail)
    events = [ev("stdout", data, n, run=run) for n, (run, data) in enumerate(chunks)]
    board.feed(events, 1.0)
    for run in "abc":
        mine = [event for event in events if event.run == run]
        record = board.get(run)
        if not mine:
            assert record is None
            continue
        assert record is not None
        held = list(record.log)
        assert mine[len(mine) - len(held) :] == held
        assert len(mine) == record.logged
        assert record.log_bytes <= tail or len(held) == 1
        assert len(mine) - len(held) == record.dropped_events


def test_a_reused_run_id_starts_a_new_life() -> None:
    """started for a finished run starts its record afresh."""
    board = Board()
    board.feed(lifecycle("a", exit_code=1), 1.0)
    board.feed([ev("started", run="a")], 2.0)
    row = board.rows(2.0)[0]
    assert ("running", 1, None) == (row["state"], row["events"], row["exit_code"])


def test_changes_are_taken_once() -> None:
    """take_changes() gives the changed runs since the last call, then none."""
    board = Board()
    board.feed([ev("started", run="a"), ev("started", run="b")], 1.0)
    first = board.take_changes()
    assert ["a", "b"] == [record.run for record in first.runs]
    assert [] == board.take_changes().runs
    board.feed([out(1, run="b")], 1.0)
    changes = board.take_changes()
    assert ["b"] == [record.run for record in changes.runs]
    assert changes.version == board.version


def test_rows_filter_by_state() -> None:
    """rows(states=...) keeps the runs in those states."""
    board = Board()
    board.feed([*lifecycle("ok"), *lifecycle("bad", exit_code=1)], 1.0)
    assert ["bad"] == [row["run"] for row in board.rows(1.0, ["failed"])]


def test_throughput_counts_events_a_second() -> None:
    """The record feed is counted per second, five minutes kept."""
    board = Board()
    board.feed([out(n) for n in range(3)], 1000.2)
    board.feed([out(n) for n in range(4)], 1000.9)
    board.feed([out(n) for n in range(5)], 1002.5)
    start, counts = board.throughput(1003.1)
    assert THROUGHPUT_SECONDS == len(counts)
    assert 1003 - THROUGHPUT_SECONDS + 1 == start
    assert [7, 0, 5, 0] == counts[-4:]
    start, counts = board.throughput(5000.0)
    assert [0] * THROUGHPUT_SECONDS == counts
    assert 7 + 5 == board.total_events


def test_odd_attrs_are_ignored() -> None:
    """attrs of unexpected types never raise: they are left out."""
    board = Board()
    board.feed(
        [
            ev("started"),
            ev("result", "", 1, exit_code="zero", execution_time=True),
            ev("progress", "", 2, percent="half"),
            ev("gap", "", 3, first_missing="x"),
            ev("custom", "what", 4),
            ev("completed", "", 5, success=1),
        ],
        1.0,
    )
    row = board.rows(1.0)[0]
    assert ("succeeded", None, None, 1) == (
        row["state"],
        row["exit_code"],
        row["percent"],
        row["gaps"],
    )


def test_invalid_bounds_are_refused() -> None:
    """Negative keep_runs or a tail below one event's overhead raise ValueError."""
    with pytest.raises(ValueError, match="keep_runs"):
        Board(keep_runs=-1)
    with pytest.raises(ValueError, match="tail_bytes"):
        Board(tail_bytes=1)


KINDS = st.sampled_from(
    ["stdout", "stderr", "started", "result", "error", "progress", "gap", "custom"]
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from("ab"),
            KINDS,
            st.sampled_from(["", "x\n", "é 5/10\n", "ok 50%", "/tmp/a b"]),
        ),
        max_size=60,
    ),
    st.integers(min_value=1, max_value=7),
    st.booleans(),
)
def test_the_record_counts_what_a_naive_count_does(
    items: list[tuple[str, str, str]], cut: int, log: bool
) -> None:
    """However the batches are cut, with or without the log, the counts agree."""
    events = [
        ev(kind, data, n, run=run, exit_code=n, percent=float(n % 100))
        for n, (run, kind, data) in enumerate(items)
    ]
    board = Board()
    for start in range(0, len(events), cut):
        board.feed(events[start : start + cut], 1.0, log=log)
    for run in "ab":
        mine = [event for event in events if event.run == run]
        record = board.get(run)
        if not mine:
            assert record is None
            continue
        assert record is not None
        counted = [e for e in mine if e.type not in {"progress", "gap"}]
        assert len(counted) == record.events
        for kind, total in (
            ("stdout", record.stdout_bytes),
            ("stderr", record.stderr_bytes),
        ):
            assert sum(len(e.data.encode()) for e in mine if e.type == kind) == total
        assert sum(e.type == "error" for e in mine) == record.errors
        results = [e for e in mine if e.type == "result"]
        assert (results[-1]["exit_code"] if results else None) == record.exit_code
        assert max(e.timestamp for e in mine) == record.last_timestamp
        progress: tuple[float | None, int | None, int | None] = (None, None, None)
        for e in mine:
            if e.type == "progress":
                progress = (e["percent"], progress[1], progress[2])
            elif e.type in {"stdout", "stderr"}:
                progress = parse_progress(e.data, progress)
        assert progress[0] == record.percent
