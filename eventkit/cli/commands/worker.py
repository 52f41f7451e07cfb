"""``eventkit worker``: process the events of a Redis stream as one of a consumer group.

A worker is a service: it logs a summary line per run (and a closing
``worker_stopped`` line) with structlog on standard error, as JSON with
``--json`` or ``--log json``. The first SIGTERM or SIGINT stops it gracefully
(what was read is finished and acknowledged, exit status 0); a second one
cancels at once (status 130, unacknowledged runs go to other workers).

Failure behaviour: when the chain or the outputs raise, the worker does not
stop: it tells the source (:meth:`~eventkit.sources.RedisStreamSource.failed`),
which charges the failure to runs, and runs the chain again over the source
after the delay the source says; the outputs stay open meanwhile. So a
poison run is dead-lettered after ``--max-deliveries`` tries, and an output
failing for every run is retried with growing delays, never dead-lettered.
Exit status 2 for flags that make no valid chain or source and for a
``--shards`` other than the one the producers published, 1 when Redis
refuses the worker or fails otherwise, when an output cannot be opened, or
when standard output is a pipe whose reader is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from eventkit.exceptions import ShardCountError, SinkError
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


class _Held(sinks.Sink):
    """A sink kept open by the worker across runs of the chain.

    ``eventkit.run`` opens and closes its sink; the worker runs the chain
    again after a failure, and its outputs (files, a metrics port) must
    neither close nor open again in between.
    """

    def __init__(self, sink: sinks.Sink) -> None:
        self.sink = sink

    async def send(self, event: Event) -> None:
        await self.sink.send(event)

    async def send_batch(self, events: list[Event]) -> None:
        await self.sink.send_batch(events)

    def __repr__(self) -> str:
        return repr(self.sink)


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
            max_deliveries=args.max_deliveries,
            idle_timeout=args.idle_timeout,
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
        stopping = asyncio.Event()

        def stop() -> None:
            # The first signal stops gracefully; a second one cancels.
            nonlocal signals
            signals += 1
            if signals == 1:
                stopping.set()
                source.stop()
            elif task is not None:
                task.cancel()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        try:
            async with sinks.tee(*outputs) as output:
                held = _Held(output)
                while True:
                    try:
                        await eventkit.run(fed, *stages, sink=held)
                        return
                    except Exception as exc:
                        if isinstance(exc.__cause__ or exc, BrokenPipeError):
                            # The reader of stdout is gone: no try can help.
                            raise
                        # Raises it again if the source failed, not the chain.
                        delay = source.failed(exc)
                        if stopping.is_set():
                            raise
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await stopping.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    try:
        asyncio.run(serving(dashboard, err, work()))
    except asyncio.CancelledError:
        err.print("[yellow]stopped at once:[/] unacknowledged runs go to others")
        return 130
    except ShardCountError as exc:
        print_error(
            err,
            f"stream {exc.stream!r} is published with {exc.published} shards, "
            f"but this worker has --shards {exc.configured}",
        )
        return 2
    except (OSError, RedisError, SinkError, eventkit.EventkitError) as exc:
        print_error(err, exc)
        return 1
    except Exception as exc:
        # The chain failed while the worker was stopping: not retried.
        print_error(err, f"{type(exc).__name__}: {exc}")
        return 1
    # Told in the worker's log, like its runs: JSON with --json or --log json.
    structlog.get_logger("eventkit.worker").info("worker_stopped", **totals.as_dict())
    return 0
