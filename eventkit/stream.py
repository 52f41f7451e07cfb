"""The operators applied to a source: ``eventkit.stream.NAME(source, ...)``.

Each is ``eventkit.pipe.NAME(...)(source)``; see :mod:`eventkit.pipe`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from eventkit import pipe

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Iterable

    from prometheus_client import CollectorRegistry

    from eventkit.events import Event
    from eventkit.operators.log import Logger
    from eventkit.sinks._base import Sink
    from eventkit.streams import EventStream

__all__ = [
    "buffer_bytes",
    "cap_output",
    "exclude",
    "export_metrics",
    "lines",
    "log_events",
    "merge",
    "only",
    "reorder",
    "tap",
    "track_progress",
]


def merge(source: AsyncIterable[Event], *others: AsyncIterable[Event]) -> EventStream:
    """Merge ``source`` with ``others``; see :func:`eventkit.merge`."""
    return pipe.merge(*others)(source)


def tap(source: AsyncIterable[Event], sink: Sink) -> EventStream:
    """Send a copy of the events of ``source`` to ``sink``; see :func:`pipe.tap`."""
    return pipe.tap(sink)(source)


def only(source: AsyncIterable[Event], *types: str) -> EventStream:
    """Keep the events of ``source`` of the given types; see :func:`pipe.only`."""
    return pipe.only(*types)(source)


def exclude(source: AsyncIterable[Event], *types: str) -> EventStream:
    """Drop the events of ``source`` of the given types; see :func:`pipe.exclude`."""
    return pipe.exclude(*types)(source)


def buffer_bytes(
    source: AsyncIterable[Event],
    limit: int = 1024,
    *,
    types: Iterable[str] = ("stdout", "stderr"),
    max_age: float | None = None,
) -> EventStream:
    """Coalesce the output of ``source``; see :func:`pipe.buffer_bytes`."""
    return pipe.buffer_bytes(limit, types=types, max_age=max_age)(source)


def cap_output(
    source: AsyncIterable[Event],
    head: int = 65536,
    tail: int = 65536,
    *,
    types: Iterable[str] = ("stdout", "stderr"),
) -> EventStream:
    """Cap the output of ``source`` by head and tail; see :func:`pipe.cap_output`."""
    return pipe.cap_output(head, tail, types=types)(source)


def lines(
    source: AsyncIterable[Event],
    *,
    max_line_bytes: int = 65536,
    max_age: float | None = None,
    collapse_cr: bool = False,
    types: Iterable[str] = ("stdout", "stderr"),
) -> EventStream:
    """Regroup the output of ``source`` into whole lines; see :func:`pipe.lines`."""
    return pipe.lines(
        max_line_bytes=max_line_bytes,
        max_age=max_age,
        collapse_cr=collapse_cr,
        types=types,
    )(source)


def track_progress(
    source: AsyncIterable[Event], *, interval: float = 0.0
) -> EventStream:
    """Add progress events to ``source``; see :func:`pipe.track_progress`."""
    return pipe.track_progress(interval=interval)(source)


def reorder(
    source: AsyncIterable[Event],
    *,
    window: int = 1024,
    max_delay: float | None = 1.0,
    start: int | None = 0,
    emit_gaps: bool = True,
) -> EventStream:
    """Put the events of ``source`` in order; see :func:`pipe.reorder`."""
    return pipe.reorder(
        window=window, max_delay=max_delay, start=start, emit_gaps=emit_gaps
    )(source)


def export_metrics(
    source: AsyncIterable[Event],
    registry: CollectorRegistry | None = None,
    *,
    namespace: str = "eventkit",
    self_metrics: bool = True,
    run_labels: bool = False,
    run_ttl: float = 30.0,
    idle_ttl: float | None = 600.0,
    max_run_series: int = 1000,
) -> EventStream:
    """Count the events of ``source``; see :func:`pipe.export_metrics`."""
    return pipe.export_metrics(
        registry,
        namespace=namespace,
        self_metrics=self_metrics,
        run_labels=run_labels,
        run_ttl=run_ttl,
        idle_ttl=idle_ttl,
        max_run_series=max_run_series,
    )(source)


def log_events(
    source: AsyncIterable[Event],
    logger: Logger | None = None,
    *,
    types: Iterable[str] | None = None,
    level: str | None = None,
    every: int = 1,
    mode: Literal["events", "summary"] = "events",
) -> EventStream:
    """Log the events of ``source``; see :func:`pipe.log_events`."""
    return pipe.log_events(logger, types=types, level=level, every=every, mode=mode)(
        source
    )
