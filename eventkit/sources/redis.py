"""A source reading events from Redis Streams as one worker of a consumer group.

Producers append events with :func:`eventkit.sinks.redis_stream`; any number
of workers, on any number of machines, read them with :func:`redis_stream`
under one group name. ``docs/redis.md`` tells the whole model; in short:

- **Shards and leases.** The stream is ``shards`` keys and a run always goes
  to the same key. Each key is read by one worker at a time, its owner by a
  lease that the worker renews in the background every third of
  ``claim_idle_ms``; live workers share the keys evenly. So each run is read
  by one worker at a time, in stream order.
- **At least once, per run.** A run's entries are acknowledged (``XACK``)
  once its terminal event has gone through the pipeline, sink included.
  Entries of unfinished runs stay pending: when their worker dies, the next
  owner of the key claims them and processes those runs again from their
  first event. Duplicates of an event (same run and sequence) are dropped.
- **Poison entries** go to a dead-letter stream with the reason, and the
  worker goes on.
- **Server restarts.** Every Redis operation is retried with backoff until
  it succeeds or the source is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import secrets
import socket
import time
import zlib
from typing import TYPE_CHECKING, Any, Final

import structlog
from redis.exceptions import RedisError, ResponseError

from eventkit._redis import (
    REFUSED,
    RETRYABLE,
    Outage,
    Stopped,
    backoff,
    check_url,
    connect,
    retry,
)
from eventkit.protocol.redis import (
    DELIVER_LAST,
    FINISHED_RETENTION_MS,
    DecodeError,
    RunTracker,
    as_mapping,
    consumers_key,
    dead_letter_key,
    decode,
    finished_key,
    lease_key,
    shard_keys,
    token_key,
)
from eventkit.stats import source_stats
from eventkit.streams import EventStream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from redis.asyncio import Redis

    from eventkit.events import Event
    from eventkit.stats import SourceStats

__all__ = ["RedisStreamSource", "redis_stream"]

_log = structlog.get_logger("eventkit.sources.redis")

#: An entry as the server sends it: its id and its fields (name, value, …).
_Entry = tuple[bytes, list[bytes]]

#: Seconds the leases of an iteration ended by an error or a cancellation
#: are given to be released, before they are left to expire.
_ABANDON_TIMEOUT: Final = 1.0
#: Entries the dead-letter stream keeps, about (``MAXLEN ~``): the latest.
DEAD_LETTERS_KEPT: Final = 100_000
#: Seconds a reply may take beyond the read's own ``BLOCK`` time.
_READ_MARGIN: Final = 10.0

# The scripts. Leases: ``lease`` holds the owner's consumer name and expires
# after claim_idle_ms; ``token`` holds a random token of the last acquisition
# and does not expire, so an owner whose lease expired (a stall, a long
# outage) can tell whether anyone took the shard since.

# KEYS: the heartbeat set. ARGV: consumer, claim_idle_ms. Returns the number
# of consumers heard from within claim_idle_ms, this one included.
_HEARTBEAT: Final = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local idle = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - idle)
redis.call('PEXPIRE', KEYS[1], 2 * idle)
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: lease and token key of each candidate shard, in order of preference.
# ARGV: consumer, claim_idle_ms, how many to take, then a token per shard.
# Takes shards that have no owner, or whose owner has this consumer's name (a
# restarted worker); returns their positions in the list, from 1.
_ACQUIRE: Final = """
local taken = {}
local want = tonumber(ARGV[3])
for i = 1, #KEYS / 2 do
  if #taken >= want then break end
  local owner = redis.call('GET', KEYS[2 * i - 1])
  if not owner or owner == ARGV[1] then
    redis.call('SET', KEYS[2 * i - 1], ARGV[1], 'PX', ARGV[2])
    redis.call('SET', KEYS[2 * i], ARGV[i + 3])
    taken[#taken + 1] = i
  end
end
return taken
"""

# KEYS: lease and token key of each owned shard. ARGV: consumer,
# claim_idle_ms, then our token per shard. A shard is still ours when nobody
# acquired it since we did, even if our lease expired meanwhile. Returns 1
# (renewed) or 0 (lost) per shard.
_RENEW: Final = """
local kept = {}
for i = 1, #KEYS / 2 do
  if redis.call('GET', KEYS[2 * i]) == ARGV[i + 2] then
    redis.call('SET', KEYS[2 * i - 1], ARGV[1], 'PX', ARGV[2])
    kept[i] = 1
  else
    kept[i] = 0
  end
end
return kept
"""

# KEYS: lease and token key of each shard to release. ARGV: our token per
# shard. Deleting the token too makes a renewal racing the release fail.
_RELEASE: Final = """
for i = 1, #KEYS / 2 do
  if redis.call('GET', KEYS[2 * i]) == ARGV[i] then
    redis.call('DEL', KEYS[2 * i - 1], KEYS[2 * i])
  end
end
return 0
"""

# KEYS: a shard. ARGV: the group, this consumer. Deletes the group's other
# consumers that have no entry pending there.
_PRUNE: Final = """
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending
  for i = 1, #consumer, 2 do
    if consumer[i] == 'name' then name = consumer[i + 1] end
    if consumer[i] == 'pending' then pending = consumer[i + 1] end
  end
  if name ~= ARGV[2] and pending == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
  end
end
return 0
"""


class _Shard:
    """One key of the stream, as its owner sees it."""

    __slots__ = (
        "backlog",
        "dead",
        "finished",
        "key",
        "lease",
        "leave_by",
        "lost",
        "token",
        "token_key",
        "tracker",
        "valid_until",
    )

    def __init__(self, key: str, group: str) -> None:
        self.key = key.encode()
        self.lease = lease_key(key, group)
        self.token_key = token_key(key, group)
        self.finished = finished_key(key, group)
        #: Proves that nobody acquired the shard since we did.
        self.token = secrets.token_hex(8)
        self.tracker = RunTracker()
        #: The XAUTOCLAIM cursor while pending entries are left to claim.
        self.backlog: bytes | None = b"0-0"
        #: Entries that did not decode: id, fields, reason.
        self.dead: list[tuple[bytes, dict[bytes, bytes], str]] = []
        #: When being handed over: the time (monotonic) to release it by.
        self.leave_by: float | None = None
        #: Whether it is no longer ours: stop delivering its entries.
        self.lost = False
        #: Until when (monotonic) the lease surely holds: its expiry counted
        #: from before the request that set it, so never after the server's.
        self.valid_until = -math.inf


class _Config:
    """What a :class:`RedisStreamSource` was made with."""

    __slots__ = (
        "block_ms",
        "claim_idle_ms",
        "consumer",
        "count",
        "dead_letter",
        "group",
        "keys",
        "stream",
        "url",
    )

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        group: str,
        consumer: str,
        shards: int,
        block_ms: int,
        claim_idle_ms: int,
        count: int,
        dead_letter: str,
    ) -> None:
        self.url = url
        self.stream = stream
        self.keys = shard_keys(stream, shards)
        self.group = group
        self.consumer = consumer
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.count = count
        self.dead_letter = dead_letter


class _Reader:
    """The async iterable under a :class:`RedisStreamSource`: a session each time."""

    __slots__ = ("_session", "_stop_early", "config")

    def __init__(self, config: _Config) -> None:
        self.config = config
        self._session: _Session | None = None
        self._stop_early = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return _Session(self).events()

    def stop(self) -> None:
        """Stop the iteration under way, or else the next one at its start."""
        if self._session is None:
            self._stop_early = True
        else:
            self._session.stop()


class _Session:
    """One iteration of a :class:`RedisStreamSource`: a client, leases, runs."""

    def __init__(self, reader: _Reader) -> None:
        config = self._config = reader.config
        self._reader = reader
        self._keys = config.keys
        self._group = config.group
        self._consumer = config.consumer
        self._claim_idle_ms = config.claim_idle_ms
        #: Seconds between lease ticks.
        self._interval = config.claim_idle_ms / 3000
        self._heartbeats = consumers_key(config.stream, config.group)
        self._log = _log.bind(
            stream=config.stream, group=config.group, consumer=config.consumer
        )
        self._stats: SourceStats = source_stats("redis")
        self._outage = Outage(self._log, self._stats)
        self._client: Redis | None = None
        # The shards owned, by key. The lease task adds them and drops those
        # lost; the reading loop drops those it hands over.
        self._owned: dict[bytes, _Shard] = {}
        # Shards being acquired, to release should the acquisition be cut.
        self._acquiring: list[_Shard] = []
        #: How many shards to own: ceil(shards / live workers).
        self._share = len(self._keys)
        offset = zlib.crc32(config.consumer.encode(errors="surrogatepass"))
        #: Where this worker starts looking for free shards.
        self._offset = offset % len(self._keys)
        self._stopping = asyncio.Event()
        # Set when shards were acquired or a stop was asked for: ends the
        # wait of a worker that owns no shard.
        self._wake = asyncio.Event()
        self._lease_task: asyncio.Task[None] | None = None
        self._read_args = (
            "XREADGROUP",
            "GROUP",
            config.group,
            config.consumer,
            "COUNT",
            config.count,
            "BLOCK",
        )
        #: Seconds of a lease kept in hand for the network: a read is sent
        #: only if served before this much remains of the leases it reads.
        self._margin = config.claim_idle_ms / 10000
        # The delays between failed reads.
        self._delays = backoff()

    def stop(self) -> None:
        """Ask the reading loop to end after the entries read."""
        self._stopping.set()
        self._wake.set()

    @property
    def client(self) -> Redis:
        client = self._client
        if client is None:
            raise RuntimeError("the redis_stream session is not running")
        return client

    async def _call(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Await ``call()``, retrying while the server is away, until stopped."""
        return await retry(call, self._outage, stop=self._stopping)

    # The reading loop ---------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """Yield the events of the shards owned, until stopped."""
        reader = self._reader
        if reader._session is not None:
            raise RuntimeError(
                "this redis_stream source is being iterated already; "
                "make one source per concurrent reader"
            )
        reader._session = self
        try:
            if reader._stop_early:
                return
            config = self._config
            client = self._client = connect(
                config.url, read_timeout=config.block_ms / 1000 + _READ_MARGIN
            )
            # Entries as the server sends them: redis-py would make a dict of
            # each entry's fields, at half a microsecond an entry.
            for command in ("XREADGROUP", "XAUTOCLAIM"):
                client.set_response_callback(command, _as_sent)
            self._execute: Callable[..., Awaitable[Any]] = client.execute_command
            self._heartbeat = client.register_script(_HEARTBEAT)
            self._acquire = client.register_script(_ACQUIRE)
            self._renew = client.register_script(_RENEW)
            self._release = client.register_script(_RELEASE)
            self._prune = client.register_script(_PRUNE)
            graceful = False
            try:
                try:
                    await self._call(self._tick)
                    self._lease_task = asyncio.create_task(self._keep_leases())
                    stopping = self._stopping
                    stats = self._stats
                    while not stopping.is_set():
                        for shard, entries in await self._next_batch():
                            stats.frames += len(entries)
                            tracker = shard.tracker
                            receive = tracker.receive
                            for entry_id, event in await self._decoded(shard, entries):
                                if shard.lost:
                                    break
                                if shard.leave_by is not None and not tracker.knows(
                                    event.run
                                ):
                                    # Being handed over: a run not begun here
                                    # stays pending, for the next owner to
                                    # process whole.
                                    continue
                                verdict = receive(entry_id, event)
                                if verdict:
                                    yield event
                                    # Resumed: the event went through the
                                    # whole pipeline.
                                    if verdict == DELIVER_LAST:
                                        tracker.finish(event.run)
                except Stopped:
                    pass
                graceful = True
            finally:
                await self._close(graceful)
        finally:
            reader._session = None
            reader._stop_early = False

    async def _decoded(
        self, shard: _Shard, entries: list[_Entry]
    ) -> list[tuple[bytes, Event]]:
        """Decode a shard's entries, setting aside those that do not decode.

        Runs this worker does not know are looked up in the shard's finished
        set first: a late duplicate of a run another worker finished (it came
        up after a takeover) must not start a run that never ends.
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
        if unknown:
            scores = await self._call(
                lambda: self._execute("ZMSCORE", shard.finished, *unknown)
            )
            for run, score in zip(unknown, scores, strict=True):
                if score is not None:
                    tracker.finished_elsewhere(run)
        return decoded

    async def _next_batch(self) -> list[tuple[_Shard, list[_Entry]]]:
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
        now = time.monotonic()
        margin = self._margin
        owned = [s for s in self._owned.values() if s.valid_until - now > margin]
        if not owned:
            # Nothing to read (no shard, or no lease renewed lately): wait
            # for the lease task.
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            return []
        for shard in owned:
            if shard.backlog is not None:
                return [(shard, await self._claim(shard))]
        block = min(
            self._config.block_ms,
            *(int((s.valid_until - now - margin) * 1000) for s in owned),
        )
        args = (
            *self._read_args,
            max(block, 1),
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

    async def _claim(self, shard: _Shard) -> list[_Entry]:
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
            self._config.count,
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

    async def _prune_consumers(self, shard: _Shard) -> None:
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

    async def _read(self, shards: Sequence[_Shard], command: tuple[Any, ...]) -> Any:
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
        return reply

    def _poisoned(
        self,
        shard: _Shard,
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
            dead_letter=self._config.dead_letter,
        )
        shard.dead.append((entry_id, fields, reason))

    async def _settle(self) -> None:
        """Acknowledge what is ackable, and hand over the shards due."""
        due = [s for s in self._owned.values() if s.tracker.acks or s.dead]
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
        self._rebalance()
        now = time.monotonic()
        done = [
            shard
            for shard in self._owned.values()
            if shard.leave_by is not None
            and (shard.tracker.open_runs == 0 or now >= shard.leave_by)
        ]
        if done:
            await self._call(lambda: self._release_leases(done))
            for shard in done:
                self._forget(shard)
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
                    self._config.dead_letter,
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

    def _rebalance(self) -> None:
        """Start or call off handovers, so that the shards kept match the share."""
        owned = list(self._owned.values())
        leaving = [s for s in owned if s.leave_by is not None]
        excess = len(owned) - self._share
        if excess > len(leaving):
            # Hand over first the shards with the fewest runs in progress:
            # they are free soonest.
            staying = sorted(
                (s for s in owned if s.leave_by is None),
                key=lambda s: s.tracker.open_runs,
            )
            by = time.monotonic() + self._claim_idle_ms / 1000
            for shard in staying[: excess - len(leaving)]:
                shard.leave_by = by
                self._log.info(
                    "redis_shard_handover",
                    key=shard.key.decode(errors="replace"),
                    open_runs=shard.tracker.open_runs,
                )
        elif excess < len(leaving):
            for shard in leaving[: len(leaving) - max(excess, 0)]:
                shard.leave_by = None
                # The runs skipped meanwhile are pending and unread: claim
                # the shard's pending entries again (those of the runs in
                # progress come back as duplicates, and are dropped).
                shard.backlog = b"0-0"

    async def _recreate_groups(self, shards: Sequence[_Shard]) -> None:
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

    def _forget(self, shard: _Shard) -> None:
        """Drop a shard: what it has not delivered is left to its next owner."""
        shard.lost = True
        if self._owned.get(shard.key) is shard:
            del self._owned[shard.key]

    # Leases -------------------------------------------------------------------

    async def _keep_leases(self) -> None:
        """Tick every third of ``claim_idle_ms``, until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
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
        """Heartbeat, renew the leases, and take free shards up to the share."""
        live = await self._heartbeat(
            keys=[self._heartbeats], args=[self._consumer, self._claim_idle_ms]
        )
        # Now, before the quiet time after an outage is judged below.
        self._outage.succeeded()
        self._share = -(-len(self._keys) // max(int(live), 1))
        owned = list(self._owned.values())
        if owned:
            sent = time.monotonic()
            kept = await self._renew(
                keys=_lease_keys(owned),
                args=[self._consumer, self._claim_idle_ms, *(s.token for s in owned)],
            )
            for shard, ok in zip(owned, kept, strict=True):
                if ok:
                    shard.valid_until = sent + self._claim_idle_ms / 1000
                elif not shard.lost:
                    self._forget(shard)
                    self._log.warning(
                        "redis_shard_lost",
                        key=shard.key.decode(errors="replace"),
                        open_runs=shard.tracker.open_runs,
                    )
            await self._find_strays([s for s in owned if not s.lost])
        want = self._share - len(self._owned)
        # Just after an outage, every worker's heartbeat looks stale and every
        # lease may have expired: leave the others time to renew theirs (they
        # may, as nobody took them) before taking what looks free.
        quiet = (
            time.monotonic() - self._outage.recovered_at < self._claim_idle_ms / 1000
        )
        if want > 0 and not quiet and not self._stopping.is_set():
            await self._take(want)

    async def _find_strays(self, shards: Sequence[_Shard]) -> None:
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
        keys = self._keys
        candidates = [
            _Shard(key, self._group)
            for key in (
                keys[(self._offset + step) % len(keys)] for step in range(len(keys))
            )
            if key.encode() not in self._owned
        ]
        self._acquiring = candidates
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
            shard.valid_until = sent + self._claim_idle_ms / 1000
            await self._create_group(shard.key)
            self._owned[shard.key] = shard
            self._log.info("redis_shard_acquired", key=shard.key.decode())
        self._acquiring = []
        if taken:
            self._wake.set()

    async def _release_leases(self, shards: Sequence[_Shard]) -> None:
        """Release the leases of ``shards`` that are still ours."""
        if shards:
            await self._release(
                keys=_lease_keys(shards), args=[s.token for s in shards]
            )

    async def _leave(self, shards: Sequence[_Shard]) -> None:
        """Release the leases of ``shards``; leave the heartbeat set."""
        await self._release_leases(shards)
        await self.client.zrem(self._heartbeats, self._consumer)

    # The end ------------------------------------------------------------------

    async def _close(self, graceful: bool) -> None:
        """Stop the lease task; acknowledge (if graceful), release, close."""
        task = self._lease_task
        if task is not None:
            task.cancel()
            # Waited for without raising: a failure of its own was raised
            # by the reading loop already.
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()
        shards = [*self._owned.values(), *self._acquiring]
        if graceful:
            await self._finish(shards)
        else:
            # Shielded: a second cancellation does not cut the release short,
            # which is bounded by its own timeout anyway.
            cleanup = asyncio.ensure_future(self._abandon(shards))
            _cleanups.add(cleanup)
            cleanup.add_done_callback(_cleanups.discard)
            await asyncio.shield(cleanup)

    async def _finish(self, shards: Sequence[_Shard]) -> None:
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

    async def _abandon(self, shards: Sequence[_Shard]) -> None:
        """Release the leases, best effort and briefly; close."""
        try:
            async with asyncio.timeout(_ABANDON_TIMEOUT):
                await self._leave(shards)
        except (TimeoutError, RedisError) as exc:
            self._log.warning("redis_leases_not_released", error=repr(exc))
        finally:
            await self._shut()

    async def _shut(self) -> None:
        """Close the client."""
        self._outage.closed()
        await self.client.aclose()


def _as_sent(response: Any, **_: Any) -> Any:
    """A redis-py response callback that leaves the reply as the server sent it."""
    return response


#: Cleanups of abandoned sessions still running: asyncio keeps only weak
#: references to tasks.
_cleanups: set[asyncio.Future[None]] = set()

#: An entry that did not decode: id, fields, reason.
_Dead = tuple[bytes, dict[bytes, bytes], str]


#: What a shard has to settle: its entries to acknowledge, its runs
#: finished, its entries to dead-letter.
_Taken = tuple[_Shard, list[bytes], list[str], list[_Dead]]


def _take_acks(shards: Sequence[_Shard]) -> list[_Taken]:
    """Take what each shard has to acknowledge, record and dead-letter."""
    taken = []
    for shard in shards:
        acks, finished = shard.tracker.take_acks()
        taken.append((shard, acks, finished, shard.dead))
        shard.dead = []
    return taken


def _lease_keys(shards: Sequence[_Shard]) -> list[str]:
    """Return the lease and token key of each shard, interleaved."""
    return [key for s in shards for key in (s.lease, s.token_key)]


class RedisStreamSource(EventStream):
    """Events read from Redis Streams as one worker of a consumer group.

    What :func:`redis_stream` returns, which documents the arguments and the
    behaviour: an :class:`~eventkit.EventStream` (pipe it, run it, iterate
    it) that :meth:`stop` ends gracefully. One iteration at a time (another
    concurrent one raises :exc:`RuntimeError`); each iteration is a session
    of its own: a client, leases, runs in progress.

    Attributes:
        url: The server.
        keys: The keys of the stream, one per shard.
        group: The consumer group.
        consumer: This worker's name in the group.
        dead_letter: Where entries that do not decode go.
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
    ) -> None:
        check_url(url)
        if consumer is None:
            consumer = f"{socket.gethostname()}-{os.getpid()}"
        if dead_letter is None:
            dead_letter = dead_letter_key(stream)
        for name, text in (
            ("stream", stream),
            ("group", group),
            ("consumer", consumer),
            ("dead_letter", dead_letter),
        ):
            if not text:
                raise ValueError(f"{name} must not be empty")
        for name, value in (
            ("shards", shards),
            ("block_ms", block_ms),
            ("claim_idle_ms", claim_idle_ms),
            ("count", count),
        ):
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        config = _Config(
            url,
            stream,
            group=group,
            consumer=consumer,
            shards=shards,
            block_ms=block_ms,
            claim_idle_ms=claim_idle_ms,
            count=count,
            dead_letter=dead_letter,
        )
        self.url = url
        self.keys = tuple(config.keys)
        self.group = group
        self.consumer = consumer
        self.dead_letter = dead_letter
        self._reader = _Reader(config)
        super().__init__(self._reader, ())

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
        way, it ends the next one at once.
        """
        self._reader.stop()

    def __repr__(self) -> str:
        return (
            f"<redis stream source {self.keys[0]!r} ({len(self.keys)} keys), "
            f"group {self.group!r}, consumer {self.consumer!r}>"
        )


def redis_stream(
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
) -> RedisStreamSource:
    """Return the events of a Redis stream, read as a worker of ``group``.

    Run it through a chain into a sink like any source; stop it with
    :meth:`RedisStreamSource.stop` (from a SIGTERM handler, say)::

        source = eventkit.sources.redis_stream("redis://localhost", group="g")
        loop.add_signal_handler(signal.SIGTERM, source.stop)
        await eventkit.run(source, eventkit.pipe.reorder(), sink=sink)

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
      end, until it succeeds or :meth:`~RedisStreamSource.stop` is called; a
      warning is logged once per outage and a note when it ends;
      ``source_stats("redis").connections`` counts each (re)connection.
    - **An entry that does not decode** (no ``event`` field, not JSON, not
      an event) is added to the ``dead_letter`` stream with the fields
      ``stream`` (its key), ``id``, ``reason`` and its own fields,
      acknowledged, logged as a warning and counted in
      ``source_stats("redis").invalid_frames``; reading goes on.
    - **A missing group** (a new stream, or a server that lost its data) is
      created, reading the keys from their start.
    - **Stopping early** (``break``, an error, a cancellation) acknowledges
      nothing more; the shards are released (for at most 1 s) and their
      pending entries delivered again, to whichever worker owns them next.
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
            also the longest delay of :meth:`~RedisStreamSource.stop`.
        claim_idle_ms: A worker not heard from for this long loses its shards
            and the entries of its unfinished runs to the others; the leases
            are renewed every third of it.
        count: Most entries read per key and round trip.
        dead_letter: The dead-letter stream; default ``f"{stream}:dead"``.

    Returns:
        A stream that reads nothing until iterated.

    Raises:
        ValueError: At once, for an empty ``stream``, ``group`` or
            ``consumer``, or a ``shards``, ``block_ms``, ``claim_idle_ms`` or
            ``count`` that is not a positive integer.
    """
    return RedisStreamSource(
        url,
        stream,
        group=group,
        consumer=consumer,
        shards=shards,
        block_ms=block_ms,
        claim_idle_ms=claim_idle_ms,
        count=count,
        dead_letter=dead_letter,
    )
