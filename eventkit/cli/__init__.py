"""The ``eventkit`` command.

The only place that configures global state (logging, the Prometheus HTTP
server). Each subcommand builds a chain from the same flags::

    eventkit replay run.jsonl --reorder --buffer-bytes 4096 --progress

Output for people goes to the terminal (the program's stdout to stdout, its
stderr and everything else to stderr, a summary table at the end); ``--json``
writes the stream as eventkit JSON Lines to stdout and the summary as one JSON
object to stderr instead.

The package, by module:

- :mod:`~eventkit.cli.arguments`: the parser and the flag groups commands share;
- :mod:`~eventkit.cli.commands`: one module per command (``run``, ``replay``,
  ``worker``, ``serve``, ``top``), each with ``main(args) -> int``;
- :mod:`~eventkit.cli.pipeline`: the chain and the outputs the flags ask for;
- :mod:`~eventkit.cli.display`: the terminal (the live view, the summary);
- :mod:`~eventkit.cli.dashboard`: the ``--dashboard`` flags and their wiring;
- :mod:`~eventkit.cli.errors`: the exit statuses,
  :exc:`~eventkit.cli.errors.CommandExit` and the one-line messages of the
  failures a user can cause.

Exit statuses: ``run`` exits with the code's own; every command exits 1 for
a runtime failure, 2 for a usage error (bad flags, a missing input file), and
128 + N when signal N stopped it.

Starting is cheap: parsing needs argparse only, and a command's module (with
rich, aiohttp, redis and the rest) is imported when that command runs, so
``eventkit --help`` and ``eventkit --version`` load none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventkit.cli.arguments import build_parser
from eventkit.cli.errors import CommandExit

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``eventkit`` command; return its exit status.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` if
            ``None``.

    Returns:
        The command's exit status; 130 when interrupted (Ctrl-C).

    Raises:
        SystemExit: From argparse, for ``--help``, ``--version`` and invalid
            arguments.
    """
    args = build_parser().parse_args(argv)
    try:
        status = _command(args.command)(args)
    except CommandExit as stop:
        return stop.status
    except KeyboardInterrupt:
        return 130
    return status


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    """Import the module of the command ``name``; return its ``main``."""
    # Imported here, not above: each command loads its libraries when it runs.
    if name == "run":
        from eventkit.cli.commands.run import main as command
    elif name == "replay":
        from eventkit.cli.commands.replay import main as command
    elif name == "worker":
        from eventkit.cli.commands.worker import main as command
    elif name == "serve":
        from eventkit.cli.commands.serve import main as command
    elif name == "top":
        from eventkit.cli.commands.top import main as command
    else:  # pragma: no cover - argparse accepts only the commands above
        raise ValueError(f"no command {name!r}")
    return command
