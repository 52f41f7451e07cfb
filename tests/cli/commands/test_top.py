"""``eventkit top``: a dashboard's runs in a terminal (a pseudo-terminal here)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from typing import TYPE_CHECKING

from eventkit import sinks
from eventkit.cli import main
from tests.factories import ev, out

if TYPE_CHECKING:
    import pytest

    from eventkit.dashboard import Dashboard

RUNS = [
    ev("started", run="alpha-run"),
    out(1, run="alpha-run", data="step 3/4\n"),
    ev("started", run="beta-run"),
    ev("stderr", "bad\n", 1, run="beta-run"),
    ev("result", "", 2, run="beta-run", exit_code=9),
    ev("completed", "", 3, run="beta-run", success=False),
]


async def terminal_output(master: int, *wanted: bytes) -> bytes:
    """Read the pseudo-terminal until every one of ``wanted`` was shown."""
    seen = b""
    while not all(text in seen for text in wanted):
        chunk = await asyncio.to_thread(os.read, master, 65536)
        assert chunk, seen.decode(errors="replace")
        seen += chunk
    return seen


async def test_top_shows_the_runs_in_a_terminal_and_quits_with_q() -> None:
    """Under a pseudo-terminal: the runs, their states and progress; q quits (0)."""
    dashboard = sinks.dashboard(token="tok")
    await dashboard.start()
    try:
        await dashboard.send_batch(RUNS)
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 140, 0, 0))
        assert dashboard.url is not None
        child = subprocess.Popen(  # noqa: ASYNC220 - started once, waited in a thread
            [
                sys.executable,
                "-m",
                "eventkit",
                "top",
                dashboard.url,
                "--interval",
                "0.2",
            ],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        try:
            shown = await terminal_output(
                master, b"alpha-run", b"beta-run", b"failed", b"running", b"75%"
            )
            assert b"\x1b[?1049h" in shown  # the alternate screen, like top
            await dashboard.send_batch(
                [ev("completed", "", 2, run="alpha-run", success=True)]
            )
            await terminal_output(master, b"succeeded")
            os.write(master, b"q")
            assert 0 == await asyncio.to_thread(child.wait, 30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            os.close(master)
    finally:
        await dashboard.stop()


async def served(token: str | None = None) -> Dashboard:
    """A started dashboard with the runs above."""
    dashboard = sinks.dashboard(token=token)
    await dashboard.start()
    await dashboard.send_batch(RUNS)
    return dashboard


def top(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``eventkit top`` with its output to a pipe (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "eventkit", "top", url, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "140"},
        check=False,
    )


async def test_top_prints_once_when_not_a_terminal() -> None:
    """Piped, top prints the table once and exits 0."""
    dashboard = await served()
    try:
        assert dashboard.url is not None
        result = await asyncio.to_thread(top, dashboard.url)
    finally:
        await dashboard.stop()
    assert 0 == result.returncode
    lines = {
        line.split()[0]: line for line in result.stdout.splitlines() if "-run" in line
    }
    assert {"alpha-run", "beta-run"} == set(lines)
    assert "failed" in lines["beta-run"]
    assert " 9 " in lines["beta-run"]


async def test_top_needs_the_token() -> None:
    """Without the token: one line naming --token, exit 1; with it, the runs."""
    dashboard = await served(token="tok")
    try:
        assert dashboard.url is not None
        bare = dashboard.url.split("?")[0]
        refused = await asyncio.to_thread(top, bare)
        given = await asyncio.to_thread(top, bare, "--token", "tok")
    finally:
        await dashboard.stop()
    assert 1 == refused.returncode
    assert "pass --token" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert 0 == given.returncode
    assert "beta-run" in given.stdout


def test_top_refuses_what_is_not_an_http_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A URL that is not http(s) is a usage error: exit 2."""
    assert 2 == main(["top", "ftp://example.com/"])
    assert "http(s)://" in capsys.readouterr().err


def test_top_says_when_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening: one line, exit 1."""
    assert 1 == main(["top", "http://127.0.0.1:1/"])
    assert "cannot read the dashboard" in capsys.readouterr().err
