"""Log events as structured log entries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from eventkit.operators._base import Stateless

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventkit.events import Event

__all__ = ["DATA_LIMIT", "LogEvents", "Logger"]

#: Characters of ``data`` kept in a log entry.
DATA_LIMIT: Final = 200

_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
# Keys the entry itself uses; attrs with these names get an ``attr_`` prefix.
_RESERVED: Final = frozenset({"event", "run", "sequence", "data", "level"})
_LEVEL_BY_TYPE: Final[dict[str, str]] = {
    "stderr": "warning",
    "error": "error",
    "resource_limit": "error",
}


class Logger(Protocol):
    """What :class:`LogEvents` needs of a logger: structlog's bound loggers fit."""

    def debug(self, event: str, **kw: Any) -> Any: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...
    def critical(self, event: str, **kw: Any) -> Any: ...


class LogEvents(Stateless):
    """Pass every event through unchanged, logging the selected ones.

    One entry per logged event: its ``event`` key is the event's type, with
    ``run``, ``sequence``, ``data`` (cut to :data:`DATA_LIMIT` characters) and
    the attrs as top-level keys. Level: ``info`` for output and lifecycle,
    ``warning`` for ``stderr``, ``error`` for ``error`` and ``resource_limit``.

    A structlog JSON line costs several microseconds, more than every other
    operator together: log lifecycle events, not every output chunk, on busy
    streams.

    Args:
        logger: Where entries go (a structlog bound logger or alike).
        types: Event types to log; None logs every event.
        level: A level name (``"debug"``, ``"info"``, ...) for every entry.

    Raises:
        ValueError: For an unknown level name.
    """

    __slots__ = ("_logger", "_methods", "_types")

    def __init__(
        self,
        logger: Logger,
        *,
        types: Iterable[str] | None = None,
        level: str | None = None,
    ) -> None:
        if level is not None and level.lower() not in _LEVELS:
            raise ValueError(
                f"level must be one of {', '.join(_LEVELS)}, not {level!r}"
            )
        self._logger = logger
        self._types = None if types is None else frozenset(str(t) for t in types)
        fixed = None if level is None else getattr(logger, level.lower())
        # Bound methods resolved once: per-event lookups add up.
        self._methods: dict[str, Any] = {
            name: fixed or getattr(logger, name) for name in _LEVELS
        }

    def feed(self, event: Event) -> tuple[Event, ...]:
        """Log ``event`` if it is selected; return ``(event,)``."""
        if self._types is None or event.type in self._types:
            self._log(event)
        return (event,)

    def _log(self, event: Event) -> None:
        data = event.data
        if len(data) > DATA_LIMIT:
            data = data[:DATA_LIMIT] + "…"
        fields = {
            (f"attr_{key}" if key in _RESERVED else key): value
            for key, value in event.attrs.items()
        }
        method = self._methods[_LEVEL_BY_TYPE.get(event.type, "info")]
        method(event.type, run=event.run, sequence=event.sequence, data=data, **fields)
