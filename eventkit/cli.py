"""The ``eventkit`` command.

The only place that configures global state (logging, the Prometheus HTTP
server). Each subcommand builds a chain from the same flags::

    eventkit replay run.jsonl --reorder --buffer-bytes 4096 --progress

Output for people goes to the terminal (the program's stdout to stdout, its
stderr and everything else to stderr, a summary table at the end); ``--json``
writes the stream as eventkit JSON Lines to stdout and the summary as one JSON
object to stderr instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import TYPE_CHECKING, Any

import structlog
from aiostream.core import Stream
from redis.exceptions import RedisError
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

import eventkit
from eventkit import pipe, sinks, sources
from eventkit.exceptions import EventkitError
from eventkit.logging import configure as configure_logging
from eventkit.metrics import collector_for
from eventkit.protocol.jsonl import DecodeError
from eventkit.summary import RunSummary, SummaryTracker

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Sequence

    from eventkit.events import Event
    from eventkit.streams import Stage

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``eventkit`` command; return its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except _Exit as stop:
        return stop.status
    except KeyboardInterrupt:
        return 130
    return status


class _Exit(EventkitError):
    """Stop the command with this exit status; the message was printed."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventkit",
        description="Process code-execution sandbox event streams.",
    )
    parser.add_argument("--version", action="version", version=f"eventkit {_version()}")
    commands = parser.add_subparsers(title="commands", required=True)

    run = commands.add_parser(
        "run",
        help="run code in a sandbox (the local one by default) and show its events",
        description="Run code in a sandbox and show its events as they come. "
        "Runs on the local executor unless --url or --aicomputer names a remote "
        "sandbox. The exit status is the code's own.",
    )
    code = run.add_mutually_exclusive_group(required=True)
    code.add_argument("file", nargs="?", help="the program to run, or - for stdin")
    code.add_argument("-c", dest="code", metavar="CODE", help="the code to run")
    run.add_argument(
        "--language",
        help="python, bash or javascript (default: from the file name, else python)",
    )
    remote = run.add_mutually_exclusive_group()
    remote.add_argument(
        "--url",
        metavar="WS_URL",
        help="a HOPX agent: ws(s)://host:port/execute/stream or http(s)://host:port",
    )
    remote.add_argument(
        "--aicomputer", metavar="BASE_URL", help="an AI Computer API base URL"
    )
    run.add_argument("--token", help="bearer token for the remote sandbox")
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="an environment variable for the code (repeatable)",
    )
    run.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds (default 60)"
    )
    _add_chain_flags(run)
    _add_output_flags(run)
    run.set_defaults(handler=_run)

    serve = commands.add_parser(
        "serve",
        help="serve a local sandbox the official HOPX and AI Computer SDKs can use",
        description="Serve a local sandbox: the HOPX public API and agent "
        "(WebSocket /execute/stream) and the AI Computer API, on one port. Point "
        "the official SDKs at it with base_url=http://HOST:PORT.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=7777, help="default 7777")
    serve.add_argument(
        "--api-key",
        help="the only key (and /dev/token tokens) accepted; required for any "
        "address but loopback",
    )
    serve.add_argument(
        "--max-concurrent",
        type=int,
        default=8,
        metavar="N",
        help="executions running at once (default 8); more wait or are refused",
    )
    serve.add_argument(
        "--max-queue",
        type=int,
        default=64,
        metavar="N",
        help="executions waiting for a slot before refusals (default 64)",
    )
    serve.add_argument(
        "--max-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="the longest timeout an execution gets (default 300)",
    )
    serve.add_argument(
        "--max-code-bytes",
        type=int,
        default=1 << 20,
        metavar="B",
        help="the largest program accepted (default 1 MiB)",
    )
    serve.add_argument(
        "--max-output-bytes",
        type=int,
        metavar="B",
        help="cap on one execution's output (default: none)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="serve Prometheus metrics (executions, refusals, queue) on "
        "127.0.0.1:P/metrics",
    )
    serve.set_defaults(handler=_serve)

    replay = commands.add_parser(
        "replay",
        help="run a recorded stream (eventkit JSON Lines) through the chain",
        description="Run a recorded stream (eventkit JSON Lines) through the chain.",
    )
    replay.add_argument("file", help="the .jsonl file, or - for standard input")
    replay.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip lines that are not valid events (counted and reported on "
        "stderr) instead of stopping at the first",
    )
    _add_chain_flags(replay)
    _add_output_flags(replay)
    replay.set_defaults(handler=_replay)

    worker = commands.add_parser(
        "worker",
        help="process the events of a Redis stream as one of a consumer group",
        description="Read events from a Redis stream as a member of a consumer "
        "group, run them through the chain and acknowledge each run once its "
        "output is written, until stopped. SIGTERM or Ctrl-C stops gracefully: "
        "what was read is finished and acknowledged, the shards are handed over, "
        "the exit status is 0. Logs a summary line per run to stderr.",
    )
    worker.add_argument(
        "--redis", required=True, metavar="URL", help="redis://host:port/db"
    )
    worker.add_argument(
        "--stream",
        default="eventkit:events",
        help="the stream (default eventkit:events)",
    )
    worker.add_argument("--group", required=True, help="the consumer group")
    worker.add_argument(
        "--consumer", help="this worker's name in the group (default HOSTNAME-PID)"
    )
    worker.add_argument(
        "--shards",
        type=int,
        default=1,
        metavar="N",
        help="the shard keys STREAM:0..N-1, as producers write them (default 1)",
    )
    worker.add_argument(
        "--claim-idle-ms",
        type=int,
        default=10_000,
        metavar="MS",
        help="a worker silent this long loses its shards and their pending "
        "entries to the others (default 10000)",
    )
    _add_chain_flags(worker)
    worker_output = worker.add_argument_group("output")
    worker_output.add_argument(
        "--jsonl", metavar="OUT", help="record the processed stream to OUT (JSON Lines)"
    )
    worker_output.add_argument(
        "--json",
        action="store_true",
        help="machine-readable: the stream as JSON Lines on stdout, JSON logs "
        "and a JSON summary on stderr",
    )
    worker.set_defaults(handler=_worker)
    return parser


def _add_chain_flags(parser: argparse.ArgumentParser) -> None:
    chain = parser.add_argument_group("chain (applied in this order)")
    chain.add_argument(
        "--reorder",
        action="store_true",
        help="put each run's events in sequence order, reporting gaps",
    )
    chain.add_argument(
        "--only",
        nargs="+",
        metavar="TYPE",
        help="keep only these event types",
    )
    chain.add_argument(
        "--buffer-bytes",
        type=int,
        metavar="N",
        help="coalesce output into chunks of at most N bytes, none older than 100 ms",
    )
    chain.add_argument(
        "--progress",
        action="store_true",
        help="track progress reported in the output (45%%, 9/20)",
    )
    chain.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="serve Prometheus metrics on 127.0.0.1:P/metrics while running",
    )
    chain.add_argument(
        "--pushgateway",
        metavar="URL",
        help="push the metrics to a Prometheus Pushgateway at the end",
    )
    chain.add_argument(
        "--log",
        choices=("json", "console"),
        help="log to stderr with structlog: lifecycle events and a summary per run",
    )
    chain.add_argument(
        "--log-level", default="info", help="the lowest level logged (default info)"
    )
    chain.add_argument(
        "--log-events",
        action="store_true",
        help="with --log: log every event instead of the per-run summary",
    )
    chain.add_argument(
        "--log-every",
        type=int,
        default=1,
        metavar="N",
        help="with --log-events: log one output event in N (lifecycle always)",
    )


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    output = parser.add_argument_group("output")
    output.add_argument(
        "--to-redis",
        metavar="URL",
        help="also publish the events, as the source gives them, to a Redis stream",
    )
    output.add_argument(
        "--redis-stream",
        default="eventkit:events",
        metavar="S",
        help="with --to-redis: the stream (default eventkit:events)",
    )
    output.add_argument(
        "--shards",
        type=int,
        default=1,
        metavar="N",
        help="with --to-redis: spread runs over the keys S:0..N-1 (default 1: S)",
    )
    output.add_argument(
        "--jsonl",
        metavar="OUT",
        help="also record the processed stream to OUT (eventkit JSON Lines)",
    )
    output.add_argument(
        "--json",
        action="store_true",
        help="machine-readable: the stream as JSON Lines on stdout, the "
        "summary as JSON on stderr",
    )


def _chain(args: argparse.Namespace) -> list[Stage]:
    """Build the stages the flags ask for, in the documented order."""
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


class _SummarySink(sinks.Sink):
    """Keeps the per-run summaries for the closing report."""

    def __init__(self) -> None:
        self.tracker = SummaryTracker()

    async def send(self, event: Event) -> None:
        self.tracker.feed(event)


def _shown(args: argparse.Namespace, err: Console) -> sinks.Sink:
    """The stream as people see it, or as JSON Lines with ``--json``."""
    if args.json:
        return sinks.jsonl(sys.stdout)
    return sinks.console(show_progress=False, console=err)


class _ProgressBar(sinks.Sink):
    """A live progress bar on stderr, shown once the output reports progress.

    While it shows, rich prints everything written to stdout and stderr above it.
    """

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            # Program output printed above the bar, unless stdout goes elsewhere.
            redirect_stdout=sys.stdout.isatty(),
            redirect_stderr=True,
        )
        self._tasks: dict[str, TaskID] = {}

    async def send(self, event: Event) -> None:
        if event.type != "progress":
            return
        percent = event.attrs.get("percent")
        task = self._tasks.get(event.run)
        if task is None:
            if percent is None:
                return
            if not self._tasks:
                self._progress.start()
            task = self._tasks[event.run] = self._progress.add_task(
                event.run, total=100.0
            )
        if percent is not None:
            self._progress.update(task, completed=percent)
        if event.attrs.get("done"):
            self._progress.remove_task(task)

    async def close(self) -> None:
        if self._tasks:
            self._progress.stop()


def _replay(args: argparse.Namespace) -> int:
    err = Console(stderr=True, highlight=False)
    invalid: list[DecodeError] = []

    def skip(error: DecodeError) -> None:
        invalid.append(error)
        err.print(f"[yellow]skipped[/] {args.file}: {error}", soft_wrap=True)

    target: Any = sys.stdin.buffer if args.file == "-" else args.file
    source = sources.jsonl(target, on_invalid=skip if args.skip_invalid else None)
    try:
        runs = _process(args, source, err)
    except DecodeError as exc:
        err.print(f"[red]error:[/] {args.file}: {exc}")
        err.print("(use --skip-invalid to skip invalid lines)")
        return 1
    _report(args, runs, err, invalid=len(invalid))
    return 0


def _run(args: argparse.Namespace) -> int:
    err = Console(stderr=True, highlight=False)
    try:
        code, language = _code(args)
        env = dict(_pair(item) for item in args.env)
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    try:
        source = _sandbox(args, code, language, env)
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    try:
        runs = _process(args, source, err)
    except eventkit.StreamClosedError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 1
    _report(args, runs, err)
    if not runs:
        return 1
    last = runs[-1]
    if last.exit_code is not None:
        return last.exit_code if 0 <= last.exit_code < 256 else 1
    return 0 if last.success else 1


def _code(args: argparse.Namespace) -> tuple[str, str]:
    """Return the code to run and its language, from -c, a file or stdin."""
    if args.code is not None:
        return args.code, args.language or "python"
    if args.file == "-":
        return sys.stdin.read(), args.language or "python"
    with open(args.file, encoding="utf-8") as file:
        code = file.read()
    suffix = args.file.rsplit(".", 1)[-1] if "." in args.file else ""
    guessed = {"sh": "bash", "bash": "bash", "js": "javascript", "mjs": "javascript"}
    return code, args.language or guessed.get(suffix, "python")


def _pair(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise ValueError(f"--env takes NAME=VALUE, not {item!r}")
    return name, value


def _sandbox(
    args: argparse.Namespace, code: str, language: str, env: dict[str, str]
) -> AsyncIterable[Event]:
    """Return the source the flags name: a remote sandbox, else the local one."""
    if args.url:
        return sources.websocket(
            args.url,
            code,
            language=language,
            timeout=args.timeout,
            env=env,
            token=args.token,
        )
    if args.aicomputer:
        return sources.aicomputer(
            args.aicomputer, code, token=args.token, timeout=args.timeout, env=env
        )
    return sources.local(code, language=language, timeout=args.timeout, env=env)


def _process(
    args: argparse.Namespace, source: AsyncIterable[Event], err: Console
) -> list[RunSummary]:
    """Run ``source`` through the chain the flags ask for, to the outputs.

    Returns:
        The runs' summaries.

    Raises:
        _Exit: With status 2 when the flags make no valid chain, 1 when the
            source cannot be read (the message is printed).
        Exception: Whatever else the source raises, for the caller to report.
    """
    try:
        stages = _chain(args)
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise _Exit(2) from None
    if args.log is not None:
        configure_logging(args.log, level=args.log_level)
    summary = _SummarySink()
    outputs = [_shown(args, err), summary]
    if args.progress and not args.json and err.is_terminal:
        outputs.append(_ProgressBar(err))
    if args.jsonl:
        outputs.append(sinks.jsonl(args.jsonl))
    if args.to_redis:
        # The events as the source gives them: workers run their own chain.
        publisher = sinks.redis_stream(
            args.to_redis, args.redis_stream, shards=args.shards
        )
        source = _published(source, publisher)
    if args.metrics_port is not None:
        outputs.append(sinks.prometheus_http(args.metrics_port))
    if args.pushgateway:
        outputs.append(sinks.pushgateway(args.pushgateway, "eventkit"))
    try:
        asyncio.run(eventkit.run(source, *stages, sink=sinks.tee(*outputs)))
    except (OSError, RedisError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise _Exit(1) from None
    return list(summary.tracker.summaries())


async def _published(
    source: AsyncIterable[Event], publisher: sinks.Sink
) -> AsyncIterator[Event]:
    """Pass ``source`` on, sending each event to ``publisher`` first."""
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


def _serve(args: argparse.Namespace) -> int:
    from eventkit.server import serve

    err = Console(stderr=True, highlight=False)

    def ready(url: str) -> None:
        err.print(f"eventkit sandbox listening on [bold]{url}[/]")
        err.print(f"  HOPX:        AsyncSandbox.create(..., base_url={url!r})")
        err.print(f"  AI Computer: SandboxClient(base_url={url!r})")

    async def sandbox() -> None:
        await serve(
            args.host,
            args.port,
            api_key=args.api_key,
            max_concurrent=args.max_concurrent,
            max_queue=args.max_queue,
            max_timeout=args.max_timeout,
            max_code_bytes=args.max_code_bytes,
            max_output_bytes=args.max_output_bytes,
            on_ready=ready,
        )

    async def main() -> None:
        if args.metrics_port is None:
            await sandbox()
            return
        # No pipeline here: the server's and the sources' own numbers only.
        collector_for(self_metrics=True)
        async with sinks.prometheus_http(args.metrics_port) as metrics:
            err.print(f"metrics on [bold]{metrics.url}[/]")
            await sandbox()

    try:
        asyncio.run(main())
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    except OSError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 1
    return 0


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


def _worker(args: argparse.Namespace) -> int:
    err = Console(stderr=True, highlight=False)
    try:
        stages = _chain(args)
        source = sources.redis_stream(
            args.redis,
            args.stream,
            group=args.group,
            consumer=args.consumer,
            shards=args.shards,
            claim_idle_ms=args.claim_idle_ms,
        )
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
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
        outputs.append(sinks.jsonl(args.jsonl))
    if args.metrics_port is not None:
        outputs.append(sinks.prometheus_http(args.metrics_port))
    if args.pushgateway:
        outputs.append(sinks.pushgateway(args.pushgateway, "eventkit_worker"))

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
            await eventkit.run(source, *stages, sink=sinks.tee(*outputs))
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    try:
        asyncio.run(work())
    except asyncio.CancelledError:
        err.print("[yellow]stopped at once:[/] unacknowledged runs go to others")
        return 130
    except (OSError, RedisError, eventkit.SinkError) as exc:
        err.print(f"[red]error:[/] {exc}")
        return 1
    # Told in the worker's log, like its runs: JSON with --json or --log json.
    structlog.get_logger("eventkit.worker").info("worker_stopped", **totals.as_dict())
    return 0


def _report(
    args: argparse.Namespace,
    runs: list[RunSummary],
    err: Console,
    *,
    invalid: int = 0,
) -> None:
    """Print the closing summary: a table for people, JSON with ``--json``."""
    if args.json:
        document = {"runs": [run.as_dict() for run in runs], "invalid_lines": invalid}
        print(json.dumps(document), file=sys.stderr)
        return
    if not runs:
        err.print("no events")
        return
    table = Table(title="Summary", title_justify="left", expand=False)
    table.add_column("run", no_wrap=True, max_width=12, overflow="ellipsis")
    for column in ("outcome", "exit", "duration", "events", "out / err"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("notes", overflow="fold")
    for run in runs:
        table.add_row(*_row(run))
    err.print(table)
    if invalid:
        err.print(f"[yellow]{invalid} invalid line(s) skipped[/]")


def _row(run: RunSummary) -> list[str]:
    if run.success is None:
        outcome = "[yellow]incomplete[/]"
    elif run.success:
        outcome = "[green]success[/]"
    else:
        outcome = "[red]failure[/]"
    events = f"{sum(run.events.values()):,}"
    output = f"{run.bytes.get('stdout', 0):,} B / {run.bytes.get('stderr', 0):,} B"
    notes = []
    if run.percent is not None:
        notes.append(f"progress {run.percent:.0f}%")
    if run.gaps:
        notes.append(f"{run.gaps} gap(s), {run.missing} missing")
    if run.limits:
        notes.append("limits: " + ", ".join(run.limits))
    if run.errors:
        notes.append(f"{len(run.errors)} error(s)")
    return [
        run.run or "-",
        outcome,
        "-" if run.exit_code is None else str(run.exit_code),
        f"{run.duration:.2f}s",
        events,
        output,
        "; ".join(notes),
    ]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eventkit")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"
