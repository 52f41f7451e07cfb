"""``eventkit replay``: run a recorded stream (eventkit JSON Lines) through the chain.

Failure behaviour: exit status 2 for a file that does not exist or cannot be
read, or flags that make no valid chain; 1 at the first invalid line (unless
``--skip-invalid``, which reports and counts each one) or when an output
fails; 0 otherwise, whatever the recorded runs' outcomes (the summary tells
them).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from eventkit import sources
from eventkit.cli.display import error_console, print_error
from eventkit.cli.errors import USAGE, file_error
from eventkit.cli.pipeline import process
from eventkit.exceptions import DecodeError

if TYPE_CHECKING:
    import argparse

__all__ = ["main"]


def main(args: argparse.Namespace) -> int:
    """Replay ``args.file`` (``-`` for standard input); return the exit status."""
    err = error_console()
    invalid: list[DecodeError] = []

    def skip(error: DecodeError) -> None:
        invalid.append(error)
        err.print(f"[yellow]skipped[/] {args.file}: {error}", soft_wrap=True)

    def explain(exc: BaseException) -> str | None:
        if isinstance(exc, DecodeError):
            return f"{args.file}: {exc} (use --skip-invalid to skip invalid lines)"
        return None

    target: Any = sys.stdin.buffer if args.file == "-" else args.file
    if args.file != "-":
        # A missing input is a usage error, found before anything runs.
        try:
            with open(args.file, "rb"):
                pass
        except OSError as exc:
            print_error(err, file_error(exc, args.file))
            return USAGE
    source = sources.jsonl(target, on_invalid=skip if args.skip_invalid else None)
    process(args, source, err, explain=explain, invalid=lambda: len(invalid))
    return 0
