"""A pseudo-terminal for the CLI's tests, and the screen a terminal would show.

:func:`run_in_terminal` runs a command on a pseudo-terminal of a given width
and returns everything it wrote; :func:`screen` replays that output as a
terminal would (carriage returns, cursor moves, line erasing, SGR colours
dropped) and returns the lines left on the screen, scrollback included.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
from typing import Final

from rich.cells import cell_len

__all__ = ["run_in_terminal", "screen"]

#: A CSI escape sequence: parameters, final byte.
_CSI: Final = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def run_in_terminal(
    argv: list[str], *, columns: int, env: dict[str, str], timeout: float = 60.0
) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on a pseudo-terminal.

    Returns:
        The exit status and everything written to the terminal.
    """
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**env, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": "24"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        argv, stdin=child, stdout=child, stderr=child, env=env, close_fds=True
    )
    os.close(child)
    written = bytearray()
    try:
        while True:
            ready, _, _ = select.select([main], [], [], timeout)
            if not ready:
                raise TimeoutError(f"{argv} wrote nothing for {timeout} s")
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child side is closed
                break
            if not chunk:
                break
            written += chunk
    finally:
        os.close(main)
        status = process.wait(timeout)
    return status, written.decode(errors="replace")


def screen(output: str, *, columns: int) -> list[str]:
    """The lines a terminal ``columns`` wide shows after ``output``.

    Text wraps at the last column, as terminals do; ``\\r``, ``\\n``, cursor
    up and down (``CSI n A``/``B``), to a column (``CSI n G``) and line
    erasing (``CSI K``) move and erase; other escape sequences are dropped.
    """
    lines: list[list[str]] = [[]]
    row = col = 0
    position = 0
    while position < len(output):
        escape = _CSI.match(output, position)
        if escape is not None:
            position = escape.end()
            params, final = escape.groups()
            count = int(params) if params.isdigit() else 1
            if final == "A":
                row = max(row - count, 0)
            elif final == "B":
                row += count
            elif final == "G":
                col = count - 1
            elif final == "K":
                while len(lines) <= row:
                    lines.append([])
                if params == "2":
                    lines[row] = []
                else:
                    del lines[row][col:]
            continue
        char = output[position]
        position += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row += 1
        elif char == "\x1b" or char < " ":
            continue
        else:
            if col + cell_len(char) > columns:
                row, col = row + 1, 0
            while len(lines) <= row:
                lines.append([])
            line = lines[row]
            while len(line) < col:
                line.append(" ")
            if col < len(line):
                line[col] = char
            else:
                line.append(char)
            col += 1
    while len(lines) <= row:
        lines.append([])
    return ["".join(line).rstrip() for line in lines]
