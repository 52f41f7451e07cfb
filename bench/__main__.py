"""``python -m bench`` (``make bench``): eventkit's benchmarks, side by side.

Each benchmark measures eventkit against a baseline in the same run, variants
interleaved, and prints a table of the variants and one of its targets.
Targets are reported, not asserted: a missed target shows as such, with its
numbers. ``--json`` prints every report as one JSON document instead.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench import (
    core,
    dashboard,
    executor,
    fanin,
    ingest,
    observability,
    redis,
    resume,
    server,
    startup,
)

Step = Callable[[str], None]

#: name -> (what it measures, runs it with the arguments and a progress hook)
SUITES: dict[str, tuple[str, Callable[[argparse.Namespace, Step], dict[str, Any]]]] = {
    "core": (
        "the operator chain: hand-written vs fused vs aiostream",
        lambda args, step: core.report(args.events, args.repetitions, step),
    ),
    "observability": (
        "metrics and logs on the core chain: added cost",
        lambda args, step: observability.measure(args.events, args.repetitions, step),
    ),
    "dashboard": (
        "the live dashboard on the core chain, one browser connected: added cost",
        lambda args, step: dashboard.measure(args.events, args.repetitions, step),
    ),
    "ingest": (
        "WebSocket ingest: eventkit's HOPX source vs a bare websockets client",
        lambda args, step: ingest.measure(args.frames, args.repetitions, step),
    ),
    "fanin": (
        "fan-in: 1,000 HOPX streams merged through the chain vs bare clients",
        lambda args, step: fanin.measure(
            args.streams, args.stream_frames, args.repetitions, step
        ),
    ),
    "executor": (
        "local executor: start to first stdout vs a bare subprocess",
        lambda args, step: executor.measure(args.spawns),
    ),
    "server": (
        "local sandbox server: print(1) runs/s, a 100 MiB stream",
        lambda args, step: server.measure(),
    ),
    "redis": (
        "Redis Streams end to end: eventkit's sink and source vs raw redis-py",
        lambda args, step: redis.measure(args.redis_events, args.repetitions, step),
    ),
    "resume": (
        "resume latency: a cut WebSocket to the first event resumed after it",
        lambda args, step: resume.measure(),
    ),
    "startup": (
        "the eventkit command's start: --version and --help vs import asyncio",
        lambda args, step: startup.measure(args.starts),
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; print their reports."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "suites",
        nargs="*",
        choices=[[], *SUITES],
        metavar="SUITE",
        help=f"which to run (default: all): {', '.join(SUITES)}",
    )
    parser.add_argument("--json", action="store_true", help="print JSON, not tables")
    parser.add_argument("--events", type=int, default=1_000_000, help="core: events")
    parser.add_argument("--repetitions", type=int, default=3, help="core: rounds")
    parser.add_argument("--frames", type=int, default=200_000, help="ingest: frames")
    parser.add_argument("--spawns", type=int, default=20, help="executor: rounds")
    parser.add_argument("--streams", type=int, default=1000, help="fanin: streams")
    parser.add_argument(
        "--stream-frames", type=int, default=1024, help="fanin: messages per stream"
    )
    parser.add_argument("--starts", type=int, default=20, help="startup: rounds")
    parser.add_argument(
        "--redis-events", type=int, default=100_000, help="redis: events"
    )
    args = parser.parse_args(argv)
    chosen = args.suites or list(SUITES)
    console = Console(stderr=args.json)
    reports = {}
    for name in chosen:
        label, measure = SUITES[name]
        with Progress(
            TextColumn(f"[bold]{name}[/] {label}"),
            BarColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("", total=None)
            reports[name] = measure(args, functools.partial(_describe, progress, task))
        if not args.json:
            show(reports[name], console)
    if args.json:
        json.dump(reports, sys.stdout, indent=2)
        print()
    return 0


def _describe(progress: Progress, task: TaskID, step: str) -> None:
    progress.update(task, description=step)


def show(report: dict[str, Any], console: Console) -> None:
    """Print a report: its variants, then its targets."""
    if report.get("skipped"):
        console.print(f"[bold]{report['benchmark']}[/] skipped: {report['skipped']}")
        return
    variants = report["variants"]
    columns = [
        key
        for key, value in next(iter(variants.values())).items()
        if isinstance(value, int | float)
    ]
    table = Table(title=report.get("title", report["benchmark"]), title_justify="left")
    table.add_column("variant")
    for column in columns:
        table.add_column(column, justify="right")
    for name, variant in variants.items():
        table.add_row(
            f"({name}) {variant['label']}", *(_number(variant[c]) for c in columns)
        )
    console.print(table)
    targets = Table(show_header=True, title_justify="left")
    for column in ("target", "measured", "wanted", "met"):
        targets.add_column(column, justify="left" if column == "target" else "right")
    for name, target in report["targets"].items():
        met = meets(target["value"], target["target"])
        targets.add_row(
            name,
            f"{target['value']:.2f}",
            target["target"],
            "[green]yes[/]" if met else "[red]no[/]",
        )
    console.print(targets)
    for name, value in report.get("info", {}).items():
        shown = _number(value) if isinstance(value, int | float) else str(value)
        console.print(f"  {name}: {shown}")


def meets(value: float, target: str) -> bool:
    """Tell whether ``value`` meets a target such as ``">= 0.6"`` or ``"< 150"``."""
    op, bound = target.split()
    compare = {
        ">=": value >= float(bound),
        "<=": value <= float(bound),
        "<": value < float(bound),
    }
    return compare[op]


def _number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
