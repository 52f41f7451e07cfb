"""``python -m bench`` (``make bench``): eventkit's benchmarks, side by side.

Prints a table per benchmark with the measured ratios against their targets;
``--json`` prints the same as one JSON document instead. Targets are
reported, not asserted: a missed target shows as such, with its numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench import core
from bench.data import synthetic_events


def _peak_rss_mib() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child
    # started by a big parent would report the parent's peak.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def streaming_rss(variant: str, events: int) -> float:
    """Return the peak RSS (MiB) of a fresh process streaming ``events`` events.

    The events are made as they are consumed, as from a live source, so the
    figure is the pipeline's own footprint plus the interpreter's.
    """
    child = subprocess.run(
        [sys.executable, "-m", "bench", "--rss-of", variant, "--events", str(events)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(child.stdout)


def _rss_of(variant: str, events: int) -> None:
    asyncio.run(core.VARIANTS[variant][1](synthetic_events(events), core.Tally()))
    print(_peak_rss_mib())


def run_core(events: int, repetitions: int, console: Console | None) -> dict[str, Any]:
    """Measure the core chain three ways; return the report."""
    data = list(synthetic_events(events))
    steps = (repetitions + 1) * len(core.VARIANTS)
    if console is None:
        times = core.measure(data, repetitions)
    else:
        with Progress(
            TextColumn("core chain"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} runs ({task.description})"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("warm-up", total=steps)
            times = core.measure(
                data,
                repetitions,
                lambda name: progress.update(task, advance=1, description=name),
            )
    del data
    rss = {name: streaming_rss(name, events) for name in core.VARIANTS}
    medians = {name: core.median(spent) for name, spent in times.items()}
    rate = {name: events / seconds for name, seconds in medians.items()}
    return {
        "benchmark": "core",
        "events": events,
        "repetitions": repetitions,
        "variants": {
            name: {
                "label": core.VARIANTS[name][0],
                "events_per_second": rate[name],
                "us_per_event": medians[name] / events * 1e6,
                "seconds": times[name],
                "peak_rss_mib": rss[name],
            }
            for name in times
        },
        "ratios": {
            "b/a": {"value": rate["b"] / rate["a"], "target": ">= 0.6"},
            "b/c": {"value": rate["b"] / rate["c"], "target": ">= 3"},
        },
        "peak_rss_mib": {"value": rss["b"], "target": "< 150"},
        "targets_met": rate["b"] / rate["a"] >= 0.6
        and rate["b"] / rate["c"] >= 3
        and rss["b"] < 150,
    }


def show_core(report: dict[str, Any], console: Console) -> None:
    """Print the core report as tables."""
    table = Table(title=f"Core chain, {report['events']:,} events (median)")
    table.add_column("variant")
    table.add_column("events/s", justify="right")
    table.add_column("µs/event", justify="right")
    table.add_column("peak RSS, streaming", justify="right")
    for name, variant in report["variants"].items():
        table.add_row(
            f"({name}) {variant['label']}",
            f"{variant['events_per_second']:,.0f}",
            f"{variant['us_per_event']:.3f}",
            f"{variant['peak_rss_mib']:.0f} MiB",
        )
    console.print(table)
    targets = Table(title="Targets")
    targets.add_column("measure")
    targets.add_column("value", justify="right")
    targets.add_column("target")
    targets.add_column("met")
    for name, ratio in report["ratios"].items():
        met = eval_target(ratio["value"], ratio["target"])
        targets.add_row(name, f"{ratio['value']:.2f}x", ratio["target"], _mark(met))
    rss = report["peak_rss_mib"]
    targets.add_row(
        "peak RSS (b)",
        f"{rss['value']:.0f} MiB",
        f"{rss['target']} MiB",
        _mark(eval_target(rss["value"], rss["target"])),
    )
    console.print(targets)


def eval_target(value: float, target: str) -> bool:
    """Tell whether ``value`` meets a target written as ``">= 0.6"`` or ``"< 150"``."""
    op, bound = target.split()
    return {">=": value >= float(bound), "<": value < float(bound)}[op]


def _mark(met: bool) -> str:
    return "[green]yes[/]" if met else "[red]no[/]"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON, not tables")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument(
        "--rss-of", choices=sorted(core.VARIANTS), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.rss_of:
        _rss_of(args.rss_of, args.events)
        return 0
    console = None if args.json else Console(stderr=False)
    report = run_core(args.events, args.repetitions, console)
    if console is None:
        json.dump({"core": report}, sys.stdout, indent=2)
        print()
    else:
        show_core(report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
