"""Tests for :mod:`eventkit.operators.metrics`."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, strategies as st

from eventkit.operators._base import Operator
from eventkit.operators.metrics import (
    DURATION_BUCKETS,
    MAX_LABEL_VALUES,
    ExportMetrics,
    MetricCounts,
)
from tests.factories import ev

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventkit.events import Event


def feed_all(operator: ExportMetrics, events: Iterable[Event]) -> list[Event]:
    """Feed ``events`` one by one and collect everything emitted."""
    out: list[Event] = []
    for event in events:
        out.extend(operator.feed([event]))
    return out


def bucket_of(seconds: float) -> list[int]:
    """Return the non-cumulative bucket counts of one observed duration."""
    buckets = [0] * (len(DURATION_BUCKETS) + 1)
    buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] = 1
    return buckets


def durations(counts: MetricCounts) -> tuple[list[int], float, int]:
    """Return the duration histogram of ``counts``: buckets, sum, count."""
    return counts.duration_buckets, counts.duration_sum, counts.duration_count


def test_is_a_stateless_operator() -> None:
    """ExportMetrics is an operator without deadlines."""
    operator = ExportMetrics()
    assert isinstance(operator, Operator)
    assert operator.timed is False
    assert operator.deadline() is None
    assert tuple(operator.tick(10.0)) == ()
    assert tuple(operator.flush()) == ()


def test_starts_at_zero() -> None:
    """A fresh operator has counted nothing."""
    counts = ExportMetrics().counts
    assert (
        counts.events,
        counts.bytes,
        counts.runs,
        counts.resource_limits,
        counts.errors,
        counts.refused_run_series,
    ) == ({}, {}, {}, {}, {}, 0)
    assert ([0] * (len(DURATION_BUCKETS) + 1), 0.0, 0) == durations(counts)
    assert counts.bounds == DURATION_BUCKETS


def test_events_pass_through_unchanged() -> None:
    """Every event is returned as is, alone, the same object."""
    operator = ExportMetrics()
    events = [ev("started"), ev("stdout", "x"), ev("custom"), ev("completed")]
    for event in events:
        (out,) = operator.feed([event])
        assert out is event


def test_counts_events_and_bytes_by_type() -> None:
    """Events and UTF-8 data bytes are counted per type."""
    operator = ExportMetrics()
    feed_all(
        operator,
        [
            ev("stdout", "hello"),
            ev("stdout", "é€😀"),
            ev("stderr", "oops\n"),
            ev(),
            ev("started"),
        ],
    )
    assert operator.counts.events == {"stdout": 3, "stderr": 1, "started": 1}
    assert operator.counts.bytes == {"stdout": 5 + 2 + 3 + 4, "stderr": 5}


@given(st.lists(st.text(st.characters(codec="utf-8"))))
def test_bytes_are_utf8_lengths(data: list[str]) -> None:
    """The byte count is the sum of the UTF-8 lengths of the data."""
    operator = ExportMetrics()
    feed_all(operator, [ev("stdout", d) for d in data])
    total = sum(len(d.encode()) for d in data)
    assert total == operator.counts.bytes.get("stdout", 0)
    assert len(data) == operator.counts.events.get("stdout", 0)


def test_counts_runs_by_outcome() -> None:
    """Completed runs count as success when ``success`` is true, else failure."""
    operator = ExportMetrics()
    feed_all(
        operator,
        [
            ev("completed", run="a", success=True),
            ev("completed", run="b", success=False),
            ev("completed", run="c"),
            ev("completed", run="d", success=True),
            ev("result", run="e", success=True),
        ],
    )
    assert operator.counts.runs == {"success": 2, "failure": 2}


def test_counts_resource_limits_by_limit() -> None:
    """Resource limit events are counted by their ``limit`` attr."""
    operator = ExportMetrics()
    feed_all(
        operator,
        [
            ev("resource_limit", limit="memory"),
            ev("resource_limit", limit="memory"),
            ev("resource_limit", limit="cpu_time"),
            ev("resource_limit"),
        ],
    )
    assert operator.counts.resource_limits == {"memory": 2, "cpu_time": 1, "": 1}
    assert operator.counts.events["resource_limit"] == 4


def test_duration_from_execution_time() -> None:
    """A result's ``execution_time`` is the run's duration."""
    operator = ExportMetrics()
    feed_all(
        operator,
        [
            ev("started", timestamp=100.0),
            ev("result", timestamp=150.0, execution_time=0.3),
            ev("completed", timestamp=200.0, success=True),
        ],
    )
    assert (bucket_of(0.3), 0.3, 1) == durations(operator.counts)


def test_duration_from_execution_time_without_started() -> None:
    """``execution_time`` gives the duration even when ``started`` never came."""
    operator = ExportMetrics()
    feed_all(operator, [ev("result", execution_time=2), ev("completed")])
    assert (bucket_of(2.0), 2.0, 1) == durations(operator.counts)


def test_duration_from_timestamps() -> None:
    """Without ``execution_time``, the duration is completed minus started."""
    operator = ExportMetrics()
    feed_all(
        operator,
        [
            ev("started", timestamp=100.0),
            ev("result", timestamp=106.0, exit_code=0),
            ev("completed", timestamp=107.0),
        ],
    )
    assert (bucket_of(7.0), 7.0, 1) == durations(operator.counts)


def test_duration_ignores_non_numeric_execution_time() -> None:
    """An ``execution_time`` that is not a number falls back to timestamps."""
    operator = ExportMetrics()
    feed_all(
        operator,
        [
            ev("started", timestamp=100.0),
            ev("result", execution_time="fast"),
            ev("completed", timestamp=100.5),
        ],
    )
    assert (bucket_of(0.5), 0.5, 1) == durations(operator.counts)


def test_duration_never_negative() -> None:
    """A completed timestamp before started counts as a zero duration."""
    operator = ExportMetrics()
    feed_all(
        operator, [ev("started", timestamp=100.0), ev("completed", timestamp=90.0)]
    )
    assert (bucket_of(0.0), 0.0, 1) == durations(operator.counts)


def test_no_duration_without_start_or_execution_time() -> None:
    """A run known only by its completed event has no duration."""
    operator = ExportMetrics()
    feed_all(operator, [ev("stdout", "x"), ev("completed", success=True)])
    assert ([0] * (len(DURATION_BUCKETS) + 1), 0.0, 0) == durations(operator.counts)
    assert operator.counts.runs == {"success": 1}


@pytest.mark.parametrize(
    ("seconds", "index"),
    [
        (0.0, 0),
        (0.05, 0),
        (0.050001, 1),
        (1.0, DURATION_BUCKETS.index(1.0)),
        (3600.0, len(DURATION_BUCKETS) - 1),
        (3600.5, len(DURATION_BUCKETS)),
    ],
)
def test_duration_buckets_are_upper_inclusive(seconds: float, index: int) -> None:
    """A duration lands in the first bucket whose bound is at least it."""
    operator = ExportMetrics()
    feed_all(operator, [ev("result", execution_time=seconds), ev("completed")])
    expected = [0] * (len(DURATION_BUCKETS) + 1)
    expected[index] = 1
    assert expected == operator.counts.duration_buckets


def test_durations_are_per_run() -> None:
    """Interleaved runs each get their own duration."""
    operator = ExportMetrics()
    feed_all(
        operator,
        [
            ev("started", run="a", timestamp=100.0),
            ev("started", run="b", timestamp=101.0),
            ev("completed", run="b", timestamp=101.2),
            ev("completed", run="a", timestamp=130.0),
        ],
    )
    expected = [a + b for a, b in zip(bucket_of(0.2), bucket_of(30.0), strict=True)]
    buckets, total, count = durations(operator.counts)
    assert expected == buckets
    assert pytest.approx(total) == 30.2
    assert count == 2


def test_a_run_ends_once() -> None:
    """After completed, a run's start is forgotten: a second completed has none."""
    operator = ExportMetrics()
    feed_all(
        operator,
        [
            ev("started", timestamp=100.0),
            ev("completed", timestamp=101.0),
            ev("completed", timestamp=102.0),
        ],
    )
    assert (bucket_of(1.0), 1.0, 1) == durations(operator.counts)
    assert operator.counts.runs == {"failure": 2}


def test_max_runs_forgets_the_oldest_start() -> None:
    """Past ``max_runs`` open runs, the oldest start is forgotten."""
    operator = ExportMetrics(max_runs=2)
    feed_all(
        operator,
        [
            ev("started", run="a", timestamp=100.0),
            ev("started", run="b", timestamp=100.0),
            ev("started", run="c", timestamp=100.0),
            ev("completed", run="a", timestamp=101.0),
            ev("completed", run="b", timestamp=102.0),
            ev("completed", run="c", timestamp=103.0),
        ],
    )
    _, total, count = durations(operator.counts)
    assert (total, count) == (5.0, 2)
    assert operator.counts.runs == {"failure": 3}


@pytest.mark.parametrize("max_runs", [0, -1])
def test_max_runs_must_be_positive(max_runs: int) -> None:
    """``max_runs`` below 1 is refused."""
    with pytest.raises(ValueError, match="max_runs"):
        ExportMetrics(max_runs=max_runs)


def test_type_labels_are_capped() -> None:
    """Past 32 distinct types, new types are counted as "other"."""
    operator = ExportMetrics()
    types = [f"type-{i}" for i in range(MAX_LABEL_VALUES + 8)]
    feed_all(operator, [ev(kind, "ab") for kind in types])
    feed_all(operator, [ev(types[0], "c"), ev(types[-1], "d")])
    events, sizes = operator.counts.events, operator.counts.bytes
    assert MAX_LABEL_VALUES == 32
    assert len(events) == MAX_LABEL_VALUES + 1
    assert {*types[:MAX_LABEL_VALUES], "other"} == set(events)
    assert events["other"] == 9
    assert events[types[0]] == 2
    assert sizes["other"] == 9 * 2 - 1
    assert sizes[types[0]] == 3


def test_limit_labels_are_capped() -> None:
    """Past 32 distinct limits, new limits are counted as "other"."""
    operator = ExportMetrics()
    limits = [f"limit-{i}" for i in range(MAX_LABEL_VALUES + 5)]
    feed_all(operator, [ev("resource_limit", limit=limit) for limit in limits])
    counted = operator.counts.resource_limits
    assert len(counted) == MAX_LABEL_VALUES + 1
    assert counted["other"] == 5
    assert operator.counts.events == {"resource_limit": MAX_LABEL_VALUES + 5}


def test_counts_only_grow() -> None:
    """Counts are cumulative: every feed adds, nothing resets them."""
    operator = ExportMetrics()
    feed_all(operator, [ev("stdout", "a"), ev("completed", success=True)])
    assert list(operator.flush()) == []
    feed_all(operator, [ev("stdout", "b"), ev("completed", success=True)])
    assert operator.counts.events == {"stdout": 2, "completed": 2}
    assert operator.counts.runs == {"success": 2}


def test_lifecycle_is_counted_past_the_type_label_cap() -> None:
    """Runs, durations and limits are counted even once type labels are capped."""
    operator = ExportMetrics()
    feed_all(operator, [ev(f"junk-{i}") for i in range(MAX_LABEL_VALUES)])
    feed_all(
        operator,
        [
            ev("started", timestamp=100.0),
            ev("resource_limit", limit="memory"),
            ev("completed", timestamp=102.0, success=True),
        ],
    )
    assert operator.counts.runs == {"success": 1}
    assert operator.counts.resource_limits == {"memory": 1}
    assert (bucket_of(2.0), 2.0, 1) == durations(operator.counts)


def test_counts_errors_by_code() -> None:
    """Error events are counted by their ``code`` attr, ``""`` without one."""
    operator = ExportMetrics()
    feed_all(
        operator,
        [
            ev("error", "not json", code="invalid_frame"),
            ev("error", "not json", code="invalid_frame"),
            ev("error", "closed", code="closed_before_complete"),
            ev("error", "boom"),
            ev("error", "none", code=None),
        ],
    )
    assert {"invalid_frame": 2, "closed_before_complete": 1, "": 2} == (
        operator.counts.errors
    )
    assert 5 == operator.counts.events["error"]


def test_error_codes_are_capped() -> None:
    """Past 32 distinct codes, new codes are counted as "other"."""
    operator = ExportMetrics()
    feed_all(operator, [ev("error", code=f"c{i}") for i in range(MAX_LABEL_VALUES + 3)])
    assert MAX_LABEL_VALUES + 1 == len(operator.counts.errors)
    assert 3 == operator.counts.errors["other"]


def test_observe_chain_hook() -> None:
    """The runner's hook is None unless given."""
    assert ExportMetrics().observe_chain is None
    seen: list[object] = []
    assert seen.append == ExportMetrics(observe_chain=seen.append).observe_chain
