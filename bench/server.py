"""The local sandbox server: executions per second and streaming throughput.

The server runs in a process of its own (``eventkit.server.serve``, 32
slots), as ``eventkit serve`` would; the clients run here.

(exec/N)  ``print(1)`` runs per second with N concurrent clients (1, 8, 32),
          each in a sandbox of its own, each run a new HOPX WebSocket through
          ``eventkit.sources.websocket`` (no compression) read to
          ``completed``. Baseline: the same number of runs of
          ``eventkit.sources.local("print(1)")`` in this process, N at a
          time: what the server adds to the executor.
(stream)  A program writing 100 MiB to stdout, read through the server by
          ``eventkit.sources.websocket`` (MiB/s from the call to
          ``completed``). Baseline: the same program with stdout on
          ``/dev/null`` in a local subprocess. Interleaved, medians.

Both are bounded by the child interpreters and the machine's cores (the
report says how many); there is no fixed target, so the targets table is
empty and the ratios are in the variants.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Final

import aiohttp

from eventkit.sources.hopx import websocket
from eventkit.sources.local import local

#: Concurrent clients measured.
CLIENTS: Final = (1, 8, 32)
#: 100 MiB in 64 KiB writes of 1 KiB lines.
#: MiB/s the server must stream to the WebSocket source (issue 13).
STREAM_TARGET: Final = 500.0
STREAM_CODE: Final = (
    "import sys\n"
    "block = ('x' * 1023 + '\\n') * 64\n"
    "write = sys.stdout.write\n"
    "for _ in range(1600):\n"
    "    write(block)\n"
)
STREAM_BYTES: Final = 1600 * 64 * 1024
_SERVER: Final = (
    "import asyncio\n"
    "from eventkit.server import serve\n"
    "try:\n"
    "    asyncio.run(serve('127.0.0.1', 0, max_concurrent=32, max_queue=64,"
    " max_output_bytes=None,"
    " on_ready=lambda url: print(url, flush=True)))\n"
    "except KeyboardInterrupt:\n"
    "    pass\n"
)


class _Server:
    """``eventkit.server.serve`` in a subprocess, for the duration of a block."""

    def __init__(self) -> None:
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> _Server:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        self.url = self._process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.__exit__()
            raise RuntimeError("the server did not start")
        return self

    def __exit__(self, *_: object) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _tokens(url: str, count: int) -> list[str]:
    """Create ``count`` HOPX sandboxes; return their agent tokens."""
    async with aiohttp.ClientSession() as session:
        tokens = []
        for _ in range(count):
            async with session.post(
                f"{url}/v1/sandboxes", headers={"X-API-Key": "bench"}
            ) as response:
                response.raise_for_status()
                tokens.append((await response.json())["auth_token"])
        return tokens


async def _print_one_remote(url: str, token: str) -> None:
    seen = ""
    source = websocket(url, "print(1)", token=token, compression=None)
    async with source.stream() as events:
        async for event in events:
            if event.type == "stdout":
                seen += event.data
            elif event.type == "completed" and not event.attrs["success"]:
                raise AssertionError(f"run failed: {event!r}")
    if seen != "1\n":
        raise AssertionError(f"run printed {seen!r}")


async def _print_one_local() -> None:
    seen = ""
    async with local("print(1)").stream() as events:
        async for event in events:
            if event.type == "stdout":
                seen += event.data
    if seen != "1\n":
        raise AssertionError(f"run printed {seen!r}")


async def _rate(clients: int, runs: int, one: Any) -> float:
    """Run ``one(client)`` ``runs`` times, ``clients`` at a time; return runs/s."""
    left = [runs]

    async def client(index: int) -> None:
        while left[0] > 0:
            left[0] -= 1
            await one(index)

    begin = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return runs / (time.perf_counter() - begin)


async def _executions(url: str, runs_per_client: int) -> dict[str, Any]:
    tokens = await _tokens(url, max(CLIENTS))
    variants: dict[str, Any] = {}
    for clients in CLIENTS:
        runs = max(40, runs_per_client * clients)

        async def remote(index: int) -> None:
            await _print_one_remote(url, tokens[index])

        async def nearby(_: int) -> None:
            await _print_one_local()

        await _rate(clients, clients, remote)  # warm-up
        server = await _rate(clients, runs, remote)
        baseline = await _rate(clients, runs, nearby)
        variants[f"exec/{clients}"] = {
            "label": f"print(1) runs/s, {clients} client(s): server vs local()",
            "server": server,
            "baseline": baseline,
            "ratio": server / baseline,
        }
    return variants


async def _stream_remote(url: str, token: str) -> float:
    size = 0
    begin = time.perf_counter()
    source = websocket(url, STREAM_CODE, token=token, compression=None)
    async with source.stream() as events:
        async for event in events:
            if event.type == "stdout":
                size += len(event.data)
    spent = time.perf_counter() - begin
    if size != STREAM_BYTES:
        raise AssertionError(f"streamed {size} bytes, not {STREAM_BYTES}")
    return spent


async def _stream_devnull() -> float:
    begin = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-u", "-c", STREAM_CODE, stdout=subprocess.DEVNULL
    )
    if await process.wait() != 0:
        raise AssertionError("the /dev/null run failed")
    return time.perf_counter() - begin


async def _streaming(url: str, repetitions: int) -> dict[str, Any]:
    (token,) = await _tokens(url, 1)
    remote: list[float] = []
    devnull: list[float] = []
    for _ in range(repetitions):
        remote.append(await _stream_remote(url, token))
        devnull.append(await _stream_devnull())
    mib = STREAM_BYTES / 2**20
    server = mib / statistics.median(remote)
    baseline = mib / statistics.median(devnull)
    return {
        "stream": {
            "label": "100 MiB, MiB/s: server -> websocket source vs -> /dev/null",
            "server": server,
            "baseline": baseline,
            "ratio": server / baseline,
        }
    }


def measure(runs_per_client: int = 10, repetitions: int = 3) -> dict[str, Any]:
    """Measure both, against a server in a subprocess; return the report.

    Args:
        runs_per_client: Timed ``print(1)`` runs per client at each level
            (at least 40 per level).
        repetitions: Timed 100 MiB runs of each streaming variant.

    Returns:
        ``{"benchmark": "server", "title", "cpus", "variants": {name:
        {"label", "server", "baseline", "ratio"}}, "targets": {"stream
        MiB/s"}, "targets_met"}``; ``server`` and ``baseline`` are runs/s
        for ``exec/N`` and MiB/s for ``stream``.
    """
    with _Server() as server, asyncio.Runner() as runner:
        variants = runner.run(_executions(server.url, runs_per_client))
        variants.update(runner.run(_streaming(server.url, repetitions)))
    return {
        "benchmark": "server",
        "title": f"local sandbox server ({os.cpu_count()} CPUs)",
        "cpus": os.cpu_count(),
        "variants": variants,
        "targets": {
            "stream MiB/s": {
                "value": variants["stream"]["server"],
                "target": f">= {STREAM_TARGET:g}",
            }
        },
        "targets_met": variants["stream"]["server"] >= STREAM_TARGET,
    }


if __name__ == "__main__":
    json.dump(measure(), sys.stdout, indent=2)
    print()
