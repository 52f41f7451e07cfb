"""Fan-in: many sandbox runs into one Redis stream, processed by three workers.

Producers publish the events of their runs to a Redis stream; workers on any
machine read them as one consumer group, each run whole and in order on one
worker, and acknowledge a run once its output is written. Try it on one
machine (``redis-server`` from your distribution, nothing else)::

    redis-server --port 6379 --save '' --appendonly no &
    for n in 1 2 3; do
      eventkit worker --redis redis://127.0.0.1:6379 --stream sandbox:events \\
          --group reporters --shards 6 --reorder --buffer-bytes 4096 \\
          --metrics-port 910$n --jsonl worker$n.jsonl &
    done
    python recipes/redis/fan_in.py --redis redis://127.0.0.1:6379 --runs 30
    prometheus --config.file=recipes/redis/prometheus.yml   # scrapes 9101-9103
    kill -TERM %2 %3 %4   # each worker finishes what it read, hands over, exits 0

This script is the producer side: it runs ``--runs`` programs on the local
sandbox, ``--parallel`` at a time, merges their events into one stream with
aiostream and publishes it. Producers and workers must agree on ``--shards``:
a run always goes to the same shard key, and a shard has one owner at a time,
which is what keeps each run in order across workers (``docs/redis.md``). The
first producer publishes its count in ``sandbox:events:meta``; a worker started
with another one exits 2, saying both. Kill a worker with ``kill -9`` while it
works: within ``--claim-idle-ms`` the others take over its shards and process
its unfinished runs again. A run the chain fails on is tried again, alone, and
goes to ``sandbox:events:dead`` after ``--max-deliveries`` failures; a run
whose producer died before ``completed`` is ended after ``--idle-timeout``.
"""

from __future__ import annotations

import argparse
import asyncio

from aiostream import pipe as aiopipe, stream

import eventkit
from eventkit import sinks, sources

#: A program with some output and a progress report, a second or so long.
PROGRAM = """
import time
for step in range(1, 6):
    print(f"job {JOB}: step {step}/5")
    time.sleep(0.05)
"""


def job(number: int) -> eventkit.EventStream:
    """The events of one run of :data:`PROGRAM`, as run ``job-NUMBER``."""
    return sources.local(PROGRAM.replace("JOB", str(number)), run=f"job-{number}")


async def publish(
    url: str, stream_name: str, shards: int, runs: int, parallel: int
) -> int:
    """Run the jobs, ``parallel`` at a time, and publish their events; count them."""
    jobs = stream.iterate([job(n) for n in range(runs)]) | aiopipe.flatten(
        task_limit=parallel
    )
    sink = sinks.redis_stream(url, stream_name, shards=shards)
    published = 0

    def count(event: eventkit.Event) -> None:
        nonlocal published
        published += 1

    await eventkit.run(jobs, sink=sinks.tee(sink, sinks.call(count)))
    return published


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", metavar="URL")
    parser.add_argument("--stream", default="sandbox:events")
    parser.add_argument("--shards", type=int, default=6)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    published = asyncio.run(
        publish(args.redis, args.stream, args.shards, args.runs, args.parallel)
    )
    print(f"published {published} events of {args.runs} runs to {args.stream}")


if __name__ == "__main__":
    main()
