"""WebSocket ingest: eventkit's HOPX source against a bare websockets client.

A local websockets server in its own process (pinned to one core, the client
to the others, so that the two do not share a core) answers each connection's
``execute`` message with ``frames`` pre-encoded HOPX ``stdout`` messages of
~100 characters of output each, then ``complete``; compression is off on both
ends. Client variants, interleaved round-robin after one warm-up round:

(bare)   websockets' client sending the same ``execute`` message and reading
         every message with ``recv(decode=False)``, no JSON decoding at all;
(source) :func:`eventkit.sources.websocket` with ``compression=None``,
         read as the runner reads it: ``batches()``, each holding the events
         of every message already received, every event looked at;
(run)    the same through ``eventkit.run(stream, sink=sinks.call(...))``, the
         way an application consumes it.

Two servers:

- ``send``: a Python server calling ``await ws.send(frame)`` per message.
  The sender, not the client, is then the
  bottleneck (~5 µs per message, baselines §5), so the ratio shows whether
  the source keeps up with a real Python peer. Measured here, a *slower*
  client even gets its messages faster from it: a client that drains the
  socket at once makes every ``send`` its own segment and system call on
  both sides, one that lags lets the server's writes coalesce. So the ratio
  can exceed 1 and does not measure the source's cost;
- ``prebuilt``: the server writes the same messages pre-framed straight to the
  transport, so it costs almost nothing and the client is the bottleneck:
  the ratio there is the source's whole per-message overhead, and the
  target (>= 0.9) is set on it.

Client CPU time per message (``time.process_time``) is reported as well; it
is the client's cost only against the prebuilt server, where the client never
waits (against the Python sender it includes the many small wake-ups).

Run it alone with ``python -m bench.ingest [frames] [repetitions]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

import eventkit
from eventkit import sinks
from eventkit.protocol.hopx import execute_message
from eventkit.sources.hopx import websocket

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

    from websockets.asyncio.server import ServerConnection

    from eventkit.events import Event

CODE: Final = "for i in range(200_000): print(i)"
MESSAGE: Final = execute_message(CODE)
#: ~100 characters of output and its newline.
DATA: Final = (
    "2025-11-20 10:30:00,123 INFO worker-3 processed batch 1234/5000 "
    "(rows=4096, 1.2 ms/row) ok ........\n"
)
FRAME: Final = json.dumps(
    {"type": "stdout", "data": DATA, "timestamp": "2025-11-20T10:30:00.123456789Z"},
    separators=(",", ":"),
).encode()
COMPLETE: Final = b'{"type":"complete","success":true}'
SERVERS: Final = ("send", "prebuilt")

VARIANTS: Final = {
    "bare": "bare websockets client, recv(decode=False), no decoding",
    "source": "eventkit websocket source (compression=None), its batches",
    "run": "eventkit.run(source, sink=sinks.call(...))",
}


# Server (child process) --------------------------------------------------------


def _frame_header(size: int) -> bytes:
    """Return the header of an unmasked, final text frame of ``size`` bytes."""
    if size < 126:
        return bytes([0x81, size])
    if size < 1 << 16:
        return bytes([0x81, 126]) + size.to_bytes(2, "big")
    return bytes([0x81, 127]) + size.to_bytes(8, "big")


async def _serve(frames: int, mode: str) -> None:
    """Serve ``frames`` messages per connection; print the port; run until killed."""
    framed = _frame_header(len(FRAME)) + FRAME
    prebuilt = framed * frames + _frame_header(len(COMPLETE)) + COMPLETE
    chunk = 1 << 16

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        if mode == "send":
            send = ws.send
            for _ in range(frames):
                await send(FRAME.decode())
            await send(COMPLETE.decode())
        else:
            # Pre-framed bytes past websockets' own framing, with its flow
            # control: the cheapest sender there is.
            view = memoryview(prebuilt)
            for start in range(0, len(view), chunk):
                ws.transport.write(view[start : start + chunk])
                await ws.drain()
        await ws.wait_closed()

    async with serve(
        handler, "127.0.0.1", 0, compression=None, ping_interval=None, max_size=None
    ) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()  # until the parent kills us


@contextmanager
def _server(frames: int, mode: str, core: int | None) -> Iterator[str]:
    """Run a server process for the block; yield its URL."""
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "bench.ingest", "--serve", str(frames), mode]
    if core is not None:
        command += ["--core", str(core)]
    child = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        yield f"ws://127.0.0.1:{port}"
    finally:
        child.kill()
        child.wait()


# Clients -------------------------------------------------------------------------


async def bare(url: str, frames: int) -> int:
    """Read every message with websockets alone; return how many stdout came."""
    received = 0
    async with connect(url, compression=None, max_size=None, ping_interval=None) as ws:
        await ws.send(MESSAGE)
        recv = ws.recv
        while True:
            frame = await recv(False)
            if frame == COMPLETE:
                break
            received += 1
    return received


async def source(url: str, frames: int) -> int:
    """Read the eventkit source as the runner does; return how many stdout came."""
    stream = websocket(url, CODE, compression=None, max_size=2**20)
    received = 0
    # batches(), as the driver reads every eventkit source: each batch holds
    # the events of every message already received.
    async with contextlib.aclosing(stream.batches()) as batches:  # type: ignore[type-var]
        async for batch in batches:
            for event in batch:
                if event.type == "stdout":
                    received += 1
    return received


async def run(url: str, frames: int) -> int:
    """Consume the eventkit source through ``eventkit.run``; count stdout events."""
    received = 0

    def count(event: Event) -> None:
        nonlocal received
        if event.type == "stdout":
            received += 1

    stream = websocket(url, CODE, compression=None, max_size=2**20)
    await eventkit.run(stream, sink=sinks.call(count))
    return received


CLIENTS: Final[dict[str, Callable[[str, int], Coroutine[Any, Any, int]]]] = {
    "bare": bare,
    "source": source,
    "run": run,
}


# Measurement ---------------------------------------------------------------------


@contextmanager
def _pinned(cores: set[int] | None) -> Iterator[None]:
    """Pin this process to ``cores`` for the block, if given."""
    if cores is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _cores() -> tuple[int | None, set[int] | None]:
    """Return a core for the server and the rest for the client, if there are two."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return available[0], set(available[1:])


def _time(
    servers: dict[str, str],
    frames: int,
    repetitions: int,
    on_step: Callable[[str], None],
) -> dict[str, tuple[list[float], list[float]]]:
    """Time every client against every server: (wall seconds, CPU seconds)."""
    spent: dict[str, tuple[list[float], list[float]]] = {
        _variant(name, mode): ([], []) for mode in servers for name in CLIENTS
    }
    with asyncio.Runner() as runner:
        for round_ in range(repetitions + 1):  # the first round warms up
            for mode, url in servers.items():
                for name, client in CLIENTS.items():
                    variant = _variant(name, mode)
                    on_step(f"{variant}, round {round_} of {repetitions}")
                    gc.collect()
                    cpu = time.process_time()
                    begin = time.perf_counter()
                    received = runner.run(client(url, frames))
                    elapsed = time.perf_counter() - begin
                    cpu = time.process_time() - cpu
                    if received != frames:
                        raise AssertionError(f"{variant} got {received} of {frames}")
                    if round_:
                        spent[variant][0].append(elapsed)
                        spent[variant][1].append(cpu)
    return spent


def _variant(client: str, server: str) -> str:
    # The specified setup (the Python sender) keeps the plain names.
    return client if server == "send" else f"{client}, {server}"


def measure(
    frames: int = 200_000,
    repetitions: int = 3,
    on_step: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure ingest of ``frames`` HOPX messages per run; return the report.

    The report has the shape of the other benchmarks' (``title``,
    ``variants``, ``targets``, ``targets_met``). Variants ``bare``,
    ``source`` and ``run`` read from the Python ``send`` server, the setup
    the target is set for; the same with ``, prebuilt`` read from the
    prebuilt server, where the client is the bottleneck. ``info`` has the
    client-bound ratios, which have no target.
    """
    server_core, client_cores = _cores()
    with (
        _server(frames, "send", server_core) as send_url,
        _server(frames, "prebuilt", server_core) as prebuilt_url,
        _pinned(client_cores),
    ):
        spent = _time(
            {"send": send_url, "prebuilt": prebuilt_url}, frames, repetitions, on_step
        )
    variants: dict[str, dict[str, Any]] = {}
    for variant, (wall, cpu) in spent.items():
        seconds = statistics.median(wall)
        client, _, server = variant.partition(", ")
        variants[variant] = {
            "label": f"{VARIANTS[client]}; {server or 'send'} server",
            "events_per_second": frames / seconds,
            "us_per_frame": seconds / frames * 1e6,
            "client_cpu_us_per_frame": statistics.median(cpu) / frames * 1e6,
            "seconds": wall,
        }

    def ratio(over: str, under: str) -> float:
        rate: float = variants[over]["events_per_second"]
        base: float = variants[under]["events_per_second"]
        return rate / base

    source_bare = ratio("source, prebuilt", "bare, prebuilt")
    return {
        "benchmark": "ingest",
        "title": (
            f"WebSocket ingest, {frames:,} HOPX stdout messages of {len(FRAME)} "
            f"bytes per run (median of {repetitions})"
        ),
        "frames": frames,
        "repetitions": repetitions,
        "pinned": {"server": server_core, "client": sorted(client_cores or ())},
        "variants": variants,
        "targets": {
            "source/bare, prebuilt (client-bound)": {
                "value": source_bare,
                "target": ">= 0.9",
            }
        },
        "info": {
            "source/bare, send server": ratio("source", "bare"),
            "run/bare, send server": ratio("run", "bare"),
            "run/bare, prebuilt (client-bound)": ratio(
                "run, prebuilt", "bare, prebuilt"
            ),
            # Against the prebuilt server: with the Python sender a faster
            # client wakes up for smaller reads and spends more CPU per
            # message, so the difference there is not the source's cost.
            "source µs/message over bare, prebuilt": (
                variants["source, prebuilt"]["client_cpu_us_per_frame"]
                - variants["bare, prebuilt"]["client_cpu_us_per_frame"]
            ),
        },
        "targets_met": source_bare >= 0.9,
    }


def _main(argv: list[str]) -> None:
    if argv[:1] == ["--serve"]:
        frames, mode = int(argv[1]), argv[2]
        if argv[3:4] == ["--core"]:
            os.sched_setaffinity(0, {int(argv[4])})
        asyncio.run(_serve(frames, mode))
        return
    frames = int(argv[0]) if argv else 200_000
    repetitions = int(argv[1]) if len(argv) > 1 else 3
    json.dump(measure(frames, repetitions), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    _main(sys.argv[1:])
