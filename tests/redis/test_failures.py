"""Tests for :mod:`eventkit.sources.redis.failures`, and poison runs through a worker.

The policy first, without a server; then workers meeting poison runs and
failing sinks against a real ``redis-server``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
import redis.asyncio
from structlog.testing import capture_logs

import eventkit
from eventkit import sinks, sources
from eventkit.exceptions import SinkError
from eventkit.protocol import redis_entries as codec
from eventkit.protocol.redis_entries import DeadLetter
from eventkit.sources.redis.failures import (
    OUTAGE,
    POISON,
    RETRY,
    UNATTRIBUTED,
    FailurePolicy,
    delays,
)
from eventkit.streams import Stage
from tests.factories import ev
from tests.redis.streams import eventually, run_events

if TYPE_CHECKING:
    from eventkit.events import Event
    from eventkit.sources.redis.source import RedisStreamSource

    from .conftest import RedisServer


def sink_error(run: str) -> SinkError:
    """What ``eventkit.run`` raises when the sink fails on an event of ``run``."""
    error = SinkError("sink failed", [ev(run=run)])
    error.__cause__ = OSError("disk full")
    return error


def no_jitter() -> float:
    return 0.0


# The policy, without a server ----------------------------------------------------


def test_operator_failure_charges_the_batch_then_the_run_alone() -> None:
    """Charged with its batch once, then alone twice: poison at the third."""
    policy = FailurePolicy(3)
    error = ValueError("boom")
    first = policy.failed(["a", "p", "b"], error, sink=False)
    assert (RETRY, ("a", "p", "b"), 1) == first[:3]
    assert all(policy.suspect(run) for run in "apb")
    # The neighbours go through alone, and finish.
    for run in "ab":
        policy.passed(run)
        policy.finished(run)
    assert not policy.suspect("a")
    assert (RETRY, ("p",), 2) == policy.failed(["p"], error, sink=False)[:3]
    poison = policy.failed(["p"], error, sink=False)
    assert (POISON, ("p",), 3, 0.0) == poison
    assert not policy.suspect("p")
    assert policy.any_condemned
    assert DeadLetter(
        "processing_failed",
        ((b"error_type", b"ValueError"), (b"error", b"boom"), (b"deliveries", b"3")),
    ) == policy.condemned("p")
    assert policy.condemned("a") is None


def test_never_poison_while_charged_with_others() -> None:
    """A run is poison only when the last failure was its own alone."""
    policy = FailurePolicy(1)
    assert RETRY == policy.failed(["a", "b"], ValueError(), sink=False).outcome
    assert RETRY == policy.failed(["a", "b"], ValueError(), sink=False).outcome
    policy.passed("a")
    policy.finished("a")
    assert POISON == policy.failed(["b"], ValueError(), sink=False).outcome
    assert policy.condemned("a") is None


def test_operator_failing_for_every_run_is_an_outage() -> None:
    """Each run alone fails in turn, nothing through: never poison.

    The runs wait, and go least recently failed first: the failing pipeline
    meets another run each time.
    """
    policy = FailurePolicy(2)
    assert RETRY == policy.failed(["a", "b", "c"], ValueError(), sink=False).outcome
    assert not policy.waiting("a")
    for run in "abc":
        assert OUTAGE == policy.failed([run], ValueError(), sink=False).outcome
        assert policy.waiting(run)
    met = []
    for _ in range(4):
        first = policy.least_recent(["c", "b", "a"])[0]
        met.append(first)
        assert OUTAGE == policy.failed([first], ValueError(), sink=False).outcome
    assert ["a", "b", "c", "a"] == met
    assert ["b", "c", "a"] == policy.least_recent("abc")
    assert not policy.any_condemned


def test_sink_failure_on_one_run_while_others_go_through() -> None:
    """The sink fails on one run, takes the others: that run is poison."""
    policy = FailurePolicy(3)
    assert (RETRY, ("p",), 1) == policy.failed(["p"], sink_error("p"), sink=True)[:3]
    policy.passed()
    policy.finished("a")
    assert (RETRY, ("p",), 2) == policy.failed(["p"], sink_error("p"), sink=True)[:3]
    # Nothing else left to try: the other runs went through since its first
    # failure, so the sink works.
    assert (POISON, ("p",), 3) == policy.failed(["p"], sink_error("p"), sink=True)[:3]
    why = policy.condemned("p")
    assert why is not None
    assert (b"error_type", b"OSError") in why.fields
    assert (b"error", b"disk full") in why.fields


def test_sink_failing_for_every_run_is_an_outage() -> None:
    """Failures on run after run with nothing taken: never poison; they wait."""
    policy = FailurePolicy(2, jitter=no_jitter)
    outcomes = [
        policy.failed([run], sink_error(run), sink=True).outcome for run in "abcabcabca"
    ]
    assert [RETRY] + [OUTAGE] * 9 == outcomes
    assert not policy.any_condemned
    assert all(map(policy.waiting, "abc"))


def test_sink_failing_on_the_only_run_is_an_outage() -> None:
    """The same run again and again, nothing else taken since: no evidence."""
    policy = FailurePolicy(2)
    outcomes = [policy.failed(["a"], sink_error("a"), sink=True) for _ in range(5)]
    assert [RETRY] + [OUTAGE] * 4 == [failure.outcome for failure in outcomes]
    assert not policy.any_condemned
    # Its own batches going through are no evidence either.
    policy.passed("a")
    assert OUTAGE == policy.failed(["a"], sink_error("a"), sink=True).outcome


def test_sink_outage_after_a_run_failed_once() -> None:
    """A run that failed alone once is not made poison by an outage after."""
    policy = FailurePolicy(3)
    policy.failed(["a"], sink_error("a"), sink=True)
    policy.passed()
    # The outage: the sink fails on "a", then on "b" with nothing taken.
    assert RETRY == policy.failed(["a"], sink_error("a"), sink=True).outcome
    assert OUTAGE == policy.failed(["b"], sink_error("b"), sink=True).outcome
    assert OUTAGE == policy.failed(["a"], sink_error("a"), sink=True).outcome
    assert not policy.any_condemned


def test_unattributed_failure_counts_nothing() -> None:
    """A failure with no batch in flight is tied to no run."""
    policy = FailurePolicy(1)
    failure = policy.failed([], ValueError(), sink=False)
    assert (UNATTRIBUTED, (), 0) == failure[:3]
    assert 0 == policy.suspects


def test_delays_grow_and_start_over_once_a_batch_passes() -> None:
    """0.1 s doubling up to 30 s while failures follow; back to 0.1 s after."""
    policy = FailurePolicy(100, jitter=no_jitter)
    seen = [policy.failed(["a"], ValueError(), sink=False).delay for _ in range(11)]
    assert [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 15.0, 15.0] == seen
    policy.passed()
    assert 0.05 == policy.failed(["a"], ValueError(), sink=False).delay
    assert [0.1, 0.2] == [next(d) for d in [delays(0.1, jitter=lambda: 1.0)] * 2]


def test_memory_is_bounded() -> None:
    """Suspects and poison runs: the oldest forgotten past ``remembered``."""
    policy = FailurePolicy(1, remembered=2)
    for run in "abc":
        assert POISON == policy.failed([run], ValueError(), sink=False).outcome
        policy.passed()
    assert [None, DeadLetter] == [
        None if why is None else type(why) for why in map(policy.condemned, "ac")
    ]
    policy.failed(["d", "e", "f"], ValueError(), sink=False)
    assert 2 == policy.suspects
    assert not policy.suspect("d")
    assert not policy.waiting("d")
    assert ["d", "e"] == policy.least_recent(["d", "e"])


def test_max_deliveries_checked() -> None:
    """max_deliveries is a positive integer."""
    for wrong in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_deliveries"):
            FailurePolicy(wrong)  # type: ignore[arg-type]


# Through a worker, against a server ---------------------------------------------

#: Short times, so that the tests do not wait.
BLOCK_MS = 100
CLAIM_IDLE_MS = 600


def source(url: str, **options: Any) -> RedisStreamSource:
    """A source of the stream ``s`` in group ``g``, with the test's short times."""
    options.setdefault("block_ms", BLOCK_MS)
    options.setdefault("claim_idle_ms", CLAIM_IDLE_MS)
    return sources.redis_stream(url, "s", group="g", consumer="one", **options)


class Poison:
    """An operator that raises on stdout reading ``poison``; counts its meetings."""

    batched = True
    timed = False
    met: ClassVar[list[str]] = []

    def feed(self, events: list[Event]) -> list[Event]:
        for event in events:
            if event.data == "poison":
                Poison.met.append(event.run)
                raise ValueError(f"cannot take {event.run}")
        return events

    def flush(self) -> list[Event]:
        return []

    def deadline(self) -> float | None:
        return None

    def tick(self, now: float) -> list[Event]:
        return []


async def work(src: RedisStreamSource, *stages: Any, sink: sinks.Sink) -> None:
    """The loop ``eventkit worker`` runs: again after each failure, until stopped."""
    while True:
        try:
            await eventkit.run(src, *stages, sink=sink)
            return
        except Exception as exc:
            await asyncio.sleep(src.failed(exc))


async def pending(client: redis.asyncio.Redis) -> int:
    info: Any = await client.xpending("s", "g")
    count: int = info["pending"]
    return count


async def read_all(client: redis.asyncio.Redis) -> bool:
    """Tell whether group ``g`` read every entry of ``s`` and acknowledged it."""
    groups: Any = await client.xinfo_groups("s")
    last: Any = await client.xrevrange("s", count=1)
    return (
        bool(groups)
        and groups[0]["last-delivered-id"] == last[0][0]
        and await pending(client) == 0
    )


def poisoned(run: str) -> list[Event]:
    """A run whose stdout makes :class:`Poison` raise."""
    events = run_events(run, 1)
    events[1] = ev(data="poison", sequence=1, run=run, timestamp=1.0)
    return events


async def test_poison_run_dead_lettered_after_three_meetings(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """An operator raising on a run: dead-lettered the third time; neighbours go on.

    The three runs come in one read, so one batch: the first failure is
    charged to all three, which then go alone; the neighbours go through
    and are acknowledged, the poison run fails twice more, alone.
    """
    good_a, poison, good_b = run_events("a", 2), poisoned("p"), run_events("b", 2)
    Poison.met.clear()
    delivered: list[Event] = []
    src = source(redis_server.url)
    async with asyncio.timeout(20):
        await eventkit.run(
            sources.iterate(good_a + poison + good_b),
            sink=sinks.redis_stream(redis_server.url, "s"),
        )
        with capture_logs() as logs:
            task = asyncio.create_task(
                work(src, Stage("poison", Poison), sink=sinks.call(delivered.append))
            )
            await eventually(lambda: read_all(client))
            # Later runs are processed as usual.
            later = run_events("c", 1)
            await eventkit.run(
                sources.iterate(later), sink=sinks.redis_stream(redis_server.url, "s")
            )
            await eventually(lambda: read_all(client))
            src.stop()
            await task
    assert ["p", "p", "p"] == Poison.met
    by_run: dict[str, list[Event]] = {}
    for event in delivered:
        by_run.setdefault(event.run, []).append(event)
    # Once whole each: the first batch failed before the sink saw any of it.
    assert {"a": good_a, "b": good_b, "c": later} == by_run
    dead: Any = await client.xrange("s:dead")
    assert len(poison) == len(dead)
    for (_, fields), event in zip(dead, poison, strict=True):
        assert b"s" == fields[b"stream"]
        assert b"processing_failed" == fields[b"reason"]
        assert b"ValueError" == fields[b"error_type"]
        assert b"cannot take p" == fields[b"error"]
        assert b"3" == fields[b"deliveries"]
        assert event == codec.decode({codec.FIELD: fields[codec.FIELD]})
    events = [log["event"] for log in logs]
    assert 2 == events.count("redis_pipeline_failed")
    assert 1 == events.count("redis_run_poisoned")


async def test_sink_failing_for_one_run_dead_letters_it(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A sink raising on one run's events while it takes the others."""
    runs = {run: run_events(run, 2) for run in ("a", "p", "b")}
    tries: list[int] = []

    def refuse_p(event: Event) -> None:
        if event.run == "p":
            tries.append(event.sequence)
            raise OSError("no room for p")

    src = source(redis_server.url)
    async with asyncio.timeout(20):
        await eventkit.run(
            sources.iterate([e for events in runs.values() for e in events]),
            sink=sinks.redis_stream(redis_server.url, "s"),
        )
        with capture_logs():
            task = asyncio.create_task(work(src, sink=sinks.call(refuse_p)))
            await eventually(lambda: read_all(client))
            src.stop()
            await task
    assert [0, 0, 0] == tries
    dead: Any = await client.xrange("s:dead")
    assert 4 == len(dead)
    assert {b"OSError"} == {fields[b"error_type"] for _, fields in dead}
    assert {b"no room for p"} == {fields[b"error"] for _, fields in dead}


async def test_sink_outage_is_retried_never_dead_lettered(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A sink failing for every run, for a while: retried until it takes them."""
    runs = {f"r{n}": run_events(f"r{n}", 1) for n in range(4)}
    failures = 0
    delivered: list[Event] = []

    def down_for_a_while(event: Event) -> None:
        nonlocal failures
        if failures < 4:
            failures += 1
            raise ConnectionError("down")
        delivered.append(event)

    src = source(redis_server.url, max_deliveries=2)
    async with asyncio.timeout(20):
        await eventkit.run(
            sources.iterate([e for events in runs.values() for e in events]),
            sink=sinks.redis_stream(redis_server.url, "s"),
        )
        with capture_logs() as logs:
            task = asyncio.create_task(work(src, sink=sinks.call(down_for_a_while)))
            await eventually(lambda: read_all(client))
            src.stop()
            await task
    assert 0 == await client.exists("s:dead")
    assert set(runs) == {event.run for event in delivered}
    for run, events in runs.items():
        assert events == [event for event in delivered if event.run == run]
    assert "redis_sink_outage" in [log["event"] for log in logs]
    assert "redis_run_poisoned" not in [log["event"] for log in logs]


async def test_failed_raises_the_sources_own_error(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """An error of the source itself is no failure of the pipeline: raised again."""
    await client.config_set("requirepass", "secret")
    wrong = redis_server.url.replace("redis://", "redis://:wrong@")
    src = source(wrong)
    async with asyncio.timeout(5):
        with pytest.raises(redis.exceptions.AuthenticationError) as caught:
            await eventkit.run(src, sink=sinks.collect())
        with pytest.raises(redis.exceptions.AuthenticationError):
            src.failed(caught.value)


async def test_sink_failing_on_a_lone_run_waits_for_evidence(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """The sink fails on the only run there is: an outage, until others go through.

    Meanwhile the run waits behind new entries: a later run is processed and
    acknowledged; then, the sink having taken it, the lone run is poison.
    """
    lone, later = run_events("p", 1), run_events("n", 1)

    def refuse_p(event: Event) -> None:
        if event.run == "p":
            raise OSError("no room for p")

    src = source(redis_server.url)
    async with asyncio.timeout(20):
        await eventkit.run(
            sources.iterate(lone), sink=sinks.redis_stream(redis_server.url, "s")
        )
        with capture_logs() as logs:
            task = asyncio.create_task(work(src, sink=sinks.call(refuse_p)))
            await eventually(
                lambda: [log["event"] for log in logs].count("redis_sink_outage") >= 2
            )
            assert 0 == await client.exists("s:dead")
            await eventkit.run(
                sources.iterate(later), sink=sinks.redis_stream(redis_server.url, "s")
            )
            await eventually(lambda: read_all(client))
            src.stop()
            await task
    dead: Any = await client.xrange("s:dead")
    assert [b"p"] * 3 == [
        codec.decode({codec.FIELD: fields[codec.FIELD]}).run.encode()
        for _, fields in dead
    ]
    assert "redis_run_poisoned" in [log["event"] for log in logs]


class FailingTimer:
    """An operator whose timer raises once, 50 ms after a batch: between batches.

    The source waits in a read (``BLOCK`` 100 ms) by then.
    """

    batched = True
    fired = False

    def __init__(self) -> None:
        self.due: float | None = None

    def feed(self, events: list[Event]) -> list[Event]:
        if not FailingTimer.fired:
            self.due = time.monotonic() + 0.05
        return events

    def flush(self) -> list[Event]:
        return []

    def deadline(self) -> float | None:
        return self.due

    def tick(self, now: float) -> list[Event]:
        self.due = None
        FailingTimer.fired = True
        raise RuntimeError("timer")


async def test_failure_with_no_batch_in_flight_charges_no_run(
    redis_server: RedisServer, client: redis.asyncio.Redis
) -> None:
    """A stage's timer failing between batches: no run charged, all tried again."""
    events = run_events("a", 2)
    delivered: list[Event] = []
    FailingTimer.fired = False
    src = source(redis_server.url)
    async with asyncio.timeout(20):
        await eventkit.run(
            sources.iterate(events), sink=sinks.redis_stream(redis_server.url, "s")
        )
        with capture_logs() as logs:
            task = asyncio.create_task(
                work(
                    src, Stage("timer", FailingTimer), sink=sinks.call(delivered.append)
                )
            )
            await eventually(lambda: read_all(client))
            src.stop()
            await task
    assert FailingTimer.fired
    failed = [log for log in logs if log["event"] == "redis_pipeline_failed"]
    assert [0] == [log["charged"] for log in failed]
    assert events == delivered[-len(events) :]
    assert 0 == await client.exists("s:dead")
