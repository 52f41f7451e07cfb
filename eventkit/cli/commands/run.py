"""``eventkit run``: run code in a sandbox and show its events as they come.

The code comes from ``-c``, a file or standard input; it runs on the local
executor unless ``--url`` (a HOPX agent) or ``--aicomputer`` names a remote
sandbox.

The exit status is the code's own, read from the events the sandbox sent
(before the chain, so whatever ``--only`` drops): the ``result`` event's exit
code, else the ``exit_code`` of ``completed``; 128 + N for a program killed
by signal N, as shells say it; without an exit code, 0 if the run succeeded
(see :mod:`eventkit.summary`), else 1.

With ``--url`` and ``--reconnect``, a connection lost mid-run is resumed
(see :func:`eventkit.sources.websocket`): the code runs once, output is
neither lost nor repeated, and frames the server no longer held show as a
``gap``.

Failure behaviour: status 2 for invalid flags (``--reconnect`` without
``--url``), a missing or unreadable file or a malformed ``--env``; 1, with
one line saying why, when a sandbox or output cannot be reached, the token
is refused, the stream closed before the run completed, or no run came back;
128 + N when signal N stopped it (130 for Ctrl-C). The summary of what ran
is printed in every case.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from eventkit import sources
from eventkit.cli.display import error_console, print_error
from eventkit.cli.errors import FAILURE, USAGE, file_error
from eventkit.cli.pipeline import process

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterable

    from eventkit.events import Event
    from eventkit.summary import RunSummary

__all__ = ["main"]

#: Languages guessed from a file's suffix; python for any other.
_LANGUAGES = {"sh": "bash", "bash": "bash", "js": "javascript", "mjs": "javascript"}
#: The highest exit status a process can have.
_MAX_STATUS = 255


def main(args: argparse.Namespace) -> int:
    """Run the code the flags name; return its exit status."""
    err = error_console()
    try:
        code, language = _code(args)
    except OSError as exc:
        print_error(err, file_error(exc, args.file))
        return USAGE
    except UnicodeDecodeError as exc:
        print_error(err, f"not UTF-8 text: {args.file} ({exc.reason})")
        return USAGE
    try:
        env = dict(_pair(item) for item in args.env)
        source = _sandbox(args, code, language, env)
    except ValueError as exc:
        print_error(err, exc)
        return USAGE
    return status(process(args, source, err))


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
    if args.reconnect and not args.url:
        raise ValueError("--reconnect needs --url (a HOPX agent)")
    if args.url:
        return sources.websocket(
            args.url,
            code,
            language=language,
            timeout=args.timeout,
            env=env,
            token=args.token,
            reconnect=args.reconnect,
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


def status(runs: list[RunSummary]) -> int:
    """The exit status of ``eventkit run``: the last run's own.

    Its exit code when it has one: as is from 0 to 255, 128 + N for a death
    by signal N (an exit code of -N), 1 for any other; without one, 0 if the
    run succeeded, else 1 (no outcome, no run at all).
    """
    if not runs:
        return FAILURE
    last = runs[-1]
    exit_code = last.exit_code
    if exit_code is not None:
        if 0 <= exit_code <= _MAX_STATUS:
            return exit_code
        if -_MAX_STATUS + 128 <= exit_code < 0:
            return 128 - exit_code
        return FAILURE
    return 0 if last.success else FAILURE
