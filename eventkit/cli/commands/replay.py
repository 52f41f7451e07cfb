"""``eventkit replay``: run a recorded stream (eventkit JSON Lines) through the chain.

Failure behaviour: exit status 1 at the first invalid line (unless
``--skip-invalid``, which reports and counts each one) or when the file
cannot be read, 2 for flags that make no valid chain; 0 otherwise.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from eventkit import sources
from eventkit.cli.display import error_console, print_error, report
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

    target: Any = sys.stdin.buffer if args.file == "-" else args.file
    source = sources.jsonl(target, on_invalid=skip if args.skip_invalid else None)
    try:
        runs = process(args, source, err)
    except DecodeError as exc:
        print_error(err, f"{args.file}: {exc}")
        err.print("(use --skip-invalid to skip invalid lines)")
        return 1
    report(runs, err, as_json=args.json, invalid=len(invalid))
    return 0
