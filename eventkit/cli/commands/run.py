"""``eventkit run``: run code in a sandbox and show its events as they come.

The code comes from ``-c``, a file or standard input; it runs on the local
executor unless ``--url`` (a HOPX agent) or ``--aicomputer`` names a remote
sandbox.

Failure behaviour: the exit status is the code's own (1 if it failed without
one, or out of the 0-255 range); 2 for invalid flags, an unreadable file or a
malformed ``--env``; 1 when the stream closed before the run completed, a
sandbox or output could not be reached, or no run came back.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from eventkit import sources
from eventkit.cli.display import error_console, print_error, report
from eventkit.cli.pipeline import process
from eventkit.exceptions import StreamClosedError

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterable

    from eventkit.events import Event
    from eventkit.summary import RunSummary

__all__ = ["main"]

#: Languages guessed from a file's suffix; python for any other.
_LANGUAGES = {"sh": "bash", "bash": "bash", "js": "javascript", "mjs": "javascript"}


def main(args: argparse.Namespace) -> int:
    """Run the code the flags name; return its exit status."""
    err = error_console()
    try:
        code, language = _code(args)
        env = dict(_pair(item) for item in args.env)
    except (OSError, ValueError) as exc:
        print_error(err, exc)
        return 2
    try:
        source = _sandbox(args, code, language, env)
    except ValueError as exc:
        print_error(err, exc)
        return 2
    try:
        runs = process(args, source, err)
    except StreamClosedError as exc:
        print_error(err, exc)
        return 1
    report(runs, err, as_json=args.json)
    return _status(runs)


def _code(args: argparse.Namespace) -> tuple[str, str]:
    """Return the code to run and its language, from -c, a file or stdin."""
    if args.code is not None:
        return args.code, args.language or "python"
    if args.file == "-":
        return sys.stdin.read(), args.language or "python"
    with open(args.file, encoding="utf-8") as file:
        code = file.read()
    suffix = args.file.rsplit(".", 1)[-1] if "." in args.file else ""
    return code, args.language or _LANGUAGES.get(suffix, "python")


def _pair(item: str) -> tuple[str, str]:
    """Split an ``--env`` item ``NAME=VALUE``; :exc:`ValueError` if it is not one."""
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise ValueError(f"--env takes NAME=VALUE, not {item!r}")
    return name, value


def _sandbox(
    args: argparse.Namespace, code: str, language: str, env: dict[str, str]
) -> AsyncIterable[Event]:
    """Return the source the flags name: a remote sandbox, else the local one."""
    if args.url:
        return sources.websocket(
            args.url,
            code,
            language=language,
            timeout=args.timeout,
            env=env,
            token=args.token,
        )
    if args.aicomputer:
        return sources.aicomputer(
            args.aicomputer, code, token=args.token, timeout=args.timeout, env=env
        )
    return sources.local(
        code,
        language=language,
        timeout=args.timeout,
        env=env,
        isolation="bwrap" if args.isolate else "none",
    )


def _status(runs: list[RunSummary]) -> int:
    """The command's exit status: the last run's own, 1 when there was none."""
    if not runs:
        return 1
    last = runs[-1]
    if last.exit_code is not None:
        return last.exit_code if 0 <= last.exit_code < 256 else 1
    return 0 if last.success else 1
