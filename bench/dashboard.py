"""What the dashboard costs: the core chain with and without it, a browser connected.

Chain: reorder -> only("stdout", "stderr", "completed") -> buffer_bytes(1024)
-> track_progress, as in :mod:`bench.core` (b), over the same synthetic
events, then:

(base)       the output to a counting sink;
(dashboard)  the output to the counting sink and :func:`eventkit.sinks.dashboard`
             (``sinks.tee``), served, with one browser connected;
(cli)        as ``eventkit run --dashboard`` wires it: the dashboard's
             upstream tapped before the chain (every source event counted
             into its run's record), its watch stage at the end of the chain,
             the output to the counting sink and the dashboard. Reported, not
             bound: the target (``<= 1.15``) is the sink's; this also counts
             each of the source's events in Python, before the chain shrinks
             them (here 8 runs interleaved event by event, the worst case).

The browser is a separate process reading ``/api/stream?run=...`` (what the
page opens), so that its reading costs this process nothing, as a real
browser's would not; one publication to it is timed with each repetition.
Repetitions interleave the variants; ratios are from each variant's best run.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Final

import eventkit
from bench.core import LIMIT, Tally, against_base
from bench.data import synthetic_events
from eventkit import pipe, sinks, sources

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventkit import Event, Stage
    from eventkit.dashboard import Dashboard

#: Most added cost allowed, as a ratio.
TARGET: Final = 1.15

VARIANTS: Final = {
    "base": "core chain (reorder, only, buffer_bytes, track_progress)",
    "dashboard": "+ sinks.dashboard() as a sink, one browser connected",
    "cli": "+ as eventkit run --dashboard wires it (tap before the chain)",
}

#: The browser: reads the stream of the first run until closed.
_BROWSER: Final = (
    "import sys, urllib.request\n"
    "with urllib.request.urlopen(sys.argv[1]) as stream:\n"
    "    while stream.read(65536):\n"
    "        pass\n"
)


def _chain() -> list[Stage]:
    return [
        pipe.reorder(),
        pipe.only("stdout", "stderr", "completed"),
        pipe.buffer_bytes(LIMIT),
        pipe.track_progress(),
    ]


async def _run(
    name: str, events: list[Event], tally: Tally, dashboard: Dashboard
) -> None:
    source = sources.iterate(events)
    if name == "base":
        await eventkit.run(source, *_chain(), sink=sinks.call(tally))
        return
    output = sinks.tee(sinks.call(tally), dashboard)
    if name == "dashboard":
        await eventkit.run(source, *_chain(), sink=output)
    else:
        await eventkit.run(
            source | pipe.tap(dashboard.upstream),
            *_chain(),
            dashboard.watch(),
            sink=output,
        )
    # What the browser gets for it: one publication of every change.
    dashboard.app.publish()


def _browser(dashboard: Dashboard, run: str) -> subprocess.Popen[bytes]:
    """Start the browser: a process reading the stream of ``run``."""
    assert dashboard.url is not None
    return subprocess.Popen(
        [sys.executable, "-c", _BROWSER, f"{dashboard.url}api/stream?run={run}"]
    )


async def _connected(dashboard: Dashboard) -> None:
    while not dashboard.app.clients:  # noqa: ASYNC110 - set by the server's task
        await asyncio.sleep(0.01)


def measure(
    events: int,
    repetitions: int,
    on_step: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Time each variant ``repetitions`` times, interleaved; return the report.

    Returns:
        ``{"benchmark": "dashboard", "title", "variants": {name: {"label",
        "events/s", "ns/event", "median ns/event", "added ns/event",
        "x base", "seconds"}}, "targets": {"dashboard/base": {"value",
        "target"}}}``.
    """
    data = list(synthetic_events(events))
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    expected: object = None
    with asyncio.Runner() as runner:
        dashboard = sinks.dashboard(source="bench")
        runner.run(dashboard.start())
        browser = _browser(dashboard, data[0].run)
        runner.run(_connected(dashboard))
        try:
            for round_ in range(repetitions + 1):  # the first round warms up
                for name in VARIANTS:
                    tally = Tally()
                    gc.collect()
                    begin = time.perf_counter()
                    runner.run(_run(name, data, tally, dashboard))
                    elapsed = time.perf_counter() - begin
                    if expected is None:
                        expected = tally.key()
                    elif tally.key() != expected:
                        raise AssertionError(f"{name} delivered different output")
                    if round_:
                        times[name].append(elapsed)
                    on_step(name)
            missed = dashboard.app.missed
        finally:
            runner.run(dashboard.stop())
            browser.wait(timeout=30)
    variants = against_base(times, events, VARIANTS)
    return {
        "benchmark": "dashboard",
        "title": f"The dashboard on the core chain, {events:,} events, one browser "
        f"connected (best of {repetitions}; {missed} messages it missed)",
        "variants": variants,
        # The bound is on the sink; the CLI's wiring (cli) is reported above.
        "targets": {
            "dashboard/base": {
                "value": variants["dashboard"]["x base"],
                "target": f"<= {TARGET}",
            },
        },
    }


if __name__ == "__main__":
    import json

    json.dump(
        measure(300_000, int(sys.argv[1]) if len(sys.argv) > 1 else 3),
        sys.stdout,
        indent=2,
    )
    print()
