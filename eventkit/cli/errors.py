"""How a command stops early with an exit status: :exc:`CommandExit`.

A command that has printed why it stops raises :exc:`CommandExit` from however
deep it is; :func:`eventkit.cli.main` returns the status it carries.
"""

from __future__ import annotations

from eventkit.exceptions import EventkitError

__all__ = ["CommandExit"]


class CommandExit(EventkitError):
    """Stop the command with this exit status; the message was printed.

    Args:
        status: The exit status of the command.
    """

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status
