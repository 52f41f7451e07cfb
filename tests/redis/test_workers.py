"""``eventkit worker`` processes against a real redis-server: crashes and restarts.

Four producer processes publish 200 runs to six shards while three worker
processes read them as one consumer group. The final output is the union of
the workers' JSON Lines files keyed by (run, sequence), what an idempotent
sink would keep; every worker's own output has each run in order without
duplicates.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

import eventkit
from eventkit import Event, sinks, sources
from eventkit.protocol import jsonl
from tests.redis.producer import expected
from tests.redis.streams import run_events

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .conftest import RedisServer

STREAM = "jobs"
GROUP = "workers"
SHARDS = 6
PRODUCERS = 4
RUNS_EACH = 50
LINES = 8
PRODUCER = Path(__file__).with_name("producer.py")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 50 ms; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def read_output(path: Path) -> list[tuple[str, int, str]]:
    """Return (run, sequence, type) of each whole line a worker wrote.

    A worker killed with SIGKILL may leave its last line cut short; it is
    skipped (the run it belongs to was not acknowledged).
    """
    if not path.exists():
        return []
    seen = []
    for line in path.read_bytes().splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        event = jsonl.decode(line)
        seen.append((event.run, event.sequence, event.type))
    return seen


class Fleet:
    """Producer and worker processes of one test, all killed at the end."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.producers: list[subprocess.Popen[bytes]] = []

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable, "-m", "eventkit", "worker",
                "--redis", self.url, "--stream", STREAM, "--group", GROUP,
                "--consumer", name, "--shards", str(SHARDS),
                "--claim-idle-ms", "1000",
                "--jsonl", str(self.output(name)), "--log", "json",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )  # fmt: skip
        log.close()
        self.workers[name] = process
        return process

    def producer(self, prefix: str, pace: float) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{prefix}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable, str(PRODUCER), self.url, STREAM, str(SHARDS),
                prefix, str(RUNS_EACH), str(LINES), str(pace),
            ],
            stderr=log,
        )  # fmt: skip
        log.close()
        self.producers.append(process)
        return process

    def output(self, name: str) -> Path:
        return self.tmp / f"{name}.jsonl"

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def outputs(self) -> dict[str, list[tuple[str, int, str]]]:
        return {name: read_output(self.output(name)) for name in self.workers}

    def kill_all(self) -> None:
        for process in [*self.workers.values(), *self.producers]:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


@pytest.fixture
def fleet(redis_server: RedisServer, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(redis_server.url, tmp_path)
    try:
        yield fleet
    finally:
        fleet.kill_all()


def owners(url: str) -> set[str]:
    """The consumers holding a shard lease now."""
    client = redis.Redis.from_url(url)
    try:
        keys = [f"{STREAM}:{shard}:lease:{GROUP}" for shard in range(SHARDS)]
        return {value.decode() for value in client.mget(keys) if value is not None}
    finally:
        client.close()


def start_workers(fleet: Fleet, url: str) -> None:
    """Start three workers and wait until each owns its share of the shards."""
    for number in range(3):
        fleet.worker(f"w{number}")
    wait_for(lambda: len(owners(url)) == 3, 20, "three workers sharing the shards")


def everything() -> dict[tuple[str, int], str]:
    """(run, sequence) -> type of every event the producers publish."""
    return {
        (event.run, event.sequence): event.type
        for prefix in map(str, range(PRODUCERS))
        for events in expected(f"p{prefix}", RUNS_EACH, LINES).values()
        for event in events
    }


def final(outputs: dict[str, list[tuple[str, int, str]]]) -> dict[tuple[str, int], str]:
    """What an idempotent sink keyed by (run, sequence) ends up with."""
    return {
        (run, sequence): kind
        for lines in outputs.values()
        for run, sequence, kind in lines
    }


def assert_in_order(outputs: dict[str, list[tuple[str, int, str]]]) -> None:
    """Each worker outputs each run in order, without duplicates, and whole once.

    A worker that loses a shard (a takeover, a rebalance) leaves its runs in
    progress unacknowledged, and their new owner processes them again from
    the first entry: so a worker's output of a run is one or more passes,
    each starting at sequence 0 and going up by one. Some pass of every run
    is complete.
    """
    complete: set[str] = set()
    for name, lines in outputs.items():
        last: dict[str, int] = {}
        for run, sequence, _ in lines:
            if sequence != 0:
                assert last.get(run) == sequence - 1, (name, run, last.get(run))
            last[run] = sequence
            if sequence == LINES + 1:
                complete.add(run)
    assert complete == {run for run, _ in everything()}


def stop_gracefully(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=20)


def pending(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        total = 0
        for shard in range(SHARDS):
            info: Any = client.xpending(f"{STREAM}:{shard}", GROUP)
            total += info["pending"]
        return total
    finally:
        client.close()


def test_killed_worker_loses_nothing(fleet: Fleet, redis_server: RedisServer) -> None:
    """kill -9 of a worker mid-stream: its runs are finished by the others."""
    start_workers(fleet, redis_server.url)
    producers = [fleet.producer(f"p{number}", 0.002) for number in range(PRODUCERS)]
    victim = fleet.workers["w0"]
    wait_for(lambda: len(read_output(fleet.output("w0"))) > 40, 30, "w0 to process")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    for producer in producers:
        assert producer.wait(timeout=60) == 0
    want = everything()
    wait_for(lambda: final(fleet.outputs()).keys() >= want.keys(), 60, "every event")
    wait_for(lambda: pending(redis_server.url) == 0, 20, "every entry acknowledged")
    for name in ("w1", "w2"):
        assert stop_gracefully(fleet.workers[name]) == 0, fleet.log(name)
    outputs = fleet.outputs()
    assert final(outputs) == want
    assert_in_order(outputs)
    # The survivors took over the victim's shards and its unfinished runs.
    assert owners(redis_server.url) == set()
    assert any(run.startswith("p") for run, _, _ in outputs["w1"] + outputs["w2"])


def test_redis_restart_loses_nothing_acknowledged(
    fleet: Fleet, redis_server: RedisServer
) -> None:
    """Redis restarted mid-stream: producers and workers reconnect and go on."""
    start_workers(fleet, redis_server.url)
    producers = [fleet.producer(f"p{number}", 0.002) for number in range(PRODUCERS)]
    wait_for(lambda: len(final(fleet.outputs())) > 300, 30, "processing to start")
    redis_server.stop()
    time.sleep(1.0)
    redis_server.start()
    for producer in producers:
        assert producer.wait(timeout=90) == 0
    want = everything()
    wait_for(lambda: final(fleet.outputs()).keys() >= want.keys(), 60, "every event")
    wait_for(lambda: pending(redis_server.url) == 0, 20, "every entry acknowledged")
    for name, worker in fleet.workers.items():
        assert stop_gracefully(worker) == 0, fleet.log(name)
    outputs = fleet.outputs()
    assert final(outputs) == want
    assert_in_order(outputs)


def test_poison_entry_goes_to_dead_letters(
    fleet: Fleet, redis_server: RedisServer
) -> None:
    """An undecodable entry is set aside with its reason; the worker goes on."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.xadd(f"{STREAM}:0", {"event": b"{not json"})
        worker = fleet.worker("solo")
        producer = fleet.producer("p0", 0.0)
        assert producer.wait(timeout=60) == 0
        want = {
            (event.run, event.sequence)
            for events in expected("p0", RUNS_EACH, LINES).values()
            for event in events
        }
        wait_for(
            lambda: (
                {(run, seq) for run, seq, _ in read_output(fleet.output("solo"))}
                >= want
            ),
            60,
            "the runs after the poison entry",
        )
        dead = client.xrange(f"{STREAM}:dead")
        assert len(dead) == 1
        _, fields = dead[0]
        assert fields[b"stream"] == f"{STREAM}:0".encode()
        assert fields[b"event"] == b"{not json"
        assert fields[b"reason"]
        assert stop_gracefully(worker) == 0, fleet.log("solo")
        lines = [json.loads(line) for line in fleet.log("solo").splitlines() if line]
        assert any(line.get("level") == "warning" for line in lines)
    finally:
        client.close()


def test_run_publishes_to_redis(redis_server: RedisServer) -> None:
    """`eventkit run --to-redis` publishes the source's events, before the chain."""
    result = subprocess.run(
        [
            sys.executable, "-m", "eventkit", "run", "-c", "print('hello')",
            "--progress",
            "--to-redis", redis_server.url, "--redis-stream", "single", "--json",
        ],
        capture_output=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    client = redis.Redis.from_url(redis_server.url)
    try:
        entries = client.xrange("single")
    finally:
        client.close()
    published = [jsonl.decode(fields[b"event"]) for _, fields in entries]
    shown = [jsonl.decode(line) for line in result.stdout.splitlines(keepends=True)]
    # The chain's own progress events are shown, not published.
    assert "progress" in [event.type for event in shown]
    assert published == [event for event in shown if event.type != "progress"]
    assert "started" == published[0].type
    assert "completed" == published[-1].type
    assert list(range(len(published))) == [event.sequence for event in published]


def test_worker_refused_login_exits_with_the_error(
    redis_server: RedisServer,
) -> None:
    """A wrong password is reported and ends the worker, not retried forever."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.config_set("requirepass", "secret")
    finally:
        client.close()
    wrong = redis_server.url.replace("redis://", "redis://:wrong@")
    result = subprocess.run(
        [sys.executable, "-m", "eventkit", "worker", "--redis", wrong, "--group", "g"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "error:" in result.stderr
    assert "password" in result.stderr.lower()


def run_worker(
    url: str, *flags: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``eventkit worker`` on the stream ``jobs`` of group ``g`` to its end."""
    return subprocess.run(
        [
            sys.executable, "-m", "eventkit", "worker",
            "--redis", url, "--stream", STREAM, "--group", "g", *flags,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )  # fmt: skip


def publish(url: str, events: list[Event], shards: int = 1) -> None:
    """Append ``events`` to the stream ``jobs`` with the eventkit sink."""
    asyncio.run(
        eventkit.run(
            sources.iterate(events), sink=sinks.redis_stream(url, STREAM, shards=shards)
        )
    )


def test_worker_with_another_shard_count_exits_2(redis_server: RedisServer) -> None:
    """--shards other than the producers': one line with both numbers, status 2.

    Before, such a worker read keys nobody wrote to, silently, forever.
    """
    publish(redis_server.url, run_events("a", 1), shards=3)
    result = run_worker(redis_server.url, "--shards", "1")
    assert 2 == result.returncode, result.stderr
    lines = result.stderr.strip().splitlines()
    assert [
        "error: stream 'jobs' is published with 3 shards, but this worker has "
        "--shards 1"
    ] == lines


#: ``eventkit worker`` with a stage in front that raises on stdout "poison".
POISONED_WORKER = """
import sys

import eventkit.cli.commands.worker as worker
from eventkit.cli import main
from eventkit.streams import Stage


class Poison:
    batched = True
    timed = False

    def feed(self, events):
        for event in events:
            if event.data == "poison":
                print("met", event.run, file=sys.stderr, flush=True)
                raise ValueError("cannot take " + event.run)
        return events

    def flush(self):
        return []

    def deadline(self):
        return None

    def tick(self, now):
        return []


build_chain = worker.build_chain
worker.build_chain = lambda args: [Stage("poison", Poison), *build_chain(args)]
sys.exit(main(sys.argv[1:]))
"""


def test_worker_dead_letters_a_poison_run_and_goes_on(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A stage raising on a run: met 3 times, dead-lettered; the others written.

    Before, the worker stopped at the first meeting (status 1), and again at
    every restart: the good runs read with it were never acknowledged.
    """
    good = run_events("good-0", 2) + run_events("good-1", 2)
    poison = run_events("bad", 2)
    poison[1] = Event(type="stdout", data="poison", run="bad", sequence=1)
    publish(redis_server.url, good[:4] + poison + good[4:])
    out = tmp_path / "out.jsonl"
    process = subprocess.Popen(
        [
            sys.executable, "-c", POISONED_WORKER,
            "worker", "--redis", redis_server.url, "--stream", STREAM,
            "--group", "g", "--jsonl", str(out), "--log", "json",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        client = redis.Redis.from_url(redis_server.url)
        try:
            wait_for(lambda: client.exists(f"{STREAM}:dead") == 1, 30, "dead letters")
            wait_for(lambda: pending_of(client) == 0, 30, "every entry acknowledged")
            dead = client.xrange(f"{STREAM}:dead")
        finally:
            client.close()
        assert 0 == stop_gracefully(process)
        _, stderr = process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert 3 == stderr.count("met bad")
    assert len(poison) == len(dead)
    assert {b"ValueError"} == {fields[b"error_type"] for _, fields in dead}
    written = read_output(out)
    assert {("good-0", 3), ("good-1", 3)} == {
        (run, sequence) for run, sequence, _ in written if _ == "completed"
    }
    assert "bad" not in {run for run, _, _ in written}
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert "redis_run_poisoned" in [log["event"] for log in logs]


def pending_of(client: redis.Redis) -> int:
    """Entries of ``jobs`` pending in group ``g`` (-1 before the group exists)."""
    try:
        info: Any = client.xpending(STREAM, "g")
    except redis.exceptions.ResponseError:
        return -1
    count: int = info["pending"]
    return count


def test_worker_appends_to_its_jsonl_output(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """--jsonl OUT keeps what earlier starts wrote: acknowledged output is never lost.

    Before, every start truncated OUT.
    """
    out = tmp_path / "out.jsonl"
    for number in range(2):
        publish(redis_server.url, run_events(f"r{number}", 1))
        process = subprocess.Popen(
            [
                sys.executable, "-m", "eventkit", "worker",
                "--redis", redis_server.url, "--stream", STREAM, "--group", "g",
                "--jsonl", str(out), "--log", "json",
            ],
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for(
                lambda n=number: len(read_output(out)) == 3 * (n + 1), 30, "output"
            )
            assert 0 == stop_gracefully(process)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert ["r0"] * 3 + ["r1"] * 3 == [run for run, _, _ in read_output(out)]


#: A worker as ``eventkit worker`` runs it, writing its RSS and its runs in
#: progress to the file named by argv[1], as JSON, every 50 ms.
WATCHED_WORKER = """
import json, os, sys, threading, time

import eventkit.sources
from eventkit.cli import main

report = sys.argv.pop(1)
made = []
redis_stream = eventkit.sources.redis_stream


def tracked(*args, **kwargs):
    made.append(redis_stream(*args, **kwargs))
    return made[-1]


eventkit.sources.redis_stream = tracked


def watch():
    while True:
        with open("/proc/self/status") as status:
            rss = next(int(l.split()[1]) for l in status if l.startswith("VmRSS:"))
        state = {"rss": rss * 1024, "open_runs": made[0].open_runs if made else None}
        with open(report + ".new", "w") as file:
            json.dump(state, file)
        os.replace(report + ".new", report)
        time.sleep(0.05)


threading.Thread(target=watch, daemon=True).start()
sys.exit(main(sys.argv[1:]))
"""


def test_worker_expires_runs_without_completed(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """20,000 one-event runs that never complete: all acknowledged, state freed.

    With --idle-timeout 1, every run is ended (error run_expired, failed
    completed) and acknowledged; afterwards no run is held, and the worker's
    RSS is within 30 MB of what it was before. Before, none was ever
    acknowledged, and each run's state stayed (RSS 48 -> 89 MB for 40,000).
    """
    report = tmp_path / "state.json"

    def state() -> dict[str, Any]:
        found: dict[str, Any] = json.loads(report.read_text())
        return found

    process = subprocess.Popen(
        [
            sys.executable, "-c", WATCHED_WORKER, str(report),
            "worker", "--redis", redis_server.url, "--stream", STREAM,
            "--group", "g", "--idle-timeout", "1",
        ],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis.from_url(redis_server.url)
    try:
        wait_for(lambda: pending_of(client) == 0, 30, "the worker to start")
        time.sleep(0.2)
        start = state()["rss"]
        publish(
            redis_server.url,
            [
                Event(type="stdout", data=f"line of {n}\n", run=f"run-{n}")
                for n in range(20_000)
            ],
        )
        last = client.xrevrange(STREAM, count=1)[0][0]
        wait_for(
            lambda: client.xinfo_groups(STREAM)[0]["last-delivered-id"] == last,
            60,
            "every entry read",
        )
        wait_for(lambda: pending_of(client) == 0, 60, "every entry acknowledged")
        time.sleep(0.2)
        after = state()
        assert 0 == after["open_runs"]
        assert after["rss"] - start < 30 * 2**20, (start, after["rss"])
        assert 0 == stop_gracefully(process)
    finally:
        client.close()
        if process.poll() is None:
            process.kill()
            process.wait()
