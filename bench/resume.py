"""Resume latency: from a cut connection to the first event resumed after it.

A run on ``eventkit serve`` prints a line every millisecond, read through a
TCP proxy (:mod:`tests.proxy`) by ``sources.websocket(reconnect=True)``.
Every 50 lines the proxy resets the connection; the time from the cut to the
first event that came over the new connection (the source has counted its
reconnect by then) is one sample. Events already received before the cut
are not samples: they were in hand.

Reported, not a target (issue 14): the median and the 90th percentile over
``cuts`` cuts, in milliseconds. The first reconnect attempt is immediate, so
this is the cost of a TCP connect, a WebSocket handshake and the replay.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any, Final

import aiohttp

from eventkit import sources
from eventkit.server import LocalSandboxServer
from eventkit.stats import source_stats
from tests.proxy import CuttingProxy

#: Lines between two cuts.
EVERY: Final = 50
#: A program that prints a numbered line every millisecond for a minute.
PROGRAM: Final = (
    "import time\nfor i in range(60_000):\n    print(i, flush=True)\n"
    "    time.sleep(0.001)\n"
)


async def _latencies(cuts: int) -> list[float]:
    async with (
        LocalSandboxServer(isolation="none") as server,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(
            f"{server.url}/v1/sandboxes", json={}, headers={"X-API-Key": "bench"}
        ) as response:
            token = (await response.json())["auth_token"]
        port = int(server.url.rsplit(":", 1)[1])
        async with CuttingProxy("127.0.0.1", port) as proxy:
            stream = sources.websocket(
                proxy.url(), PROGRAM, token=token, reconnect=True, compression=None
            )
            stats = source_stats("websocket")
            samples: list[float] = []
            lines = 0
            cut_at: float | None = None
            reconnects = stats.reconnects
            async for event in stream:
                if cut_at is not None and stats.reconnects > reconnects:
                    samples.append(time.perf_counter() - cut_at)
                    cut_at, reconnects = None, stats.reconnects
                    if len(samples) == cuts:
                        break  # a clean close: the run is cancelled
                if event.type != "stdout":
                    continue
                lines += 1
                if cut_at is None and lines % EVERY == 0:
                    cut_at = time.perf_counter()
                    proxy.cut()
            return samples


def measure(cuts: int = 20) -> dict[str, Any]:
    """Cut ``cuts`` times; return the report.

    Returns:
        ``{"benchmark": "resume", "variants": {"resume": {"label", "median
        ms", "p90 ms", "ms"}}, "targets": {}, "targets_met": True}``.
    """
    samples = asyncio.run(_latencies(cuts))
    ms = sorted(sample * 1e3 for sample in samples)
    return {
        "benchmark": "resume",
        "title": "resume latency: a cut connection to the first resumed event",
        "variants": {
            "resume": {
                "label": f"{len(ms)} cuts, loopback through a TCP proxy",
                "median ms": statistics.median(ms),
                "p90 ms": ms[min(len(ms) - 1, int(len(ms) * 0.9))],
                "ms": ms,
            }
        },
        "targets": {},
        "targets_met": True,
    }


if __name__ == "__main__":
    json.dump(measure(), sys.stdout, indent=2)
    print()
