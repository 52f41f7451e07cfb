"""Logging set-up for the command line: structlog to standard error.

Library code never configures logging; it logs through the logger it is given
(see :func:`eventkit.pipe.log_events`). Programs call :func:`configure` once.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

__all__ = ["configure"]


def configure(
    format: Literal["json", "console"] = "console",
    level: str = "info",
) -> None:
    """Send structlog's output to standard error, as JSON lines or for people.

    Standard output stays the program's own. Context bound with
    :func:`structlog.contextvars.bind_contextvars` (``run``, ``sequence``) is
    merged into every entry.

    Args:
        format: ``"json"``: one JSON object per line, with ISO-8601 UTC
            timestamps; ``"console"``: coloured key=value lines.
        level: The lowest level logged (``"debug"``, ``"info"``, ...).

    Raises:
        ValueError: For an unknown format or level.
    """
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    renderer: structlog.typing.Processor
    if format == "json":
        renderer = structlog.processors.JSONRenderer()
    elif format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        raise ValueError(f"log format must be 'json' or 'console', not {format!r}")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
