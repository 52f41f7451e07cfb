"""Exporting execution metrics to Prometheus.

Runs a few programs on the local sandbox at once, through the usual chain,
and serves what eventkit counts on ``http://127.0.0.1:9464/metrics`` while
they run: events and bytes by type, runs by outcome, run durations, and the
pipeline's own metrics per stage (see ``docs/metrics.md``). Point the
``prometheus.yml`` next to this file at it, and import
``grafana-dashboard.json`` into Grafana.

    python recipes/prometheus/prometheus_metrics.py [--port 9464] [--hold 60]
    python recipes/prometheus/prometheus_metrics.py --pushgateway http://127.0.0.1:9091

Short runs end before any scrape: ``--hold`` keeps serving after them, and
``--pushgateway`` pushes the final numbers to a Pushgateway instead.
"""

from __future__ import annotations

import argparse
import asyncio
import urllib.request

from prometheus_client import CollectorRegistry

import eventkit
from eventkit import pipe, sinks, sources

# Three programs: two succeed, one fails, one hits its output limit.
PROGRAMS = {
    "ok": "for i in range(1, 11):\n    print(f'Processed {i}/10 items')\n",
    "fails": "import sys\nprint('working')\nprint('oops', file=sys.stderr)\n"
    "sys.exit(3)\n",
    "chatty": "while True:\n    print('x' * 100)\n",
}


async def execute(name: str, code: str, registry: CollectorRegistry) -> None:
    """Run one program through the chain; count it in ``registry``."""
    await eventkit.run(
        sources.local(code, run=name, max_output_bytes=20_000),
        pipe.reorder(),
        pipe.buffer_bytes(4096, max_age=0.1),
        pipe.track_progress(),
        # Counts events, runs and durations; self_metrics (the default) also
        # counts every stage of this chain.
        pipe.export_metrics(registry),
    )


async def main(port: int, hold: float, pushgateway: str | None) -> None:
    # A registry of our own; prometheus_client's default one would also do.
    registry = CollectorRegistry()
    endpoint = sinks.prometheus_http(port, registry=registry)
    # The endpoint is a sink whose lifetime is what matters: open it around
    # all the runs (a sink given to eventkit.run serves for that run only).
    async with endpoint:
        print(f"serving {endpoint.url}")
        await asyncio.gather(
            *(execute(name, code, registry) for name, code in PROGRAMS.items())
        )
        # What a scrape sees now (blocking I/O: in a thread).
        text = await asyncio.to_thread(_get, endpoint.url)
        for line in text.splitlines():
            if line.startswith(("eventkit_runs_total", "eventkit_resource_limits")):
                print(line)
        if hold:
            print(f"holding for {hold:g}s: scrape me")
            await asyncio.sleep(hold)
    if pushgateway:
        # For jobs that end before any scrape: push once, at the end.
        gateway = sinks.pushgateway(pushgateway, "eventkit_recipe", registry=registry)
        async with gateway:
            pass
        print(
            f"pushed to {pushgateway}: {gateway.pushes} ok, {gateway.failures} failed"
        )


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9464, help="0 for any free port")
    parser.add_argument("--hold", type=float, default=0.0, help="serve N s longer")
    parser.add_argument("--pushgateway", metavar="URL", help="push there at the end")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.hold, args.pushgateway))
