"""The dashboard's flags and wiring, for ``run``, ``replay`` and ``worker``.

:func:`add_dashboard_flags` adds ``--dashboard PORT``, ``--dashboard-host``,
``--dashboard-token`` (or ``EVENTKIT_DASHBOARD_TOKEN``) and, for commands
that end, ``--dashboard-keep``; it needs argparse only, so that ``--help``
stays cheap. :func:`dashboard_for` makes the sink the flags ask for,
:func:`attach` feeds it the source's events before the chain (the run
records: states and exit codes hold whatever the chain drops) and the
chain's output (what the page shows), and :func:`serving` serves it around
the command's work, printing ``dashboard: URL`` on standard error.

Failure behaviour: flags the dashboard refuses (a non-loopback host without
a token, an empty token) print one line and raise
:exc:`~eventkit.cli.errors.CommandExit` with status 2; a port that cannot be
bound raises :exc:`OSError` from :func:`serving`, for the command to report.

Only argparse-level work happens at import (the parser imports this module):
everything else loads when a command runs.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterable, Awaitable

    from rich.console import Console

    from eventkit.dashboard import Dashboard
    from eventkit.events import Event
    from eventkit.sinks import Sink
    from eventkit.streams import Stage

__all__ = [
    "TOKEN_VARIABLE",
    "add_dashboard_flags",
    "attach",
    "dashboard_for",
    "serving",
]

#: The environment variable holding the dashboard's token.
TOKEN_VARIABLE = "EVENTKIT_DASHBOARD_TOKEN"

_T = TypeVar("_T")


def add_dashboard_flags(parser: argparse.ArgumentParser, *, keep: bool) -> None:
    """Add the dashboard flags to a command; ``keep`` adds ``--dashboard-keep``."""
    group = parser.add_argument_group("dashboard")
    group.add_argument(
        "--dashboard",
        type=int,
        metavar="PORT",
        help="serve a live web dashboard of the runs on PORT (0: any free port); "
        "its address is printed on stderr",
    )
    group.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address the dashboard listens on (default 127.0.0.1); any "
        "other needs a token",
    )
    group.add_argument(
        "--dashboard-token",
        metavar="TOKEN",
        help=f"a token the dashboard's API requires (default: ${TOKEN_VARIABLE})",
    )
    if keep:
        group.add_argument(
            "--dashboard-keep",
            action="store_true",
            help="keep serving the dashboard after the runs end, until Ctrl-C "
            "(the summary follows then)",
        )


def dashboard_for(
    args: argparse.Namespace, err: Console, source: str = ""
) -> Dashboard | None:
    """Return the dashboard the flags ask for, None without ``--dashboard``.

    Args:
        args: The command's arguments.
        err: Where a refusal is printed.
        source: The label of the runs, for the table's ``source`` column.

    Raises:
        CommandExit: With status 2 if the dashboard refuses the flags.
    """
    if getattr(args, "dashboard", None) is None:
        return None
    # Imported here: aiohttp loads with the dashboard, only when asked for.
    from eventkit.cli.display import print_error
    from eventkit.cli.errors import CommandExit
    from eventkit.dashboard import dashboard

    token = args.dashboard_token
    if token is None:
        token = os.environ.get(TOKEN_VARIABLE) or None
    try:
        return dashboard(
            args.dashboard, args.dashboard_host, token=token, source=source
        )
    except ValueError as exc:
        print_error(err, exc)
        raise CommandExit(2) from None


def attach(
    dashboard: Dashboard,
    source: AsyncIterable[Event],
    stages: list[Stage],
    outputs: list[Sink],
) -> AsyncIterable[Event]:
    """Feed ``dashboard`` from a command's pipeline; return the source to run.

    The source's events go to its run records through a tap before the
    chain; a stage at the end of ``stages`` lets the page show the chain's
    per-stage counts; the dashboard joins ``outputs`` for the chain's output.
    """
    from eventkit.tap import tap

    stages.append(dashboard.watch())
    outputs.append(dashboard)
    return tap(source, dashboard.upstream)


async def serving(
    dashboard: Dashboard | None,
    err: Console,
    work: Awaitable[_T],
    *,
    keep: bool = False,
) -> _T:
    """Serve ``dashboard`` (if any) while ``work`` runs; return what it returns.

    Prints ``dashboard: URL`` on standard error once serving. With ``keep``,
    serves on after the work is done until SIGINT or SIGTERM (Ctrl-C),
    which then ends the command normally.

    Raises:
        OSError: If the dashboard's port cannot be bound.
    """
    if dashboard is None:
        return await work
    try:
        await dashboard.start()
    except BaseException:
        # The work was never awaited: close it rather than leave it pending.
        close = getattr(work, "close", None)
        if close is not None:
            close()
        raise
    # One plain line, never wrapped: scripts and tests read the address.
    print(f"dashboard: {dashboard.url}", file=sys.stderr, flush=True)
    try:
        result = await work
        if keep:
            err.print(
                f"dashboard: still serving {dashboard.url}; press Ctrl-C to stop",
                markup=False,
                soft_wrap=True,
            )
            await _interrupted()
        return result
    finally:
        await dashboard.stop()


async def _interrupted() -> None:
    """Return at the first SIGINT or SIGTERM."""
    # Imported here: parsing the flags (``--help``) needs neither.
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
