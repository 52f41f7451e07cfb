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
import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

import eventkit
from eventkit import pipe, sinks, sources
from eventkit.events import LIFECYCLE_TYPES
from eventkit.logging import configure as configure_logging
from eventkit.protocol.jsonl import DecodeError
from eventkit.summary import RunSummary, SummaryTracker

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventkit.events import Event
    from eventkit.runner import Stage

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``eventkit`` command; return its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventkit",
        description="Process code-execution sandbox event streams.",
    )
    parser.add_argument("--version", action="version", version=f"eventkit {_version()}")
    commands = parser.add_subparsers(title="commands", required=True)

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
        help="coalesce output into chunks of at most N bytes",
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
        "--log",
        choices=("json", "console"),
        help="log lifecycle events to stderr with structlog",
    )


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    output = parser.add_argument_group("output")
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
        stages.append(pipe.buffer_bytes(args.buffer_bytes))
    if args.progress:
        stages.append(pipe.track_progress())
    if args.metrics_port is not None:
        stages.append(pipe.export_metrics())
    if args.log is not None:
        stages.append(pipe.log_events(types=LIFECYCLE_TYPES))
    return stages


class _SummarySink(sinks.Sink):
    """Keeps the per-run summaries for the closing report."""

    def __init__(self) -> None:
        self.tracker = SummaryTracker()

    async def send(self, event: Event) -> None:
        self.tracker.feed(event)


def _outputs(args: argparse.Namespace, summary: _SummarySink) -> sinks.Sink:
    shown: sinks.Sink = (
        sinks.jsonl(sys.stdout) if args.json else sinks.console(show_progress=False)
    )
    chosen = [shown, summary]
    if args.jsonl:
        chosen.append(sinks.jsonl(args.jsonl))
    return sinks.tee(*chosen)


def _replay(args: argparse.Namespace) -> int:
    err = Console(stderr=True, highlight=False)
    try:
        stages = _chain(args)
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    if args.log is not None:
        configure_logging(args.log)
    invalid: list[DecodeError] = []

    def skip(error: DecodeError) -> None:
        invalid.append(error)
        err.print(f"[yellow]skipped[/] {args.file}: {error}", markup=True)

    target: Any = sys.stdin.buffer if args.file == "-" else args.file
    source = sources.jsonl(target, on_invalid=skip if args.skip_invalid else None)
    summary = _SummarySink()
    server = _serve_metrics(args.metrics_port)
    try:
        asyncio.run(eventkit.run(source, *stages, sink=_outputs(args, summary)))
    except DecodeError as exc:
        err.print(f"[red]error:[/] {args.file}: {exc}")
        err.print("(use --skip-invalid to skip invalid lines)")
        return 1
    except OSError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 1
    finally:
        if server is not None:
            server.shutdown()
    _report(args, list(summary.tracker.summaries()), len(invalid), err)
    return 0


def _serve_metrics(port: int | None) -> Any:
    if port is None:
        return None
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr="127.0.0.1")
    return server


def _report(
    args: argparse.Namespace,
    runs: list[RunSummary],
    invalid: int,
    err: Console,
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
    for column in (
        "run",
        "outcome",
        "exit",
        "duration",
        "events",
        "out / err",
        "notes",
    ):
        table.add_column(
            column, justify="left" if column in ("run", "notes") else "right"
        )
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
