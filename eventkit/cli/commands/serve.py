"""``eventkit serve``: the local sandbox, for the official HOPX and AI Computer SDKs.

Prints where it listens (and where its metrics are, with ``--metrics-port``)
on standard error, then serves until interrupted.

Failure behaviour: exit status 2 for settings the server refuses (a public
address without ``--api-key``, say), 1 when a port cannot be bound, 0 when
stopped.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from eventkit import sinks
from eventkit.cli.display import error_console, print_error
from eventkit.metrics import collector_for
from eventkit.server import serve

if TYPE_CHECKING:
    import argparse

__all__ = ["main"]


def main(args: argparse.Namespace) -> int:
    """Serve the local sandbox until interrupted; return the exit status."""
    err = error_console()

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

    async def serve_all() -> None:
        if args.metrics_port is None:
            await sandbox()
            return
        # No pipeline here: the server's and the sources' own numbers only.
        collector_for(self_metrics=True)
        async with sinks.prometheus_http(args.metrics_port) as metrics:
            err.print(f"metrics on [bold]{metrics.url}[/]")
            await sandbox()

    try:
        asyncio.run(serve_all())
    except ValueError as exc:
        print_error(err, exc)
        return 2
    except OSError as exc:
        print_error(err, exc)
        return 1
    return 0
