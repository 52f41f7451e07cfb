"""``eventkit serve``: the local sandbox, for the official HOPX and AI Computer SDKs.

Prints where it listens (and where its metrics are, with ``--metrics-port``)
on standard error, then serves until interrupted. SIGTERM stops it as
Ctrl-C does: runs killed and reaped, sandbox directories removed.

The API key comes from ``--api-key``, ``--api-key-file`` (its first line)
or the ``EVENTKIT_API_KEY`` environment variable, in that order; the last
two keep it out of ``ps``.

``--dashboard PORT`` serves a live page of the server's runs; with an API
key, the page needs it as its token (unless ``--dashboard-token`` or
``EVENTKIT_DASHBOARD_TOKEN`` gives another).

Runs are isolated by default (``--isolation auto``: a bubblewrap sandbox
where one starts); the start-up lines say what runs get.

Failure behaviour: exit status 2 for settings the server refuses (a public
address without an API key, an empty or unreadable key file, a public
address without isolation unless ``--isolation none``, ``--isolation bwrap``
where no sandbox starts, say), 1 when a
port cannot be bound, 130 after Ctrl-C and 143 after SIGTERM (128 + the
signal), once everything is cleaned up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any

from eventkit import sinks
from eventkit.cli.dashboard import TOKEN_VARIABLE, dashboard_for, serving
from eventkit.cli.display import error_console, print_error
from eventkit.metrics import collector_for
from eventkit.server import serve
from eventkit.sources.local import probe_isolation

if TYPE_CHECKING:
    import argparse

__all__ = ["API_KEY_VARIABLE", "main"]

#: The environment variable the API key is read from, when no flag gives it.
API_KEY_VARIABLE = "EVENTKIT_API_KEY"


def api_key(args: argparse.Namespace) -> str | None:
    """Return the API key the flags or the environment give, or None.

    Raises:
        ValueError: If the key file cannot be read or its key is empty.
    """
    if args.api_key is not None:
        return str(args.api_key)
    if args.api_key_file is not None:
        try:
            with open(args.api_key_file, encoding="utf-8") as file:
                key = file.readline().strip()
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"cannot read --api-key-file: {exc}") from None
        if not key:
            raise ValueError(f"--api-key-file {args.api_key_file}: the key is empty")
        return key
    key = os.environ.get(API_KEY_VARIABLE, "").strip()
    return key or None


def options(args: argparse.Namespace) -> dict[str, Any]:
    """Return the :class:`~eventkit.server.LocalSandboxServer` options of the flags.

    Raises:
        ValueError: As :func:`api_key`.
    """
    return {
        "api_key": api_key(args),
        "max_concurrent": args.max_concurrent,
        "max_queue": args.max_queue,
        "max_timeout": args.max_timeout,
        "max_code_bytes": args.max_code_bytes,
        "max_output_bytes": args.max_output_bytes,
        "max_file_bytes": args.max_file_bytes,
        "max_sandboxes": args.max_sandboxes,
        "max_sandboxes_per_key": args.max_sandboxes_per_key,
        "sandbox_ttl": args.sandbox_ttl,
        "send_timeout": args.send_timeout,
        "idle_timeout": args.idle_timeout,
        "body_timeout": args.body_timeout,
        "output_policy": args.output_policy,
        "resume_buffer_bytes": args.resume_buffer_bytes,
        "resume_window": args.resume_window,
        "resume_buffer_total": args.resume_buffer_total,
        "isolation": args.isolation,
        "network": not args.no_network,
        "local_options": {
            "max_memory_bytes": args.max_memory_bytes,
            "max_processes": args.max_processes,
            "interrupt_grace": args.interrupt_grace,
        },
    }


def main(args: argparse.Namespace) -> int:
    """Serve the local sandbox until interrupted; return the exit status."""
    err = error_console()
    terminated = False

    def ready(url: str) -> None:
        err.print(f"eventkit sandbox listening on [bold]{url}[/]")
        err.print(f"  HOPX:        AsyncSandbox.create(..., base_url={url!r})")
        err.print(f"  AI Computer: SandboxClient(base_url={url!r})")
        if args.isolation == "none":
            err.print(
                "[yellow]isolation: none[/]: the code runs as this user and "
                "sees this machine"
            )
        else:
            # Probed already by the server, before it listened: cached.
            err.print(probe_isolation().describe())

    async def sandbox(settings: dict[str, Any]) -> None:
        await serving(
            dashboard,
            err,
            serve(args.host, args.port, on_ready=ready, observer=dashboard, **settings),
        )

    async def serve_all(settings: dict[str, Any]) -> None:
        nonlocal terminated
        main_task = asyncio.current_task()
        assert main_task is not None

        def terminate() -> None:
            nonlocal terminated
            terminated = True
            main_task.cancel()

        loop = asyncio.get_running_loop()
        # SIGTERM as Ctrl-C: cancel, so that every run is killed and every
        # directory removed before the process exits.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, terminate)
        if args.metrics_port is None:
            await sandbox(settings)
            return
        # No pipeline here: the server's and the sources' own numbers only.
        collector_for(self_metrics=True)
        async with sinks.prometheus_http(args.metrics_port) as metrics:
            err.print(f"metrics on [bold]{metrics.url}[/]")
            await sandbox(settings)

    try:
        settings = options(args)
        if args.dashboard_token is None and not os.environ.get(TOKEN_VARIABLE):
            # The server's runs are the API key holder's: so is their view.
            args.dashboard_token = settings["api_key"]
        dashboard = dashboard_for(args, err, "serve")
        asyncio.run(serve_all(settings))
    except ValueError as exc:
        print_error(err, exc)
        return 2
    except OSError as exc:
        print_error(err, exc)
        return 1
    except asyncio.CancelledError:
        if terminated:
            return 128 + signal.SIGTERM
        raise
    return 0
