"""Running a chain: :func:`run` takes a source, stages and a sink.

Adjacent eventkit stages are fused into one :class:`~eventkit.chain.Chain`
driven by :func:`eventkit.driver.drive`; any other pipe (an aiostream
operator) is applied where it stands. The output goes to a
:class:`~eventkit.sinks.Sink`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from eventkit.driver import drive
from eventkit.exceptions import SinkError
from eventkit.sinks._base import failed
from eventkit.streams import EventStream, Stage

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Callable, Iterable

    from eventkit.events import Event
    from eventkit.sinks._base import Sink

__all__ = ["run"]


def _plan(
    source: AsyncIterable[Event], stages: Iterable[Callable[[Any], Any]]
) -> tuple[AsyncIterable[Event], list[Stage]]:
    """Fuse adjacent eventkit stages; apply any other pipe as it comes."""
    pending: list[Stage] = []
    if isinstance(source, EventStream):
        pending = list(source.stages)
        source = source.source
    for stage in stages:
        if isinstance(stage, Stage):
            pending.append(stage)
            continue
        # A foreign operator (an aiostream pipe): it needs a stream in hand.
        if pending:
            source = EventStream(source, pending)
            pending = []
        source = stage(source)
    return source, pending


async def run(
    source: AsyncIterable[Event],
    *stages: Callable[[Any], Any],
    sink: Sink | None = None,
) -> None:
    """Run ``source`` through ``stages`` into ``sink``, fused, until the end.

    Adjacent eventkit stages (``eventkit.pipe.NAME(...)``) run fused as one
    async stage. Other pipes (aiostream's ``pipe.timeout(5)``, say) are
    applied where they stand, cutting the chain in two.

    Example::

        sink = eventkit.sinks.collect()
        await eventkit.run(
            eventkit.sources.local("print(1)"),
            eventkit.pipe.reorder(),
            eventkit.pipe.buffer_bytes(4096),
            sink=sink,
        )

    Args:
        source: Any async iterable of events, e.g. an ``eventkit.sources``
            source or an aiostream stream.
        stages: Pipes, applied in order.
        sink: Where the output goes (opened before the first event, closed at
            the end); None discards it.

    Raises:
        SinkError: If the sink raised; its exception is the cause.
    """
    source, pending = _plan(source, stages)
    operators = [stage.create() for stage in pending]
    if sink is None:
        async with contextlib.aclosing(drive(source, operators)) as batches:  # type: ignore[type-var]
            async for _ in batches:
                pass
        return
    await sink.open()
    try:
        async with contextlib.aclosing(drive(source, operators)) as batches:  # type: ignore[type-var]
            send_batch = sink.send_batch
            async for batch in batches:
                try:
                    await send_batch(batch)
                except SinkError:
                    raise
                except Exception as exc:
                    # The sink did not say where in the batch it failed.
                    raise failed(sink, batch, 0, exc) from exc
    finally:
        await sink.close()
