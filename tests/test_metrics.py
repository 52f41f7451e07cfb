"""Tests for :mod:`eventkit.metrics`, through :func:`eventkit.pipe.export_metrics`."""

from __future__ import annotations

import asyncio
import gc
import re
import weakref
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import eventkit
from eventkit import pipe, sources
from eventkit.metrics import EventMetricsCollector, collector_for
from eventkit.operators.metrics import DURATION_BUCKETS, ExportMetrics
from tests.factories import ev

if TYPE_CHECKING:
    from eventkit.events import Event

LE = [*(repr(float(bound)) for bound in DURATION_BUCKETS), "+Inf"]


def one_run(
    run: str = "r", *, seconds: float = 0.3, success: bool = True
) -> list[Event]:
    """Return the events of one run lasting ``seconds`` by its execution_time."""
    return [
        ev("started", run=run, timestamp=100.0),
        ev("stdout", "hello\n", run=run),
        ev("stdout", "é€😀", run=run),
        ev("stderr", "warn\n", run=run),
        ev("resource_limit", run=run, limit="memory"),
        ev("error", "Traceback", run=run, code="EXECUTION_FAILED"),
        ev("result", run=run, exit_code=0, execution_time=seconds),
        ev("completed", run=run, timestamp=200.0, success=success),
    ]


#: The families of the event counts, in any namespace; the self-metrics and
#: per-run series are tested in test_observability.py.
EVENT_FAMILY = re.compile(
    r"[a-z]+_(events_total|event_bytes_total|runs_total|resource_limits_total"
    r"|errors_total|run_duration_seconds_(bucket|sum|count))"
)


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    """Return the event count samples, keyed by name and labels."""
    samples = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            if EVENT_FAMILY.fullmatch(key.partition("{")[0]):
                samples[key] = float(value)
    return samples


async def run_through(registry: CollectorRegistry, events: list[Event]) -> None:
    """Run ``events`` through ``export_metrics(registry)``."""
    await eventkit.run(sources.iterate(events), pipe.export_metrics(registry))


async def test_exposition_text() -> None:
    """A pipeline's counts appear as eventkit_* counters on a fresh registry."""
    registry = CollectorRegistry()
    await run_through(registry, one_run())
    text = generate_latest(registry).decode()
    for line in [
        "# TYPE eventkit_events_total counter",
        'eventkit_events_total{type="stdout"} 2.0',
        'eventkit_events_total{type="completed"} 1.0',
        'eventkit_event_bytes_total{type="stdout"} 15.0',
        'eventkit_event_bytes_total{type="stderr"} 5.0',
        'eventkit_runs_total{outcome="success"} 1.0',
        'eventkit_resource_limits_total{limit="memory"} 1.0',
        'eventkit_errors_total{code="EXECUTION_FAILED"} 1.0',
        "# TYPE eventkit_run_duration_seconds histogram",
        "eventkit_run_duration_seconds_count 1.0",
        "eventkit_run_duration_seconds_sum 0.3",
    ]:
        assert line in text.splitlines(), line


async def test_counters() -> None:
    """Every counter sample matches what the pipeline saw."""
    registry = CollectorRegistry()
    await run_through(registry, [*one_run("a"), *one_run("b", success=False)])
    expected = {
        'eventkit_events_total{type="started"}': 2.0,
        'eventkit_events_total{type="stdout"}': 4.0,
        'eventkit_events_total{type="stderr"}': 2.0,
        'eventkit_events_total{type="resource_limit"}': 2.0,
        'eventkit_events_total{type="error"}': 2.0,
        'eventkit_events_total{type="result"}': 2.0,
        'eventkit_events_total{type="completed"}': 2.0,
        'eventkit_event_bytes_total{type="stdout"}': 30.0,
        'eventkit_event_bytes_total{type="stderr"}': 10.0,
        'eventkit_event_bytes_total{type="error"}': 18.0,
        'eventkit_runs_total{outcome="failure"}': 1.0,
        'eventkit_runs_total{outcome="success"}': 1.0,
        'eventkit_resource_limits_total{limit="memory"}': 2.0,
        'eventkit_errors_total{code="EXECUTION_FAILED"}': 2.0,
    }
    samples = scrape(registry)
    assert expected == {k: v for k, v in samples.items() if "duration" not in k}


async def test_histogram() -> None:
    """Duration buckets are cumulative with le bounds, +Inf equal to the count."""
    registry = CollectorRegistry()
    runs = [("a", 0.02), ("b", 0.3), ("c", 0.5), ("d", 7.0), ("e", 5000.0)]
    await run_through(
        registry,
        [event for run, seconds in runs for event in one_run(run, seconds=seconds)],
    )
    samples = scrape(registry)
    buckets = [
        samples[f'eventkit_run_duration_seconds_bucket{{le="{le}"}}'] for le in LE
    ]
    expected = [sum(1 for _, s in runs if s <= bound) for bound in DURATION_BUCKETS]
    assert [*expected, 5] == buckets
    assert samples["eventkit_run_duration_seconds_count"] == 5
    assert pytest.approx(5007.82) == samples["eventkit_run_duration_seconds_sum"]


async def test_histogram_from_timestamps() -> None:
    """Runs without execution_time are timed by their started and completed."""
    registry = CollectorRegistry()
    await run_through(
        registry,
        [ev("started", timestamp=100.0), ev("completed", timestamp=112.5)],
    )
    samples = scrape(registry)
    assert samples["eventkit_run_duration_seconds_sum"] == 12.5
    assert samples['eventkit_run_duration_seconds_bucket{le="10.0"}'] == 0
    assert samples['eventkit_run_duration_seconds_bucket{le="30.0"}'] == 1


async def test_fresh_registry_exposes_zeros() -> None:
    """Before any event, the families exist and the histogram is all zeros."""
    registry = CollectorRegistry()
    pipe.export_metrics(registry)
    text = generate_latest(registry).decode()
    assert "# TYPE eventkit_events_total counter" in text
    samples = scrape(registry)
    assert all(value == 0 for value in samples.values())
    assert samples['eventkit_run_duration_seconds_bucket{le="+Inf"}'] == 0
    assert not any(key.startswith("eventkit_events_total") for key in samples)


async def test_two_pipelines_add_up() -> None:
    """Pipelines on one registry, one after the other or at once, add up."""
    registry = CollectorRegistry()
    await run_through(registry, one_run("a"))
    await asyncio.gather(
        run_through(registry, one_run("b", seconds=2.0)),
        run_through(registry, one_run("c", success=False)),
    )
    samples = scrape(registry)
    assert samples['eventkit_events_total{type="stdout"}'] == 6
    assert samples['eventkit_runs_total{outcome="success"}'] == 2
    assert samples['eventkit_runs_total{outcome="failure"}'] == 1
    assert samples["eventkit_run_duration_seconds_count"] == 3
    assert pytest.approx(2.6) == samples["eventkit_run_duration_seconds_sum"]


async def test_one_stage_run_twice_adds_up() -> None:
    """Each run of the same stage counts into the same metrics."""
    registry = CollectorRegistry()
    stage = pipe.export_metrics(registry)
    await eventkit.run(sources.iterate(one_run("a")), stage)
    await eventkit.run(sources.iterate(one_run("b")), stage)
    assert scrape(registry)['eventkit_runs_total{outcome="success"}'] == 2


async def test_live_counts_show_at_scrape() -> None:
    """A scrape reads the counts of an operator still running."""
    registry = CollectorRegistry()
    operator = pipe.export_metrics(registry).create()
    assert isinstance(operator, ExportMetrics)
    operator.feed([ev("stdout", "x")])
    assert scrape(registry)['eventkit_events_total{type="stdout"}'] == 1
    operator.feed([ev("stdout", "yz")])
    assert scrape(registry)['eventkit_events_total{type="stdout"}'] == 2
    assert scrape(registry)['eventkit_event_bytes_total{type="stdout"}'] == 3


async def test_counts_survive_the_operator() -> None:
    """After an operator is garbage-collected its counts remain."""
    registry = CollectorRegistry()
    operator = pipe.export_metrics(registry).create()
    for event in one_run():
        operator.feed([event])
    ref = weakref.ref(operator)
    alive = scrape(registry)
    del operator
    gc.collect()
    assert ref() is None
    assert alive == scrape(registry)
    assert alive == scrape(registry)


async def test_counters_never_decrease() -> None:
    """Scrapes between runs, collections and new runs never see a counter drop."""
    registry = CollectorRegistry()
    previous: dict[str, float] = {}
    for index in range(4):
        await run_through(registry, one_run(f"run-{index}", seconds=index))
        if index % 2:
            gc.collect()
        samples = scrape(registry)
        for key, value in previous.items():
            assert value <= samples[key], key
        previous = samples
    assert previous['eventkit_runs_total{outcome="success"}'] == 4


async def test_custom_namespace() -> None:
    """A namespace replaces the eventkit prefix of every metric."""
    registry = CollectorRegistry()
    await eventkit.run(
        sources.iterate(one_run()), pipe.export_metrics(registry, namespace="sandbox")
    )
    samples = scrape(registry)
    assert samples['sandbox_events_total{type="stdout"}'] == 2
    assert samples['sandbox_event_bytes_total{type="stdout"}'] == 15
    assert samples['sandbox_runs_total{outcome="success"}'] == 1
    assert samples['sandbox_resource_limits_total{limit="memory"}'] == 1
    assert samples["sandbox_run_duration_seconds_count"] == 1
    assert not any(key.startswith("eventkit_") for key in samples)


async def test_namespaces_are_separate() -> None:
    """Two namespaces on one registry count their own pipelines."""
    registry = CollectorRegistry()
    await run_through(registry, one_run("a"))
    await eventkit.run(
        sources.iterate(one_run("b") + one_run("c")),
        pipe.export_metrics(registry, namespace="other"),
    )
    samples = scrape(registry)
    assert samples['eventkit_runs_total{outcome="success"}'] == 1
    assert samples['other_runs_total{outcome="success"}'] == 2


async def test_registries_are_separate() -> None:
    """Counts in one registry do not show in another."""
    first, second = CollectorRegistry(), CollectorRegistry()
    await run_through(first, one_run("a"))
    await run_through(second, one_run("b") + one_run("c"))
    assert scrape(first)['eventkit_runs_total{outcome="success"}'] == 1
    assert scrape(second)['eventkit_runs_total{outcome="success"}'] == 2


def test_one_collector_per_registry_and_namespace() -> None:
    """``collector_for`` registers one collector per (registry, namespace)."""
    registry = CollectorRegistry()
    collector = collector_for(registry)
    assert isinstance(collector, EventMetricsCollector)
    assert collector is collector_for(registry)
    assert collector is collector_for(registry, "eventkit")
    other = collector_for(registry, "other")
    assert other is not collector
    assert other.namespace == "other"
    assert collector is not collector_for(CollectorRegistry())


@pytest.mark.parametrize("namespace", ["", "1abc", "has-dash", "sp ace"])
def test_invalid_namespace_is_refused(namespace: str) -> None:
    """A namespace that is not a valid metric name raises ValueError."""
    with pytest.raises(ValueError, match="namespace"):
        pipe.export_metrics(CollectorRegistry(), namespace=namespace)


async def test_events_pass_through_unchanged() -> None:
    """export_metrics hands every event on as it came."""
    sink = eventkit.sinks.collect()
    events = one_run()
    await eventkit.run(
        sources.iterate(events), pipe.export_metrics(CollectorRegistry()), sink=sink
    )
    assert events == sink.events
