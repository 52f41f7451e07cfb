"""Redis Streams: eventkit's sink and source against raw redis-py loops.

End to end through a local ``redis-server`` (127.0.0.1, a free port, a
temporary directory, ``--save '' --appendonly no``: throughput, not
durability): a producer process appends ``N`` events to a stream while
consumer processes read them as one consumer group and acknowledge them.
Producer and consumers run at the same time, each in a process of its own,
so that they can use the machine's cores; nothing is pinned (the server, the
producer and up to three consumers share the cores, the report says how
many). Variants, interleaved round-robin after one warm-up round, on a
``FLUSHALL``-ed server, with new processes each time:

(raw/1)       redis-py's asyncio client (hiredis), the client eventkit uses,
              with its defaults: the producer sends the pre-encoded eventkit
              JSON of each event (one field ``event``) as
              ``pipeline.xadd(...)``, ``execute()`` every 500 events (the
              eventkit sink's ``batch_size``); one consumer loops on
              ``xreadgroup(COUNT 500 BLOCK 1000)`` and ``xack`` of each batch,
              decoding nothing;
(eventkit/1)  the producer runs ``eventkit.run(sources.iterate(events),
              sink=sinks.redis_stream(url, stream))``, the consumer
              ``eventkit.run(sources.redis_stream(url, stream, group=...,
              consumer=...), sink=<a sink counting the events>)`` with the
              defaults, stopped with ``stop()`` once the run is over (the
              source acknowledges a run's entries once its ``completed``
              event has passed the sink);
(raw/3)       as (raw/1) with three consumer processes, one group, one key;
(eventkit/3)  as (eventkit/1) with three worker processes and ``shards=3`` on
              both sides: each shard has one owner at a time, so three
              workers need at least three shards to all have work. The
              workers start before the producer and are given time to share
              the shards out (leases), as long-running workers would have.

The clock runs from the producer's first ``XADD`` (raw) or its call to
``eventkit.run`` (eventkit) to the moment the parent process sees all ``N``
events delivered and none pending in the group: it polls the consumers'
counts (shared memory) every millisecond, then ``XPENDING`` until no entry is
pending, the same way for every variant. All processes read the same
monotonic clock. events/s = N / that time. ``end_seen_late_ms`` (under
``detail``) gives how much later than the raw consumers' own last ``XACK``
the parent saw the end. Every run must deliver exactly ``N`` events and
leave no entry pending or unread, else the benchmark raises.

The events are :func:`bench.data.synthetic_events` as eventkit JSON, runs of
200 events interleaved (1 % displaced by up to 8 places, as they come),
keeping only the runs completed within ``N``.

Where the time goes, per event: the CPU time (``time.process_time``) of
the producer and of the consumers together, from the start signal to the
end, and the server's (``INFO cpu``); under ``detail``, the server's calls
per command (``INFO commandstats``: the round trips) per 1000 events and the
producer's own time (when it is the whole time, the producer is the
bottleneck). The targets, eventkit/raw >= 0.7 with 1 and with 3 workers,
compare the medians; the ratios of the best runs are in ``info``.

Run it alone with ``python -m bench.redis [events] [repetitions]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import redis
import redis.asyncio

import eventkit
from bench.data import synthetic_events
from eventkit import sinks, sources
from eventkit.logging import configure
from eventkit.protocol import jsonl
from eventkit.protocol.redis_entries import lease_key
from eventkit.sinks import Sink

if TYPE_CHECKING:
    import ctypes
    from collections.abc import Callable, Coroutine, Iterator
    from multiprocessing.synchronize import Barrier, Event as MPEvent

    from eventkit.events import Event

STREAM: Final = "bench:events"
GROUP: Final = "bench"
#: The eventkit sink's ``batch_size`` and the source's ``count`` defaults.
BATCH: Final = 500
#: The eventkit source's ``block_ms`` default.
BLOCK_MS: Final = 1000
#: Shards on both sides with three workers: one per worker.
SHARDS: Final = 3
#: eventkit's rate over raw's, at least, with 1 and with 3 workers.
TARGET: Final = 0.7
#: How often the parent looks whether all events were delivered (seconds).
POLL: Final = 0.001
#: How often an eventkit worker looks whether to stop: outside the timing.
WATCH: Final = 0.01
#: Seconds the eventkit workers get to share the shards out.
SETTLE: Final = 30.0
#: Seconds a run may take before the benchmark gives up on it.
TIMEOUT: Final = 120.0

VARIANTS: Final = {
    "raw/1": "redis-py",
    "eventkit/1": "eventkit",
    "raw/3": "redis-py",
    "eventkit/3": f"eventkit, {SHARDS} shards",
}


# The server ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _server(directory: str) -> Iterator[str]:
    """Run a throwaway redis-server in ``directory`` for the block; yield its URL."""
    port = _free_port()
    command = [
        "redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        directory,
        "--save",
        "",
        "--appendonly",
        "no",
        "--logfile",
        str(Path(directory) / "redis.log"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        client.close()
        yield url
    finally:
        process.kill()
        process.wait()


# The events ------------------------------------------------------------------


def payloads(count: int) -> list[bytes]:
    """Return the eventkit JSON of ``count`` synthetic events, complete runs only.

    The source acknowledges a run once its ``completed`` event has passed the
    sink, so the runs cut off at the end of the synthetic stream are left out:
    the result has somewhat fewer than ``count`` entries.
    """
    events = list(synthetic_events(count))
    completed = {event.run for event in events if event.type == "completed"}
    return [jsonl.encode(event)[:-1] for event in events if event.run in completed]


# The processes ---------------------------------------------------------------


class Shared(NamedTuple):
    """What the processes of a run share."""

    #: The consumers, the producer and the parent meet here; all go together.
    start: Barrier
    #: Events delivered so far, one slot per consumer (no lock: one writer).
    delivered: ctypes.Array[Any]
    #: Set by the parent once all events were delivered and acknowledged.
    done: MPEvent
    #: Where each process puts its :class:`Result`, as a dict.
    results: multiprocessing.Queue[dict[str, Any]]


class Result(NamedTuple):
    """What one process measured (monotonic clock, seconds; CPU seconds)."""

    role: str
    worker: int
    begin: float
    end: float
    cpu: float
    events: int


def _child(
    role: str, url: str, index: int, recording: str, total: int, shared: Shared
) -> None:
    """Run one process of a variant; put its :class:`Result` on the queue."""
    # Warnings (an outage, a shard lost) to standard error, not the info
    # lines of leases: standard output may be carrying --json.
    configure(level="warning")
    # From a file rather than with the process's arguments: a child that dies
    # before reading those leaves the parent blocked writing them.
    data = Path(recording).read_bytes().splitlines() if "producer" in role else []
    result = asyncio.run(_ROLES[role](url, index, data, total, shared))
    shared.results.put(result._asdict())


def _reply_entries(reply: Any) -> Iterator[list[Any]]:
    """Yield the entry lists of an ``XREADGROUP`` reply (RESP2 or RESP3)."""
    if not reply:
        return
    if isinstance(reply, dict):
        for value in reply.values():
            # RESP3: {key: [entries]}; some versions wrap the list once more.
            yield value[0] if value and isinstance(value[0], list) else value
        return
    for _key, entries in reply:
        yield entries


async def raw_producer(
    url: str, index: int, data: list[bytes], total: int, shared: Shared
) -> Result:
    """Pipelined ``XADD`` of the pre-encoded events, ``BATCH`` per round trip."""
    client = redis.asyncio.Redis.from_url(url)
    async with client:
        await client.ping()
        shared.start.wait()
        cpu = time.process_time()
        begin = time.monotonic()
        for start in range(0, len(data), BATCH):
            pipeline = client.pipeline(transaction=False)
            for payload in data[start : start + BATCH]:
                pipeline.xadd(STREAM, {"event": payload})
            await pipeline.execute()
        end = time.monotonic()
        cpu = time.process_time() - cpu
    return Result("producer", index, begin, end, cpu, len(data))


async def raw_consumer(
    url: str, index: int, data: list[bytes], total: int, shared: Shared
) -> Result:
    """``XREADGROUP COUNT BATCH BLOCK`` and ``XACK`` each batch, decoding nothing."""
    client = redis.asyncio.Redis.from_url(url)
    name = f"raw-{index}"
    delivered = shared.delivered
    count = 0
    async with client:
        await client.ping()
        shared.start.wait()
        cpu = cpu_end = time.process_time()
        begin = end = time.monotonic()
        while not shared.done.is_set():
            reply = await client.xreadgroup(
                GROUP, name, {STREAM: ">"}, count=BATCH, block=BLOCK_MS
            )
            for entries in _reply_entries(reply):
                await client.xack(STREAM, GROUP, *[entry[0] for entry in entries])
                count += len(entries)
                end = time.monotonic()
                delivered[index] = count
                cpu_end = time.process_time()
    return Result("consumer", index, begin, end, cpu_end - cpu, count)


def _shards(workers: int) -> int:
    return 1 if workers == 1 else SHARDS


async def eventkit_producer(
    url: str, index: int, data: list[bytes], total: int, shared: Shared
) -> Result:
    """``eventkit.run(sources.iterate(events), sink=sinks.redis_stream(...))``."""
    events = [jsonl.decode(payload) for payload in data]
    sink = sinks.redis_stream(url, STREAM, shards=_shards(len(shared.delivered)))
    shared.start.wait()
    cpu = time.process_time()
    begin = time.monotonic()
    await eventkit.run(sources.iterate(events), sink=sink)
    end = time.monotonic()
    cpu = time.process_time() - cpu
    return Result("producer", index, begin, end, cpu, len(data))


class Count(Sink):
    """Count the events; publish the count for the parent to see."""

    def __init__(self, delivered: ctypes.Array[Any], index: int) -> None:
        self.count = 0
        self._delivered = delivered
        self._index = index

    async def send(self, event: Event) -> None:
        """Count ``event``."""
        self.count += 1
        self._delivered[self._index] = self.count


async def eventkit_consumer(
    url: str, index: int, data: list[bytes], total: int, shared: Shared
) -> Result:
    """``eventkit.run(sources.redis_stream(...), sink=Count(...))`` until done.

    The source runs from the start, before the start signal, so that the
    workers share the shards out before the producer starts, as long-running
    workers would have.
    """
    source = sources.redis_stream(
        url,
        STREAM,
        group=GROUP,
        consumer=f"eventkit-{index}",
        shards=_shards(len(shared.delivered)),
    )
    sink = Count(shared.delivered, index)
    measured: list[float] = []

    async def watch() -> None:
        await asyncio.to_thread(shared.start.wait)
        measured.extend((time.process_time(), time.monotonic()))
        # The parent's flag is in shared memory, across processes: polled.
        while not shared.done.is_set():  # noqa: ASYNC110
            await asyncio.sleep(WATCH)
        measured.extend((time.process_time(), time.monotonic()))
        source.stop()

    watcher = asyncio.create_task(watch())
    try:
        await eventkit.run(source, sink=sink)
    finally:
        watcher.cancel()
    if len(measured) != 4:
        raise RuntimeError("the source ended before the run was done")
    cpu, begin, cpu_end, end = measured
    return Result("consumer", index, begin, end, cpu_end - cpu, sink.count)


_ROLES: Final[dict[str, Callable[..., Coroutine[Any, Any, Result]]]] = {
    "raw producer": raw_producer,
    "raw consumer": raw_consumer,
    "eventkit producer": eventkit_producer,
    "eventkit consumer": eventkit_consumer,
}


# One run -------------------------------------------------------------------------


def _prepare(url: str, keys: list[str]) -> None:
    """Empty the server; create the group on every key, reading from its start."""
    with redis.Redis.from_url(url) as client:
        client.flushall()
        for key in keys:
            client.xgroup_create(key, GROUP, id="0", mkstream=True)


def _wait_for_leases(url: str, keys: list[str], workers: int) -> bool:
    """Wait until the workers share the keys out evenly; tell if they did."""
    leases = [lease_key(key, GROUP) for key in keys]
    wanted = min(workers, len(keys))
    deadline = time.monotonic() + SETTLE
    with redis.Redis.from_url(url) as client:
        while time.monotonic() < deadline:
            owners = client.mget(leases)
            if None not in owners and len(set(owners)) == wanted:
                return True
            time.sleep(0.05)
    return False


def _start(start: Barrier, processes: list[Any]) -> None:
    """Release the processes once they all wait at ``start``."""
    deadline = time.monotonic() + TIMEOUT
    while start.n_waiting < start.parties - 1:
        if time.monotonic() > deadline or not all(p.is_alive() for p in processes):
            start.abort()
            raise RuntimeError("a process died or hung before the start")
        time.sleep(0.01)
    start.wait()


def _wait_until_done(
    client: redis.Redis,
    keys: list[str],
    total: int,
    shared: Shared,
    processes: list[Any],
) -> float:
    """Return the time all ``total`` events were delivered and acknowledged.

    Polls the consumers' counts every millisecond (shared memory, no system
    call), then, once they add up, the group's pending entries.
    """
    deadline = time.monotonic() + TIMEOUT
    delivered = shared.delivered
    while sum(delivered) < total:
        # The producer exits once it is done; a process that failed is stuck.
        failed = [p for p in processes if p.exitcode]
        if failed:
            exits = ", ".join(f"{p.name} exited with {p.exitcode}" for p in failed)
            raise RuntimeError(
                f"delivered {sum(delivered)} of {total}: {exits} (its traceback "
                "is on stderr)"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"delivered {sum(delivered)} of {total}, then nothing for "
                f"{TIMEOUT} s; alive: {[p.name for p in processes if p.is_alive()]}"
            )
        time.sleep(POLL)
    while sum(client.xpending(key, GROUP)["pending"] for key in keys):
        if time.monotonic() > deadline:
            raise RuntimeError("entries still pending")
        time.sleep(POLL / 4)
    return time.monotonic()


def _server_cpu(client: redis.Redis) -> float:
    """Return the CPU seconds the server has used, all its threads."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _check(url: str, keys: list[str], total: int, variant: str) -> None:
    """Raise unless the keys hold ``total`` entries, all read, none pending."""
    with redis.Redis.from_url(url) as client:
        length = sum(client.xlen(key) for key in keys)
        pending = sum(client.xpending(key, GROUP)["pending"] for key in keys)
        lag = sum(
            group.get("lag") or 0
            for key in keys
            for group in client.xinfo_groups(key)
            if group["name"] == GROUP.encode()
        )
    if length != total or pending or lag:
        raise AssertionError(
            f"{variant}: {length} entries of {total} in the stream, "
            f"{pending} pending, {lag} unread after the run"
        )


def _run_once(
    context: multiprocessing.context.SpawnContext,
    url: str,
    kind: str,
    workers: int,
    recording: str,
    total: int,
) -> dict[str, Any]:
    """Run one variant once; return its time, CPU and what each worker got.

    ``recording`` is the events' file, ``total`` how many it holds.
    """
    variant = f"{kind}/{workers}"
    shards = 1 if kind == "raw" else _shards(workers)
    keys = [STREAM] if shards == 1 else [f"{STREAM}:{i}" for i in range(shards)]
    _prepare(url, keys)
    shared = Shared(
        start=context.Barrier(workers + 2),
        delivered=context.Array("q", workers, lock=False),
        done=context.Event(),
        results=context.Queue(),
    )
    processes = [
        context.Process(
            target=_child,
            args=(f"{kind} consumer", url, index, recording, total, shared),
            name=f"{kind} consumer {index}",
            daemon=True,
        )
        for index in range(workers)
    ]
    processes.append(
        context.Process(
            target=_child,
            args=(f"{kind} producer", url, 0, recording, total, shared),
            name=f"{kind} producer",
            daemon=True,
        )
    )
    for process in processes:
        process.start()
    settled = True
    try:
        if kind == "eventkit":
            settled = _wait_for_leases(url, keys, workers)
        with redis.Redis.from_url(url) as client:
            # Connected before the clock starts; the server's counts from now.
            client.config_resetstat()
            server_cpu = _server_cpu(client)
            _start(shared.start, processes)
            end = _wait_until_done(client, keys, total, shared, processes)
            server_cpu = _server_cpu(client) - server_cpu
            commands = {
                name.removeprefix("cmdstat_"): stat["calls"]
                for name, stat in client.info("commandstats").items()
            }
        shared.done.set()
        results = [Result(**shared.results.get(timeout=TIMEOUT)) for _ in processes]
        for process in processes:
            process.join(TIMEOUT)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    if any(process.exitcode for process in processes):
        raise RuntimeError(f"{variant}: a process failed")
    producer = next(r for r in results if r.role == "producer")
    consumers = sorted((r for r in results if r.role == "consumer"), key=_worker)
    got = [r.events for r in consumers]
    if sum(got) != total:
        raise AssertionError(f"{variant}: delivered {sum(got)} of {total} ({got})")
    _check(url, keys, total, variant)
    return {
        "seconds": end - producer.begin,
        # How much later than the raw consumers' own last XACK the parent saw
        # the end (eventkit workers cannot tell when their last XACK was).
        "seen_late": end - max(r.end for r in consumers) if kind == "raw" else None,
        "producer_seconds": producer.end - producer.begin,
        "producer_cpu": producer.cpu,
        "consumer_cpu": sum(r.cpu for r in consumers),
        "server_cpu": server_cpu,
        "commands": commands,
        "delivered": got,
        "settled": settled,
    }


def _worker(result: Result) -> int:
    return result.worker


def _skipped(reason: str) -> dict[str, Any]:
    return {
        "benchmark": "redis",
        "skipped": reason,
        "variants": {},
        "targets": {},
        "targets_met": None,
    }


def measure(
    events: int = 100_000,
    repetitions: int = 3,
    on_step: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure the four variants over ``events`` events; return the report.

    Args:
        events: Synthetic events to generate; the runs they cut off at the end
            are left out, so somewhat fewer go through Redis (``events`` in
            the report).
        repetitions: Timed rounds, after one warm-up round.
        on_step: Called with what is being done, for a progress display.

    Returns:
        The report, shaped like the other benchmarks' (``title``,
        ``variants``, ``targets``, ``targets_met``, ``info``); when
        ``redis-server`` is not on ``PATH``, ``skipped`` says so instead and
        there are no variants.
    """
    if shutil.which("redis-server") is None:
        return _skipped("redis-server is not on PATH")
    on_step("generating events")
    data = payloads(events)
    total = len(data)
    context = multiprocessing.get_context("spawn")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    with (
        tempfile.TemporaryDirectory(prefix="eventkit-bench-redis-") as directory,
        _server(directory) as url,
    ):
        # An eventkit JSON Lines recording, which the producers read.
        recording = str(Path(directory) / "events.jsonl")
        Path(recording).write_bytes(b"".join(line + b"\n" for line in data))
        for round_ in range(repetitions + 1):  # the first round warms up
            for variant in VARIANTS:
                kind, _, workers = variant.partition("/")
                on_step(f"{variant}, round {round_} of {repetitions}")
                run = _run_once(context, url, kind, int(workers), recording, total)
                if round_:
                    runs[variant].append(run)
    variants = {
        variant: _summary(variant, measured, total)
        for variant, measured in runs.items()
    }

    def ratio(workers: int, key: str = "events/s") -> float:
        rate: float = variants[f"eventkit/{workers}"][key]
        base: float = variants[f"raw/{workers}"][key]
        return rate / base

    targets = {
        f"eventkit/raw, {workers} worker{'s' if workers > 1 else ''}": {
            "value": ratio(workers),
            "target": f">= {TARGET}",
        }
        for workers in (1, 3)
    }
    return {
        "benchmark": "redis",
        "title": (
            f"Redis Streams end to end, {total:,} events, batches of {BATCH}, "
            f"median of {repetitions}; /1 and /3: consumers or workers; "
            "µs: CPU per event"
        ),
        "events": total,
        "repetitions": repetitions,
        "cpus": os.cpu_count(),
        "shards": {"eventkit/1": 1, "eventkit/3": SHARDS},
        "variants": variants,
        "targets": targets,
        "info": {
            "eventkit/raw, 1 worker, best runs": ratio(1, "best events/s"),
            "eventkit/raw, 3 workers, best runs": ratio(3, "best events/s"),
        },
        "targets_met": all(ratio(workers) >= TARGET for workers in (1, 3)),
    }


def _summary(variant: str, runs: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """Medians and bests of one variant's runs, per event."""
    seconds = [run["seconds"] for run in runs]

    def per_event(key: str) -> float:
        median: float = statistics.median(run[key] for run in runs)
        return median / total * 1e6

    names = sorted({name for run in runs for name in run["commands"]})
    return {
        "label": VARIANTS[variant],
        "events/s": total / statistics.median(seconds),
        "best events/s": total / min(seconds),
        # CPU time per event of each side.
        "producer µs": per_event("producer_cpu"),
        "workers µs": per_event("consumer_cpu"),
        "redis µs": per_event("server_cpu"),
        "detail": {
            "seconds": seconds,
            "us_per_event": per_event("seconds"),
            # The producer's own time, its first XADD to its last reply: when
            # it is about the whole time, the producer is the bottleneck.
            "producer_alone_us_per_event": per_event("producer_seconds"),
            "end_seen_late_ms": [
                None if run["seen_late"] is None else run["seen_late"] * 1e3
                for run in runs
            ],
            # Round trips and entries per command, from the server's counts.
            "server_calls_per_1000_events": {
                name: statistics.median(run["commands"].get(name, 0) for run in runs)
                * 1000
                / total
                for name in names
            },
            "delivered_per_consumer": [run["delivered"] for run in runs],
            "shards_settled": all(run["settled"] for run in runs),
        },
    }


def _main(argv: list[str]) -> None:
    events = int(argv[0]) if argv else 100_000
    repetitions = int(argv[1]) if len(argv) > 1 else 3
    json.dump(measure(events, repetitions), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    _main(sys.argv[1:])
