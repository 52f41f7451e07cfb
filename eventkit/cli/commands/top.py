"""``eventkit top URL``: a dashboard's runs, live in the terminal, like ``vector top``.

Reads the dashboard's JSON API (``GET /api/runs``, ``GET /api/metrics``; see
``docs/dashboard.md``) every ``--interval`` seconds and redraws a table of
the runs in place, on the terminal's alternate screen; ``q`` or Ctrl-C
quits. When standard output is not a terminal it prints the table once.

Failure behaviour: exit status 2 for a URL that is not ``http(s)://``; 1 when
the dashboard cannot be reached at first or refuses the token (one line on
stderr); 0 when quit. Once running, a dashboard that stops answering is
reported in the table's title and tried again at each refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from eventkit.cli.dashboard import TOKEN_VARIABLE
from eventkit.cli.display import error_console, print_error
from eventkit.cli.errors import CommandExit

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

__all__ = ["main"]

_STYLES: Final = {
    "running": "bold blue",
    "succeeded": "green",
    "failed": "bold red",
    "expired": "yellow",
    "truncated": "magenta",
}
_ORDER: Final = ("running", "failed", "expired", "truncated", "succeeded")
_BAR: Final = 8
#: Below this many columns, source, bytes and rate are left out.
_WIDE: Final = 110


def main(args: argparse.Namespace) -> int:
    """Show the dashboard at ``args.url`` until quit; return the exit status."""
    err = error_console()
    try:
        base, token = _target(args.url, args.token)
    except ValueError as exc:
        print_error(err, exc)
        return 2
    out = Console(highlight=False)
    try:
        asyncio.run(_top(base, token, max(args.interval, 0.1), out, err))
    except CommandExit as stop:
        return stop.status
    return 0


def _target(url: str, token: str | None) -> tuple[str, str | None]:
    """Return the dashboard's base address and the token to send."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"URL must be http(s)://HOST:PORT/, not {url!r}")
    if token is None:
        given = parse_qs(parts.query).get("token")
        token = given[0] if given else os.environ.get(TOKEN_VARIABLE) or None
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")), token


async def _fetch(
    session: aiohttp.ClientSession, base: str, token: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    documents = []
    for path in ("api/runs", "api/metrics"):
        async with session.get(base + path, headers=headers) as response:
            if response.status == 401:
                raise PermissionError(
                    f"{base} answered 401: pass --token (or ?token= in URL, or "
                    f"${TOKEN_VARIABLE})"
                )
            response.raise_for_status()
            documents.append(await response.json())
    return documents[0], documents[1]


async def _top(
    base: str, token: str | None, interval: float, out: Console, err: Console
) -> None:
    timeout = aiohttp.ClientTimeout(total=max(interval * 5, 5.0))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            runs, metrics = await _fetch(session, base, token)
        except (OSError, aiohttp.ClientError, TimeoutError) as exc:
            print_error(err, f"cannot read the dashboard at {base}: {exc}")
            raise CommandExit(1) from None
        if not out.is_terminal:
            out.print(_view(base, runs, metrics, None, rows=None, width=out.width))
            return
        stop = asyncio.Event()
        with (
            _keys(stop),
            _signals(stop),
            Live(
                _view(base, runs, metrics, None, rows=out.height - 6, width=out.width),
                console=out,
                screen=True,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            ) as live,
        ):
            problem: str | None = None
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
                if stop.is_set():
                    break
                try:
                    runs, metrics = await _fetch(session, base, token)
                    problem = None
                except (OSError, aiohttp.ClientError, TimeoutError) as exc:
                    problem = f"not answering ({str(exc) or type(exc).__name__})"
                live.update(
                    _view(
                        base,
                        runs,
                        metrics,
                        problem,
                        rows=out.height - 6,
                        width=out.width,
                    ),
                    refresh=True,
                )


@contextlib.contextmanager
def _keys(stop: asyncio.Event) -> Iterator[None]:
    """Set ``stop`` when ``q`` is typed, reading the terminal key by key."""
    if not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()

    def read() -> None:
        typed = os.read(fd, 64)
        if not typed or b"q" in typed.lower():
            stop.set()

    # cbreak: keys come one by one, and Ctrl-C still sends SIGINT.
    tty.setcbreak(fd, termios.TCSANOW)
    loop.add_reader(fd, read)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT (Ctrl-C) or SIGTERM: quitting is not an error."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _view(
    base: str,
    runs: dict[str, Any],
    metrics: dict[str, Any],
    problem: str | None,
    *,
    rows: int | None,
    width: int,
) -> Group:
    """The screen: a title line, the counts by state, the table of runs."""
    counts: dict[str, int] = runs["counts"]
    throughput: list[int] = metrics["throughput"]["counts"]
    rate = throughput[-2] if len(throughput) > 1 else 0
    title = Text.assemble(
        ("eventkit top", "bold"),
        f"  {base}  ",
        (f"{rate:,} events/s", "cyan"),
        f"  {time.strftime('%H:%M:%S')}",
    )
    if problem:
        title.append(f"  {problem}", style="bold red")
    states = Text("  ").join(
        Text.assemble((f"{state} ", _STYLES[state]), str(counts.get(state, 0)))
        for state in _ORDER
    )
    wide = width >= _WIDE
    table = Table(expand=True, pad_edge=False, box=None, header_style="bold")
    table.add_column(
        "run", no_wrap=True, overflow="ellipsis", min_width=8, max_width=18
    )
    if wide:
        table.add_column("source", no_wrap=True, overflow="ellipsis", max_width=16)
    table.add_column("state", no_wrap=True, min_width=9)
    table.add_column("progress", no_wrap=True, min_width=_BAR + 5)
    table.add_column("eta", justify="right", no_wrap=True, min_width=5)
    table.add_column("events", justify="right", no_wrap=True, min_width=6)
    if wide:
        table.add_column("bytes", justify="right", no_wrap=True)
        table.add_column("rate", justify="right", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True, min_width=8)
    table.add_column("exit", justify="right", no_wrap=True, min_width=4)
    table.add_column("limits", overflow="ellipsis", no_wrap=True, min_width=6)
    ordered = sorted(
        runs["runs"],
        key=lambda row: (_ORDER.index(row["state"]), -row["seen_at"]),
    )
    shown = ordered if rows is None else ordered[: max(rows, 1)]
    for row in shown:
        table.add_row(*_cells(row, wide=wide))
    hidden = len(ordered) - len(shown)
    footer = Text(
        f"{hidden} more run(s) not shown · q or Ctrl-C quits"
        if hidden
        else "q or Ctrl-C quits",
        style="dim",
    )
    return Group(title, states, table, footer)


def _cells(row: dict[str, Any], *, wide: bool) -> list[str | Text]:
    percent = row["percent"]
    if percent is None:
        progress = Text("-", style="dim")
    else:
        filled = round(_BAR * max(0.0, min(percent, 100.0)) / 100)
        progress = Text("█" * filled, style="blue")
        progress.append("░" * (_BAR - filled), style="dim")
        progress.append(f" {percent:3.0f}%")
    eta = row["eta"] if row["state"] == "running" else None
    rate = row["rate"]
    notes = list(row["limits"])
    if row["gaps"]:
        notes.append(f"{row['gaps']} gap(s)")
    if row["errors"]:
        notes.append(f"{row['errors']} error(s)")
    cells: list[str | Text] = [row["run"] or "(no id)"]
    if wide:
        cells.append(row["source"] or "-")
    cells += [
        Text(row["state"], style=_STYLES.get(row["state"], "")),
        progress,
        _seconds(eta),
        f"{row['events']:,}",
    ]
    if wide:
        cells += [_bytes(row["bytes"]), "-" if rate is None else f"{rate:,.1f}/s"]
    cells += [
        _seconds(row["duration"]),
        "-" if row["exit_code"] is None else str(row["exit_code"]),
        ", ".join(notes) or "-",
    ]
    return cells


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, rest = divmod(int(value), 60)
    return f"{minutes}m{rest:02d}s"
