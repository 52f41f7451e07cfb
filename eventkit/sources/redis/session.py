"""One iteration of a Redis Streams worker: reads, claims, acks, dead letters.

A :class:`Reader` is what a
:class:`~eventkit.sources.redis.source.RedisStreamSource` iterates: each
iteration is a :class:`Session` of its own, one at a time. A session owns a
client, a background lease task and the shards it holds:

- **Leases.** Every third of ``claim_idle_ms`` the lease task writes a
  heartbeat, renews the leases and takes free shards up to the fair share,
  as the :class:`~eventkit.sources.redis.leases.LeasePolicy` decides, with
  the scripts of :mod:`eventkit.sources.redis.scripts`.
- **Reading.** The reading loop drains a shard just acquired of the entries
  its previous owner left pending (``XAUTOCLAIM``), then reads new entries
  (``XREADGROUP``) of the shards whose leases surely hold for the read.
  Each shard's :class:`~eventkit.protocol.redis_entries.RunTracker` drops
  duplicates and tells when a run is whole.
- **Settling.** Before each read: the runs whose terminal event went
  through the pipeline are acknowledged (``XACK``) and recorded in the
  shard's finished set, entries that did not decode (or belong to a run
  closed out) are dead-lettered, and shards handed over are released once
  their runs are over.
- **Expiry.** Every ``min(1 s, idle_timeout / 4)``, the runs that received
  nothing for ``idle_timeout`` seconds are ended with an ``error`` event
  (``code="run_expired"``) and a failed ``completed``, made here; once those
  went through the pipeline, the runs' entries are acknowledged, and their
  later entries go to the dead-letter stream.
- **Failures.** The batch in flight when the pipeline stopped the iteration
  is kept by the :class:`Reader`, whose :meth:`Reader.failed` charges the
  failure to runs with its :class:`~eventkit.sources.redis.failures.FailurePolicy`.
  The next sessions deliver suspect runs in batches of their own and
  dead-letter the entries of poison runs.
- **Shard count.** Every lease tick reads the count the producers published
  (``S:meta``) along with the heartbeat: another count than the worker's
  raises :exc:`~eventkit.exceptions.ShardCountError`; none published yet
  (no producer came) is no error, and it is read again at the next tick.

Failure behaviour: every Redis operation is retried with backoff while the
server is away, until it succeeds or the session is stopped; a refused login,
a shard count other than the producers' and other server errors are raised.
Stopped (``stop()``), the session acknowledges what went through, releases
its leases and closes, trying for up to ``claim_idle_ms``. Ended otherwise
(``break``, an error, a cancellation), it acknowledges the runs that went
through and releases its leases, for at most 1 s, which a second cancellation
does not cut short; then the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import time
from typing import TYPE_CHECKING, Any, Final

import structlog
from redis.exceptions import RedisError, ResponseError

from eventkit._redis.client import connect
from eventkit._redis.retry import (
    REFUSED,
    RETRYABLE,
    Outage,
    Stopped,
    backoff,
    retry,
)
from eventkit.exceptions import SinkError
from eventkit.protocol.redis_entries import (
    DEAD,
    DELIVER,
    DELIVER_LAST,
    FIELD,
    FINISHED_RETENTION_MS,
    RUN_EXPIRED,
    DeadLetter,
    DecodeError,
    RunTracker,
    as_mapping,
    check_shards,
    consumers_key,
    decode,
    encode,
    expiry_events,
    finished_key,
    lease_key,
    meta_key,
    token_key,
)
from eventkit.sources.redis import scripts
from eventkit.sources.redis.failures import (
    OUTAGE,
    POISON,
    RETRY,
    FailurePolicy,
)
from eventkit.sources.redis.leases import Lease, LeasePolicy
from eventkit.stats import source_stats
from eventkit.streams import one_by_one

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Coroutine,
        Sequence,
    )

    from redis.asyncio import Redis

    from eventkit.events import Event
    from eventkit.sources.redis.settings import WorkerSettings
    from eventkit.stats import SourceStats

__all__ = ["DEAD_LETTERS_KEPT", "Reader", "Session", "Shard"]

_log = structlog.get_logger("eventkit.sources.redis")

#: An entry as the server sends it: its id and its fields (name, value, …).
_Entry = tuple[bytes, list[bytes]]

#: Seconds the leases of an iteration ended by an error or a cancellation
#: are given to be released, before they are left to expire.
_ABANDON_TIMEOUT: Final = 1.0
#: Seconds a cancelled lease task may take to end before it is cancelled again.
_CANCEL_AGAIN: Final = 0.5
#: Entries the dead-letter stream keeps, about (``MAXLEN ~``): the latest.
DEAD_LETTERS_KEPT: Final = 100_000
#: Seconds a reply may take beyond the read's own ``BLOCK`` time.
_READ_MARGIN: Final = 10.0
#: Why the late entries of an expired run go to the dead-letter stream.
_EXPIRED: Final = DeadLetter(RUN_EXPIRED)
#: Longest time between two looks for idle runs, in seconds.
_EXPIRY_CHECK: Final = 1.0
#: Runs named in a log line, at most.
_RUNS_LOGGED: Final = 10


class Shard(Lease):
    """One key of the stream, as its owner reads it: the lease and what it read."""

    __slots__ = (
        "backlog",
        "dead",
        "finished",
        "lease_key",
        "read_new",
        "stash",
        "token",
        "token_key",
        "tracker",
    )

    def __init__(self, key: str, group: str) -> None:
        super().__init__(key.encode())
        self.lease_key = lease_key(key, group)
        self.token_key = token_key(key, group)
        self.finished = finished_key(key, group)
        #: Proves that nobody acquired the shard since we did.
        self.token = secrets.token_hex(8)
        self.tracker = RunTracker()
        #: The XAUTOCLAIM cursor while pending entries are left to claim.
        self.backlog: bytes | None = b"0-0"
        #: Entries that did not decode: id, fields, reason.
        self.dead: list[tuple[bytes, dict[bytes, bytes], str]] = []
        #: Whether new entries (``>``) were read since the shard was acquired.
        self.read_new = False
        #: The events of runs waiting (see :class:`FailurePolicy`) for new
        #: entries to be read first, and the runs they make whole, by run.
        self.stash: dict[str, tuple[list[Event], list[str]]] = {}


def _open_runs(shard: Shard) -> int:
    """Runs in progress on ``shard``: what its handover waits for."""
    return shard.tracker.open_runs


#: A batch handed over and not come back for: its events, and its run when
#: it is a suspect's batch of its own.
_InFlight = tuple[list["Event"], "str | None"]


class Reader:
    """What a source iterates: a :class:`Session` per iteration, one at a time.

    It outlives its sessions: what the pipeline's failures taught (the
    :class:`~eventkit.sources.redis.failures.FailurePolicy`) goes from one
    iteration to the next.

    Args:
        settings: What the source was made with.

    Attributes:
        settings: What the source was made with.
        policy: The runs that made the pipeline fail, and the poison ones.
    """

    __slots__ = (
        "_in_flight",
        "_own_error",
        "_session",
        "_stop_early",
        "policy",
        "settings",
    )

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.policy = FailurePolicy(settings.max_deliveries)
        self._session: Session | None = None
        self._stop_early = False
        # How the last iteration ended: the batch it had handed over and not
        # come back for, and the error it raised of its own.
        self._in_flight: _InFlight | None = None
        self._own_error: BaseException | None = None

    @property
    def open_runs(self) -> int:
        """Runs in progress in the iteration under way: read and not finished."""
        session = self._session
        if session is None:
            return 0
        return sum(shard.tracker.open_runs for shard in session.shards())

    def failed(self, error: BaseException) -> float:
        """Charge ``error``, which ended the last iteration, to runs; return a delay.

        See :meth:`~eventkit.sources.redis.source.RedisStreamSource.failed`.

        Raises:
            BaseException: ``error`` itself, when the iteration raised it of
                its own (not the pipeline).
        """
        if self._session is not None:
            raise RuntimeError("failed() is for an iteration that ended")
        in_flight, self._in_flight = self._in_flight, None
        own, self._own_error = self._own_error, None
        if own is not None:
            raise error
        # A sink names the event it failed on: that event's run is charged.
        # Anything else is charged to the batch in flight, if any.
        sink = False
        runs: list[str] = []
        if isinstance(error, SinkError) and error.undelivered:
            sink = True
            runs = [error.undelivered[0].run]
        elif in_flight is not None:
            batch, alone = in_flight
            runs = [alone] if alone is not None else list({e.run: 0 for e in batch})
        decision = self.policy.failed(runs, error, sink=sink)
        settings = self.settings
        # Bound now, not when the source was made: a program configures
        # structlog after making its source, maybe.
        log = _log.bind(
            stream=settings.stream,
            group=settings.group,
            consumer=settings.consumer,
            error=repr(error),
            retry_in=round(decision.delay, 3),
        )
        if decision.outcome == POISON:
            log.warning(
                "redis_run_poisoned",
                run=decision.runs[0],
                deliveries=decision.deliveries,
                dead_letter=self.settings.dead_letter,
            )
        elif decision.outcome == RETRY:
            log.warning(
                "redis_pipeline_failed",
                runs=list(decision.runs[:_RUNS_LOGGED]),
                charged=len(decision.runs),
                deliveries=decision.deliveries,
                max_deliveries=self.policy.max_deliveries,
            )
        elif decision.outcome == OUTAGE:
            log.warning("redis_sink_outage")
        else:
            log.warning("redis_pipeline_failed", runs=[], charged=0)
        return decision.delay

    def __aiter__(self) -> AsyncIterator[Event]:
        return Session(self).events()

    def batches(self) -> AsyncIterator[list[Event]]:
        """Return a new iteration that yields the events of each read at once."""
        return Session(self).batches()

    def stop(self) -> None:
        """Stop the iteration under way, or else the next one at its start.

        Until an iteration ends gracefully: one cut short meanwhile (by an
        error, say) leaves the next one to be stopped at its start.
        """
        self._stop_early = True
        if self._session is not None:
            self._session.stop()


class Session:
    """One iteration of a source: a client, a lease task, leases, runs.

    Args:
        reader: The iterable this session is an iteration of.
    """

    def __init__(self, reader: Reader) -> None:
        settings = self._settings = reader.settings
        self._reader = reader
        self._policy = reader.policy
        self._group = settings.group
        self._consumer = settings.consumer
        self._claim_idle_ms = settings.claim_idle_ms
        self._heartbeats = consumers_key(settings.stream, settings.group)
        self._meta = meta_key(settings.stream)
        self._idle_timeout = settings.idle_timeout
        self._expiry_interval = min(_EXPIRY_CHECK, settings.idle_timeout / 4)
        self._next_expiry_check = 0.0
        self._log = _log.bind(
            stream=settings.stream, group=settings.group, consumer=settings.consumer
        )
        self._stats: SourceStats = source_stats("redis")
        self._outage = Outage(self._log, self._stats)
        self._client: Redis | None = None
        # The shards held. The lease task acquires them and drops those lost;
        # the reading loop releases those it hands over.
        self._leases: LeasePolicy[Shard] = LeasePolicy(
            settings.keys,
            settings.consumer,
            settings.claim_idle_ms,
            open_runs=_open_runs,
        )
        self._stopping = asyncio.Event()
        # Set when shards were acquired or a stop was asked for: ends the
        # wait of a worker that owns no shard.
        self._wake = asyncio.Event()
        # Renews the leases in the background; owned by this session, which
        # cancels and awaits it on its way out (_close).
        self._lease_task: asyncio.Task[None] | None = None
        self._read_args = (
            "XREADGROUP",
            "GROUP",
            settings.group,
            settings.consumer,
            "COUNT",
            settings.count,
            "BLOCK",
        )
        # The delays between failed reads.
        self._delays = backoff()

    def stop(self) -> None:
        """Ask the reading loop to end after the entries read."""
        self._stopping.set()
        self._wake.set()

    def shards(self) -> list[Shard]:
        """Return the shards held."""
        return self._leases.held()

    @property
    def client(self) -> Redis:
        """The session's client, while it runs."""
        client = self._client
        if client is None:
            raise RuntimeError("the redis_stream session is not running")
        return client

    async def _call(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Await ``call()``, retrying while the server is away, until stopped."""
        return await retry(call, self._outage, stop=self._stopping)

    # The reading loop ---------------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        """Yield the events of the shards owned, one at a time, until stopped."""
        return one_by_one(self.batches())

    async def batches(self) -> AsyncIterator[list[Event]]:
        """Yield the events of each read of the shards owned, until stopped.

        A run whose last event is in a batch is finished (its entries join
        the acknowledgements) once the consumer asks for the next batch: the
        whole batch has then been through the pipeline, sink included.
        """
        reader = self._reader
        if reader._session is not None:
            raise RuntimeError(
                "this redis_stream source is being iterated already; "
                "make one source per concurrent reader"
            )
        reader._session = self
        reader._in_flight = reader._own_error = None
        graceful = False
        try:
            if reader._stop_early:
                graceful = True
                return
            settings = self._settings
            client = self._client = connect(
                settings.url, read_timeout=settings.block_ms / 1000 + _READ_MARGIN
            )
            # Entries as the server sends them: redis-py would make a dict of
            # each entry's fields, at half a microsecond an entry.
            for command in ("XREADGROUP", "XAUTOCLAIM"):
                client.set_response_callback(command, _as_sent)
            self._execute: Callable[..., Awaitable[Any]] = client.execute_command
            self._heartbeat = client.register_script(scripts.HEARTBEAT)
            self._acquire = client.register_script(scripts.ACQUIRE)
            self._renew = client.register_script(scripts.RENEW)
            self._release = client.register_script(scripts.RELEASE)
            self._prune = client.register_script(scripts.PRUNE)
            try:
                try:
                    await self._call(self._tick)
                    self._lease_task = asyncio.create_task(self._keep_leases())
                    stopping = self._stopping
                    stats = self._stats
                    policy = self._policy
                    while not stopping.is_set():
                        for shard, waited, part, done in self._unstashed():
                            reader._in_flight = (part, waited)
                            yield part
                            reader._in_flight = None
                            policy.passed(waited)
                            for run in done:
                                shard.tracker.finish(run)
                                policy.finished(run)
                        for shard, runs, alone in self._expiring():
                            # Made a batch at a time: thousands of runs may
                            # expire at once.
                            ending = self._ending(shard, runs)
                            reader._in_flight = (ending, alone)
                            yield ending
                            # Resumed: the runs' held output and the events
                            # that end them went through the pipeline.
                            reader._in_flight = None
                            policy.passed(alone)
                            for run in runs:
                                shard.tracker.close(run, _EXPIRED)
                                policy.finished(run)
                        for shard, entries in await self._next_batch():
                            stats.frames += len(entries)
                            tracker = shard.tracker
                            receive = tracker.receive
                            leaving = shard.leave_by is not None
                            now = time.monotonic()
                            batch: list[Event] = []
                            whole: list[str] = []
                            for entry_id, event in await self._decoded(shard, entries):
                                if leaving and not tracker.knows(event.run):
                                    # Being handed over: a run not begun here
                                    # stays pending, for the next owner to
                                    # process whole.
                                    continue
                                verdict = receive(entry_id, event, now)
                                if verdict == DELIVER:
                                    batch.append(event)
                                elif verdict == DELIVER_LAST:
                                    batch.append(event)
                                    whole.append(event.run)
                                elif verdict == DEAD:
                                    self._dead_run_entry(shard, entry_id, event)
                            if shard.lost or not batch:
                                continue
                            parts: Sequence[_Part] = (
                                _isolated(batch, whole, policy.suspect)
                                if policy.suspects
                                else ((None, batch, whole),)
                            )
                            for alone, part, done in parts:
                                if alone is not None and (
                                    shard.stash or policy.waiting(alone)
                                ):
                                    held = shard.stash.pop(alone, None)
                                    if held is not None:
                                        part = held[0] + part
                                        done = held[1] + done
                                    if not shard.read_new and policy.waiting(alone):
                                        # Until new entries were read: other
                                        # runs show first whether the
                                        # pipeline works.
                                        shard.stash[alone] = (part, done)
                                        continue
                                reader._in_flight = (part, alone)
                                yield part
                                # Resumed: the batch went through the whole
                                # pipeline.
                                reader._in_flight = None
                                policy.passed(alone)
                                for run in done:
                                    tracker.finish(run)
                                if policy.suspects:
                                    for run in done:
                                        policy.finished(run)
                except Stopped:
                    pass
                except Exception as exc:
                    # Raised here, not by the pipeline: failed() tells apart.
                    reader._own_error = exc
                    raise
                graceful = True
            finally:
                await self._close(graceful)
        finally:
            reader._session = None
            if graceful:
                # A stop asked for is done.
                reader._stop_early = False

    def _unstashed(self) -> list[tuple[Shard, str, list[Event], list[str]]]:
        """Return the waiting runs' events due now: those of shards read anew.

        The run that failed least recently first, so that a pipeline failing
        for every run meets another run each time.
        """
        due = []
        policy = self._policy
        for shard in self._leases.owned.values():
            stash = shard.stash
            if not stash or not shard.read_new or shard.lost:
                continue
            for run in policy.least_recent(stash):
                part, done = stash.pop(run)
                due.append((shard, run, part, done))
        return due

    def _expiring(self) -> list[tuple[Shard, list[str], str | None]]:
        """Return the runs to end for idleness, by shard, ``count // 2`` at a time.

        Looks at most every ``min(1 s, idle_timeout / 4)``. A run whose
        terminal event went through already (it waits for sequences before
        it that never came) has nothing to end it with: it is closed at once,
        its entries acknowledged at the next settling. A suspect run ends
        alone (the third item names it), as its events go; a run waiting
        with its events held back is left for later.
        """
        now = time.monotonic()
        if now < self._next_expiry_check:
            return []
        self._next_expiry_check = now + self._expiry_interval
        timeout = self._idle_timeout
        since = now - timeout
        chunk = max(1, self._settings.count // 2)
        policy = self._policy
        due: list[tuple[Shard, list[str], str | None]] = []
        expired = 0
        for shard in self._leases.owned.values():
            tracker = shard.tracker
            if shard.lost or not tracker.open_runs:
                continue
            idle = [run for run in tracker.idle_runs(since) if run not in shard.stash]
            if not idle:
                continue
            expired += len(idle)
            runs = []
            for run in idle:
                if tracker.ended(run):
                    tracker.close(run, _EXPIRED)
                elif policy.suspect(run):
                    due.append((shard, [run], run))
                else:
                    runs.append(run)
            due += [
                (shard, runs[start : start + chunk], None)
                for start in range(0, len(runs), chunk)
            ]
        if expired:
            self._log.warning(
                "redis_runs_expired",
                runs=expired,
                idle_timeout=timeout,
                first=[run for _, runs, _ in due for run in runs][:_RUNS_LOGGED],
            )
        return due

    def _ending(self, shard: Shard, runs: list[str]) -> list[Event]:
        """Return the events that end ``runs`` of ``shard``, expired."""
        tracker = shard.tracker
        timeout = self._idle_timeout
        wall = time.time()
        return [
            event
            for run in runs
            for event in expiry_events(run, tracker.last_sequence(run), timeout, wall)
        ]

    def _dead_run_entry(self, shard: Shard, entry_id: bytes, event: Event) -> None:
        """Set an entry of a run closed out aside, for the dead-letter stream."""
        why = shard.tracker.dead_letter(event.run)
        self._stats.invalid_frames += 1
        self._log.warning(
            "redis_entry_dead_lettered",
            key=shard.key.decode(errors="replace"),
            id=entry_id.decode(errors="replace"),
            run=event.run,
            reason=why.reason,
            dead_letter=self._settings.dead_letter,
        )
        fields = {FIELD: encode(event), **dict(why.fields)}
        shard.dead.append((entry_id, fields, why.reason))

    async def _decoded(
        self, shard: Shard, entries: list[_Entry]
    ) -> list[tuple[bytes, Event]]:
        """Decode a shard's entries, setting aside those that do not decode.

        Runs this worker does not know are looked up among the poison runs,
        then in the shard's finished set: a late duplicate of a run another
        worker finished (it came up after a takeover) must not start a run
        that never ends.
        """
        decoded = []
        for entry_id, fields in entries:
            try:
                decoded.append((entry_id, decode(fields)))
            except DecodeError as exc:
                self._poisoned(shard, entry_id, as_mapping(fields), exc)
        tracker = shard.tracker
        unknown = [
            run for run in {event.run for _, event in decoded} if not tracker.knows(run)
        ]
        policy = self._policy
        if unknown and policy.any_condemned:
            for run in unknown:
                why = policy.condemned(run)
                if why is not None:
                    tracker.close(run, why)
            unknown = [run for run in unknown if not tracker.knows(run)]
        if unknown:
            scores = await self._call(
                lambda: self._execute("ZMSCORE", shard.finished, *unknown)
            )
            for run, score in zip(unknown, scores, strict=True):
                if score is not None:
                    tracker.finished_elsewhere(run)
        return decoded

    async def _next_batch(self) -> list[tuple[Shard, list[_Entry]]]:
        """Settle what is due; return the next entries to deliver, by shard.

        Reads only the shards whose lease surely holds until the read is
        served: the ``BLOCK`` time is cut to fit. A read served after the
        lease expired could hand this consumer entries after the next owner
        claimed the old ones, and no one would claim them then.
        """
        task = self._lease_task
        if task is not None and task.done():
            # It never ends by itself: it failed, for a reason of its own.
            task.result()
        await self._settle()
        leases = self._leases
        now = time.monotonic()
        owned = leases.readable(now)
        if not owned:
            # Nothing to read (no shard, or no lease renewed lately): wait
            # for the lease task.
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(leases.tick_interval):
                    await self._wake.wait()
            return []
        for shard in owned:
            if shard.backlog is not None:
                return [(shard, await self._claim(shard))]
        args = (
            *self._read_args,
            leases.read_block_ms(owned, now, self._settings.block_ms),
            "STREAMS",
            *(s.key for s in owned),
            *(b">",) * len(owned),
        )
        # None when the read timed out.
        reply = await self._read(owned, args) or ()
        by_key = {shard.key: shard for shard in owned}
        batch = []
        for key, entries in reply:
            shard = by_key[key]
            if not shard.lost:
                batch.append((shard, entries))
        return batch

    async def _claim(self, shard: Shard) -> list[_Entry]:
        """Claim the next pending entries of a shard just acquired, in order.

        They are those of the runs its previous owner did not finish, all
        older than anything a read would return: delivered first, they keep
        each run in order.
        """
        command = (
            "XAUTOCLAIM",
            shard.key,
            self._group,
            self._consumer,
            0,
            shard.backlog,
            "COUNT",
            self._settings.count,
        )
        reply = await self._read([shard], command)
        if not reply:
            return []
        cursor: bytes = reply[0]
        if cursor == b"0-0":
            shard.backlog = None
            await self._prune_consumers(shard)
        else:
            shard.backlog = cursor
        # Redis before 7 lists the entries trimmed away, without fields.
        return [entry for entry in reply[1] if entry and entry[1] is not None]

    async def _prune_consumers(self, shard: Shard) -> None:
        """Delete the group's other consumers on a shard, once nothing is theirs.

        After the drain, every pending entry of the shard is this owner's,
        and no one else reads it: the others' names (a worker gone, or that
        owned the shard once) are dead weight in ``XINFO CONSUMERS``. A
        consumer with entries pending is kept, since deleting it would drop
        them; the check and the deletion are one script, so that a late read
        of a former owner cannot slip in between. Best effort: errors are
        ignored.
        """
        with contextlib.suppress(RedisError):
            await self._prune(keys=[shard.key], args=[self._group, self._consumer])

    async def _read(self, shards: Sequence[Shard], command: tuple[Any, ...]) -> Any:
        """Send a command that delivers entries; return its reply, or ``[]``.

        Tried once: a retry would be sent later, perhaps after the leases
        expired. On a connection error, the reply (and the entries it gave
        this consumer) may be lost: the shards' pending entries are claimed
        again, oldest first, before reading on (those delivered already come
        back as duplicates, and are dropped). Then wait a backoff delay.
        """
        try:
            reply = await self._execute(*command)
        except REFUSED:
            raise
        except RETRYABLE as exc:
            self._outage.failed(exc)
            for shard in shards:
                shard.backlog = b"0-0"
            delay = next(self._delays)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            return []
        except ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):
                raise
            await self._recreate_groups(shards)
            return []
        self._outage.succeeded()
        self._delays = backoff()
        if command[0] == "XREADGROUP":
            for shard in shards:
                shard.read_new = True
        return reply

    def _poisoned(
        self,
        shard: Shard,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        error: DecodeError,
    ) -> None:
        """Set an entry that does not decode aside, for the dead-letter stream."""
        self._stats.invalid_frames += 1
        reason = str(error)
        self._log.warning(
            "redis_entry_invalid",
            key=shard.key.decode(errors="replace"),
            id=entry_id.decode(errors="replace"),
            reason=reason,
            dead_letter=self._settings.dead_letter,
        )
        shard.dead.append((entry_id, fields, reason))

    async def _settle(self) -> None:
        """Acknowledge what is ackable, and hand over the shards due."""
        leases = self._leases
        due = [s for s in leases.owned.values() if s.tracker.acks or s.dead]
        if due:
            taken = _take_acks(due)
            try:
                await self._call(lambda: self._send_acks(taken))
            except BaseException:
                # Kept for the next try, or the last one when stopping.
                for shard, acks, finished, dead in taken:
                    shard.tracker.acks[:0] = acks
                    shard.tracker.finished[:0] = finished
                    shard.dead[:0] = dead
                raise
        now = time.monotonic()
        started, called_off = leases.rebalance(now)
        for shard in started:
            self._log.info(
                "redis_shard_handover",
                key=shard.key.decode(errors="replace"),
                open_runs=shard.tracker.open_runs,
            )
        for shard in called_off:
            # The runs skipped meanwhile are pending and unread: claim the
            # shard's pending entries again (those of the runs in progress
            # come back as duplicates, and are dropped).
            shard.backlog = b"0-0"
        done = leases.releasable(now)
        if done:
            await self._call(lambda: self._release_leases(done))
            for shard in done:
                leases.forget(shard)
                self._log.info(
                    "redis_shard_released",
                    key=shard.key.decode(errors="replace"),
                    open_runs=shard.tracker.open_runs,
                )

    async def _send_acks(self, taken: Sequence[_Taken]) -> None:
        """Dead-letter and acknowledge entries, record finished runs: one round trip."""
        pipe = self.client.pipeline(transaction=False)
        now = int(time.time() * 1000)
        for shard, acks, finished, dead in taken:
            if finished:
                pipe.execute_command(
                    "ZADD",
                    shard.finished,
                    *(item for run in finished for item in (now, run)),
                )
                pipe.execute_command(
                    "ZREMRANGEBYSCORE",
                    shard.finished,
                    "-inf",
                    now - FINISHED_RETENTION_MS,
                )
                pipe.execute_command(
                    "PEXPIRE", shard.finished, 2 * FINISHED_RETENTION_MS
                )
            for entry_id, fields, reason in dead:
                pipe.execute_command(
                    "XADD",
                    self._settings.dead_letter,
                    "MAXLEN",
                    "~",
                    DEAD_LETTERS_KEPT,
                    "*",
                    "stream",
                    shard.key,
                    "id",
                    entry_id,
                    "reason",
                    reason,
                    *(item for pair in fields.items() for item in pair),
                )
            ids = [*acks, *(entry_id for entry_id, _, _ in dead)]
            if ids:
                pipe.execute_command("XACK", shard.key, self._group, *ids)
        await pipe.execute()

    async def _recreate_groups(self, shards: Sequence[Shard]) -> None:
        """Create the group where it is missing; start those shards afresh."""
        for shard in shards:
            if await self._call(functools.partial(self._create_group, shard.key)):
                # The server lost the group and its pending entries (a restart
                # without persistence): what was in progress is forgotten.
                self._log.warning(
                    "redis_group_recreated", key=shard.key.decode(errors="replace")
                )
                shard.tracker = RunTracker()
                shard.dead = []
                shard.backlog = None

    async def _create_group(self, key: bytes) -> bool:
        """Create the group on ``key``, reading from its start; tell if it was new."""
        try:
            await self._execute("XGROUP", "CREATE", key, self._group, "0", "MKSTREAM")
        except ResponseError as exc:
            if str(exc).startswith("BUSYGROUP"):
                return False
            raise
        return True

    # Leases -------------------------------------------------------------------

    async def _keep_leases(self) -> None:
        """Tick every third of ``claim_idle_ms``, until cancelled."""
        interval = self._leases.tick_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self._tick()
            except REFUSED:
                raise
            except RETRYABLE as exc:
                # Nothing to do but wait: the reading loop retries too.
                self._outage.failed(exc)
            except RedisError as exc:
                self._log.error("redis_lease_tick_failed", error=repr(exc))
            else:
                self._outage.succeeded()

    async def _tick(self) -> None:
        """Heartbeat, check the shard count, renew the leases, take free shards.

        Raises:
            ShardCountError: If the producers published another shard count.
        """
        live, published = await self._heartbeat(
            keys=[self._heartbeats, self._meta],
            args=[self._consumer, self._claim_idle_ms],
        )
        # Now, before the quiet time after an outage is judged below.
        self._outage.succeeded()
        settings = self._settings
        check_shards(settings.stream, published, settings.shards, "worker")
        leases = self._leases
        leases.heard(int(live))
        owned = list(leases.owned.values())
        if owned:
            sent = time.monotonic()
            kept = await self._renew(
                keys=_lease_keys(owned),
                args=[self._consumer, self._claim_idle_ms, *(s.token for s in owned)],
            )
            for shard in leases.renewed(owned, kept, sent):
                self._log.warning(
                    "redis_shard_lost",
                    key=shard.key.decode(errors="replace"),
                    open_runs=shard.tracker.open_runs,
                )
            await self._find_strays([s for s in owned if not s.lost])
        want = leases.shards_to_take(time.monotonic(), self._outage.recovered_at)
        if want > 0 and not self._stopping.is_set():
            await self._take(want)

    async def _find_strays(self, shards: Sequence[Shard]) -> None:
        """Drain again the shards where another consumer has entries pending.

        A former owner's read served after its lease expired (a pause, a slow
        reconnection just then) hands it entries after this owner drained the
        shard: nobody would claim them. Looked for at every tick, they are
        claimed and delivered late, out of order in their runs, but not lost.
        """
        pipe = self.client.pipeline(transaction=False)
        for shard in shards:
            pipe.xpending(shard.key, self._group)
        summaries = await pipe.execute(raise_on_error=False)
        me = self._consumer.encode()
        for shard, summary in zip(shards, summaries, strict=True):
            if isinstance(summary, Exception) or shard.backlog is not None:
                continue
            strays = [c for c in summary["consumers"] if c["name"] != me]
            if strays:
                shard.backlog = b"0-0"
                self._log.warning(
                    "redis_stray_entries",
                    key=shard.key.decode(errors="replace"),
                    consumers=[c["name"].decode(errors="replace") for c in strays],
                )

    async def _take(self, want: int) -> None:
        """Acquire up to ``want`` free shards, looking from this worker's offset."""
        leases = self._leases
        group = self._group
        candidates = leases.start_acquiring(lambda key: Shard(key, group))
        sent = time.monotonic()
        taken = await self._acquire(
            keys=_lease_keys(candidates),
            args=[
                self._consumer,
                self._claim_idle_ms,
                want,
                *(s.token for s in candidates),
            ],
        )
        for position in taken:
            shard = candidates[int(position) - 1]
            await self._create_group(shard.key)
            leases.acquired(shard, sent)
            self._log.info("redis_shard_acquired", key=shard.key.decode())
        leases.done_acquiring()
        if taken:
            self._wake.set()

    async def _release_leases(self, shards: Sequence[Shard]) -> None:
        """Release the leases of ``shards`` that are still ours."""
        if shards:
            await self._release(
                keys=_lease_keys(shards), args=[s.token for s in shards]
            )

    async def _leave(self, shards: Sequence[Shard]) -> None:
        """Release the leases of ``shards``; leave the heartbeat set."""
        await self._release_leases(shards)
        await self.client.zrem(self._heartbeats, self._consumer)

    # The end ------------------------------------------------------------------

    async def _close(self, graceful: bool) -> None:
        """Stop the lease task; acknowledge (if graceful), release, close."""
        if graceful:
            await self._stop_lease_task()
            await self._finish(self._leases.held())
        else:
            await _to_the_end(self._abandon())

    async def _stop_lease_task(self) -> None:
        """Cancel the lease task and wait for it to end."""
        task = self._lease_task
        if task is not None:
            task.cancel()
            # Waited for without raising: a failure of its own was raised
            # by the reading loop already.
            await asyncio.wait([task], timeout=_CANCEL_AGAIN)
            while not task.done():
                # The cancellation was eaten on the way: redis-py mid-command
                # may swallow one (redis/redis-py#2551, #2028). Seen once in a
                # full test run, the task then slept on and the close never
                # returned. Cancelled again until it ends.
                task.cancel()
                await asyncio.wait([task], timeout=_CANCEL_AGAIN)
            if not task.cancelled():
                task.exception()

    async def _finish(self, shards: Sequence[Shard]) -> None:
        """Acknowledge finished runs, release the leases, close: bounded in time.

        Tries for up to ``claim_idle_ms`` (the leases expire then anyway);
        what is not acknowledged by then is delivered again later.
        """
        taken = _take_acks([s for s in shards if s.tracker.acks or s.dead])
        sent = False

        async def finish() -> None:
            nonlocal sent
            if taken and not sent:
                await self._send_acks(taken)
                sent = True
            await self._leave(shards)

        try:
            await retry(finish, self._outage, give_up_after=self._claim_idle_ms / 1000)
        except (RedisError, TimeoutError) as exc:
            self._log.warning(
                "redis_stop_incomplete", acknowledged=sent, error=repr(exc)
            )
        finally:
            await self._shut()

    async def _abandon(self) -> None:
        """Stop the lease task; acknowledge what went through and release the
        leases, best effort and briefly; close.

        The runs finished before the iteration was cut short went through
        the whole pipeline: acknowledged now, they are not delivered again.
        """
        await self._stop_lease_task()
        shards = self._leases.held()
        taken = _take_acks(
            [s for s in shards if not s.lost and (s.tracker.acks or s.dead)]
        )
        try:
            async with asyncio.timeout(_ABANDON_TIMEOUT):
                if taken:
                    await self._send_acks(taken)
                await self._leave(shards)
        except (TimeoutError, RedisError) as exc:
            self._log.warning("redis_leases_not_released", error=repr(exc))
        finally:
            await self._shut()

    async def _shut(self) -> None:
        """Close the client."""
        self._outage.closed()
        await self.client.aclose()


async def _to_the_end(cleanup: Coroutine[Any, Any, None]) -> None:
    """Await ``cleanup`` to its end, even if cancelled meanwhile; then go on cancelling.

    The cleanup runs as a task of its own, shielded: a cancellation of the
    caller (a second one, when the iteration is being cancelled already)
    does not cut it short. The caller still waits for it (it is bounded in
    time), so it never runs on unowned, and raises the cancellation after.
    """
    task = asyncio.ensure_future(cleanup)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            # Ours, or the task's own (the loop shutting down cancels every
            # task): either way, go on until the task is done.
            cancelled = exc
    if cancelled is None:
        task.result()
        return
    if not task.cancelled():
        # Retrieved, so that asyncio does not log it: the cancellation wins.
        task.exception()
    raise cancelled


def _as_sent(response: Any, **_: Any) -> Any:
    """A redis-py response callback that leaves the reply as the server sent it."""
    return response


#: An entry that did not decode: id, fields, reason.
_Dead = tuple[bytes, dict[bytes, bytes], str]


#: What a shard has to settle: its entries to acknowledge, its runs
#: finished, its entries to dead-letter.
_Taken = tuple[Shard, list[bytes], list[str], list[_Dead]]


#: A batch to hand over: the suspect run it holds alone (None for runs not
#: suspect), its events, and the runs it makes whole.
_Part = tuple["str | None", list["Event"], list[str]]


def _isolated(
    batch: list[Event], whole: list[str], suspect: Callable[[str], bool]
) -> list[_Part]:
    """Split a batch: the events of runs not suspect, then each suspect's alone.

    Each run's events keep their order; a suspect's next failure is its own,
    and its neighbours go through.
    """
    rest: list[Event] = []
    alone: dict[str, list[Event]] = {}
    for event in batch:
        run = event.run
        if suspect(run):
            alone.setdefault(run, []).append(event)
        else:
            rest.append(event)
    parts: list[_Part] = []
    if rest:
        parts.append((None, rest, [run for run in whole if run not in alone]))
    parts.extend(
        (run, events, [run] if run in whole else []) for run, events in alone.items()
    )
    return parts


def _take_acks(shards: Sequence[Shard]) -> list[_Taken]:
    """Take what each shard has to acknowledge, record and dead-letter."""
    taken = []
    for shard in shards:
        acks, finished = shard.tracker.take_acks()
        taken.append((shard, acks, finished, shard.dead))
        shard.dead = []
    return taken


def _lease_keys(shards: Sequence[Shard]) -> list[str]:
    """Return the lease and token key of each shard, interleaved."""
    return [key for s in shards for key in (s.lease_key, s.token_key)]
