"""How input is cut into batches never changes what an operator emits.

For random event sequences and random batchings (one event per batch up to
all at once), every operator and every chain gives the same output as the
per-event reference, which feeds one event at a time.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from hypothesis import given, settings, strategies as st
from structlog.testing import capture_logs

from eventkit.chain import Chain
from eventkit.operators._base import PerEvent, batched
from eventkit.operators.buffer import BufferBytes
from eventkit.operators.cap import CapOutput
from eventkit.operators.lines import Lines
from eventkit.operators.log import LogEvents, LogSummaries
from eventkit.operators.metrics import ExportMetrics, ExportRunMetrics
from eventkit.operators.progress import TrackProgress
from eventkit.operators.reorder import Reorder
from eventkit.operators.select import Select
from eventkit.summary import SummaryTracker
from tests.factories import ev

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventkit import Event
    from eventkit.operators._base import Operator

TYPES = ("started", "stdout", "stdout", "stderr", "result", "completed", "gap", "x")


@st.composite
def streams(draw: st.DrawFn) -> list[Event]:
    """Events of up to three runs, interleaved, a little out of order."""
    events = []
    for run in ("a", "b", "c")[: draw(st.integers(1, 3))]:
        for sequence in range(draw(st.integers(0, 25))):
            kind = draw(st.sampled_from(TYPES))
            data = draw(st.text("ab %/1€\n\r", max_size=10))
            events.append(ev(kind, data, sequence, run=run, success=True))
    keys = [index + draw(st.integers(0, 4)) for index in range(len(events))]
    return [events[i] for i in sorted(range(len(events)), key=keys.__getitem__)]


def cut(events: Sequence[Event], sizes: Sequence[int]) -> list[list[Event]]:
    """Cut ``events`` into consecutive batches of the given sizes, cycled."""
    batches, start = [], 0
    for size in itertools.cycle(sizes):
        if start >= len(events):
            return batches
        batches.append(list(events[start : start + size]))
        start += size
    raise AssertionError("unreachable")  # pragma: no cover - cycle never ends


def one_by_one(operator: Operator, events: Sequence[Event]) -> list[Event]:
    """The per-event reference: each event fed alone, then the flush."""
    out: list[Event] = []
    for event in events:
        out.extend(operator.feed([event]))
    return out + operator.flush()


def in_batches(operator: Operator, batches: Sequence[list[Event]]) -> list[Event]:
    """Feed the batches, then flush."""
    out: list[Event] = []
    for batch in batches:
        out.extend(operator.feed(batch))
    return out + operator.flush()


def fixed_clock() -> float:
    """A clock that never moves: ages and delays never fall due."""
    return 0.0


OPERATORS: dict[str, Callable[[], Operator]] = {
    "only": lambda: Select(["stdout", "completed", "x"]),
    "exclude": lambda: Select(["stderr", "gap"], keep=False),
    "buffer_bytes": lambda: BufferBytes(6),
    "buffer_bytes-aged": lambda: BufferBytes(5, max_age=1.0, clock=fixed_clock),
    "reorder": lambda: Reorder(window=4, max_delay=None),
    "reorder-timed": lambda: Reorder(window=3, max_delay=1.0, clock=fixed_clock),
    "reorder-unstarted": lambda: Reorder(start=None, max_delay=None),
    "track_progress": lambda: TrackProgress(),
    "track_progress-interval": lambda: TrackProgress(interval=2.0),
    "export_metrics": lambda: ExportMetrics(max_runs=2),
    "cap_output": lambda: CapOutput(5, 4),
    "lines": lambda: Lines(max_line_bytes=6),
    "lines-collapsed": lambda: Lines(max_line_bytes=6, collapse_cr=True),
    "export_run_metrics": lambda: ExportRunMetrics(max_run_series=2, clock=fixed_clock),
}
batchings = st.lists(st.integers(1, 12), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(OPERATORS)), streams(), batchings)
def test_every_operator_is_indifferent_to_batching(
    name: str, events: list[Event], sizes: list[int]
) -> None:
    """An operator emits the same events whatever the batching of its input."""
    make = OPERATORS[name]
    assert one_by_one(make(), events) == in_batches(make(), cut(events, sizes))


@settings(max_examples=40, deadline=None)
@given(streams(), batchings)
def test_metrics_are_indifferent_to_batching(
    events: list[Event], sizes: list[int]
) -> None:
    """What export_metrics counts does not depend on the batching either."""
    alone, batched_ = ExportMetrics(max_runs=2), ExportMetrics(max_runs=2)
    one_by_one(alone, events)
    in_batches(batched_, cut(events, sizes))
    for field in ("events", "bytes", "runs", "resource_limits", "errors"):
        assert getattr(alone.counts, field) == getattr(batched_.counts, field)
    assert alone.counts.duration_buckets == batched_.counts.duration_buckets


@settings(max_examples=40, deadline=None)
@given(streams(), batchings, st.sampled_from(["events", "summary"]))
def test_logs_are_indifferent_to_batching(
    events: list[Event], sizes: list[int], mode: str
) -> None:
    """The log entries are the same whatever the batching."""

    def logger() -> Operator:
        import structlog

        log = structlog.get_logger("eventkit")
        if mode == "events":
            return LogEvents(log, every=3)
        return LogSummaries(log, SummaryTracker, max_runs=2)

    with capture_logs() as alone:
        one_by_one(logger(), events)
    with capture_logs() as in_parts:
        in_batches(logger(), cut(events, sizes))
    assert alone == in_parts


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(sorted(OPERATORS)), min_size=1, max_size=5),
    streams(),
    batchings,
)
def test_chains_are_indifferent_to_batching(
    names: list[str], events: list[Event], sizes: list[int]
) -> None:
    """A chain fed in batches gives what feeding each operator one event gives."""
    reference = [PerEvent(_Single(OPERATORS[name]())) for name in names]
    chain = Chain([OPERATORS[name]() for name in names])
    expected = Chain(reference)
    out: list[Event] = []
    want: list[Event] = []
    for batch in cut(events, sizes):
        for event in batch:
            want.extend(expected.feed([event]))
        out.extend(chain.feed(batch))
    assert want + expected.flush() == out + chain.flush()


class _Single:
    """A batch operator seen one event at a time: the per-event reference."""

    def __init__(self, operator: Operator) -> None:
        self.operator = operator
        self.timed = getattr(operator, "timed", True)

    def feed(self, event: Event) -> list[Event]:
        return self.operator.feed([event])

    def flush(self) -> list[Event]:
        return self.operator.flush()

    def deadline(self) -> float | None:
        return self.operator.deadline()

    def tick(self, now: float) -> list[Event]:
        return self.operator.tick(now)


def test_a_per_event_operator_is_wrapped() -> None:
    """An operator of eventkit 0.1 (one event at a time) works in a chain."""

    class Doubler:
        timed = False

        def feed(self, event: Event) -> tuple[Event, ...]:
            return (event, event)

        def flush(self) -> tuple[Event, ...]:
            return ()

        def deadline(self) -> None:
            return None

        def tick(self, now: float) -> tuple[Event, ...]:
            return ()

    wrapped = batched(Doubler())  # type: ignore[arg-type]
    assert isinstance(wrapped, PerEvent)
    assert "doubler" == wrapped.name
    assert not wrapped.timed
    events = [ev("stdout", "a"), ev("stdout", "b", 1)]
    assert [events[0], events[0], events[1], events[1]] == Chain(
        [Doubler()]  # type: ignore[list-item]
    ).feed(list(events))


def test_batch_operators_are_not_wrapped() -> None:
    """eventkit's own operators take batches as they are."""
    for make in OPERATORS.values():
        operator = make()
        assert batched(operator) is operator
