"""The pipeline the flags build: the chain, and the outputs of ``run`` and ``replay``.

:func:`build_chain` turns the chain flags (see
:func:`~eventkit.cli.arguments.add_chain_flags`) into stages, for ``run``,
``replay`` and ``worker``; :func:`process` runs a source through them to the
outputs the output flags name, prints the closing summary and returns the
runs' summaries.

The summaries are taken from the events **as the source gives them**, before
the chain (:class:`Tap`): whatever ``--only`` or ``--exclude`` drop, a run's
outcome and exit status are its own. The chain's output adds only what its
operators make (progress, gaps).

Failure behaviour: :func:`process` prints what went wrong in one line and
raises :exc:`~eventkit.cli.errors.CommandExit`: status 2 when the flags make
no valid chain or output, 1 when the source or an output fails at run time
(a sandbox, Redis or a file that cannot be reached, a stream that broke off:
see :func:`~eventkit.cli.errors.describe`), 128 + N when signal N (SIGINT,
SIGTERM) stopped the run. The summary of what ran is printed first, each run
that got no outcome saying why. An error :func:`~eventkit.cli.errors.describe`
does not know is a bug, and goes to the command with its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from typing import TYPE_CHECKING, Final

import eventkit
from eventkit import pipe, sinks
from eventkit.cli.dashboard import attach, dashboard_for, serving
from eventkit.cli.display import TerminalView, print_error, report
from eventkit.cli.errors import FAILURE, USAGE, CommandExit, CommandFailure, describe
from eventkit.events import EventType
from eventkit.summary import SummaryTracker

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine

    from rich.console import Console

    from eventkit.events import Event
    from eventkit.streams import Stage
    from eventkit.summary import RunSummary

__all__ = ["OperatorEvents", "Tap", "build_chain", "process"]

#: The event types eventkit knows, for the warning about others.
KNOWN_TYPES: Final = tuple(EventType)
#: The types the chain's operators make: the summaries take these from the
#: chain's output, everything else from the source.
OPERATOR_TYPES: Final = frozenset({EventType.PROGRESS, EventType.GAP})
#: The signals that stop a run, its summary printed: Ctrl-C and ``kill``.
STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
#: Why a run has no outcome when nothing failed: its events just stopped.
NO_COMPLETED: Final = "the stream ended before the run's completed event"


def _stderr_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def build_chain(
    args: argparse.Namespace, *, warn: Callable[[str], None] = _stderr_warning
) -> list[Stage]:
    """Build the stages the chain flags ask for, in the documented order.

    Args:
        args: The parsed flags.
        warn: Told, in one line, about an event type ``--only`` or
            ``--exclude`` names that eventkit does not know (it is kept: a
            program may make its own types). By default a ``warning:`` line
            on standard error.

    Raises:
        ValueError: If a flag's value makes no valid stage.
    """
    stages: list[Stage] = []
    if args.reorder:
        stages.append(pipe.reorder())
    only: list[str] | None = args.only
    exclude: list[str] | None = getattr(args, "exclude", None)
    for flag, types in (("--only", only), ("--exclude", exclude)):
        unknown = [name for name in types or () if name not in KNOWN_TYPES]
        if unknown:
            warn(
                f"{flag} {','.join(unknown)}: not an event type eventkit makes "
                f"({', '.join(KNOWN_TYPES)}); kept as a custom type"
            )
    if only:
        stages.append(pipe.only(*dict.fromkeys(only)))
    if exclude:
        stages.append(pipe.exclude(*dict.fromkeys(exclude)))
    if getattr(args, "lines", False):
        # An unfinished line (a prompt, a bar) shows after 100 ms: this is live.
        stages.append(pipe.lines(max_age=0.1, collapse_cr=True))
    if args.buffer_bytes is not None:
        # Flushed within 100 ms even when the program goes quiet: this is live.
        stages.append(pipe.buffer_bytes(args.buffer_bytes, max_age=0.1))
    cap = getattr(args, "cap_output", None)
    if cap is not None:
        stages.append(pipe.cap_output(*cap))
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


class Tap:
    """The source as the chain reads it, seen on the way in.

    Each batch the source gives is counted into ``tracker`` (the runs'
    outcomes come from here, not from what the chain lets through) and, with
    a ``publisher``, sent to it before the chain gets it: workers run their
    own chain on the events as the source gave them. The publisher is opened
    before the first batch and closed at the end, however it ends.

    Failure behaviour: an error of the publisher stops the run as
    :exc:`~eventkit.cli.errors.CommandFailure`, saying in one line what
    failed, in words of ``describe_publisher``.

    Args:
        source: Any async iterable of events; its own batches are used.
        tracker: Counts the events into the runs' summaries.
        publisher: Where to publish the events, if anywhere.
        describe_publisher: Turns a publisher's error into the line to show.
    """

    def __init__(
        self,
        source: AsyncIterable[Event],
        tracker: SummaryTracker,
        publisher: sinks.Sink | None = None,
        describe_publisher: Callable[[BaseException], str] = repr,
    ) -> None:
        self.source = source
        self.tracker = tracker
        self.publisher = publisher
        self._describe_publisher = describe_publisher

    def batches(self) -> AsyncIterator[list[Event]]:
        """Return a fresh iteration of the source's batches, seen on the way."""
        return self._batches()

    async def __aiter__(self) -> AsyncIterator[Event]:
        """Iterate the source's events, seen on the way."""
        async with contextlib.aclosing(self._batches()) as batches:  # type: ignore[type-var]
            async for batch in batches:
                for event in batch:
                    yield event

    async def _batches(self) -> AsyncIterator[list[Event]]:
        # Imported here, as streams.py does: the driver loads with a run.
        from eventkit.driver import batches

        feed = self.tracker.feed
        publisher = self.publisher
        if publisher is not None:
            await self._publish(publisher.open())
        try:
            async with contextlib.aclosing(batches(self.source)) as upstream:  # type: ignore[type-var]
                async for batch in upstream:
                    for event in batch:
                        feed(event)
                    if publisher is not None:
                        await self._publish(publisher.send_batch(batch))
                    yield batch
        except BaseException:
            if publisher is not None:
                # What stopped the run is the news, not a close failing after it.
                with contextlib.suppress(Exception):
                    await publisher.close()
            raise
        if publisher is not None:
            await self._publish(publisher.close())

    async def _publish(self, step: Coroutine[object, object, None]) -> None:
        try:
            await step
        except Exception as exc:
            raise CommandFailure(self._describe_publisher(exc)) from exc


class OperatorEvents(sinks.Sink):
    """Counts what the chain's operators made (progress, gaps) into the summaries.

    Every other event was counted from the source already (see :class:`Tap`).
    """

    def __init__(self, tracker: SummaryTracker) -> None:
        self.tracker = tracker

    async def send(self, event: Event) -> None:
        """Count ``event`` if an operator made it."""
        if event.type in OPERATOR_TYPES:
            self.tracker.feed(event)

    async def send_batch(self, events: list[Event]) -> None:
        """Count the events operators made."""
        feed = self.tracker.feed
        for event in events:
            if event.type in OPERATOR_TYPES:
                feed(event)


def _shown(args: argparse.Namespace, err: Console) -> sinks.Sink:
    """The stream as people see it, or as JSON Lines with ``--json``."""
    if args.json:
        return sinks.jsonl(sys.stdout)
    return TerminalView(err, progress_bar=args.progress)


def _publisher(
    args: argparse.Namespace,
) -> tuple[sinks.Sink, Callable[[BaseException], str]]:
    """The Redis sink of ``--to-redis``, and how to tell its failures.

    Raises:
        ValueError: For a URL that is not a Redis URL.
    """
    # The events as the source gives them: workers run their own chain.
    publisher = sinks.redis_stream(
        args.to_redis,
        args.redis_stream,
        shards=args.shards,
        retry_timeout=args.redis_timeout,
    )

    def told(exc: BaseException) -> str:
        reason = describe(exc) or repr(exc)
        return (
            f"cannot publish to {args.to_redis} (gave up after "
            f"{args.redis_timeout:g} s, --redis-timeout): {reason}"
        )

    return publisher, told


def process(
    args: argparse.Namespace,
    source: AsyncIterable[Event],
    err: Console,
    *,
    explain: Callable[[BaseException], str | None] | None = None,
    invalid: Callable[[], int] = lambda: 0,
) -> list[RunSummary]:
    """Run ``source`` through the chain the flags ask for, to the outputs; report.

    The closing summary (a table, or JSON with ``--json``) is printed here,
    also when the run failed or was interrupted.

    Args:
        args: The parsed flags.
        source: The events.
        err: The console for people (standard error).
        explain: The command's words for the errors it knows; those it
            returns None for go to :func:`~eventkit.cli.errors.describe`.
        invalid: How many invalid input lines were skipped, for the summary.

    Returns:
        The runs' summaries, in the order they started.

    Raises:
        CommandExit: With status 2 when the flags make no valid chain or
            output, 1 when the source or an output failed, 128 + N when
            signal N stopped the run (the message and summary are printed).
        Exception: An error nothing here knows: a bug.
    """
    try:
        _configure_logging(args)
        stages = build_chain(args, warn=lambda message: _warn(err, message))
        publisher = _publisher(args) if args.to_redis else None
        outputs = _outputs(args, err)
    except ValueError as exc:
        print_error(err, exc)
        raise CommandExit(USAGE) from None
    dashboard = dashboard_for(args, err, _label(args))
    if dashboard is not None:
        source = attach(dashboard, source, stages, outputs)
    tracker = SummaryTracker()
    if publisher is None:
        tapped = Tap(source, tracker)
    else:
        tapped = Tap(source, tracker, *publisher)
    outputs.append(OperatorEvents(tracker))
    failure: str | None = None
    stopped_by: int | None = None
    try:
        stopped_by = asyncio.run(
            serving(
                dashboard,
                err,
                _until_signal(eventkit.run(tapped, *stages, sink=sinks.tee(*outputs))),
                keep=getattr(args, "dashboard_keep", False),
            )
        )
    except Exception as exc:
        failure = (explain(exc) if explain is not None else None) or describe(exc, args)
        if failure is None:
            raise
    runs = list(tracker.summaries())
    reason = failure or NO_COMPLETED
    if stopped_by is not None:
        reason = f"interrupted by {signal.Signals(stopped_by).name}"
    for run in runs:
        if run.success is None and run.reason is None:
            run.reason = reason
    if runs or args.json or failure is None:
        report(runs, err, as_json=args.json, invalid=invalid())
    if failure is not None:
        print_error(err, failure)
        raise CommandExit(FAILURE)
    if stopped_by is not None:
        raise CommandExit(128 + stopped_by)
    return runs


def _outputs(args: argparse.Namespace, err: Console) -> list[sinks.Sink]:
    """The outputs the flags name, the stream as shown first.

    Raises:
        ValueError: For an output whose flags make no sense.
    """
    outputs = [_shown(args, err)]
    if args.jsonl:
        outputs.append(sinks.jsonl(args.jsonl))
    if args.metrics_port is not None:
        outputs.append(sinks.prometheus_http(args.metrics_port))
    if args.pushgateway:
        outputs.append(sinks.pushgateway(args.pushgateway, "eventkit"))
    return outputs


def _label(args: argparse.Namespace) -> str:
    """The dashboard's name for where the runs come from."""
    if args.command == "replay":
        return "replay" if args.file == "-" else f"replay {args.file}"
    if getattr(args, "url", None):
        return "hopx"
    if getattr(args, "aicomputer", None):
        return "aicomputer"
    return "local"


def _configure_logging(args: argparse.Namespace) -> None:
    """Send what logs (``--log``, the Redis and Prometheus outputs) to stderr.

    Never into the stream on stdout (structlog's default): configured before
    any logger is bound, which the sinks do when they are made. structlog
    loads only for the flags that log.
    """
    if args.log is None and not (
        args.to_redis or args.pushgateway or args.metrics_port is not None
    ):
        return
    from eventkit.logging import configure

    if args.log is not None:
        configure(args.log, level=args.log_level)
    else:
        # Their warnings only: an outage, a failed push.
        configure("json" if args.json else "console", level="warning")


def _warn(err: Console, message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", soft_wrap=not err.is_terminal)


async def _until_signal(run: Coroutine[object, object, None]) -> int | None:
    """Await ``run``; cancel it on SIGINT or SIGTERM, and return the signal.

    Returns:
        The signal that stopped the run, or None when it ran to its end.
    """
    task = asyncio.ensure_future(run)
    if threading.current_thread() is not threading.main_thread():
        # Signal handlers can only be set in the main thread; there, Ctrl-C
        # stays Python's KeyboardInterrupt.
        await task
        return None
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        task.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    try:
        await task
    except asyncio.CancelledError:
        if not received:
            raise
        return received[0]
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    return None
