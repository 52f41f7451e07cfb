"""Fan-in: one process following a thousand sandbox streams at once.

A websockets server in its own process (on its own core) answers each
connection's ``execute`` message with ``frames`` HOPX ``stdout`` messages,
then ``complete``, written pre-framed in chunks of 64 messages; each chunk's
messages carry the time it was written (``timestamp``), which the client
reads back for the latency. ``streams`` connections at once, two clients,
each in a fresh process (so peak RSS is its own), interleaved:

(bare)      ``streams`` bare websockets clients, one task each, that only
            ``recv(decode=False)`` until ``complete``: no decoding at all;
(eventkit)  ``eventkit.merge`` of ``streams`` :func:`eventkit.sources.websocket`
            sources through ``reorder -> buffer_bytes -> track_progress ->
            export_metrics`` into a counting sink;

Reported: events/s (frames per second for bare), the ratio (target >= 0.8),
the frame-to-sink latency of eventkit (p50 and p99: from the moment the
server wrote a frame to the moment its output reached the sink), and the
resident memory per stream above bare's (target <= 64 KiB): each client's
peak RSS less its RSS once its modules are imported, per stream.

Run it alone with ``python -m bench.fanin [streams] [frames] [repetitions]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bench.ingest import CODE, COMPLETE, DATA, MESSAGE, _cores, _frame_header

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from websockets.asyncio.server import ServerConnection

    from eventkit import Event

#: Messages written per chunk, all stamped with the time of the write.
CHUNK: Final = 64
VARIANTS: Final = {
    "bare": "bare websockets clients, recv(decode=False), no decoding",
    "eventkit": "eventkit.merge of websocket sources -> reorder -> buffer_bytes "
    "-> track_progress -> export_metrics -> counting sink",
}


# Server (child process) ----------------------------------------------------------


def _chunk() -> bytes:
    """Return ``CHUNK`` framed stdout messages stamped with the time now."""
    stamp = datetime.now(UTC).isoformat(timespec="microseconds")[:-6] + "Z"
    frame = json.dumps(
        {"type": "stdout", "data": DATA, "timestamp": stamp}, separators=(",", ":")
    ).encode()
    return (_frame_header(len(frame)) + frame) * CHUNK


async def _serve(frames: int) -> None:
    """Serve ``frames`` stamped messages per connection; print the port."""
    from websockets.asyncio.server import serve

    complete = _frame_header(len(COMPLETE)) + COMPLETE

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        sent = 0
        while sent < frames:
            # Stamped at the write: the chunk's messages leave now.
            ws.transport.write(_chunk())
            sent += CHUNK
            await ws.drain()
        ws.transport.write(complete)
        await ws.wait_closed()

    async with serve(
        handler,
        "127.0.0.1",
        0,
        compression=None,
        ping_interval=None,
        max_size=None,
        backlog=4096,
    ) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()  # until the parent kills us


@contextlib.contextmanager
def _server(frames: int, core: int | None) -> Iterator[str]:
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "bench.fanin", "--serve", str(frames)]
    if core is not None:
        command += ["--core", str(core)]
    child = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        yield f"ws://127.0.0.1:{int(child.stdout.readline())}"
    finally:
        child.kill()
        child.wait()


# Clients (child processes) -------------------------------------------------------


async def _bare(url: str, streams: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    async def one() -> int:
        received = 0
        async with connect(
            url, compression=None, max_size=None, ping_interval=None, open_timeout=60
        ) as ws:
            await ws.send(MESSAGE)
            recv = ws.recv
            while True:
                frame = await recv(False)
                if frame == COMPLETE:
                    return received
                received += 1

    counts = await asyncio.gather(*(one() for _ in range(streams)))
    return {"events": sum(counts)}


async def _eventkit(url: str, streams: int) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    import eventkit
    from eventkit import pipe, sinks, sources

    latencies: list[float] = []
    counted = 0

    class Counting(sinks.Sink):
        async def send(self, event: Event) -> None:  # pragma: no cover - batches
            await self.send_batch([event])

        async def send_batch(self, events: list[Event]) -> None:
            nonlocal counted
            now = time.time()
            for event in events:
                if event.type == "stdout":
                    counted += event.attrs.get("count", 1)
                    # One sample per chunk out of buffer_bytes: its first
                    # message's write time.
                    latencies.append(now - event.timestamp)

    runs = [
        sources.websocket(
            url,
            CODE,
            compression=None,
            max_size=2**20,
            open_timeout=60,
            ping_interval=None,
        )
        for _ in range(streams)
    ]
    await eventkit.run(
        eventkit.merge(*runs),
        pipe.reorder(),
        pipe.buffer_bytes(1024),
        pipe.track_progress(),
        pipe.export_metrics(CollectorRegistry()),
        sink=Counting(),
    )
    latencies.sort()
    return {
        "events": counted,
        "p50_ms": 1e3 * latencies[len(latencies) // 2],
        "p99_ms": 1e3 * latencies[int(len(latencies) * 0.99)],
    }


CLIENTS: Final[dict[str, Callable[[str, int], Any]]] = {
    "bare": _bare,
    "eventkit": _eventkit,
}


def _memory(field: str) -> int:
    """Return this process's ``VmRSS`` or ``VmHWM`` (peak), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise LookupError(field)


def _client(name: str, url: str, streams: int) -> None:
    """The child: run one client, print what it measured as JSON.

    What it imports is loaded before the clock starts and before the
    resident size is taken: the figures are the streams' own.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import prometheus_client  # noqa: F401
    import websockets.asyncio.client  # noqa: F401

    import eventkit.fanin
    import eventkit.sources.hopx  # noqa: F401

    before = _memory("VmRSS")
    begin = time.perf_counter()
    result = asyncio.run(CLIENTS[name](url, streams))
    result["seconds"] = time.perf_counter() - begin
    result["grown_kib"] = _memory("VmHWM") - before
    print(json.dumps(result))


def _run_client(
    name: str, url: str, streams: int, cores: set[int] | None
) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "bench.fanin", "--client", name, url, str(streams)]
    child = subprocess.run(
        command,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,
    )
    result: dict[str, Any] = json.loads(child.stdout)
    return result


# Measurement -------------------------------------------------------------------


def measure(
    streams: int = 1000,
    frames: int = 1000,
    repetitions: int = 3,
    on_step: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure the fan-in of ``streams`` streams of ``frames`` messages each."""
    # Whole chunks: every connection sends the same number of messages.
    frames = max(CHUNK, frames - frames % CHUNK)
    server_core, client_cores = _cores()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in CLIENTS}
    with _server(frames, server_core) as url:
        for round_ in range(repetitions + 1):  # the first round warms up
            for name in CLIENTS:
                on_step(f"{name}, round {round_} of {repetitions}")
                result = _run_client(name, url, streams, client_cores)
                if result["events"] != streams * frames:
                    raise AssertionError(
                        f"{name} got {result['events']} of {streams * frames}"
                    )
                if round_:
                    results[name].append(result)
    total = streams * frames
    variants: dict[str, dict[str, Any]] = {}
    for name, runs in results.items():
        seconds = statistics.median(run["seconds"] for run in runs)
        grown = statistics.median(run["grown_kib"] for run in runs)
        variants[name] = {
            "label": VARIANTS[name],
            "events_per_second": total / seconds,
            "rss_growth_mib": grown / 1024,
            "seconds": [run["seconds"] for run in runs],
        }
    ours, bare = variants["eventkit"], variants["bare"]
    for quantile in ("p50_ms", "p99_ms"):
        ours[quantile] = statistics.median(r[quantile] for r in results["eventkit"])
    ratio = ours["events_per_second"] / bare["events_per_second"]
    per_stream_kib = (ours["rss_growth_mib"] - bare["rss_growth_mib"]) * 1024 / streams

    return {
        "benchmark": "fanin",
        "title": (
            f"Fan-in: {streams:,} streams x {frames:,} HOPX stdout messages "
            f"(median of {repetitions})"
        ),
        "variants": variants,
        "targets": {
            "eventkit/bare": {"value": ratio, "target": ">= 0.8"},
            "RSS per stream over bare, KiB": {
                "value": per_stream_kib,
                "target": "<= 64",
            },
        },
        "info": {
            "frame-to-sink p50, ms": ours["p50_ms"],
            "frame-to-sink p99, ms": ours["p99_ms"],
        },
        "targets_met": ratio >= 0.8 and per_stream_kib <= 64,
    }


def _main(argv: list[str]) -> None:
    if argv[:1] == ["--serve"]:
        if argv[2:3] == ["--core"]:
            os.sched_setaffinity(0, {int(argv[3])})
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        asyncio.run(_serve(int(argv[1])))
        return
    if argv[:1] == ["--client"]:
        _client(argv[1], argv[2], int(argv[3]))
        return
    numbers = [int(arg) for arg in argv]
    print(json.dumps(measure(*numbers), indent=2))


if __name__ == "__main__":
    _main(sys.argv[1:])
