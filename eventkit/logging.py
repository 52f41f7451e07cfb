"""Logging set-up for programs: structlog to standard error.

Library code never configures logging; it logs through the logger it is given
(see :func:`eventkit.pipe.log_events`), or structlog's default one. Programs,
such as the ``eventkit`` command, call :func:`configure` once.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec
import structlog

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import TextIO

    from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

__all__ = ["configure"]


def _json_form(value: Any) -> Any:
    """What JSON holds of a value msgspec has no form for: as structlog's renderer."""
    render = getattr(value, "__structlog__", None)
    return render() if callable(render) else repr(value)


_encoder = msgspec.json.Encoder(enc_hook=_json_form)


def _render_json(logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
    """Render an entry as one JSON line: msgspec, a few times faster than :mod:`json`.

    Values JSON has no form for are written as their ``__structlog__()`` when
    they have one, else as their ``repr``.
    """
    return _encoder.encode(event_dict).decode()


class _LevelTimeAndTraceback:
    """Level, time and traceback: three of structlog's processors in one call.

    ``add_log_level``, ``TimeStamper(fmt="iso", utc=True)`` and
    ``format_exc_info``, in this order. Adds ``level`` (the method's name;
    ``warn`` is ``warning``, ``exception`` is ``error``) and ``timestamp``,
    ISO-8601 in UTC to the microsecond (``2026-11-21T23:47:19.775366Z``);
    renders ``exc_info`` into ``exception`` when the entry carries it. The
    date and time are formatted once a second, which saves about two
    microseconds a line.
    """

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        # (the digits of a second, its formatted date and time), in one
        # attribute so that threads logging at once never pair a second
        # with another's text.
        self._cached = ("", "")

    def __call__(
        self, logger: WrappedLogger, method: str, event_dict: EventDict
    ) -> EventDict:
        event_dict["level"] = _LEVEL_OF_METHOD.get(method, method)
        # Cut from the digits of the time in nanoseconds: the seconds, then
        # nine digits, leading zeros kept, of which the microseconds are the
        # first six. Cheaper than dividing and formatting numbers.
        now = str(time.time_ns())
        second = now[:-9]
        cached_second, prefix = self._cached
        if second != cached_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(int(second)))
            self._cached = (second, prefix)
        event_dict["timestamp"] = prefix + now[-9:-3] + "Z"
        if "exc_info" in event_dict:
            return structlog.processors.format_exc_info(logger, method, event_dict)
        return event_dict


#: Level names of the methods not named after their level.
_LEVEL_OF_METHOD: Final = {"warn": "warning", "exception": "error"}


def configure(
    format: Literal["json", "console"] = "console",
    level: str = "info",
    *,
    file: TextIO | None = None,
) -> None:
    """Send structlog's output to standard error, as JSON lines or for people.

    Standard output stays the program's own. Context bound with
    :func:`structlog.contextvars.bind_contextvars` (a request id, say) is
    merged into every entry; eventkit's own entries carry ``run`` and
    ``sequence`` as keys.

    Example::

        eventkit.logging.configure("json")
        await eventkit.run(source, eventkit.pipe.log_events(mode="summary"))

    Args:
        format: ``"json"``: one JSON object per line, with ISO-8601 UTC
            timestamps; ``"console"``: key=value lines, coloured on a terminal.
        level: The lowest level logged (``"debug"``, ``"info"``, ...).
        file: Where lines go instead of standard error.

    Raises:
        ValueError: For an unknown format or level.
    """
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    out = sys.stderr if file is None else file
    renderer: structlog.typing.Processor
    if format == "json":
        renderer = _render_json
    elif format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    else:
        raise ValueError(f"log format must be 'json' or 'console', not {format!r}")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _LevelTimeAndTraceback(),
            renderer,
        ],
        wrapper_class=_bound_logger_class(number),
        # One write and a flush a line (print() makes two writes).
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def _bound_logger_class(level: int) -> type[FilteringBoundLogger]:
    """Return structlog's filtering bound logger for ``level``, each line cheaper.

    structlog's level methods collect their keywords into a dict three times
    on the way to the processors (the method's ``**kw``, then
    ``_proxy_to_logger``'s, then ``dict.update(**kw)``): about a microsecond
    a line of a dozen fields, as much as all the processors. The enabled
    levels' methods here hand their own dict to the processors. Entries are
    the same; a call with ``%`` arguments, the ``a``-prefixed async methods,
    ``log()``, ``exception()`` and binding are structlog's own.
    """
    cached = _BOUND_LOGGER_CLASSES.get(level)
    if cached is not None:
        return cached
    base = structlog.make_filtering_bound_logger(level)
    methods: dict[str, Any] = {"_process_event": _process_event}
    for number, name in _LEVEL_NAMES.items():
        if number >= level:
            methods[name] = _level_method(name, getattr(base, name))
    made: type[FilteringBoundLogger] = type(base.__name__, (base,), methods)
    _BOUND_LOGGER_CLASSES[level] = made
    return made


_LEVEL_NAMES: Final = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}
_BOUND_LOGGER_CLASSES: dict[int, type[FilteringBoundLogger]] = {}
#: What a renderer may return. A tuple: ``str | bytes | bytearray`` would make
#: a union object at every line (90 ns).
_RENDERED: Final = (str, bytes, bytearray)


def _level_method(name: str, structlogs: Callable[..., Any]) -> Callable[..., Any]:
    """Return the method logging at level ``name``."""

    def log_at_level(self: Any, event: str, *args: Any, **kw: Any) -> Any:
        if args:  # "%s"-style arguments to put into the event
            return structlogs(self, event, *args, **kw)
        try:
            args, kw = self._process_event(name, event, kw)
            return getattr(self._logger, name)(*args, **kw)
        except structlog.DropEvent:
            return None

    log_at_level.__name__ = log_at_level.__qualname__ = name
    return log_at_level


def _process_event(
    self: Any, method_name: str, event: str | None, event_kw: dict[str, Any]
) -> tuple[Sequence[Any], Mapping[str, Any]]:
    """structlog's ``BoundLoggerBase._process_event``, taking ``event_kw`` as its own.

    Every caller passes the dict its ``**kw`` collected, which nobody else
    holds: it becomes the entry when nothing is bound.
    """
    context = self._context
    event_dict: Any = {**context, **event_kw} if context else event_kw
    if event is not None:
        event_dict["event"] = event
    for processor in self._processors:
        event_dict = processor(self._logger, method_name, event_dict)
    if isinstance(event_dict, _RENDERED):
        return (event_dict,), {}
    if isinstance(event_dict, tuple):
        return event_dict
    if isinstance(event_dict, dict):
        return (), event_dict
    raise ValueError(
        "the last processor returned neither a str, bytes, bytearray, tuple nor "
        f"dict, but {type(event_dict).__name__}"
    )
