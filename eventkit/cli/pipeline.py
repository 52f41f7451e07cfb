"""The pipeline the flags build: the chain, and the outputs of ``run`` and ``replay``.

:func:`build_chain` turns the chain flags (see
:func:`~eventkit.cli.arguments.add_chain_flags`) into stages, for ``run``,
``replay`` and ``worker``; :func:`process` runs a source through them to the
outputs the output flags name and returns the runs' summaries.

Failure behaviour: :func:`process` prints what went wrong and raises
:exc:`~eventkit.cli.errors.CommandExit` when the flags make no valid chain
(status 2) or an output or the source cannot be reached (status 1); anything
else the source raises goes to the command, which knows what it means.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING

from aiostream.core import Stream

import eventkit
from eventkit import pipe, sinks
from eventkit.cli.dashboard import attach, dashboard_for, serving
from eventkit.cli.display import ProgressBar, print_error
from eventkit.cli.errors import CommandExit
from eventkit.summary import SummaryTracker

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncGenerator, AsyncIterable

    from rich.console import Console

    from eventkit.events import Event
    from eventkit.streams import Stage
    from eventkit.summary import RunSummary

__all__ = ["SummarySink", "build_chain", "process", "published"]


def build_chain(args: argparse.Namespace) -> list[Stage]:
    """Build the stages the chain flags ask for, in the documented order.

    Raises:
        ValueError: If a flag's value makes no valid stage.
    """
    stages: list[Stage] = []
    if args.reorder:
        stages.append(pipe.reorder())
    if args.only:
        stages.append(pipe.only(*args.only))
    if args.buffer_bytes is not None:
        # Flushed within 100 ms even when the program goes quiet: this is live.
        stages.append(pipe.buffer_bytes(args.buffer_bytes, max_age=0.1))
    if args.progress:
        stages.append(pipe.track_progress())
    if args.metrics_port is not None or args.pushgateway:
        stages.append(pipe.export_metrics())
    if args.log is not None:
        # Lifecycle events and one summary line per run; every event with
        # --log-events (a JSON line costs several microseconds).
        if args.log_events:
            stages.append(pipe.log_events(every=args.log_every))
        else:
            stages.append(pipe.log_events(mode="summary"))
    return stages


class SummarySink(sinks.Sink):
    """Keeps the per-run summaries for the closing report."""

    def __init__(self) -> None:
        self.tracker = SummaryTracker()

    async def send(self, event: Event) -> None:
        """Count the event into its run's summary."""
        self.tracker.feed(event)


def _shown(args: argparse.Namespace, err: Console) -> sinks.Sink:
    """The stream as people see it, or as JSON Lines with ``--json``."""
    if args.json:
        return sinks.jsonl(sys.stdout)
    return sinks.console(show_progress=False, console=err)


def process(
    args: argparse.Namespace, source: AsyncIterable[Event], err: Console
) -> list[RunSummary]:
    """Run ``source`` through the chain the flags ask for, to the outputs.

    Returns:
        The runs' summaries.

    Raises:
        CommandExit: With status 2 when the flags make no valid chain, 1 when
            the source or an output cannot be reached (the message is printed).
        Exception: Whatever else the source raises, for the caller to report.
    """
    try:
        stages = build_chain(args)
    except ValueError as exc:
        print_error(err, exc)
        raise CommandExit(2) from None
    if args.log is not None:
        # structlog loads with the logging set-up, only when asked for.
        from eventkit.logging import configure as configure_logging

        configure_logging(args.log, level=args.log_level)
    summary = SummarySink()
    outputs = [_shown(args, err), summary]
    if args.progress and not args.json and err.is_terminal:
        outputs.append(ProgressBar(err))
    if args.jsonl:
        outputs.append(sinks.jsonl(args.jsonl))
    unreachable: tuple[type[Exception], ...] = (OSError,)
    if args.to_redis:
        # redis loads only with --to-redis: nothing else here can raise its errors.
        from redis.exceptions import RedisError

        unreachable = (OSError, RedisError)
        # The events as the source gives them: workers run their own chain.
        publisher = sinks.redis_stream(
            args.to_redis, args.redis_stream, shards=args.shards
        )
        source = published(source, publisher)
    if args.metrics_port is not None:
        outputs.append(sinks.prometheus_http(args.metrics_port))
    if args.pushgateway:
        outputs.append(sinks.pushgateway(args.pushgateway, "eventkit"))
    dashboard = dashboard_for(args, err, _label(args))
    if dashboard is not None:
        source = attach(dashboard, source, stages, outputs)
    try:
        asyncio.run(
            serving(
                dashboard,
                err,
                eventkit.run(source, *stages, sink=sinks.tee(*outputs)),
                keep=getattr(args, "dashboard_keep", False),
            )
        )
    except unreachable as exc:
        print_error(err, exc)
        raise CommandExit(1) from None
    return list(summary.tracker.summaries())


def _label(args: argparse.Namespace) -> str:
    """The dashboard's name for where the runs come from."""
    if args.command == "replay":
        return "replay" if args.file == "-" else f"replay {args.file}"
    if getattr(args, "url", None):
        return "hopx"
    if getattr(args, "aicomputer", None):
        return "aicomputer"
    return "local"


async def published(
    source: AsyncIterable[Event], publisher: sinks.Sink
) -> AsyncGenerator[Event, None]:
    """Pass ``source`` on, sending each event to ``publisher`` first.

    The publisher is opened before the first event and closed when the
    stream ends, however it ends.
    """
    # An aiostream stream is iterated inside its own context.
    opened = (
        source.stream()
        if isinstance(source, Stream)
        else contextlib.nullcontext(aiter(source))
    )
    await publisher.open()
    try:
        async with opened as events:
            async for event in events:
                await publisher.send(event)
                yield event
    finally:
        await publisher.close()
