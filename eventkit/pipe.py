"""The operators as pipes, aiostream's way: ``source | eventkit.pipe.NAME(...)``.

Each function returns a :class:`~eventkit.streams.Stage`: give it to
:func:`eventkit.run`, or pipe a stream into it. Adjacent eventkit stages fuse
into one async stage either way. Invalid arguments raise :exc:`ValueError`
here, when the pipe is made, not mid-stream.

Order matters: put :func:`reorder` before anything that drops events
(:func:`only`, :func:`exclude`), or the dropped sequence numbers look like
holes, and before :func:`buffer_bytes`, which merges events into chunks.
A typical chain::

    reorder() -> only("stdout", "stderr", "completed") -> buffer_bytes(4096)
    -> track_progress() -> export_metrics() -> log_events(mode="summary")
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Literal

from eventkit.operators.buffer import BufferBytes
from eventkit.operators.cap import CapOutput
from eventkit.operators.lines import Lines
from eventkit.operators.log import LogEvents, LogSummaries
from eventkit.operators.metrics import ExportMetrics, ExportRunMetrics
from eventkit.operators.progress import TrackProgress
from eventkit.operators.reorder import Reorder
from eventkit.operators.select import Select
from eventkit.streams import EventStream, Stage
from eventkit.summary import SummaryTracker

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Callable, Iterable

    from prometheus_client import CollectorRegistry

    from eventkit.events import Event
    from eventkit.operators._base import Operator
    from eventkit.operators.log import Logger
    from eventkit.sinks._base import Sink
    from eventkit.tap import Tap

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

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def merge(
    *others: AsyncIterable[Event],
) -> Callable[[AsyncIterable[Event]], EventStream]:
    """Merge the stream piped in with ``others``: ``source | pipe.merge(a, b)``.

    See :func:`eventkit.merge`. It is not an operator: stages before it and
    after it run as chains of their own, on each source and on the merged
    stream.
    """
    # Imported here: merging needs the driver, loaded with the first chain.
    from eventkit.fanin import merge as merged

    def apply(source: AsyncIterable[Event]) -> EventStream:
        return merged(source, *others)

    return apply


def tap(sink: Sink) -> Tap:
    """Send a copy of the events at this point of a chain to ``sink``.

    ``source | pipe.reorder() | pipe.tap(sink) | pipe.only("stdout")``: the
    sink gets every event in order, before ``only`` drops some. See
    :func:`eventkit.tap.tap`: the sink is opened and closed with the stream,
    gets each batch before the events go on, and a failing sink stops the
    stream with :exc:`eventkit.SinkError`. It is not an operator: the stages
    before it and after it run as chains of their own (it cuts fusion in
    two, except at the start of a chain).

    Example, a dashboard of the runs as the source gives them, whatever the
    chain drops::

        board = eventkit.sinks.dashboard(8080)
        await eventkit.run(
            source, eventkit.pipe.tap(board), eventkit.pipe.only("stderr"),
            sink=eventkit.sinks.console(),
        )
    """
    # Imported here: tapping needs the driver, loaded with the first chain.
    from eventkit.tap import Tap

    return Tap(sink)


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


def cap_output(
    head: int = 65536,
    tail: int = 65536,
    *,
    types: Iterable[str] = ("stdout", "stderr"),
) -> Stage:
    """Keep the first ``head`` and the last ``tail`` bytes of each run's output.

    See :class:`~eventkit.operators.cap.CapOutput`: per run and type, the
    head passes live; then the last ``tail`` bytes are held until the run's
    next lifecycle event (or the end), where a ``truncated`` event (``stream``,
    ``omitted_bytes``, ``omitted_events``) comes before them: the error at
    the end of a flood is never lost, and never moves past the event after
    it.

    Raises:
        ValueError: If ``head`` or ``tail`` is negative, or ``types`` empty.
    """
    types = tuple(types)
    return Stage(
        f"cap_output({head}, {tail})",
        functools.partial(CapOutput, head, tail, types=types),
    )


def lines(
    *,
    max_line_bytes: int = 65536,
    max_age: float | None = None,
    collapse_cr: bool = False,
    types: Iterable[str] = ("stdout", "stderr"),
) -> Stage:
    """Regroup each run's output into chunks of whole lines.

    See :class:`~eventkit.operators.lines.Lines`: an unfinished line waits
    for its newline, up to ``max_line_bytes``, ``max_age`` seconds (so a
    prompt still shows) or the run's next lifecycle event; with
    ``collapse_cr``, a line redrawn with ``\\r`` keeps only its last state.

    Raises:
        ValueError: If ``max_line_bytes`` is below 4, ``max_age`` negative or
            ``types`` empty.
    """
    types = tuple(types)
    return Stage(
        "lines",
        functools.partial(
            Lines,
            max_line_bytes=max_line_bytes,
            max_age=max_age,
            collapse_cr=collapse_cr,
            types=types,
        ),
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
    registry: CollectorRegistry | None = None,
    *,
    namespace: str = "eventkit",
    self_metrics: bool = True,
    run_labels: bool = False,
    run_ttl: float = 30.0,
    idle_ttl: float | None = 600.0,
    max_run_series: int = 1000,
) -> Stage:
    """Pass events through, counting them as Prometheus metrics in ``registry``.

    Counters ``eventkit_events_total{type}``, ``eventkit_event_bytes_total{type}``,
    ``eventkit_runs_total{outcome}``, ``eventkit_resource_limits_total{limit}``,
    ``eventkit_errors_total{code}`` and the histogram
    ``eventkit_run_duration_seconds``, with ``namespace`` in place of
    ``eventkit``. Counting is local and cheap; Prometheus reads the counts when
    it scrapes (see :mod:`eventkit.metrics`). Serve them with
    :func:`eventkit.sinks.prometheus_http` or push them with
    :func:`eventkit.sinks.pushgateway`. Every metric is listed in
    ``docs/metrics.md``.

    Self-metrics (``self_metrics``, on by default): the chain this stage is
    fused into also counts the events entering each stage, and the exporter
    reads each operator's own counters when scraped: events received, sent
    and dropped per stage (label ``stage``, such as ``"2:buffer_bytes"``,
    and ``reason`` for drops), reorder's held events, gaps and missing
    sequences, buffer_bytes' chunks by reason, splits and pending bytes,
    track_progress's active runs, and the process's sources and local
    server. Only the stages fused with this one are counted: an aiostream
    pipe between stages cuts the chain in two. The counting costs an integer
    add per event behind each stage that cannot tell its own output count
    (``buffer_bytes``, ``track_progress``, foreign operators), about 5 % on
    the core chain; without ``self_metrics`` the chain runs exactly as it
    would without metrics.

    Per-run series (``run_labels``, off by default): ``eventkit_run_*`` with a
    ``run`` label (events, bytes, start time, progress ratio). A run label is
    unbounded, so these are short-lived and capped: a run's series go
    ``run_ttl`` seconds after it completes, or after ``idle_ttl`` seconds
    without an event; at most ``max_run_series`` runs have series at once,
    and the runs refused past that are counted in
    ``eventkit_run_series_refused_total``.

    Args:
        registry: Default: prometheus_client's default registry.
        namespace: Metric name prefix.
        self_metrics: Also export the pipeline's own metrics.
        run_labels: Also export bounded per-run series.
        run_ttl: Seconds a completed run's series stay (``run_labels`` only).
        idle_ttl: Seconds without an event before a run's series go; None for
            never (``run_labels`` only).
        max_run_series: Most runs with series at once (``run_labels`` only).

    Raises:
        ValueError: If ``namespace`` is not a valid metric name prefix, a TTL
            is negative or ``max_run_series`` below 1.
    """
    if not _METRIC_NAME.fullmatch(namespace):
        raise ValueError(f"namespace must be a valid metric name, not {namespace!r}")
    # Imported here: prometheus_client loads only for pipelines that export.
    from eventkit.metrics import collector_for

    collector = collector_for(registry, namespace, self_metrics=self_metrics)
    observe = collector.track_chain if self_metrics else None
    factory: Callable[[], Operator]
    if run_labels:
        factory = functools.partial(
            ExportRunMetrics,
            run_ttl=run_ttl,
            idle_ttl=idle_ttl,
            max_run_series=max_run_series,
            observe_chain=observe,
        )
    else:
        factory = functools.partial(ExportMetrics, observe_chain=observe)

    def track(operator: Operator) -> None:
        assert isinstance(operator, ExportMetrics)
        collector.track(operator)

    return Stage("export_metrics", factory, on_create=track)


def log_events(
    logger: Logger | None = None,
    *,
    types: Iterable[str] | None = None,
    level: str | None = None,
    every: int = 1,
    mode: Literal["events", "summary"] = "events",
) -> Stage:
    """Pass events through, logging them with structlog.

    Two modes:

    - ``"events"``: one entry per selected event (see
      :class:`~eventkit.operators.log.LogEvents`);
    - ``"summary"``: ``started``, ``error`` and ``resource_limit`` events
      (unless ``types`` says otherwise) and one ``run_summary`` entry per
      run when it ends, in place of ``result`` and ``completed``: duration,
      exit code, success, events and bytes per type, gaps, limits hit (see
      :class:`~eventkit.operators.log.LogSummaries`). What the CLI logs.

    A JSON log line costs microseconds: on busy streams log summaries, or
    sample with ``every``. Never configures structlog.

    Example::

        eventkit.pipe.log_events(mode="summary")
        eventkit.pipe.log_events(types=["stdout", "stderr"], every=100)

    Args:
        logger: Default: ``structlog.get_logger("eventkit")``.
        types: Event types to log; None logs all (``"events"``) or the
            lifecycle types but ``result`` and ``completed`` (``"summary"``).
        level: Level name for every entry instead of the per-type default.
        every: Log one in ``every`` selected events of each type; lifecycle
            events are always logged.
        mode: ``"events"`` or ``"summary"``.

    Raises:
        ValueError: For an unknown level name or mode, or ``every`` below 1.
    """
    if logger is None:
        # Imported here: structlog loads only for pipelines that log.
        import structlog

        logger = structlog.get_logger("eventkit")
    chosen: Logger = logger
    kinds = None if types is None else tuple(types)
    if mode == "events":
        return Stage(
            "log_events",
            functools.partial(LogEvents, chosen, types=kinds, level=level, every=every),
        )
    if mode == "summary":
        return Stage(
            "log_events",
            functools.partial(
                LogSummaries,
                chosen,
                SummaryTracker,
                types=kinds,
                level=level,
                every=every,
            ),
        )
    raise ValueError(f"mode must be 'events' or 'summary', not {mode!r}")
