"""``eventkit worker``: process the events of a Redis stream as one of a consumer group.

A worker is a service: it logs a summary line per run (and a closing
``worker_stopped`` line) with structlog on standard error, as JSON with
``--json`` or ``--log json``. The first SIGTERM or SIGINT stops it gracefully
(what was read is finished and acknowledged, exit status 0); a second one
cancels at once (status 130, unacknowledged runs go to other workers).

Failure behaviour: exit status 2 for flags that make no valid chain or
source, 1 when Redis or an output cannot be reached or a sink fails.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TYPE_CHECKING

import structlog
from redis.exceptions import RedisError

import eventkit
from eventkit import pipe, sinks, sources
from eventkit.cli.dashboard import attach, dashboard_for, serving
from eventkit.cli.display import error_console, print_error
from eventkit.cli.pipeline import build_chain
from eventkit.exceptions import SinkError
from eventkit.logging import configure as configure_logging

if TYPE_CHECKING:
    import argparse

    from eventkit.events import Event

__all__ = ["main"]


class _Totals(sinks.Sink):
    """Counts what a worker delivered, for its closing line."""

    def __init__(self) -> None:
        self.events = 0
        self.runs = 0
        self.failed = 0

    async def send(self, event: Event) -> None:
        self.events += 1
        if event.type == "completed":
            self.runs += 1
            if not event.attrs.get("success", True):
                self.failed += 1

    def as_dict(self) -> dict[str, int]:
        return {"runs": self.runs, "failed": self.failed, "events": self.events}


def main(args: argparse.Namespace) -> int:
    """Work until stopped; return the exit status."""
    err = error_console()
    try:
        stages = build_chain(args)
        source = sources.redis_stream(
            args.redis,
            args.stream,
            group=args.group,
            consumer=args.consumer,
            shards=args.shards,
            claim_idle_ms=args.claim_idle_ms,
        )
    except ValueError as exc:
        print_error(err, exc)
        return 2
    if args.log is None:
        # A worker is a service: its runs are told in log lines.
        stages.append(pipe.log_events(mode="summary"))
    configure_logging(
        args.log or ("json" if args.json else "console"), level=args.log_level
    )
    totals = _Totals()
    outputs: list[sinks.Sink] = [totals]
    if args.json:
        outputs.append(sinks.jsonl(sys.stdout))
    if args.jsonl:
        outputs.append(sinks.jsonl(args.jsonl, append=True))
    if args.metrics_port is not None:
        outputs.append(sinks.prometheus_http(args.metrics_port))
    if args.pushgateway:
        outputs.append(sinks.pushgateway(args.pushgateway, "eventkit_worker"))
    dashboard = dashboard_for(args, err, f"redis {args.stream}")
    fed = source if dashboard is None else attach(dashboard, source, stages, outputs)

    async def work() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        signals = 0

        def stop() -> None:
            # The first signal stops gracefully; a second one cancels.
            nonlocal signals
            signals += 1
            if signals == 1:
                source.stop()
            elif task is not None:
                task.cancel()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        try:
            await eventkit.run(fed, *stages, sink=sinks.tee(*outputs))
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    try:
        asyncio.run(serving(dashboard, err, work()))
    except asyncio.CancelledError:
        err.print("[yellow]stopped at once:[/] unacknowledged runs go to others")
        return 130
    except (OSError, RedisError, SinkError) as exc:
        print_error(err, exc)
        return 1
    # Told in the worker's log, like its runs: JSON with --json or --log json.
    structlog.get_logger("eventkit.worker").info("worker_stopped", **totals.as_dict())
    return 0
