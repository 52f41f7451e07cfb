"""Tests for :mod:`eventkit.operators.progress`."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Final

import pytest
from hypothesis import given, settings, strategies as st

from eventkit.events import Event
from eventkit.operators import progress as progress_module
from eventkit.operators._base import Operator
from eventkit.operators.progress import TrackProgress
from tests.factories import ev

if TYPE_CHECKING:
    from collections.abc import Iterable


def feed_all(tracker: TrackProgress, events: Iterable[Event]) -> list[Event]:
    """Feed ``events`` one by one and collect everything emitted."""
    out: list[Event] = []
    for event in events:
        out.extend(tracker.feed([event]))
    return out


def reports(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Return the attrs of the progress events among ``events``."""
    return [dict(e.attrs) for e in events if e.type == "progress"]


def parsed(data: str) -> tuple[Any, Any, Any] | None:
    """Feed ``data`` as stdout to a fresh tracker; return what it parsed, if any."""
    out = TrackProgress().feed([ev("stdout", data)])
    if len(out) == 1:
        return None
    attrs = out[1].attrs
    return attrs["percent"], attrs["current"], attrs["total"]


def test_is_an_operator() -> None:
    """TrackProgress implements the Operator protocol, with no time behaviour."""
    tracker = TrackProgress()
    assert isinstance(tracker, Operator)
    assert tracker.deadline() is None
    assert tracker.tick(1e9) == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("Progress: 45.0% (9/20)", (45.0, 9, 20)),
        ("Progress: 33.3% (1/3)\n", (33.3, 1, 3)),
        ("45%", (45.0, None, None)),
        ("9/20", (45.0, 9, 20)),
        ("Step 1/5", (20.0, 1, 5)),
        ("100%", (100.0, None, None)),
        ("0%", (0.0, None, None)),
        ("[#####     ] 50%\r", (50.0, None, None)),
        ("Downloaded 3/4.", (75.0, 3, 4)),
        ("Loading...3/10...", (30.0, 3, 10)),
        ("(7/7)", (100.0, 7, 7)),
        ("10%\n20%\n30%\n", (30.0, None, None)),
        ("1/4 then 2/4", (50.0, 2, 4)),
        ("45% (9/20) then 50%", (50.0, None, None)),
        ("50% (30/20)", (50.0, None, None)),
        ("2/4 and 150%", (50.0, 2, 4)),
        # The control characters \x1c to \x1f are spaces to \s.
        ("50% (\x1c7/30)", (50.0, 7, 30)),
        ("batch 1234/5000 (1.2 ms/row) ok", (24.68, 1234, 5000)),
        ("5%, then 10% (1/2/3)", (10.0, None, None)),
    ],
)
def test_parses_progress(data: str, expected: tuple[Any, Any, Any]) -> None:
    """Progress reports are parsed from output; the last valid one counts."""
    assert parsed(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        "no progress here",
        "a/b/c",
        "see src/eventkit/events.py",
        "2024/11/22",
        "on 11/22/2024",
        "/usr/lib/1/2",
        "step1/2",
        "1/2.5",
        "v1.2/3",
        "files in 3/4.txt",
        "150%",
        "5/3",
        "3/0",
        "x12%",
        "version 1.5.0%",
        "50 percent",
        "%d items",
    ],
)
def test_ignores_false_positives(data: str) -> None:
    """Paths, dates and impossible values are not progress."""
    assert parsed(data) is None


def test_bare_percent_keeps_counts() -> None:
    """A bare percent keeps current and total as last seen."""
    tracker = TrackProgress()
    out = feed_all(tracker, [ev("stdout", "9/20"), ev("stdout", "50%", 1)])
    assert [(r["percent"], r["current"], r["total"]) for r in reports(out)] == [
        (45.0, 9, 20),
        (50.0, 9, 20),
    ]


def test_parses_stdout_and_stderr_only() -> None:
    """Only the data of stdout and stderr is parsed."""
    tracker = TrackProgress()
    out = feed_all(
        tracker,
        [
            ev("result", "50%"),
            ev("error", "1/2", 1),
            ev("stderr", "10%", 2),
        ],
    )
    assert [r["percent"] for r in reports(out)] == [10.0]


def test_progress_event_follows_the_change() -> None:
    """A progress event comes right after the event that changed progress."""
    tracker = TrackProgress()
    started = ev("started")
    output = ev("stdout", "Progress: 45.0% (9/20)", 1)
    assert tracker.feed([started]) == [started]
    out = tracker.feed([output])
    assert out[0] is output
    assert out[1] == Event(
        type="progress",
        data="",
        timestamp=1001.0,
        sequence=1,
        run="r",
        attrs={
            "events": 2,
            "bytes": 22,
            "elapsed": 1.0,
            "rate": 2.0,
            "percent": 45.0,
            "current": 9,
            "total": 20,
            "eta": pytest.approx(1.0 * 55 / 45),
            "done": False,
        },
    )


def test_unchanged_progress_is_not_reported() -> None:
    """Output repeating the same progress, or none, adds no report."""
    tracker = TrackProgress()
    out = feed_all(
        tracker, [ev("stdout", "50%"), ev("stdout", "50%", 1), ev("stdout", "hello", 2)]
    )
    assert len(reports(out)) == 1


def test_interval_limits_reports_in_event_time() -> None:
    """At most one report per interval of event time; held changes come later."""
    tracker = TrackProgress(interval=1.0)
    out = feed_all(
        tracker,
        [
            ev("stdout", "10%", timestamp=0.0),
            ev("stdout", "20%", 1, timestamp=0.5),  # held back
            ev("result", "", 2, timestamp=0.9),  # still too early
            ev(
                "stdout", "tick", 3, timestamp=1.0
            ),  # an interval later: 20 % is reported
            ev("stdout", "30%", 4, timestamp=1.5),  # held back
            ev("stdout", "40%", 5, timestamp=2.0),  # reported
            ev("stdout", "50%", 6, timestamp=2.5),  # held back until the end
        ],
    )
    progress = [(e.sequence, e.attrs["percent"]) for e in out if e.type == "progress"]
    assert progress == [(0, 10.0), (3, 20.0), (5, 40.0)]
    (final,) = tracker.flush()
    assert (final.sequence, final.attrs["percent"], final.attrs["done"]) == (
        6,
        50.0,
        True,
    )


def test_interval_is_per_run() -> None:
    """One run's reports do not hold back another's."""
    tracker = TrackProgress(interval=10.0)
    out = feed_all(
        tracker,
        [
            ev("stdout", "10%", run="a", timestamp=0.0),
            ev("stdout", "10%", run="b", timestamp=1.0),
            ev("stdout", "20%", 1, run="a", timestamp=2.0),
        ],
    )
    assert [e.run for e in out if e.type == "progress"] == ["a", "b"]


def test_done_follows_completed() -> None:
    """The completed event is followed by a done report; the run's state goes."""
    tracker = TrackProgress(interval=100.0)
    feed_all(tracker, [ev("started"), ev("stdout", "1/4", 1), ev("stdout", "2/4", 2)])
    assert tracker.active_runs == 1
    completed = ev("completed", "", 3)
    out = tracker.feed([completed])
    assert out[0] is completed
    assert out[1].type == "progress"
    assert (out[1].sequence, out[1].timestamp) == (3, 1003.0)
    assert out[1].attrs == {
        "events": 4,
        "bytes": 6,
        "elapsed": 3.0,
        "rate": 4 / 3,
        "percent": 50.0,
        "current": 2,
        "total": 4,
        "eta": 3.0,
        "done": True,
    }
    assert tracker.active_runs == 0
    assert tracker.flush() == []


def test_events_after_completed_start_fresh() -> None:
    """An event of a completed run starts a new count."""
    tracker = TrackProgress()
    feed_all(tracker, [ev("stdout", "50%"), ev("completed", "", 1)])
    (final,) = reports(
        feed_all(tracker, [ev("stdout", "late", 2)]) + list(tracker.flush())
    )
    assert (final["events"], final["percent"], final["elapsed"]) == (1, None, 0.0)


def test_flush_reports_unfinished_runs() -> None:
    """flush() gives a done report per unfinished run, after its last event."""
    tracker = TrackProgress()
    feed_all(
        tracker,
        [
            ev("stdout", "10%", run="b"),
            ev("stdout", "x", run="a"),
            ev("stdout", "", 1, run="c"),
            ev("completed", "", 2, run="c"),
            ev("stdout", "y", 1, run="a"),
        ],
    )
    assert tracker.active_runs == 2
    out = tracker.flush()
    assert [(e.type, e.run, e.sequence, e.attrs["done"]) for e in out] == [
        ("progress", "b", 0, True),
        ("progress", "a", 1, True),
    ]
    assert out[1].attrs["events"] == 2
    assert tracker.active_runs == 0
    assert tracker.flush() == []


def test_counts_bytes_of_output_only() -> None:
    """bytes counts UTF-8 bytes of stdout and stderr data; events counts all."""
    tracker = TrackProgress()
    feed_all(
        tracker,
        [
            ev("stdout", "é€😀"),  # 2 + 3 + 4 bytes
            ev("stderr", "ab", 1),
            ev("error", "not counted", 2),
        ],
    )
    (final,) = tracker.flush()
    assert (final.attrs["events"], final.attrs["bytes"]) == (3, 11)


def test_rate_and_eta_need_elapsed_time() -> None:
    """With no time elapsed, rate and eta are None."""
    (report,) = reports(TrackProgress().feed([ev("stdout", "25%")]))
    assert (report["elapsed"], report["rate"], report["eta"]) == (0.0, None, None)


def test_eta_values() -> None:
    """eta is elapsed * (100 - percent) / percent; 0 at 100 %; None at 0 %."""
    tracker = TrackProgress()
    out = feed_all(
        tracker,
        [
            ev("stdout", "start", timestamp=10.0),
            ev("stdout", "0%", 1, timestamp=11.0),
            ev("stdout", "25%", 2, timestamp=12.0),
            ev("stdout", "100%", 3, timestamp=14.0),
        ],
    )
    assert [(r["elapsed"], r["rate"], r["eta"]) for r in reports(out)] == [
        (1.0, 2.0, None),
        (2.0, 1.5, 6.0),
        (4.0, 1.0, 0.0),
    ]


def test_elapsed_never_negative() -> None:
    """Timestamps going backwards give elapsed 0, not a negative number."""
    tracker = TrackProgress()
    out = feed_all(
        tracker,
        [ev("stdout", "a", timestamp=5.0), ev("stdout", "50%", 1, timestamp=4.0)],
    )
    (report,) = reports(out)
    assert (report["elapsed"], report["rate"]) == (0.0, None)


def test_progress_events_pass_uncounted() -> None:
    """Progress events fed back in pass untouched and are not counted."""
    tracker = TrackProgress()
    upstream = Event(type="progress", run="r", attrs={"percent": 99.0})
    assert tracker.feed([upstream])[0] is upstream
    assert tracker.active_runs == 0
    tracker.feed([ev("stdout", "x")])
    tracker.feed([upstream])
    (final,) = tracker.flush()
    assert final.attrs["events"] == 1


def test_negative_interval_is_refused() -> None:
    """A negative interval raises ValueError."""
    with pytest.raises(ValueError, match=r"interval=-0\.5"):
        TrackProgress(interval=-0.5)


# Property tests -------------------------------------------------------------

outputs = st.sampled_from(
    ["", "hello", "10%", "Progress: 45.0% (9/20)", "3/4", "a/b", "2024/11/22", "é"]
)
types = st.sampled_from(["stdout", "stdout", "stderr", "started", "completed"])


@st.composite
def streams(draw: st.DrawFn) -> list[Event]:
    """Draw events of 1-3 runs with nondecreasing timestamps."""
    runs = ["a", "b", "c"][: draw(st.integers(1, 3))]
    items = draw(
        st.lists(
            st.tuples(st.sampled_from(runs), types, outputs, st.floats(0.0, 2.0)),
            max_size=50,
        )
    )
    now = 0.0
    stream: list[Event] = []
    for sequence, (run, type_, data, step) in enumerate(items):
        now += step
        stream.append(ev(type_, data, sequence, run=run, timestamp=now))
    return stream


@settings(deadline=None)
@given(stream=streams(), interval=st.floats(0.0, 3.0))
def test_passes_every_event_and_ends_every_run(
    stream: list[Event], interval: float
) -> None:
    """Input passes as the same objects in order; every run gets one done report."""
    tracker = TrackProgress(interval=interval)
    out: list[Event] = []
    for event in stream:
        emitted = tracker.feed([event])
        assert emitted[0] is event
        assert all(e.type == "progress" and e.run == event.run for e in emitted[1:])
        out.extend(emitted)
    out.extend(tracker.flush())
    assert tracker.active_runs == 0

    passed = [e for e in out if e.type != "progress"]
    assert all(a is b for a, b in zip(passed, stream, strict=True))
    # One done report per completed event, plus one per run left unfinished.
    done = Counter(e.run for e in out if e.type == "progress" and e.attrs["done"])
    expected: Counter[str] = Counter()
    open_runs: set[str] = set()
    for event in stream:
        if event.type == "completed":
            expected[event.run] += 1
            open_runs.discard(event.run)
        else:
            open_runs.add(event.run)
    expected.update(open_runs)
    assert done == expected
    # Within a run, non-final reports are at least an interval apart.
    last: dict[str, float] = {}
    for event in out:
        if event.type == "progress" and not event.attrs["done"]:
            if event.run in last:
                assert event.timestamp - last[event.run] >= interval
            last[event.run] = event.timestamp
        elif event.type == "progress":
            last.pop(event.run, None)


@pytest.mark.parametrize(
    "data",
    [
        "1/" + "9" * 5000,
        "9" * 5000 + "/1",
        "(" + "1" * 19 + "/" + "2" * 19 + ")",
        "50% (" + "1" * 5000 + "/2)",
        "1234567890123456789%",
    ],
)
def test_huge_numbers_are_not_progress(data: str) -> None:
    """Numbers of more than 18 digits are ignored, never handed to int()."""
    tracker = TrackProgress()
    out = tracker.feed([ev("stdout", data)])
    assert [ev("stdout", data)] == out[:1]
    assert all(report["current"] is None for report in reports(out))


def test_eighteen_digits_still_count() -> None:
    """Up to 18 digits a fraction is progress."""
    big = "9" * 18
    (report,) = reports(TrackProgress().feed([ev("stdout", f"{big}/{big}")]))
    assert (100.0, int(big), int(big)) == (
        report["percent"],
        report["current"],
        report["total"],
    )


# What reports are made of, and near-reports.
_REPORT_PIECES: Final = [
    *"123%/.() ",
    *("45.0", "100%", "150%", "1/2/", "5/0", "1234/5000", "50% (", "1" * 19, "\x1c"),
]
# Other scripts' digits and spaces (\d and \s match them), word characters.
_OTHER_PIECES: Final = [
    "x",
    "é",
    "_",
    "\n",
    "\u0663",
    "\u00a0",
    "\u2003",
    "ms/row",
    "%/",
    "1/x",
]


@given(
    st.lists(st.sampled_from(_REPORT_PIECES + _OTHER_PIECES), max_size=200)
    | st.lists(
        # Mostly report characters: long runs, past the walk's bound.
        st.sampled_from(_REPORT_PIECES * 20 + _OTHER_PIECES),
        max_size=400,
    ),
    st.tuples(
        st.none() | st.floats(0, 100),
        st.none() | st.integers(0, 9),
        st.none() | st.integers(1, 9),
    ),
)
def test_output_parses_as_a_whole_search_would(
    pieces: list[str], last: tuple[float | None, int | None, int | None]
) -> None:
    """The runs around the last ``%`` and ``/`` hold what a whole search finds."""
    data = "".join(pieces)
    whole = progress_module._last_report(data, 0, last)
    assert (last if whole is None else whole) == progress_module.parse_progress(
        data, last
    )
