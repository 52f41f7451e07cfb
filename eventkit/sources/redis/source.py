"""The Redis Streams source: events read as one worker of a consumer group.

:class:`RedisStreamSource` takes and documents the parameters;
:data:`redis_stream`, the name :mod:`eventkit.sources` gives it, is the class
itself, so that the parameters are defined once. What an iteration does is
in :mod:`eventkit.sources.redis.session`, the lease policy in
:mod:`eventkit.sources.redis.leases`; ``docs/redis.md`` tells the whole
model.

Failure behaviour: nonsense arguments raise :exc:`ValueError` at once;
what happens while reading, and when the pipeline fails, is in
:class:`RedisStreamSource`.
"""

from __future__ import annotations

import os
import socket

from eventkit.protocol.redis_entries import dead_letter_key
from eventkit.sources.redis.session import Reader
from eventkit.sources.redis.settings import WorkerSettings
from eventkit.streams import EventStream

__all__ = ["RedisStreamSource", "redis_stream"]


class RedisStreamSource(EventStream):
    """The events of a Redis stream, read as a worker of ``group``.

    An :class:`~eventkit.EventStream` (pipe it, run it, iterate it) that
    :meth:`stop` ends gracefully. Run it through a chain into a sink like
    any source; stop it with :meth:`stop` (from a SIGTERM handler, say)::

        source = eventkit.sources.redis_stream("redis://localhost", group="g")
        loop.add_signal_handler(signal.SIGTERM, source.stop)
        await eventkit.run(source, eventkit.pipe.reorder(), sink=sink)

    One iteration at a time (another concurrent one raises
    :exc:`RuntimeError`); each iteration is a session of its own: a client,
    leases, runs in progress. Nothing is read until it is iterated.

    Guarantees: each run is delivered whole, in stream order, without
    duplicate events (same run and sequence) by the worker that delivers
    it; every event is delivered at least once, by some worker, and again
    after a failure (a worker dying mid-run, a takeover). A run's entries
    are acknowledged once its terminal event has gone through the pipeline:
    when the consumer asks for the next event after it. With
    :func:`eventkit.run` that means every operator has let the event
    through and the sink's ``send`` has returned; so each sink must have
    written a run out by the time its terminal event's ``send`` returns, as
    :class:`~eventkit.sinks.JsonlSink` and
    :class:`~eventkit.sinks.RedisStreamSink` do. An operator that holds a
    terminal event back (``reorder`` does, when a run's sequences arrive out
    of order) lets its run be acknowledged early.

    Failure behaviour:

    - **Server unavailable** (down, restarting, loading): every operation is
      retried with backoff (50 ms doubling up to 2 s, with jitter), without
      end, until it succeeds or :meth:`stop` is called; a warning is logged
      once per outage and a note when it ends;
      ``source_stats("redis").connections`` counts each (re)connection.
    - **Another shard count**: at every lease tick the worker reads the
      count the producers published in ``f"{stream}:meta"``; another one
      than ``shards`` raises :exc:`~eventkit.exceptions.ShardCountError`.
      Nothing published yet (no producer wrote) is no error: the worker
      reads its keys and checks again at the next tick.
    - **An entry that does not decode** (no ``event`` field, not JSON, not
      an event, a negative sequence) is added to the ``dead_letter`` stream
      with the fields ``stream`` (its key), ``id``, ``reason`` and its own
      fields, acknowledged, logged as a warning and counted in
      ``source_stats("redis").invalid_frames``; reading goes on.
    - **A run idle** for ``idle_timeout`` seconds without its terminal event
      is closed out: the source yields an ``error`` event
      (``attrs["code"] == "run_expired"``) and ``completed`` with
      ``success`` False, which flush what the chain holds of the run; once
      they went through, the run's entries are acknowledged and its state
      freed. Its later entries go to the dead-letter stream (reason
      ``run_expired``).
    - **The pipeline failing** (an operator or the sink raising) ends the
      iteration like any error; :meth:`failed` then charges the failure to
      runs, and the next iteration delivers those runs again, each in
      batches of its own, and dead-letters a run that failed
      ``max_deliveries`` times (:meth:`failed` says how).
    - **A missing group** (a new stream, or a server that lost its data) is
      created, reading the keys from their start.
    - **Stopping early** (``break``, an error, a cancellation) acknowledges
      the runs that went through the pipeline and nothing more; the shards
      are released (both for at most 1 s) and their pending entries
      delivered again, to whichever worker owns them next.
    - Other server errors are raised.

    Args:
        url: The server: ``redis://[[user]:password@]host[:port][/db]``,
            ``rediss://`` for TLS, ``unix://path``.
        stream: The logical stream, as the producers name it.
        group: The consumer group: workers with the same group share the
            work; each group gets every event.
        consumer: This worker's name in the group, unique among the live
            workers of the group (two live sources with the same name would
            share leases); default ``HOSTNAME-PID``, so give distinct names
            to several sources of one process.
        shards: How many keys the stream is spread over, as the producers
            have it. Workers beyond ``shards`` have nothing to do.
        block_ms: Longest wait of a read for new entries, in milliseconds;
            also the longest delay of :meth:`stop`.
        claim_idle_ms: A worker not heard from for this long loses its shards
            and the entries of its unfinished runs to the others; the leases
            are renewed every third of it.
        count: Most entries read per key and round trip.
        dead_letter: The dead-letter stream; default ``f"{stream}:dead"``.
        max_deliveries: Failed deliveries that make a run poison: its
            entries go to the dead-letter stream (see :meth:`failed`).
        idle_timeout: Seconds a run may go without an entry before it is
            closed out, when its terminal event did not come.

    Raises:
        ValueError: At once, for a URL scheme other than redis, rediss or
            unix, an empty ``stream``, ``group`` or ``consumer``, a
            ``shards``, ``block_ms``, ``claim_idle_ms``, ``count`` or
            ``max_deliveries`` that is not a positive integer, or an
            ``idle_timeout`` that is not a positive number.

    Attributes:
        settings: What the source was made with, validated.
    """

    def __init__(
        self,
        url: str,
        stream: str = "eventkit:events",
        *,
        group: str,
        consumer: str | None = None,
        shards: int = 1,
        block_ms: int = 1000,
        claim_idle_ms: int = 10_000,
        count: int = 500,
        dead_letter: str | None = None,
        max_deliveries: int = 3,
        idle_timeout: float = 300.0,
    ) -> None:
        self.settings = WorkerSettings(
            url=url,
            stream=stream,
            group=group,
            consumer=(
                f"{socket.gethostname()}-{os.getpid()}"
                if consumer is None
                else consumer
            ),
            shards=shards,
            block_ms=block_ms,
            claim_idle_ms=claim_idle_ms,
            count=count,
            dead_letter=dead_letter_key(stream) if dead_letter is None else dead_letter,
            max_deliveries=max_deliveries,
            idle_timeout=idle_timeout,
        )
        self._reader = Reader(self.settings)
        super().__init__(self._reader, ())

    @property
    def url(self) -> str:
        """The server."""
        return self.settings.url

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of the stream, one per shard."""
        return self.settings.keys

    @property
    def group(self) -> str:
        """The consumer group."""
        return self.settings.group

    @property
    def consumer(self) -> str:
        """This worker's name in the group."""
        return self.settings.consumer

    @property
    def dead_letter(self) -> str:
        """Where entries that do not decode go."""
        return self.settings.dead_letter

    @property
    def open_runs(self) -> int:
        """Runs in progress in the iteration under way (0 between iterations)."""
        return self._reader.open_runs

    def failed(self, error: BaseException) -> float:
        """Learn that the pipeline fed by the last iteration failed; return a delay.

        Call it with what :func:`eventkit.run` (or the loop over the source)
        raised, then iterate again after the delay returned: this is how a
        worker gets past a poison run. ``eventkit worker`` does it::

            while True:
                try:
                    await eventkit.run(source, *stages, sink=sink)
                    break
                except Exception as exc:
                    await asyncio.sleep(source.failed(exc))

        The failure is charged to runs: the run of the event the sink failed
        on (:attr:`eventkit.SinkError.undelivered`), else every run of the
        batch the pipeline was processing. Each run charged is delivered
        again, from its first entry, in batches of its own, so that its next
        failure is its own and the other runs go through; a run charged
        ``max_deliveries`` times, the last time alone, is poison: its
        entries go to the dead-letter stream (``reason`` =
        ``"processing_failed"``, with ``error_type``, ``error`` and
        ``deliveries``) and are acknowledged, and the worker goes on.

        A sink failing for every run is an outage, not poison: a sink's
        failure counts against its run only if the sink took other batches
        since the run first failed (and did not just fail on another run
        with nothing taken since); otherwise nothing is counted and the
        delays grow. A failure with no batch in flight (a stage's timer) is
        charged to no run.

        The delay is 0.1 s, doubling at each failure in a row up to 30 s,
        back to 0.1 s once a batch goes through; 0 for a run just found
        poison. What the failures taught is kept by the source from one
        iteration to the next (suspects and poison runs, 10,000 of each at
        most): another worker taking the shards over counts afresh.

        Args:
            error: What ended the last iteration.

        Returns:
            Seconds to wait before iterating again.

        Raises:
            BaseException: ``error`` itself, when the source raised it (the
                server refused the login, another shard count, ...): that
                is no failure of the pipeline, and iterating again would
                not help.
            RuntimeError: If an iteration is under way.
        """
        return self._reader.failed(error)

    def stop(self) -> None:
        """Stop reading, and end the iteration once what was read is through.

        Synchronous and safe to call from a signal handler installed with
        :meth:`asyncio.loop.add_signal_handler`. The iteration stops reading
        (a read under way finishes first: at most ``block_ms``), delivers
        the entries already read, acknowledges the runs whose terminal event
        went through the pipeline, releases its shards (other workers take
        them over at once), closes the client, and ends normally. Runs in
        progress are not acknowledged: their next owner processes them
        again from their first event. Called while no iteration is under
        way, or while one ends otherwise (the pipeline failed), it ends the
        next one at once: a worker trying again after a failure does not
        miss it.
        """
        self._reader.stop()

    def __repr__(self) -> str:
        return (
            f"<redis stream source {self.keys[0]!r} ({len(self.keys)} keys), "
            f"group {self.group!r}, consumer {self.consumer!r}>"
        )


#: ``eventkit.sources.redis_stream(url, stream, *, group, ...)``: the source
#: itself, whose parameters and behaviour :class:`RedisStreamSource` documents.
redis_stream = RedisStreamSource
