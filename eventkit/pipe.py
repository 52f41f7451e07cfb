"""The operators as pipes, aiostream's way: ``source | eventkit.pipe.NAME(...)``.

Each function returns a :class:`~eventkit.runner.Stage`: give it to
:func:`eventkit.run`, or pipe a stream into it. Adjacent eventkit stages fuse
into one async stage either way. Invalid arguments raise :exc:`ValueError`
here, when the pipe is made, not mid-stream.

Order matters: put :func:`reorder` before anything that drops events
(:func:`only`, :func:`exclude`), or the dropped sequence numbers look like
holes, and before :func:`buffer_bytes`, which merges events into chunks.
A typical chain::

    reorder() -> only("stdout", "stderr", "completed") -> buffer_bytes(4096)
    -> track_progress() -> export_metrics() -> log_events(types=LIFECYCLE)
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

import structlog

from eventkit.metrics import collector_for
from eventkit.operators.buffer import BufferBytes
from eventkit.operators.log import LogEvents
from eventkit.operators.metrics import ExportMetrics
from eventkit.operators.progress import TrackProgress
from eventkit.operators.reorder import Reorder
from eventkit.operators.select import Select
from eventkit.runner import Stage

if TYPE_CHECKING:
    from collections.abc import Iterable

    from prometheus_client import CollectorRegistry

    from eventkit.operators._base import Operator
    from eventkit.operators.log import Logger

__all__ = [
    "buffer_bytes",
    "exclude",
    "export_metrics",
    "log_events",
    "only",
    "reorder",
    "track_progress",
]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def only(*types: str) -> Stage:
    """Keep the events of the given types; drop and count the rest.

    Example::

        source | eventkit.pipe.only("stdout", "stderr")

    Raises:
        ValueError: If no type is given.
    """
    return Stage(f"only{types}", functools.partial(Select, types, keep=True))


def exclude(*types: str) -> Stage:
    """Drop and count the events of the given types; keep the rest.

    Raises:
        ValueError: If no type is given.
    """
    return Stage(f"exclude{types}", functools.partial(Select, types, keep=False))


def buffer_bytes(
    limit: int = 1024,
    *,
    types: Iterable[str] = ("stdout", "stderr"),
    max_age: float | None = None,
) -> Stage:
    """Coalesce output into chunks of at most ``limit`` UTF-8 bytes.

    See :class:`~eventkit.operators.buffer.BufferBytes`: chunks are per
    (run, type); any other event of the run flushes them before it passes; an
    event larger than ``limit`` is split between characters; ``max_age``
    seconds after a buffer started it is flushed even with no more input.

    Raises:
        ValueError: If ``limit`` is below 4 or ``max_age`` is negative.
    """
    types = tuple(types)
    return Stage(
        f"buffer_bytes({limit})",
        functools.partial(BufferBytes, limit, types=types, max_age=max_age),
    )


def track_progress(*, interval: float = 0.0) -> Stage:
    """Pass events through and add ``progress`` events per run.

    See :class:`~eventkit.operators.progress.TrackProgress`.

    Raises:
        ValueError: If ``interval`` is negative.
    """
    return Stage("track_progress", functools.partial(TrackProgress, interval=interval))


def reorder(
    *,
    window: int = 1024,
    max_delay: float | None = 1.0,
    start: int | None = 0,
    emit_gaps: bool = True,
) -> Stage:
    """Put each run's events in ``sequence`` order; report what never came.

    See :class:`~eventkit.operators.reorder.Reorder`.

    Raises:
        ValueError: If ``window`` is not positive or ``max_delay`` is negative.
    """
    return Stage(
        "reorder",
        functools.partial(
            Reorder,
            window=window,
            max_delay=max_delay,
            start=start,
            emit_gaps=emit_gaps,
        ),
    )


def export_metrics(
    registry: CollectorRegistry | None = None, *, namespace: str = "eventkit"
) -> Stage:
    """Pass events through, counting them as Prometheus metrics in ``registry``.

    Counters ``eventkit_events_total{type}``, ``eventkit_event_bytes_total{type}``,
    ``eventkit_runs_total{outcome}``, ``eventkit_resource_limits_total{limit}``
    and the histogram ``eventkit_run_duration_seconds``, with ``namespace`` in
    place of ``eventkit``. Counting is local and cheap; Prometheus reads the
    counts when it scrapes (see :mod:`eventkit.metrics`).

    Args:
        registry: Default: prometheus_client's default registry.
        namespace: Metric name prefix.

    Raises:
        ValueError: If ``namespace`` is not a valid metric name prefix.
    """
    if not _METRIC_NAME.fullmatch(namespace):
        raise ValueError(f"namespace must be a valid metric name, not {namespace!r}")
    collector = collector_for(registry, namespace)

    def track(operator: Operator) -> None:
        assert isinstance(operator, ExportMetrics)
        collector.track(operator)

    return Stage("export_metrics", ExportMetrics, on_create=track)


def log_events(
    logger: Logger | None = None,
    *,
    types: Iterable[str] | None = None,
    level: str | None = None,
) -> Stage:
    """Pass events through, logging them with structlog.

    See :class:`~eventkit.operators.log.LogEvents`. Never configures structlog.

    Args:
        logger: Default: ``structlog.get_logger("eventkit")``.
        types: Event types to log; None logs all.
        level: Level name for every entry instead of the per-type default.

    Raises:
        ValueError: For an unknown level name.
    """
    chosen: Logger = structlog.get_logger("eventkit") if logger is None else logger
    kinds = None if types is None else tuple(types)
    return Stage(
        "log_events",
        functools.partial(LogEvents, chosen, types=kinds, level=level),
    )
