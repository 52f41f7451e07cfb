"""Self-metrics, per-run series and the metric table: what :mod:`eventkit.metrics` adds.

The exposition itself is read with :func:`prometheus_client.generate_latest`;
the real Prometheus, promtool and Pushgateway tests are in
``test_observability_real.py``.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings, strategies as st
from prometheus_client import CollectorRegistry, generate_latest

import eventkit
from eventkit import pipe, sinks, sources
from eventkit.chain import Chain, ChainStats
from eventkit.metrics import (
    METRICS,
    ServerStats,
    SourceStats,
    collector_for,
    server_stats,
    source_stats,
    stage_name,
)
from eventkit.operators._base import batched
from eventkit.operators.buffer import BufferBytes
from eventkit.operators.log import LogEvents, LogSummaries
from eventkit.operators.metrics import ExportMetrics, ExportRunMetrics
from eventkit.operators.progress import TrackProgress
from eventkit.operators.reorder import Reorder
from eventkit.operators.select import Select
from eventkit.summary import SummaryTracker
from tests.factories import ev

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from eventkit.events import Event
    from eventkit.operators._base import EventOperator, Operator

DOCS = Path(__file__).parent.parent / "docs" / "metrics.md"


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    """Return every sample of the text exposition, keyed by name and labels."""
    samples = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def stage_samples(registry: CollectorRegistry) -> dict[str, float]:
    """Return the samples of the per-stage families only."""
    return {key: value for key, value in scrape(registry).items() if 'stage="' in key}


class Gate:
    """A source: yields ``before``, waits until opened, then yields ``after``."""

    def __init__(self, before: list[Event], after: list[Event]) -> None:
        self.before = before
        self.after = after
        self.waiting = asyncio.Event()
        self.go = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[Event]:
        for event in self.before:
            yield event
        self.waiting.set()
        await self.go.wait()
        for event in self.after:
            yield event


class Recorder:
    """A logger that keeps nothing."""

    def _log(self, event: str, **kw: Any) -> None:
        pass

    debug = info = warning = error = critical = _log


# The metric table -------------------------------------------------------------


def test_docs_table_lists_every_metric() -> None:
    """docs/metrics.md has one table whose rows are exactly METRICS, in order."""
    rows = re.findall(
        r"^\| `eventkit_(\w+)` \| (\w+) \| ([^|]*) \|", DOCS.read_text(), re.M
    )
    documented = [(name, kind, labels.strip()) for name, kind, labels in rows]
    expected = [
        (info.name, info.kind, ", ".join(f"`{label}`" for label in info.labels) or "-")
        for info in METRICS
    ]
    assert expected == documented


def test_metric_names_follow_prometheus_conventions() -> None:
    """Counters end in _total, nothing else does; units are base units."""
    for info in METRICS:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", info.name), info.name
        assert info.name.endswith("_total") == (info.kind == "counter"), info.name
        for suffix in ("_ms", "_ns", "_milliseconds", "_kb", "_count", "_sum"):
            assert not info.name.endswith(suffix), info.name
        assert "run" not in info.labels or info.group == "run"
    names = [info.name for info in METRICS]
    assert sorted(set(names)) == sorted(names)


def test_every_family_is_exposed() -> None:
    """With everything on, each METRICS entry appears as a family, help included."""
    registry = CollectorRegistry()
    operator = pipe.export_metrics(registry, run_labels=True).create()
    operator.feed([ev("stdout", "x")])
    source_stats("test-family")
    server_stats()
    text = generate_latest(registry).decode()
    for info in METRICS:
        name = f"eventkit_{info.name}"
        assert f"# TYPE {name.removesuffix('_total')} {info.kind}" in text or (
            f"# TYPE {name} {info.kind}" in text
        ), name
        assert info.help in text


# Stage names and the runner's hook --------------------------------------------


@pytest.mark.parametrize(
    ("operator", "name"),
    [
        (Reorder(), "reorder"),
        (Select(["a"]), "only"),
        (Select(["a"], keep=False), "exclude"),
        (BufferBytes(), "buffer_bytes"),
        (TrackProgress(), "track_progress"),
        (ExportMetrics(), "export_metrics"),
        (ExportRunMetrics(), "export_metrics"),
        (LogEvents(Recorder()), "log_events"),
        (LogSummaries(Recorder(), SummaryTracker), "log_events"),
    ],
)
def test_stage_names(operator: Operator, name: str) -> None:
    """Operators are named as their pipe is."""
    assert name == stage_name(operator)


def test_stage_name_of_a_foreign_operator() -> None:
    """Any other operator is named after its class."""

    class Doubler(Select):
        pass

    assert "only" == stage_name(Doubler(["a"]))

    class Mine:
        def feed(self, event: Event) -> tuple[Event, ...]:
            return (event,)

    assert "mine" == stage_name(Mine())  # type: ignore[arg-type]


def test_chain_without_observer_counts_nothing() -> None:
    """No operator asks: no stats, and the chain feeds without counting."""
    chain = Chain([Reorder(), Select(["stdout"]), ExportMetrics()])
    assert chain.stats is None
    assert [ev("stdout", "x")] == chain.feed([ev("stdout", "x")])


def test_observer_is_called_once_with_the_stats() -> None:
    """Each operator's observe_chain gets the chain's stats when it is built."""
    seen: list[ChainStats] = []
    ops = [Reorder(), ExportMetrics(observe_chain=seen.append)]
    chain = Chain(ops)
    assert [chain.stats] == seen
    assert seen[0].operators == tuple(ops)
    assert [0, 0, 0] == seen[0].received()


class Passing:
    """A per-event operator (eventkit 0.1's kind): the chain wraps it."""

    timed = False

    def feed(self, event: Event) -> tuple[Event, ...]:
        return (event, event) if event.type == "double" else (event,)

    def flush(self) -> tuple[Event, ...]:
        return ()

    def deadline(self) -> None:
        return None

    def tick(self, now: float) -> tuple[Event, ...]:
        return ()


class Counting:
    """Wraps an operator and counts what goes in and out: the reference."""

    timed = False

    def __init__(self, inner: Operator | EventOperator) -> None:
        self.inner = batched(inner)
        self.received = 0
        self.sent = 0

    def _count(self, events: Iterable[Event]) -> list[Event]:
        out = list(events)
        self.sent += len(out)
        return out

    def feed(self, event: Event) -> list[Event]:
        self.received += 1
        return self._count(self.inner.feed([event]))

    def flush(self) -> list[Event]:
        return self._count(self.inner.flush())

    def deadline(self) -> float | None:
        return self.inner.deadline()

    def tick(self, now: float) -> list[Event]:
        return self._count(self.inner.tick(now))


def operators_for(window: int) -> list[Operator]:
    """Every kind of operator, with a small reorder window to force gaps."""
    return [
        Reorder(window=window, max_delay=None),
        Select(["stdout", "stderr", "completed", "double", "gap"]),
        BufferBytes(8, types=("stdout",)),
        Passing(),
        TrackProgress(),
        Select(["double"], keep=False),
        ExportMetrics(),
        LogEvents(Recorder()),
    ]


@st.composite
def streams(draw: st.DrawFn) -> list[Event]:
    """Events of two runs, shuffled, with duplicates, holes and odd types."""
    events = []
    for run in ("a", "b"):
        count = draw(st.integers(0, 30))
        for sequence in range(count):
            kind = draw(st.sampled_from(["stdout", "stderr", "result", "double"]))
            data = draw(st.text("ab€", max_size=12))
            events.append(ev(kind, data, sequence, run=run))
        if draw(st.booleans()):
            events.append(ev("completed", "", count, run=run, success=True))
    events = draw(st.permutations(events))
    duplicates = draw(st.lists(st.sampled_from(events), max_size=3)) if events else []
    dropped = draw(st.sets(st.integers(0, max(len(events) - 1, 0)), max_size=3))
    return [e for i, e in enumerate(events) if i not in dropped] + duplicates


@settings(max_examples=150, deadline=None)
@given(streams(), st.integers(1, 6), st.lists(st.integers(1, 8), min_size=1))
def test_chain_counts_match_counting(
    events: list[Event], window: int, sizes: list[int]
) -> None:
    """What the chain counts per batch equals counting every event at every step."""
    reference = [Counting(op) for op in operators_for(window)]
    observed = operators_for(window)
    stats: list[ChainStats] = []
    observed[6] = ExportMetrics(observe_chain=stats.append)
    checked = Chain(observed)
    plain = Chain(reference)  # type: ignore[arg-type]
    out = []
    expected_out: list[Event] = []
    actual_out: list[Event] = []
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(events):
            break
        batch = events[start : start + size]
        start += size
        for event in batch:
            expected_out.extend(plain.feed([event]))
        actual_out.extend(checked.feed(list(batch)))
        out.append(stats[0].received())
    assert expected_out == actual_out
    assert plain.flush() == checked.flush()
    received = stats[0].received()
    expected = [c.received for c in reference] + [reference[-1].sent]
    assert expected == received
    # Mid-stream values never went down.
    for before, after in itertools.pairwise(out):
        assert all(a <= b for a, b in zip(before, after, strict=True))


def test_counting_a_long_chain() -> None:
    """A chain of forty operators counts right."""

    class Doubling(Passing):
        def feed(self, event: Event) -> tuple[Event, ...]:
            return (event, event)

    stats: list[ChainStats] = []
    ops: list[Operator] = [Passing() for _ in range(40)]
    ops[5] = ExportMetrics(observe_chain=stats.append)
    ops[30] = Doubling()
    chain = Chain(ops)
    for index in range(5):
        chain.feed([ev("stdout", "x", index)])
    chain.flush()
    counts = stats[0].received()
    assert [5] * 31 + [10] * 10 == counts


def test_ticks_are_counted() -> None:
    """What a tick releases is counted as entering the operators after it."""
    now = [0.0]
    stats: list[ChainStats] = []
    chain = Chain(
        [
            Reorder(max_delay=1.0, clock=lambda: now[0]),
            BufferBytes(100, max_age=1.0, clock=lambda: now[0]),
            TrackProgress(),
            ExportMetrics(observe_chain=stats.append),
        ]
    )
    chain.feed([ev("stdout", "x")])
    chain.feed([ev("stdout", "x", 2)])  # held by reorder: 1 is missing
    assert [2, 1, 0, 0, 0] == stats[0].received()
    now[0] = 1.5
    chain.tick(now[0])  # reorder gives 1 up: gap, then 2; buffer ages out
    chain.tick(now[0] + 1.0)
    assert [2, 3, 3, 3, 3] == stats[0].received()
    chain.flush()
    assert [2, 3, 3, 4, 4] == stats[0].received()


async def test_finish_is_called_however_the_driver_ends() -> None:
    """The chain's stats are finished after a normal end and after a break."""
    stats: list[ChainStats] = []

    def stage() -> eventkit.Stage:
        return eventkit.Stage(
            "export_metrics", lambda: ExportMetrics(observe_chain=stats.append)
        )

    await eventkit.run(
        sources.iterate([ev("stdout", "x"), ev("stdout", "x", 1)]), stage()
    )
    assert stats[-1].finished
    xs = (
        sources.iterate([ev("stdout", "x"), ev("stdout", "x", 1), ev("stdout", "x", 2)])
        | stage()
    )
    async with xs.stream() as streamer:
        async for _ in streamer:
            break
    assert stats[-1].finished
    late: list[ChainStats] = []
    stats[-1].on_finish(late.append)
    assert [stats[-1]] == late


# Per-stage self-metrics ---------------------------------------------------------


async def test_stage_metrics_of_a_finished_pipeline() -> None:
    """Received, sent and dropped per stage, and each operator's counters."""
    registry = CollectorRegistry()
    events = [
        ev("started"),
        ev("stdout", "a" * 10, 1),  # split into aaaa, aaaa and aa
        ev("stdout", "b", 3),  # held until 2 comes
        ev("stdout", "c", 2),  # joins aa, then b fills the chunk: aacb
        ev("stdout", "c", 2),  # duplicate
        ev("stdout", "", 4),  # empty, no buffer to join: dropped by buffer
        ev("stdout", "d", 6),  # held
        ev("completed", "", 7, success=True),  # past the window: 5 given up
        ev("stdout", "late", 5),  # in the hole given up: late
    ]
    await eventkit.run(
        sources.iterate(events),
        pipe.reorder(max_delay=None, window=1),
        pipe.only("stdout", "completed", "gap"),
        pipe.buffer_bytes(4),
        pipe.track_progress(),
        pipe.export_metrics(registry),
    )
    samples = stage_samples(registry)
    expected = {
        # reorder: 9 in; 1 duplicate + 1 late dropped; 1 gap event added.
        'eventkit_stage_received_events_total{stage="0:reorder"}': 9,
        'eventkit_stage_sent_events_total{stage="0:reorder"}': 8,
        'eventkit_stage_dropped_events_total{reason="duplicate",stage="0:reorder"}': 1,
        'eventkit_stage_dropped_events_total{reason="late",stage="0:reorder"}': 1,
        'eventkit_reorder_gaps_total{stage="0:reorder"}': 1,
        'eventkit_reorder_missing_events_total{stage="0:reorder"}': 1,
        # only: started dropped.
        'eventkit_stage_received_events_total{stage="1:only"}': 8,
        'eventkit_stage_sent_events_total{stage="1:only"}': 7,
        'eventkit_stage_dropped_events_total{reason="filtered",stage="1:only"}': 1,
        # buffer_bytes(4): three chunks for size, "d" before completed.
        'eventkit_stage_received_events_total{stage="2:buffer_bytes"}': 7,
        'eventkit_stage_sent_events_total{stage="2:buffer_bytes"}': 6,
        'eventkit_stage_dropped_events_total{reason="empty",stage="2:buffer_bytes"}': 1,
        'eventkit_buffer_splits_total{stage="2:buffer_bytes"}': 1,
        # track_progress: the final report after completed.
        'eventkit_stage_received_events_total{stage="3:track_progress"}': 6,
        'eventkit_stage_sent_events_total{stage="3:track_progress"}': 7,
        'eventkit_stage_received_events_total{stage="4:export_metrics"}': 7,
        'eventkit_stage_sent_events_total{stage="4:export_metrics"}': 7,
    }
    assert expected == {key: samples[key] for key in expected}
    chunks = {
        key.split('reason="')[1].split('"')[0]: value
        for key, value in samples.items()
        if key.startswith("eventkit_buffer_chunks_total")
    }
    assert {"size": 3, "age": 0, "terminal": 1, "end": 0} == chunks
    assert samples['eventkit_stage_sent_events_total{stage="2:buffer_bytes"}'] == (
        sum(chunks.values()) + 2  # the gap and completed pass through
    )
    # Gauges belong to running chains only.
    assert not any("held_events" in key or "active_runs" in key for key in samples)


async def test_gauges_and_counts_while_running() -> None:
    """A scrape mid-run reads held events, pending bytes and active runs."""
    registry = CollectorRegistry()
    gate = Gate(
        [ev("started"), ev("stdout", "abc", 1), ev("stdout", "held", 3)],
        [ev("stdout", "x", 2), ev("completed", "", 4, success=True)],
    )
    stream = eventkit.EventStream(
        gate,
        (
            pipe.reorder(max_delay=None),
            pipe.buffer_bytes(100),
            pipe.track_progress(),
            pipe.export_metrics(registry),
        ),
    )
    task = asyncio.ensure_future(eventkit.run(stream))
    await gate.waiting.wait()
    await asyncio.sleep(0)
    samples = stage_samples(registry)
    assert 1 == samples['eventkit_reorder_held_events{stage="0:reorder"}']
    assert 3 == samples['eventkit_buffer_pending_bytes{stage="1:buffer_bytes"}']
    assert 1 == samples['eventkit_progress_active_runs{stage="2:track_progress"}']
    assert 3 == samples['eventkit_stage_received_events_total{stage="0:reorder"}']
    assert 2 == samples['eventkit_stage_sent_events_total{stage="0:reorder"}']
    gate.go.set()
    await task
    samples = stage_samples(registry)
    assert 5 == samples['eventkit_stage_sent_events_total{stage="0:reorder"}']
    assert "eventkit_reorder_held_events" not in str(samples)


async def test_stage_counters_add_up_and_never_decrease() -> None:
    """Runs of one stage list, one after the other or at once, add up."""
    registry = CollectorRegistry()
    stages = [pipe.only("stdout"), pipe.export_metrics(registry)]
    events = [ev("stdout", "x"), ev("stderr", "x", 1), ev("stdout", "x", 2)]
    previous: dict[str, float] = {}
    for _ in range(3):
        await eventkit.run(sources.iterate(events), *stages)
        gc.collect()
        samples = stage_samples(registry)
        for key, value in previous.items():
            assert value <= samples[key]
        previous = samples
    await asyncio.gather(
        eventkit.run(sources.iterate(events), *stages),
        eventkit.run(sources.iterate(events), *stages),
    )
    samples = stage_samples(registry)
    assert 15 == samples['eventkit_stage_received_events_total{stage="0:only"}']
    assert 10 == samples['eventkit_stage_sent_events_total{stage="0:only"}']
    assert (
        5
        == samples[
            'eventkit_stage_dropped_events_total{reason="filtered",stage="0:only"}'
        ]
    )


async def test_self_metrics_off() -> None:
    """self_metrics=False: no stage families, and the chain is not counted."""
    registry = CollectorRegistry()
    await eventkit.run(
        sources.iterate([ev("stdout", "x")]),
        pipe.only("stdout"),
        pipe.export_metrics(registry, self_metrics=False),
    )
    text = generate_latest(registry).decode()
    assert "eventkit_stage_" not in text
    assert "eventkit_source_" not in text
    assert 'eventkit_events_total{type="stdout"} 1.0' in text


async def test_only_the_fused_segment_is_counted() -> None:
    """A foreign aiostream pipe cuts the chain: stages before it are not counted."""
    import aiostream

    registry = CollectorRegistry()
    await eventkit.run(
        sources.iterate([ev("stdout", "x"), ev("stdout", "x", 1)]),
        pipe.reorder(),
        aiostream.pipe.map(lambda event: event),
        pipe.only("stdout"),
        pipe.export_metrics(registry),
    )
    samples = stage_samples(registry)
    assert 2 == samples['eventkit_stage_received_events_total{stage="0:only"}']
    assert not any("reorder" in key for key in samples)


async def test_a_chain_tracked_twice_counts_once() -> None:
    """Two export_metrics stages on one registry report the chain once."""
    registry = CollectorRegistry()
    await eventkit.run(
        sources.iterate([ev("stdout", "x"), ev("stdout", "x", 1)]),
        pipe.export_metrics(registry),
        pipe.export_metrics(registry),
    )
    samples = stage_samples(registry)
    key = 'eventkit_stage_received_events_total{stage="0:export_metrics"}'
    assert 2 == samples[key]
    # Each operator counts the events themselves, though.
    assert 4 == scrape(registry)['eventkit_events_total{type="stdout"}']


def test_a_chain_gone_without_finishing_is_dropped() -> None:
    """A chain collected without its driver's end leaves nothing live behind."""
    registry = CollectorRegistry()
    chain = Chain([pipe.export_metrics(registry).create()])
    chain.feed([ev("stdout", "x")])
    assert (
        1
        == stage_samples(registry)[
            'eventkit_stage_received_events_total{stage="0:export_metrics"}'
        ]
    )
    del chain
    gc.collect()
    assert {} == stage_samples(registry)


# Sources and the server ---------------------------------------------------------


def test_source_stats_are_per_kind_and_process_wide() -> None:
    """source_stats(kind) is one object per kind, shown in every registry."""
    stats = source_stats("test-kind")
    assert stats is source_stats("test-kind")
    assert isinstance(stats, SourceStats)
    stats.connections += 2
    stats.open_connections += 1
    stats.frames += 10
    stats.invalid_frames += 1
    stats.closed_before_complete += 1
    assert "test-kind" in repr(stats)
    registry = CollectorRegistry()
    collector_for(registry, self_metrics=True)
    samples = scrape(registry)
    label = '{source="test-kind"}'
    assert samples[f"eventkit_source_connections_total{label}"] >= 2
    assert samples[f"eventkit_source_open_connections{label}"] >= 1
    assert samples[f"eventkit_source_frames_total{label}"] >= 10
    assert samples[f"eventkit_source_invalid_frames_total{label}"] >= 1
    assert samples[f"eventkit_source_closed_before_complete_total{label}"] >= 1


def test_server_stats() -> None:
    """The server's gauges and counters are exposed, refusals by reason."""
    stats = server_stats()
    assert stats is server_stats()
    assert isinstance(stats, ServerStats)
    before = dict(stats.refusals)
    stats.running += 2
    stats.queued += 1
    stats.executions += 3
    stats.refuse("busy")
    try:
        registry = CollectorRegistry()
        collector_for(registry, self_metrics=True)
        samples = scrape(registry)
        assert samples["eventkit_server_running_executions"] >= 2
        assert samples["eventkit_server_queued_executions"] >= 1
        assert samples["eventkit_server_executions_total"] >= 3
        assert samples['eventkit_server_refusals_total{reason="busy"}'] == (
            before.get("busy", 0) + 1
        )
    finally:
        stats.running -= 2
        stats.queued -= 1


def test_server_gauges_from_tracked_admissions() -> None:
    """Tracked admission controls are read at scrape time, until untracked."""

    class Admission:
        running = 3
        waiting = 2

    stats = ServerStats()
    admission = Admission()
    stats.track(admission)
    stats.running = 1
    assert (4, 2) == stats.gauges()
    admission.running = 0
    assert (1, 2) == stats.gauges()
    stats.untrack(admission)
    stats.untrack(admission)  # twice: nothing happens
    assert (1, 0) == stats.gauges()
    registry = CollectorRegistry()
    collector_for(registry, self_metrics=True)
    tracked = Admission()
    server_stats().track(tracked)
    try:
        assert scrape(registry)["eventkit_server_queued_executions"] >= 2
    finally:
        server_stats().untrack(tracked)


def test_server_refusal_reasons_are_capped() -> None:
    """Past 32 reasons, refusals count as "other"."""
    stats = ServerStats()
    for index in range(40):
        stats.refuse(f"reason-{index}")
    stats.refuse("reason-0")
    assert 33 == len(stats.refusals)
    assert 8 == stats.refusals["other"]
    assert 2 == stats.refusals["reason-0"]


# Per-run series -----------------------------------------------------------------


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_metrics(
    registry: CollectorRegistry, clock: FakeClock, **options: Any
) -> ExportRunMetrics:
    """Return an ExportRunMetrics counted in ``registry``, on ``clock``."""
    operator = ExportRunMetrics(clock=clock, **options)
    collector_for(registry).track(operator)
    return operator


def run_samples(registry: CollectorRegistry) -> dict[str, float]:
    """Return the per-run samples and the series bookkeeping."""
    return {
        key: value
        for key, value in scrape(registry).items()
        if key.startswith(("eventkit_run_", "eventkit_labelled_runs"))
        and not key.startswith("eventkit_run_duration")
    }


def test_no_run_label_by_default() -> None:
    """export_metrics() exposes no series with a run label."""
    registry = CollectorRegistry()
    operator = pipe.export_metrics(registry).create()
    operator.feed([ev("stdout", "x", run="abc")])
    assert "abc" not in generate_latest(registry).decode()
    assert {} == run_samples(registry)


def test_run_series_while_live() -> None:
    """Events, bytes, start time and progress of each live run."""
    registry = CollectorRegistry()
    clock = FakeClock()
    operator = run_metrics(registry, clock)
    operator.feed([ev("started", run="a")])
    operator.feed([ev("stdout", "héllo", 1, run="a")])
    operator.feed([ev("progress", "", 2, run="a", percent=45.0)])
    operator.feed([ev("started", run="b")])
    assert {
        'eventkit_run_events_total{run="a"}': 2,
        'eventkit_run_events_total{run="b"}': 1,
        'eventkit_run_event_bytes_total{run="a"}': 6,
        'eventkit_run_event_bytes_total{run="b"}': 0,
        'eventkit_run_start_time_seconds{run="a"}': 1000.0,
        'eventkit_run_start_time_seconds{run="b"}': 1000.0,
        'eventkit_run_progress_ratio{run="a"}': 0.45,
        "eventkit_labelled_runs": 2,
        "eventkit_run_series_refused_total": 0,
    } == run_samples(registry)


def test_run_series_go_after_completion_and_ttl() -> None:
    """A completed run's series stay run_ttl seconds, then go."""
    registry = CollectorRegistry()
    clock = FakeClock()
    operator = run_metrics(registry, clock, run_ttl=5.0)
    operator.feed([ev("stdout", "x", run="a")])
    operator.feed([ev("completed", "", 1, run="a", success=True)])
    clock.now += 4.9
    assert 2 == run_samples(registry)['eventkit_run_events_total{run="a"}']
    clock.now += 0.2
    assert {"eventkit_labelled_runs": 0, "eventkit_run_series_refused_total": 0} == (
        run_samples(registry)
    )
    # The exporter skips them at once; the operator drops them on its next sweep.
    assert "a" in operator.runs
    operator.sweep()
    assert "a" not in operator.runs


def test_run_ttl_zero_removes_at_completion() -> None:
    """run_ttl=0: a completed run's series are gone right away."""
    registry = CollectorRegistry()
    operator = run_metrics(registry, FakeClock(), run_ttl=0.0)
    operator.feed([ev("stdout", "x", run="a")])
    operator.feed([ev("completed", "", 1, run="a")])
    assert 0 == run_samples(registry)["eventkit_labelled_runs"]


def test_idle_runs_expire() -> None:
    """A run silent for idle_ttl seconds loses its series; None keeps them."""
    registry = CollectorRegistry()
    clock = FakeClock()
    operator = run_metrics(registry, clock, idle_ttl=60.0)
    forever = run_metrics(registry, clock, idle_ttl=None)
    operator.feed([ev("stdout", "x", run="a")])
    forever.feed([ev("stdout", "x", run="b")])
    clock.now += 59.0
    operator.feed([ev("stdout", "x", 1, run="a")])
    clock.now += 59.0
    samples = run_samples(registry)
    assert 2 == samples['eventkit_run_events_total{run="a"}']
    clock.now += 2.0
    samples = run_samples(registry)
    assert 'eventkit_run_events_total{run="a"}' not in samples
    assert 1 == samples['eventkit_run_events_total{run="b"}']


def test_run_series_are_capped_and_refusals_counted_once() -> None:
    """Past max_run_series live runs, new runs are refused, each counted once."""
    registry = CollectorRegistry()
    clock = FakeClock()
    operator = run_metrics(registry, clock, max_run_series=2, run_ttl=1.0)
    for run in ("a", "b", "c", "c", "d"):
        operator.feed([ev("stdout", "x", run=run)])
    samples = run_samples(registry)
    assert 2 == samples["eventkit_labelled_runs"]
    assert 2 == samples["eventkit_run_series_refused_total"]
    assert {"a", "b"} == set(operator.runs)
    # Aggregates still count every event.
    assert 5 == operator.counts.events["stdout"]
    # A completed run frees its place once its TTL has passed.
    operator.feed([ev("completed", "", 1, run="a")])
    operator.feed([ev("completed", "", 1, run="c")])  # refused: forgotten now
    clock.now += 2.0
    operator.feed([ev("stdout", "x", run="e")])
    assert {"b", "e"} == set(operator.runs)
    assert 2 == run_samples(registry)["eventkit_run_series_refused_total"]


def test_run_series_sweep_periodically() -> None:
    """Expired series are dropped every few thousand events, with no new runs."""
    clock = FakeClock()
    operator = ExportRunMetrics(clock=clock, run_ttl=0.0)
    operator.feed([ev("stdout", "x", run="a")])
    operator.feed([ev("completed", "", 1, run="a")])
    for index in range(5000):
        operator.feed([ev("stdout", "x", index, run="b")])
    assert ["b"] == list(operator.runs)


def test_refused_counter_survives_the_operator() -> None:
    """The refused counter is a counter: it stays when the operator is gone."""
    registry = CollectorRegistry()
    operator = run_metrics(registry, FakeClock(), max_run_series=1)
    operator.feed([ev("stdout", "x", run="a")])
    operator.feed([ev("stdout", "x", run="b")])
    del operator
    gc.collect()
    samples = run_samples(registry)
    assert 1 == samples["eventkit_run_series_refused_total"]
    assert 0 == samples["eventkit_labelled_runs"]


@pytest.mark.parametrize(
    "options",
    [
        {"run_ttl": -1.0},
        {"run_ttl": float("nan")},
        {"idle_ttl": -1.0},
        {"max_run_series": 0},
    ],
)
def test_invalid_run_options(options: dict[str, Any]) -> None:
    """Negative TTLs and a cap below 1 are refused when the pipe is made."""
    with pytest.raises(ValueError, match=next(iter(options))):
        pipe.export_metrics(CollectorRegistry(), run_labels=True, **options)


async def test_run_labels_through_the_pipe() -> None:
    """export_metrics(run_labels=True) in a pipeline, with progress."""
    registry = CollectorRegistry()
    sink = sinks.collect()
    await eventkit.run(
        sources.iterate(
            [
                ev("started", run="a"),
                ev("stdout", "50%\n", 1, run="a"),
                ev("completed", "", 2, run="a", success=True),
            ]
        ),
        pipe.track_progress(),
        pipe.export_metrics(registry, run_labels=True),
        sink=sink,
    )
    samples = run_samples(registry)
    assert 3 == samples['eventkit_run_events_total{run="a"}']
    assert 0.5 == samples['eventkit_run_progress_ratio{run="a"}']
    assert 5 == len(sink.events)
